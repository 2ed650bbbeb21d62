"""The names steps have in one compiled pipeline, and the scope in which steps show them.

An automatic step name (the function's name, then ``-2``, ``-3`` ...) depends on the
whole graph, so no step can decide it alone, and the same step object may be compiled
into more than one pipeline. The compiler decides the names and hands them over as a
:class:`StepNames`; it never writes them into the steps. It renders the definition and
pickles the arguments inside ``names.active()``, where :attr:`Step.name
<stepflow.workflow.steps.Step.name>` answers from it. Outside that scope a step shows its
explicit name, else its base name.

A scope rather than an argument because pipeline variables render themselves through
``expr`` and ``placeholder()``, which take no arguments in the SageMaker SDK this API
follows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stepflow.workflow.steps import Step


class StepNames:
    """Step → its name in one pipeline, by object identity (steps are not values)."""

    def __init__(self, names: Mapping[int, str]) -> None:
        self._names = dict(names)

    def get(self, step: Step) -> str | None:
        """The name decided for ``step``; None for a step these names do not cover."""
        return self._names.get(id(step))

    @contextmanager
    def active(self) -> Iterator[StepNames]:
        """Within: every covered step's ``name`` is the one decided here."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)


_active: ContextVar[StepNames | None] = ContextVar("stepflow_step_names", default=None)


def active_name(step: Step) -> str | None:
    """The name the compiling pipeline gave ``step``; None outside a compile."""
    names = _active.get()
    return names.get(step) if names is not None else None
