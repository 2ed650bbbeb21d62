"""Pipeline: a name, parameters and the leaf steps; everything upstream is found.

``definition()``, ``create()``, ``update()`` and ``upsert()`` each compile once, publish
the bundle (uploading only what the store lacks) and, except ``definition()``, hand the
definition to the session's backend.

This module never imports the compiler: compiling and publishing go through the session
(:meth:`Session.compile <stepflow.session.Session.compile>` and
:meth:`Session.published <stepflow.session.Session.published>`), which passes the compiler
this pipeline and everything else it needs as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stepflow import arns
from stepflow.engine.rerun import Selection
from stepflow.errors import BackendError, SourceLocation, ValidationError
from stepflow.workflow import schedules
from stepflow.workflow.callsite import caller_location
from stepflow.workflow.parallelism_config import max_parallel_steps
from stepflow.workflow.parameters import Parameter
from stepflow.workflow.pipeline_execution import _PipelineExecution
from stepflow.workflow.pipeline_experiment_config import (
    DEFAULT_EXPERIMENT_CONFIG,
    PipelineExperimentConfig,
)
from stepflow.workflow.selective_execution_config import SelectiveExecutionConfig

if TYPE_CHECKING:
    from stepflow.compiler.bundle import Bundle
    from stepflow.session import Session

_DEFAULT: Any = object()


class Pipeline:
    def __init__(self, name: str = "", parameters: Sequence[Parameter] | None = None,
                 pipeline_experiment_config: PipelineExperimentConfig | None = _DEFAULT,
                 steps: Sequence[Any] | None = None, session: Session | None = None,
                 sagemaker_session: Session | None = None,
                 pipeline_definition_config: Any = None) -> None:
        self._location = caller_location()
        if session is not None and sagemaker_session is not None and session is not sagemaker_session:
            raise ValidationError(
                "Pipeline got both session= and sagemaker_session= (an alias): pass one.",
                location=self._location)
        self.name = name
        self.parameters = list(parameters or [])
        self.pipeline_experiment_config = (DEFAULT_EXPERIMENT_CONFIG
                                           if pipeline_experiment_config is _DEFAULT
                                           else pipeline_experiment_config)
        self.steps = list(steps or [])
        self._session = session if session is not None else sagemaker_session
        self.pipeline_definition_config = pipeline_definition_config

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, steps={len(self.steps)})"

    @property
    def location(self) -> SourceLocation | None:
        """The user's line that created the pipeline, for compile errors."""
        return self._location

    @property
    def session(self) -> Session:
        if self._session is None:
            from stepflow.session import Session

            self._session = Session()
        return self._session

    sagemaker_session = session

    def compile(self, out_dir: str | None = None, *, s3_root_uri: str | None = None,
                previous_index: Mapping[str, str] | None = None) -> Bundle:
        """Compile into a bundle folder (a new temporary one when ``out_dir`` is None).

        Artifact folders already published to the session's store are reused; give
        ``previous_index`` (published key → sha256, ``{}`` for none) to decide that without
        the store, and ``s3_root_uri`` to point the definition at another store root.
        """
        return self.session.compile(self, out_dir, s3_root_uri=s3_root_uri,
                                    previous_index=previous_index)

    def definition(self) -> str:
        """The definition JSON; the step artifacts are published to the store first."""
        with self.session.published(self) as bundle:
            return bundle.definition_bytes.decode("utf-8")

    def create(self, role_arn: str | None = None, description: str | None = None,
               tags: Sequence[Mapping[str, str]] | None = None,
               parallelism_config: Any = None) -> dict[str, Any]:
        backend = self.session.backend
        if self._exists():
            raise BackendError(
                f"Pipeline '{self.name}' already exists on the {backend.name} backend: use "
                "update() or upsert().", reason="PipelineExists")
        return self._upsert(role_arn, description, tags, parallelism_config)

    def update(self, role_arn: str | None = None, description: str | None = None,
               parallelism_config: Any = None) -> dict[str, Any]:
        if not self._exists():
            raise BackendError(
                f"Pipeline '{self.name}' does not exist on the {self.session.backend.name} "
                "backend: use create() or upsert().", reason="PipelineNotFound")
        return self._upsert(role_arn, description, None, parallelism_config)

    def upsert(self, role_arn: str | None = None, description: str | None = None,
               tags: Sequence[Mapping[str, str]] | None = None,
               parallelism_config: Any = None) -> dict[str, Any]:
        """Create or update: one compile, one publish, one backend call.

        ``parallelism_config`` becomes the pipeline's: every execution runs at most that
        many steps at once unless ``start(parallelism_config=...)`` says otherwise."""
        return self._upsert(role_arn, description, tags, parallelism_config)

    def _upsert(self, role_arn: str | None, description: str | None,
                tags: Sequence[Mapping[str, str]] | None, parallelism_config: Any) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if parallelism_config is not None:  # only then: a backend need not know the option
            options["parallelism"] = max_parallel_steps(parallelism_config)
        with self.session.published(self) as bundle:
            return self.session.backend.upsert(bundle, self.session.store, role_arn=role_arn,
                                               description=description, tags=tags, **options)

    def _exists(self) -> bool:
        try:
            self.session.backend.describe(self.name)
        except BackendError as exc:
            if exc.reason == "PipelineNotFound":
                return False
            raise
        return True

    def describe(self) -> dict[str, Any]:
        return self.session.backend.describe(self.name)

    def delete(self) -> dict[str, Any]:
        return self.session.backend.delete(self.name)

    def start(self, parameters: Mapping[str, Any] | None = None,
              execution_display_name: str | None = None,
              execution_description: str | None = None,
              parallelism_config: Any = None,
              selective_execution_config: SelectiveExecutionConfig | None = None) -> _PipelineExecution:
        """Start an execution; ``parallelism_config`` caps the steps running at once,
        ``selective_execution_config`` runs only some steps, reusing an earlier execution's
        results for the steps they read."""
        backend = self.session.backend
        options: dict[str, Any] = {}
        if parallelism_config is not None:
            options["parallelism"] = max_parallel_steps(parallelism_config)
        if selective_execution_config is not None:
            options["selection"] = self._selection(selective_execution_config)
        execution_id = backend.start(self.name, parameters=dict(parameters or {}),
                                     display_name=execution_display_name, **options)
        return _PipelineExecution._started(self.name, execution_id, self.session)

    def put_triggers(self, triggers: Sequence[Any], role_arn: str | None = None) -> list[str]:
        """Record ``PipelineSchedule`` triggers with the pipeline; return their ARNs
        (:mod:`stepflow.workflow.schedules`)."""
        return schedules.put_triggers(self, triggers, role_arn)

    def describe_trigger(self, trigger_name: str) -> dict[str, Any]:
        """``Schedule_Arn``, ``Schedule_Expression``, ``Schedule_State``,
        ``Schedule_Start_Date``, ``Schedule_Role``, and ``Cron`` (our schedule trigger's)."""
        return schedules.describe_trigger(self, trigger_name)

    def delete_triggers(self, trigger_names: Sequence[str]) -> None:
        schedules.delete_triggers(self, trigger_names)

    def _selection(self, config: SelectiveExecutionConfig) -> Selection:
        arn = config.source_pipeline_execution_arn
        if arn is None and config.reference_latest_execution:
            latest = self.list_executions()["PipelineExecutionSummaries"]
            arn = latest[0]["PipelineExecutionArn"] if latest else None
        if arn is None:
            raise ValidationError(
                f"SelectiveExecutionConfig needs a source execution: pipeline '{self.name}' has "
                "none yet; give source_pipeline_execution_arn=... or start a full execution first.",
                location=caller_location(), reason="InvalidSelection")
        return Selection(source_execution_id=arns.parse_execution(arn).execution_id or "",
                         steps=tuple(config.selected_steps))

    def list_executions(self, sort_by: str | None = None, sort_order: str | None = None,
                        max_results: int | None = None,
                        next_token: str | None = None) -> dict[str, Any]:
        return self.session.backend.list_executions(self.name)
