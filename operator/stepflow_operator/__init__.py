"""The stepflow Kubernetes operator (kopf)."""
