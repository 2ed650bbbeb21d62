"""stepflow: pipeline-as-code for @step-decorated Python functions."""
