"""The step runtime: ``python -m stepflow.runtime`` runs exactly one step attempt.

It plays the part of SageMaker's ``job_driver.sh`` + bootstrap + ``invoke_function``
inside a training container, with stepflow's own code: it reads the pickled function and
arguments from the store, verifies them, prepares the step's environment, resolves its
pipeline-variable arguments, calls the function and writes the result or the exception,
plus an attempt record that orchestrators read instead of trusting process exit codes.

Exit codes: 0 success; 1 the user's code failed (not retried by RetryStrategy);
2 the step's environment could not be prepared (bad dependencies, pre-execution script,
Python mismatch, tampered artifact); 3 infrastructure (the store failed): retryable.
"""

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_ENVIRONMENT_ERROR = 2
EXIT_INFRASTRUCTURE_ERROR = 3
