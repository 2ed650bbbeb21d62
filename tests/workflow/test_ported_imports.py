"""The seed's imports, with ``sagemaker.`` replaced by ``stepflow.``, resolve."""

import importlib

import pytest

SEED_IMPORTS = [
    ("stepflow.workflow.function_step", "step"),
    ("stepflow.workflow.function_step", "DelayedReturn"),
    ("stepflow.workflow.step_outputs", "get_step"),
    ("stepflow.workflow.pipeline", "Pipeline"),
    ("stepflow.workflow.steps", "ProcessingStep"),
    ("stepflow.processing", "ProcessingInput"),
    ("stepflow.processing", "ProcessingOutput"),
    ("stepflow.sklearn.processing", "SKLearnProcessor"),
    ("stepflow.workflow.condition_step", "ConditionStep"),
    ("stepflow.workflow.conditions", "ConditionGreaterThanOrEqualTo"),
    ("stepflow.workflow.fail_step", "FailStep"),
]


@pytest.mark.parametrize("module,name", SEED_IMPORTS)
def test_seed_import_resolves(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_shims_are_the_same_classes():
    from stepflow.processing import ProcessingInput
    from stepflow.sklearn.processing import SKLearnProcessor
    from stepflow.workflow import processing

    assert ProcessingInput is processing.ProcessingInput
    assert SKLearnProcessor is processing.SKLearnProcessor
