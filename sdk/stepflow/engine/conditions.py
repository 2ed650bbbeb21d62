"""Condition evaluation: the list of a ConditionStep is ANDed.

The semantics are SageMaker's (docs/SAGEMAKER-COMPATIBILITY.md, "Condition and Fail steps").

Comparisons follow the operand types rather than Python's anything-goes rules, so a
mistake such as comparing a String parameter with a numeric metric fails the condition
step with a message instead of silently taking the else branch: integers and floats
compare with each other, strings with strings, booleans only for (in)equality with
booleans. Every operand is evaluated (no short-circuit) so all missing documents are
reported in one go.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stepflow.errors import ValidationError

from .expressions import MISSING, Context, Evaluator, ExpressionError, References, scan, to_text

_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "GreaterThan": operator.gt,
    "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqualTo": operator.le,
}
CONDITION_TYPES = ("Equals", *_ORDERING, "In", "Not", "Or")


def evaluate_conditions(conditions: Sequence[Mapping[str, Any]], context: Context) -> bool:
    """The AND of ``conditions``; raises ``DocumentsNeeded`` or ``ExpressionError``."""
    def body(ev: Evaluator) -> Any:
        results = [_condition(c, ev) for c in conditions]
        if any(r is MISSING for r in results):
            return MISSING
        return all(results)
    return Evaluator(context).run(body)


def _condition(condition: Mapping[str, Any], ev: Evaluator) -> Any:
    kind = condition["Type"]
    if kind == "Not":
        inner = _condition(condition["Condition"], ev)
        return MISSING if inner is MISSING else not inner
    if kind == "Or":
        results = [_condition(c, ev) for c in condition["Conditions"]]
        return MISSING if any(r is MISSING for r in results) else any(results)
    if kind == "In":
        query = ev.value(condition["QueryValue"])
        values = [ev.value(v) for v in condition["Values"]]
        if query is MISSING or any(v is MISSING for v in values):
            return MISSING
        return any(_equals(query, v, "In") for v in values)
    left, right = ev.value(condition["LeftValue"]), ev.value(condition["RightValue"])
    if left is MISSING or right is MISSING:
        return MISSING
    if kind == "Equals":
        return _equals(left, right, kind)
    if not (_both_numbers(left, right) or (isinstance(left, str) and isinstance(right, str))):
        raise ExpressionError(
            f"{kind}: cannot order {_typed(left)} against {_typed(right)}; both sides must be "
            "numbers or both strings (convert the parameter or the step's result)")
    return _ORDERING[kind](left, right)


def _equals(left: Any, right: Any, kind: str) -> bool:
    if _both_numbers(left, right) or type(left) is type(right) or left is None or right is None:
        return bool(left == right)
    raise ExpressionError(
        f"{kind}: cannot compare {_typed(left)} with {_typed(right)}; the values have different "
        "types, so the condition would never hold")


def _both_numbers(left: Any, right: Any) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return number(left) and number(right)


def _typed(value: Any) -> str:
    names = {bool: "Boolean", int: "Integer", float: "Float", str: "String", type(None): "null"}
    return f"{names.get(type(value), type(value).__name__)} {to_text(value)!r}"


def scan_conditions(conditions: Any, where: str, refs: References) -> References:
    """Check the shape of a condition list and collect its references (plan time)."""
    if not isinstance(conditions, list):
        raise ValidationError(f"{where}: Conditions must be a list, got {conditions!r}")
    for i, condition in enumerate(conditions):
        _scan_condition(condition, f"{where}[{i}]", refs)
    return refs


def _scan_condition(condition: Any, where: str, refs: References) -> None:
    kind = condition.get("Type") if isinstance(condition, Mapping) else None
    if kind not in CONDITION_TYPES:
        raise ValidationError(
            f"{where}: unknown condition type {kind!r}; supported: {', '.join(CONDITION_TYPES)}")
    required = {"Not": ("Condition",), "Or": ("Conditions",), "In": ("QueryValue", "Values")}
    for key in required.get(kind, ("LeftValue", "RightValue")):
        if key not in condition:
            raise ValidationError(f"{where}: a {kind} condition needs {key!r}")
    if kind == "Not":
        _scan_condition(condition["Condition"], f"{where}.Condition", refs)
    elif kind == "Or":
        scan_conditions(condition["Conditions"], f"{where}.Conditions", refs)
    elif kind == "In":
        if not isinstance(condition["Values"], list):
            raise ValidationError(f"{where}: In needs a list of Values")
        scan(condition["QueryValue"], f"{where}.QueryValue", refs)
        scan(condition["Values"], f"{where}.Values", refs)
    else:
        scan(condition["LeftValue"], f"{where}.LeftValue", refs)
        scan(condition["RightValue"], f"{where}.RightValue", refs)
