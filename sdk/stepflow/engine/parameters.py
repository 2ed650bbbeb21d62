"""Pipeline parameters: declared types, defaults, and the values given at start.

Values arrive as strings from the CLI and from SageMaker-style ``start()`` (which sends
``str(v)``, so Python's ``True`` arrives as ``"True"``), or typed from Python. Each is
converted to its declared type here, once, so every later use (conditions, job arguments)
sees an ``int``, ``float``, ``str`` or ``bool``. SageMaker parses booleans with a
case-sensitive ``== "true"``; we accept true/false in any case, 1/0 and yes/no.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stepflow.errors import ValidationError

PARAMETER_TYPES = ("String", "Integer", "Float", "Boolean")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


@dataclass(frozen=True)
class ParameterSpec:
    """One entry of the definition's ``Parameters``."""

    name: str
    type: str
    default: Any = None
    has_default: bool = False
    enum_values: tuple[Any, ...] | None = None

    def describe(self) -> str:
        default = f", default {self.default!r}" if self.has_default else ", required"
        return f"{self.name} ({self.type}{default})"


class ParameterError(ValidationError):
    """Parameters given to an execution do not match the pipeline's declaration."""

    reason = "InvalidParameters"


def parse_parameter_specs(definition: Mapping[str, Any]) -> tuple[ParameterSpec, ...]:
    """Read and check the definition's ``Parameters`` list, including the defaults."""
    raw = definition.get("Parameters") or []
    if not isinstance(raw, list):
        raise ValidationError(f"definition Parameters must be a list, got {type(raw).__name__}")
    specs: list[ParameterSpec] = []
    for i, entry in enumerate(raw):
        where = f"Parameters[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("Name"), str) or not entry["Name"]:
            raise ValidationError(f"{where}: a parameter needs a non-empty string Name, got {entry!r}")
        name, kind = entry["Name"], entry.get("Type")
        if kind not in PARAMETER_TYPES:
            raise ValidationError(
                f"{where} ({name}): unknown Type {kind!r}; use one of {', '.join(PARAMETER_TYPES)}")
        if any(s.name == name for s in specs):
            raise ValidationError(f"{where}: parameter {name!r} is declared twice")
        enum = entry.get("EnumValues")
        spec = ParameterSpec(name, kind, enum_values=tuple(enum) if enum is not None else None)
        if "DefaultValue" in entry and entry["DefaultValue"] is not None:
            try:
                default = _convert(spec, entry["DefaultValue"])
            except ValueError as exc:
                raise ValidationError(f"{where} ({name}): the DefaultValue {exc}") from None
            spec = ParameterSpec(name, kind, default, True, spec.enum_values)
        specs.append(spec)
    return tuple(specs)


def resolve_parameters(plan_or_definition: Any, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared parameter with its typed value: given, else default.

    Accepts a :class:`~stepflow.engine.plan.Plan` or a definition dict. Reports every
    problem at once: unknown names (with the closest valid one), wrong types, values not
    in EnumValues, and required parameters left out.
    """
    specs = (parse_parameter_specs(plan_or_definition) if isinstance(plan_or_definition, Mapping)
             else plan_or_definition.parameters)
    given = dict(given or {})
    by_name = {s.name: s for s in specs}
    problems: list[str] = []
    for name in given:
        if name not in by_name:
            close = difflib.get_close_matches(str(name), list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown parameter {name!r}{hint}")
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.name in given:
            try:
                values[spec.name] = _convert(spec, given[spec.name])
            except ValueError as exc:
                problems.append(f"parameter {spec.name!r} {exc}")
        elif spec.has_default:
            values[spec.name] = spec.default
        else:
            problems.append(f"parameter {spec.name!r} ({spec.type}) has no default and was not given")
    if problems:
        declared = "; ".join(s.describe() for s in specs) or "none"
        raise ParameterError(
            "Invalid pipeline parameters: " + "; ".join(problems)
            + f". The pipeline's parameters are: {declared}. Pass them as NAME=VALUE.")
    return values


def _convert(spec: ParameterSpec, value: Any) -> Any:
    """Typed value, or ``ValueError`` whose message completes 'parameter X ...'."""
    got = f"{value!r} ({type(value).__name__})"
    if spec.type == "String":
        if not isinstance(value, str):
            raise ValueError(f"is a String, but was given {got}; pass text, e.g. {str(value)!r}")
        converted: Any = value
    elif spec.type == "Boolean":
        converted = _to_bool(value)
        if converted is None:
            raise ValueError(f"is a Boolean, but was given {got}; use true/false, 1/0 or yes/no")
    elif spec.type == "Integer":
        converted = _to_int(value)
        if converted is None:
            raise ValueError(f"is an Integer, but was given {got}; use a whole number such as 10")
    else:
        converted = _to_float(value)
        if converted is None:
            raise ValueError(f"is a Float, but was given {got}; use a finite number such as 0.5")
    if spec.enum_values is not None and converted not in spec.enum_values:
        allowed = ", ".join(repr(v) for v in spec.enum_values)
        raise ValueError(f"must be one of {allowed}, but was given {got}")
    return converted


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    number: Any = value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            number = _to_float(value)
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return int(number)
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
