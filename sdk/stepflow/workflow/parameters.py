"""Pipeline parameters: named inputs given when an execution starts
(docs/SAGEMAKER-COMPATIBILITY.md, "Parameters and execution variables")."""

from __future__ import annotations

from enum import Enum
from typing import Any

from stepflow.errors import SourceLocation, ValidationError
from stepflow.workflow import placeholders
from stepflow.workflow.callsite import caller_location
from stepflow.workflow.entities import PipelineVariable, Primitive


class ParameterTypeEnum(Enum):
    STRING = "String"
    INTEGER = "Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"


_PYTHON_TYPES: dict[ParameterTypeEnum, tuple[type, ...]] = {
    ParameterTypeEnum.STRING: (str,),
    ParameterTypeEnum.INTEGER: (int,),
    ParameterTypeEnum.FLOAT: (int, float),
    ParameterTypeEnum.BOOLEAN: (bool,),
}


class Parameter(PipelineVariable):
    """A named, typed pipeline input with an optional default."""

    parameter_type: ParameterTypeEnum
    _placeholder: type

    def __init__(self, name: str, default_value: Primitive = None) -> None:
        self.name = name
        self.default_value = default_value
        self._location = caller_location()
        allowed = _PYTHON_TYPES[self.parameter_type]
        if default_value is not None and (
                not isinstance(default_value, allowed)
                or (bool not in allowed and isinstance(default_value, bool))):
            raise ValidationError(
                f"Parameter '{name}' of type {self.parameter_type.value} has a default value "
                f"of type {type(default_value).__name__} ({default_value!r}); give a "
                f"{' or '.join(t.__name__ for t in allowed)}.",
                location=self._location)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, default_value={self.default_value!r})"

    @property
    def location(self) -> SourceLocation | None:
        """The user's line that declared the parameter, for compile errors."""
        return self._location

    @property
    def expr(self) -> dict[str, Any]:
        return {"Get": f"Parameters.{self.name}"}

    def placeholder(self) -> object:
        return self._placeholder(self.name)

    def to_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {"Name": self.name, "Type": self.parameter_type.value}
        if self.default_value is not None:
            request["DefaultValue"] = self.default_value
        return request


class ParameterString(Parameter):
    parameter_type = ParameterTypeEnum.STRING
    _placeholder = placeholders._ParameterString

    def __init__(self, name: str, default_value: str | None = None,
                 enum_values: list[str] | None = None) -> None:
        super().__init__(name, default_value)
        self.enum_values = enum_values

    def to_string(self) -> ParameterString:  # type: ignore[override]
        """A string parameter already is a string expression (as in the SDK)."""
        return self

    def to_request(self) -> dict[str, Any]:
        request = super().to_request()
        if self.enum_values:
            request["EnumValues"] = list(self.enum_values)
        return request


class ParameterInteger(Parameter):
    parameter_type = ParameterTypeEnum.INTEGER
    _placeholder = placeholders._ParameterInteger


class ParameterFloat(Parameter):
    parameter_type = ParameterTypeEnum.FLOAT
    _placeholder = placeholders._ParameterFloat

    def to_request(self) -> dict[str, Any]:
        request = super().to_request()
        if "DefaultValue" in request:
            request["DefaultValue"] = float(request["DefaultValue"])
        return request


class ParameterBoolean(Parameter):
    parameter_type = ParameterTypeEnum.BOOLEAN
    _placeholder = placeholders._ParameterBoolean
