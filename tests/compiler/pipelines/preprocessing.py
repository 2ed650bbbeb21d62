# The processing script of seed_processing.py (shipped with the step, never imported).
print("preprocessing")
