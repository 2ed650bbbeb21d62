"""What an @step call ships, pickled when the function is called.

SageMaker's SDK pickles a step's function and arguments at the call, so what runs is
what the user had on that line: rebinding a global or mutating an argument afterwards
changes nothing, and a value that cannot be pickled is reported at the call. The
upstream steps' final names are only known at compile time, so each top-level pipeline
variable is pickled as a :class:`~stepflow.workflow.placeholders._Slot` and kept here;
the compiler names them (:class:`~stepflow.workflow.placeholders.CapturedArguments`).
Signing also waits for the compile, which knows the integrity key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stepflow.errors import SerializationError, SourceLocation, StepflowError
from stepflow.serialization import dumps
from stepflow.workflow import pickling
from stepflow.workflow.callsite import display_path, project_root
from stepflow.workflow.entities import PipelineVariable
from stepflow.workflow.placeholders import _Slot


@dataclass(frozen=True)
class CapturedCall:
    """Pickled bytes of one call; ``variables`` are the top-level pipeline variables,
    slot ``i`` being ``variables[i]``."""

    function: bytes
    arguments: bytes
    variables: tuple[PipelineVariable, ...]


def capture(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
            labels: list[str], location: SourceLocation | None) -> CapturedCall:
    """Pickle ``func`` and its arguments now; errors name the argument and the call's line.

    ``labels`` name the arguments in order (positional, then keyword) for messages.
    """
    variables: list[PipelineVariable] = []

    def slot(value: Any) -> Any:
        if isinstance(value, PipelineVariable):
            variables.append(value)
            return _Slot(len(variables) - 1)
        return value

    template = (tuple(slot(a) for a in args), {k: slot(v) for k, v in kwargs.items()})
    with pickling.prepared(project_root()):
        function = _pickle_function(func, location)
        try:
            arguments = dumps(template)
        except StepflowError as exc:
            label, value = _offending(template, labels)
            raise SerializationError(
                f"{func.__name__}(): argument {label} (type {type(value).__name__}) cannot be "
                f"pickled: {exc.message}", location=location, reason=exc.reason) from exc
    return CapturedCall(function, arguments, tuple(variables))


def _pickle_function(func: Callable[..., Any], location: SourceLocation | None) -> bytes:
    try:
        return dumps(func)
    except StepflowError as exc:
        raise SerializationError(
            f"The function {func.__qualname__}() cannot be pickled: {exc.message} It is pickled "
            "when it is called, with the globals it uses as they are then: if one of them is a "
            "pipeline variable, pass it as an argument instead; otherwise make what it "
            "references importable or picklable.",
            location=location or _definition(func), reason=exc.reason) from exc


def _offending(template: tuple[tuple[Any, ...], dict[str, Any]],
               labels: list[str]) -> tuple[str, Any]:
    values = [*template[0], *template[1].values()]
    for label, value in zip(labels, values, strict=False):
        try:
            dumps(value)
        except StepflowError:
            return label, value
    return "(unknown)", None


def _definition(func: Callable[..., Any]) -> SourceLocation | None:
    try:
        return SourceLocation(display_path(inspect.getsourcefile(func) or ""),
                              func.__code__.co_firstlineno)
    except (TypeError, AttributeError):
        return None
