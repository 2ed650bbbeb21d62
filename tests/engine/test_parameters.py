"""resolve_parameters: defaults, conversions, robust booleans, enums, clear errors."""

from __future__ import annotations

import re

import pytest

from stepflow.engine import ParameterError, Plan, resolve_parameters
from stepflow.errors import ValidationError

from .helpers import definition, reference_definition

PARAMS = [
    {"Name": "Epochs", "Type": "Integer", "DefaultValue": 10},
    {"Name": "Rate", "Type": "Float", "DefaultValue": 0.5},
    {"Name": "UseGpu", "Type": "Boolean", "DefaultValue": False},
    {"Name": "Mode", "Type": "String", "DefaultValue": "fast", "EnumValues": ["fast", "slow"]},
    {"Name": "Data", "Type": "String"},
]


def test_defaults_apply_and_given_values_are_typed():
    values = resolve_parameters(definition(parameters=PARAMS), {"Data": "s3://x", "Epochs": "3"})
    assert values == {"Epochs": 3, "Rate": 0.5, "UseGpu": False, "Mode": "fast", "Data": "s3://x"}
    assert type(values["Epochs"]) is int and type(values["Rate"]) is float


def test_a_plan_is_accepted_as_well_as_a_definition():
    assert resolve_parameters(Plan.from_definition(reference_definition()), {"Epochs": 4})["Epochs"] == 4


@pytest.mark.parametrize("given, expected", [
    ("true", True), ("TRUE", True), ("True", True), (" yes ", True), ("1", True), (1, True), (True, True),
    ("false", False), ("False", False), ("NO", False), ("0", False), (0, False), (False, False),
])
def test_booleans_are_parsed_robustly(given, expected):
    assert resolve_parameters(definition(parameters=PARAMS), {"Data": "d", "UseGpu": given})["UseGpu"] is expected


@pytest.mark.parametrize("name, given, expected", [
    ("Epochs", "7", 7), ("Epochs", 7.0, 7), ("Epochs", "1e3", 1000), ("Epochs", " 12 ", 12),
    ("Rate", "2", 2.0), ("Rate", 3, 3.0), ("Rate", "0.25", 0.25),
])
def test_numbers_convert(name, given, expected):
    value = resolve_parameters(definition(parameters=PARAMS), {"Data": "d", name: given})[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("name, given, fragment", [
    ("Epochs", "ten", "parameter 'Epochs' is an Integer, but was given 'ten' (str); use a whole number"),
    ("Epochs", 2.5, "parameter 'Epochs' is an Integer, but was given 2.5 (float)"),
    ("Epochs", True, "parameter 'Epochs' is an Integer, but was given True (bool)"),
    ("Rate", "nan", "parameter 'Rate' is a Float, but was given 'nan' (str); use a finite number"),
    ("UseGpu", "maybe", "parameter 'UseGpu' is a Boolean, but was given 'maybe' (str); use true/false, 1/0 or yes/no"),
    ("UseGpu", 2, "is a Boolean, but was given 2 (int)"),
    ("Data", 5, "parameter 'Data' is a String, but was given 5 (int)"),
    ("Mode", "medium", "parameter 'Mode' must be one of 'fast', 'slow', but was given 'medium' (str)"),
])
def test_wrong_values_say_which_parameter_what_was_given_and_what_is_expected(name, given, fragment):
    with pytest.raises(ParameterError) as info:
        resolve_parameters(definition(parameters=PARAMS), {"Data": "d", name: given})
    message = str(info.value)
    assert fragment in message
    assert "The pipeline's parameters are: Epochs (Integer, default 10); Rate (Float, default 0.5)" in message
    assert info.value.reason == "InvalidParameters"
    assert isinstance(info.value, ValidationError)


def test_unknown_names_suggest_the_closest_and_every_problem_is_reported_at_once():
    with pytest.raises(ParameterError) as info:
        resolve_parameters(definition(parameters=PARAMS), {"Epoch": 3, "Rate": "x"})
    message = str(info.value)
    assert "unknown parameter 'Epoch' (did you mean 'Epochs'?)" in message
    assert "parameter 'Rate' is a Float" in message
    assert "parameter 'Data' (String) has no default and was not given" in message
    assert "Data (String, required)" in message


@pytest.mark.parametrize("params, fragment", [
    ([{"Name": "x", "Type": "Integer", "DefaultValue": "abc"}], "Parameters[0] (x): the DefaultValue is an Integer"),
    ([{"Name": "x", "Type": "Decimal"}], "unknown Type 'Decimal'"),
    ([{"Name": "x", "Type": "String"}, {"Name": "x", "Type": "String"}], "parameter 'x' is declared twice"),
    ([{"Type": "String"}], "a parameter needs a non-empty string Name"),
])
def test_bad_declarations_are_refused(params, fragment):
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        resolve_parameters(definition(parameters=params), {})
