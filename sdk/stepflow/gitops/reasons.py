"""Every condition type and reason the GitOps core writes, declared in one place.

Flux keeps its condition reasons in one file so that users, alerts and tests can rely on
them; so do we. Whether a failure *stalls* the resource or is *retried* is not decided here
by reason: it follows from the error's ``kind`` (:mod:`stepflow.errors`), declared where the
error is raised, and :func:`stepflow.gitops.conditions.mark_failure` applies it.
"""

from __future__ import annotations

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
# Receivers
INVALID_SECRET = "InvalidSecret"
