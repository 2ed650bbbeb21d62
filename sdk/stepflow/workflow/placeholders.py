"""What a pipeline variable becomes inside a step's pickled arguments
(docs/SAGEMAKER-COMPATIBILITY.md, "Step outputs and arguments").

The step runtime unpickles these and replaces each with its run-time value, looked up in
``--property_references`` by the key each one names. They are plain frozen dataclasses
with no imports beyond the standard library, so unpickling them has no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass


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
