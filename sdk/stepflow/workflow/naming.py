"""The names steps have in one compiled pipeline, and the scope in which steps show them.

An automatic step name (the function's name, then ``-2``, ``-3`` ...) depends on the
whole graph, so no step can decide it alone, and the same step object may be compiled
into more than one pipeline. The compiler decides the names and hands them over as a
:class:`StepNames`; it never writes them into the steps. It renders the definition and
pickles the arguments inside ``names.active()``, where :attr:`Step.name
<stepflow.workflow.steps.Step.name>` answers from it. A compile ends by *settling* its
names: afterwards a step shows the name its latest compile gave it, as it did in SageMaker's
SDK once a step had a name, so ``execution.result(get_step(x).name)`` fetches the right
step's result. The settled names live here, keyed by the step's identity and dropped with
the step; nothing is written into the step. Before any compile, a step shows its explicit
name, else its base name.

A scope rather than an argument because pipeline variables render themselves through
``expr`` and ``placeholder()``, which take no arguments in the SageMaker SDK this API
follows.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stepflow.workflow.steps import Step


class StepNames:
    """Step → its name in one pipeline, by object identity (steps are not values)."""

    def __init__(self, names: Mapping[int, str], steps: Iterable[Step] = ()) -> None:
        self._names = dict(names)
        self._steps = [s for s in steps if id(s) in self._names]

    def get(self, step: Step) -> str | None:
        """The name decided for ``step``; None for a step these names do not cover."""
        return self._names.get(id(step))

    @contextmanager
    def active(self, *, settle: bool = False) -> Iterator[StepNames]:
        """Within: every covered step's ``name`` is the one decided here. ``settle``: and
        after, too (a compile that succeeded); an error inside settles nothing."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)
        if settle:
            for step in self._steps:
                _settled[id(step)] = (weakref.ref(step, _forget(id(step))), self._names[id(step)])


_active: ContextVar[StepNames | None] = ContextVar("stepflow_step_names", default=None)


#: id(step) → (the step, weakly; the name its latest successful compile gave it).
_settled: dict[int, tuple[weakref.ref[Step], str]] = {}


def _forget(key: int) -> Callable[[weakref.ref[Step]], None]:
    """Drop a dead step's entry (and not a newer step's that reused its id)."""
    def forget(ref: weakref.ref[Step]) -> None:
        if key in _settled and _settled[key][0] is ref:
            del _settled[key]
    return forget


def active_name(step: Step) -> str | None:
    """The name the compiling pipeline gives ``step``; outside a compile, the name its
    latest compile gave it; None before any."""
    names = _active.get()
    if names is not None:
        return names.get(step)
    settled = _settled.get(id(step))
    return settled[1] if settled is not None and settled[0]() is step else None
