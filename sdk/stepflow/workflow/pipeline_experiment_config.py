"""Which experiment and trial an execution is recorded under (SageMaker Experiments)."""

from __future__ import annotations

from typing import Any

from stepflow.workflow.entities import render
from stepflow.workflow.execution_variables import ExecutionVariables


class PipelineExperimentConfig:
    def __init__(self, experiment_name: Any, trial_name: Any) -> None:
        self.experiment_name = experiment_name
        self.trial_name = trial_name

    def to_request(self) -> dict[str, Any]:
        return {"ExperimentName": render(self.experiment_name),
                "TrialName": render(self.trial_name)}


DEFAULT_EXPERIMENT_CONFIG = PipelineExperimentConfig(
    ExecutionVariables.PIPELINE_NAME, ExecutionVariables.PIPELINE_EXECUTION_ID)
