"""SageMaker's errors as ours: a specific reason, the right kind, SageMaker's own message.

Decided by the error *code* botocore parsed from the response, never by matching message
text. The kind follows who can fix it: a definition SageMaker refuses is the user's (the
code must change, the resource stalls); access denied and limits are fixed outside the
Pipeline (an IAM policy, a quota), so they are retried, like a missing git Secret, and the
next pass succeeds once the fix is in. The reasons are listed for users in
:mod:`stepflow.gitops.reasons`.

Messages never carry credentials: botocore's error messages are SageMaker's text, which
names ARNs and never keys, and nothing here formats the request.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from stepflow.errors import INFRASTRUCTURE, USER, BackendError, ConfigurationError

ACCESS_DENIED = "SageMakerAccessDenied"
ROLE_MISSING = "SageMakerRoleMissing"
INVALID_DEFINITION = "SageMakerInvalidDefinition"
LIMIT_EXCEEDED = "SageMakerLimitExceeded"
THROTTLED = "SageMakerThrottled"
UNREACHABLE = "SageMakerUnreachable"
FAILED = "SageMakerFailed"

#: Throttling codes SageMaker (and AWS generally) returns; retried with jittered backoff.
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException",
                              "RequestLimitExceeded", "ProvisionedThroughputExceededException",
                              "SlowDown"})
_ACCESS_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                           "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
                           "SignatureDoesNotMatch"})

#: Error codes meaning "no such resource" / "already exists" (handled by callers, not raised).
NOT_FOUND = "ResourceNotFound"
IN_USE = "ResourceInUse"


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message") or error_code(exc) or "no message")


def role_missing(pipeline_name: str) -> ConfigurationError:
    return ConfigurationError(
        f"SageMaker needs an IAM execution role to create pipeline '{pipeline_name}' and none is "
        "configured: set spec.sagemaker.roleArn on the Pipeline, pass role_arn= to "
        "Pipeline.upsert(), or set SageMaker.Pipeline.RoleArn in the configuration file "
        "(docs/SAGEMAKER.md lists the permissions the role needs).", reason=ROLE_MISSING)


def step_role_missing(pipeline_name: str, steps: list[str]) -> ConfigurationError:
    return ConfigurationError(
        f"Pipeline '{pipeline_name}': step(s) {', '.join(steps)} have no IAM role for their training "
        "jobs, so SageMaker would fail them: pass @step(role=...), or set "
        "SageMaker.PythonSDK.Modules.RemoteFunction.RoleArn in the configuration (STEPFLOW_ROLE_ARN) "
        "where the pipeline is built.", reason=ROLE_MISSING)


def translate(exc: ClientError | BotoCoreError, action: str) -> BackendError:
    """The error to raise for a SageMaker call that failed while doing ``action``."""
    if isinstance(exc, ParamValidationError):
        # botocore's model refused the request before it was sent: what we were given is wrong.
        return BackendError(f"Could not {action}: SageMaker's API would refuse the request: {exc}",
                            reason=INVALID_DEFINITION, kind=USER)
    if isinstance(exc, BotoCoreError):
        # Connection and credential problems: botocore's text names the endpoint, never a key.
        return BackendError(f"Could not {action}: {exc}. Check the AWS region, endpoint "
                            "(AWS_ENDPOINT_URL_SAGEMAKER) and credentials boto3 finds.",
                            reason=UNREACHABLE, kind=INFRASTRUCTURE)
    code, message = error_code(exc), _message(exc)
    if code in _ACCESS_CODES:
        return BackendError(
            f"SageMaker denied access to {action}: {message} ({code}). Grant the controller's "
            "credentials the permissions listed in docs/SAGEMAKER.md.", reason=ACCESS_DENIED, kind=INFRASTRUCTURE)
    if code == "ResourceLimitExceeded":
        return BackendError(
            f"Could not {action}: {message} (ResourceLimitExceeded). Raise the account's SageMaker "
            "quota, or delete unused pipelines/executions; retried on the next pass.",
            reason=LIMIT_EXCEEDED, kind=INFRASTRUCTURE)
    if code in THROTTLING_CODES:
        return BackendError(f"SageMaker kept throttling requests to {action}: {message} ({code}).",
                            reason=THROTTLED, kind=INFRASTRUCTURE)
    if code == "ValidationException":
        return BackendError(
            f"SageMaker refused to {action}: {message}. Fix the pipeline (or its role) and push again.",
            reason=INVALID_DEFINITION, kind=USER)
    return BackendError(f"Could not {action}: {message} ({code or 'unknown error'}).", reason=FAILED,
                        kind=INFRASTRUCTURE)
