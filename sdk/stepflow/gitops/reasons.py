"""Every condition type and reason the GitOps core writes, declared in one place.

Flux keeps its condition reasons in one file so that users, alerts and tests can rely on
them; so do we. Whether a failure *stalls* the resource or is *retried* is not decided here
by reason: it follows from the error's ``kind`` (:mod:`stepflow.errors`), declared where the
error is raised, and :func:`stepflow.gitops.conditions.mark_failure` applies it.
"""

from __future__ import annotations

from stepflow.backends.sagemaker import errors as _sagemaker

# -- condition types, one per sub-reconciler (Ready/Reconciling/Stalled are kstatus's) ----
SOURCE_READY = "SourceReady"
BUILD_SUCCEEDED = "BuildSucceeded"
PUBLISHED = "Published"

# -- reasons written by the core itself (errors bring their own ``reason``) ---------------
SUCCEEDED = "Succeeded"
BUILD_FAILED = "BuildFailed"
PUBLISH_FAILED = "PublishFailed"
SECRET_NOT_FOUND = "SecretNotFound"
# Execution conditions
EXECUTION_FAILED = "ExecutionFailed"
EXECUTION_STOPPED = "ExecutionStopped"
# Events
NEW_REVISION = "NewRevision"
DEFINITION_PUBLISHED = "DefinitionPublished"
EXECUTION_STARTED = "ExecutionStarted"
RECONCILE_ERROR = "ReconcileError"

# -- reasons the sagemaker backend's errors bring: declared with them, listed here --------
SAGEMAKER_ACCESS_DENIED = _sagemaker.ACCESS_DENIED
SAGEMAKER_ROLE_MISSING = _sagemaker.ROLE_MISSING
SAGEMAKER_INVALID_DEFINITION = _sagemaker.INVALID_DEFINITION
SAGEMAKER_LIMIT_EXCEEDED = _sagemaker.LIMIT_EXCEEDED
SAGEMAKER_THROTTLED = _sagemaker.THROTTLED
SAGEMAKER_UNREACHABLE = _sagemaker.UNREACHABLE
SAGEMAKER_FAILED = _sagemaker.FAILED

# Receivers
INVALID_SECRET = "InvalidSecret"
