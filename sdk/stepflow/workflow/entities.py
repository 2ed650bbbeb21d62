"""The base of every value that only exists while a pipeline runs.

A pipeline variable (parameter, execution variable, step property, step output, Join,
JsonGet) has no value when the module is imported, so every operation that would need
one fails loudly here with advice, instead of silently producing nonsense (the SageMaker
SDK answers ``bool(step_output)`` with True).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stepflow.errors import SerializationError, ValidationError
from stepflow.workflow.callsite import caller_location

if TYPE_CHECKING:
    from stepflow.workflow.functions import Join
    from stepflow.workflow.steps import Step

Primitive = str | int | float | bool | None


class PipelineVariableUsageError(ValidationError, TypeError):
    """A pipeline variable was used as if it had a value at definition time."""

    reason = "PipelineVariableMisused"


class PipelineVariable:
    """A placeholder for a value known only at run time, rendered as an expression."""

    @property
    def expr(self) -> dict[str, Any]:
        """The definition JSON for this variable (a ``Get``, ``Std:Join``, ...)."""
        raise NotImplementedError

    def placeholder(self) -> object:
        """What the pickled function arguments hold in place of this variable."""
        raise NotImplementedError

    def to_string(self) -> Join:
        """This variable as a string expression, usable wherever a string is expected."""
        from stepflow.workflow.functions import Join

        return Join(on="", values=[self])

    def _referenced_steps(self) -> tuple[Step, ...]:
        """Steps whose outputs this variable reads directly; they join the pipeline graph."""
        return ()

    def _children(self) -> list[Any]:
        """Values this expression is built from (Join values, JsonGet's URI)."""
        return []

    def _misuse(self, what: str, advice: str) -> PipelineVariableUsageError:
        return PipelineVariableUsageError(
            f"{what} {self!r}: a pipeline variable has no value until the pipeline runs. {advice}",
            location=caller_location())

    def __bool__(self) -> bool:
        raise self._misuse(
            "Cannot use as a truth value",
            "Decide at run time with a ConditionStep (e.g. ConditionEquals(left=value, "
            "right=True)), or inside a @step function that receives the value as an argument.")

    def __iter__(self) -> Iterator[Any]:
        raise self._misuse(
            "Cannot iterate over or unpack",
            "Index it instead (value[0], value['key']); each index is a pipeline variable "
            "you can pass to another step.")

    def __len__(self) -> int:
        raise self._misuse("Cannot take len() of", "Compute the length inside a @step function.")

    def __str__(self) -> str:
        raise self._misuse(
            "Cannot convert to str",
            "Use .to_string() or Join(on='', values=[...]) to build a string expression.")

    def __int__(self) -> int:
        raise self._misuse("Cannot convert to int", "Convert it inside a @step function.")

    def __float__(self) -> float:
        raise self._misuse("Cannot convert to float", "Convert it inside a @step function.")

    def __add__(self, other: Any) -> Any:
        raise self._misuse(
            "Pipeline variables do not support concatenation:",
            "Use Join(on='', values=[a, b]) to concatenate strings.")

    __radd__ = __add__

    def __copy__(self) -> PipelineVariable:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> PipelineVariable:
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise SerializationError(
            f"{self!r} cannot be pickled: pass the pipeline variable as a top-level argument "
            "of the @step function (f(x=value), not f(x=[value]) or f(x={'k': value})); "
            "pipeline variables nested in a data structure or object, or referenced from a "
            "closure or a global variable, are not supported.",
            reason="NestedPipelineVariable")


def render(value: Any) -> Any:
    """A value as definition JSON: expressions for pipeline variables, primitives as is."""
    if isinstance(value, PipelineVariable):
        return value.expr
    if isinstance(value, (list, tuple)):
        return [render(v) for v in value]
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    return value


def walk_variables(value: Any) -> Iterator[PipelineVariable]:
    """Every pipeline variable inside ``value``: containers, Join/JsonGet parts, conditions."""
    if isinstance(value, PipelineVariable):
        yield value
        for child in value._children():
            yield from walk_variables(child)
    elif hasattr(value, "_operands"):  # a condition: not a value, but holds values
        for child in value._operands():
            yield from walk_variables(child)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from walk_variables(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from walk_variables(item)


def referenced_steps(value: Any) -> list[Step]:
    """Steps read by any pipeline variable inside ``value``, first-seen order, no repeats."""
    found: dict[int, Step] = {}
    for variable in walk_variables(value):
        for step in variable._referenced_steps():
            found.setdefault(id(step), step)
    return list(found.values())
