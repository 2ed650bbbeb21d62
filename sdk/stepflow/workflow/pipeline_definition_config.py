"""Definition-wide options (docs/SAGEMAKER-COMPATIBILITY.md, "Pipeline")."""

from __future__ import annotations


class PipelineDefinitionConfig:
    """``use_custom_job_prefix``: name training jobs after ``job_name_prefix`` or the function."""

    def __init__(self, use_custom_job_prefix: bool = False) -> None:
        self.use_custom_job_prefix = use_custom_job_prefix
