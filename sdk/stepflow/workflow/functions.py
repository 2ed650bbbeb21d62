"""Expressions the pipeline service evaluates: ``Std:Join`` and ``Std:JsonGet``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stepflow.workflow.entities import PipelineVariable, render

if TYPE_CHECKING:
    from stepflow.workflow.steps import Step


class Join(PipelineVariable):
    """Concatenate values (primitives or pipeline variables) with a separator."""

    def __init__(self, on: str = "", values: Sequence[Any] | None = None) -> None:
        self.on = on
        self.values = list(values or [])

    def __repr__(self) -> str:
        return f"Join(on={self.on!r}, values={self.values!r})"

    @property
    def expr(self) -> dict[str, Any]:
        return {"Std:Join": {"On": self.on, "Values": [render(v) for v in self.values]}}

    def _children(self) -> list[Any]:
        return list(self.values)


class JsonGet(PipelineVariable):
    """A value read from a JSON document that a step wrote.

    Either ``s3_uri`` (a URI or expression of the document) or ``step`` (or ``step_name``)
    plus ``property_file`` (the name of one of that step's property files).
    """

    def __init__(self, step_name: str | None = None, property_file: Any = None,
                 json_path: str = "", step: Step | None = None,
                 s3_uri: Any = None) -> None:
        if s3_uri is None and property_file is None:
            raise ValueError("JsonGet needs either s3_uri=... or step=... with property_file=...")
        if property_file is not None and step is None and step_name is None:
            raise ValueError("JsonGet with property_file=... also needs step=... (or step_name=...)")
        self.step = step
        self.step_name = step_name
        self.property_file = getattr(property_file, "name", property_file)
        self.json_path = json_path
        self.s3_uri = s3_uri

    def __repr__(self) -> str:
        return f"JsonGet(json_path={self.json_path!r})"

    @property
    def expr(self) -> dict[str, Any]:
        if self.s3_uri is not None:
            return {"Std:JsonGet": {"S3Uri": render(self.s3_uri), "Path": self.json_path}}
        name = self.step.name if self.step is not None else self.step_name
        return {"Std:JsonGet": {
            "PropertyFile": {"Get": f"Steps.{name}.PropertyFiles.{self.property_file}"},
            "Path": self.json_path}}

    def _referenced_steps(self) -> tuple[Step, ...]:
        return (self.step,) if self.step is not None else ()

    def _children(self) -> list[Any]:
        return [self.s3_uri]
