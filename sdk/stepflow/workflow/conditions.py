"""Conditions of a ConditionStep (docs/SAGEMAKER-COMPATIBILITY.md, "Condition and Fail
steps"); the service ANDs a step's list.

Both the SDK's class names (``ConditionGreaterThanOrEqualTo``) and short ones
(``GreaterThanOrEqualTo``) are provided, so ported code runs unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from stepflow.workflow.entities import render


class ConditionTypeEnum(Enum):
    EQ = "Equals"
    GT = "GreaterThan"
    GTE = "GreaterThanOrEqualTo"
    LT = "LessThan"
    LTE = "LessThanOrEqualTo"
    IN = "In"
    NOT = "Not"
    OR = "Or"


class Condition:
    condition_type: ConditionTypeEnum

    def to_request(self) -> dict[str, Any]:
        raise NotImplementedError

    def _operands(self) -> list[Any]:
        """The values (and nested conditions) this condition reads."""
        raise NotImplementedError


class ConditionComparison(Condition):
    def __init__(self, left: Any, right: Any) -> None:
        self.left = left
        self.right = right

    def to_request(self) -> dict[str, Any]:
        return {"Type": self.condition_type.value, "LeftValue": render(self.left),
                "RightValue": render(self.right)}

    def _operands(self) -> list[Any]:
        return [self.left, self.right]


class ConditionEquals(ConditionComparison):
    condition_type = ConditionTypeEnum.EQ


class ConditionGreaterThan(ConditionComparison):
    condition_type = ConditionTypeEnum.GT


class ConditionGreaterThanOrEqualTo(ConditionComparison):
    condition_type = ConditionTypeEnum.GTE


class ConditionLessThan(ConditionComparison):
    condition_type = ConditionTypeEnum.LT


class ConditionLessThanOrEqualTo(ConditionComparison):
    condition_type = ConditionTypeEnum.LTE


class ConditionIn(Condition):
    condition_type = ConditionTypeEnum.IN

    def __init__(self, value: Any, in_values: Sequence[Any]) -> None:
        self.value = value
        self.in_values = list(in_values)

    def to_request(self) -> dict[str, Any]:
        return {"Type": "In", "QueryValue": render(self.value),
                "Values": [render(v) for v in self.in_values]}

    def _operands(self) -> list[Any]:
        return [self.value, *self.in_values]


class ConditionNot(Condition):
    condition_type = ConditionTypeEnum.NOT

    def __init__(self, expression: Condition) -> None:
        self.expression = expression

    def to_request(self) -> dict[str, Any]:
        return {"Type": "Not", "Condition": self.expression.to_request()}

    def _operands(self) -> list[Any]:
        return [self.expression]


class ConditionOr(Condition):
    condition_type = ConditionTypeEnum.OR

    def __init__(self, conditions: Sequence[Condition]) -> None:
        self.conditions = list(conditions)

    def to_request(self) -> dict[str, Any]:
        return {"Type": "Or", "Conditions": [c.to_request() for c in self.conditions]}

    def _operands(self) -> list[Any]:
        return list(self.conditions)


Equals = ConditionEquals
GreaterThan = ConditionGreaterThan
GreaterThanOrEqualTo = ConditionGreaterThanOrEqualTo
LessThan = ConditionLessThan
LessThanOrEqualTo = ConditionLessThanOrEqualTo
In = ConditionIn
Not = ConditionNot
Or = ConditionOr
