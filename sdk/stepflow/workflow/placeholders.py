"""What a pipeline variable becomes inside a step's pickled arguments
(docs/SAGEMAKER-COMPATIBILITY.md, "Step outputs and arguments").

The step runtime unpickles these and replaces each with its run-time value, looked up in
``--property_references`` by the key each one names. They are plain frozen dataclasses
with no imports beyond the standard library, so unpickling them has no side effects.

The arguments are pickled when the @step function is called, before the upstream steps
have their final names; each top-level pipeline variable is then a :class:`_Slot`. The
compiler wraps those bytes in :class:`CapturedArguments` with the named placeholders, and
unpickling that gives the plain ``(args, kwargs)`` the runtime resolves.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _ParameterString:
    name: str


@dataclass(frozen=True)
class _ParameterInteger:
    name: str


@dataclass(frozen=True)
class _ParameterFloat:
    name: str


@dataclass(frozen=True)
class _ParameterBoolean:
    name: str


@dataclass(frozen=True)
class _ExecutionVariable:
    name: str


@dataclass(frozen=True)
class _Properties:
    """A step property; ``path`` is the full reference, e.g. ``Steps.prep.ProcessingOutputConfig...``."""

    path: str


@dataclass(frozen=True)
class _DelayedReturn:
    """Another step's return value: unpickle ``<uri>/`` then index it by ``reference_path``.

    ``reference_path`` is a tuple of ``("__getitem__", key)`` pairs, as in the SDK.
    """

    uri: _Properties
    reference_path: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class _Slot:
    """The ``index``-th top-level pipeline variable of a call, until the compile names it."""

    index: int


@dataclass(frozen=True)
class CapturedArguments:
    """Call-time ``(args, kwargs)`` bytes and the placeholder for each :class:`_Slot`.

    Pickles as a call to :func:`fill`, so unpickling yields ``(args, kwargs)`` directly.
    """

    payload: bytes
    slots: tuple[object, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        return fill, (self.payload, self.slots)


def fill(payload: bytes, slots: tuple[object, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Unpickle call-time arguments and put each slot's placeholder in its place."""
    args, kwargs = pickle.loads(payload)

    def put(value: Any) -> Any:
        return slots[value.index] if isinstance(value, _Slot) else value

    return tuple(put(a) for a in args), {k: put(v) for k, v in kwargs.items()}
