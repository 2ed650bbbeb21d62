"""The execution engine: a pure state machine over a SageMaker pipeline definition.

No I/O, no clock, no randomness: time comes in as ``now``, stored JSON documents come in
as data. The same engine runs inside the local backend and inside the Kubernetes
operator; each persists the :class:`ExecutionState` and resumes from it.

* :class:`Plan` — the definition flattened and checked (``Plan.from_definition``).
* :func:`new_execution`, :func:`resolve_parameters` — a fresh state with typed parameters.
* :func:`decide` — what to launch, stop, skip, evaluate, and whether the run is over.
* :func:`apply` / :func:`apply_all` — the state after events.
* :func:`evaluate`, :func:`resolve_container_arguments` — expressions, as the service
  evaluates them. Retry semantics: :mod:`stepflow.engine.retry`.
"""

from .conditions import evaluate_conditions
from .context import execution_context, resolve_container_arguments, resolve_container_environment
from .decide import Decision, Launch, Stop, decide
from .events import (
                     AttemptFailed,
                     AttemptRunning,
                     AttemptStarted,
                     AttemptStopped,
                     AttemptStopping,
                     AttemptSucceeded,
                     ConditionEvaluated,
                     EngineEvent,
                     Event,
                     ExecutionCompleted,
                     FailStepReached,
                     OrchestratorEvent,
                     StepEvaluationFailed,
                     StepSkipped,
                     StepStopped,
                     StopRequested,
)
from .expressions import Context, DocumentsNeeded, ExpressionError, UnreadableDocument, evaluate, resolve, to_text
from .parameters import ParameterError, ParameterSpec, resolve_parameters
from .plan import Branch, Plan, StepPlan
from .rerun import RETRYABLE, Selection, retry, select
from .retry import RetryPolicy, RetrySettings
from .state import (
                     EXECUTING,
                     FAILED,
                     SKIPPED,
                     STOPPED,
                     STOPPING,
                     SUCCEEDED,
                     TERMINAL_EXECUTION_STATUSES,
                     Attempt,
                     ExecutionState,
                     StepState,
)
from .transitions import TransitionError, apply, apply_all, new_execution

__all__ = [
    "EXECUTING", "FAILED", "RETRYABLE", "SKIPPED", "STOPPED", "STOPPING", "SUCCEEDED", "TERMINAL_EXECUTION_STATUSES",
    "Selection",
    "Attempt", "AttemptFailed", "AttemptRunning", "AttemptStarted", "AttemptStopped", "AttemptStopping",
    "AttemptSucceeded", "Branch", "ConditionEvaluated", "Context", "Decision", "DocumentsNeeded",
    "EngineEvent", "Event", "ExecutionCompleted", "ExecutionState", "ExpressionError", "FailStepReached",
    "Launch", "OrchestratorEvent", "ParameterError", "ParameterSpec", "Plan", "RetryPolicy",
    "RetrySettings", "StepEvaluationFailed", "StepPlan", "StepSkipped", "StepState", "StepStopped", "Stop",
    "StopRequested", "TransitionError", "UnreadableDocument", "apply", "apply_all", "decide", "evaluate",
    "evaluate_conditions", "execution_context", "new_execution", "resolve", "resolve_container_arguments",
    "resolve_container_environment", "resolve_parameters", "retry", "select", "to_text",
]
