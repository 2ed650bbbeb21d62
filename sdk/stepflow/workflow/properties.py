"""Properties of a non-function step, e.g. a processing job's output S3 URI.

``step.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri`` builds a
path the pipeline service resolves when the step has run. We do not check attribute
names against the service's response shapes: a typo shows up as an unresolvable ``Get``
when the definition is upserted, as it would with the SDK's generic properties.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepflow.workflow import placeholders
from stepflow.workflow.entities import PipelineVariable

if TYPE_CHECKING:
    from stepflow.workflow.steps import Step


class Properties(PipelineVariable):
    _step: Step
    _path: str

    def __init__(self, step: Step, path: str = "") -> None:
        object.__setattr__(self, "_step", step)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name: str) -> Properties:
        if name.startswith("_"):
            raise AttributeError(name)
        return Properties(self._step, f"{self._path}.{name}" if self._path else name)

    def __getitem__(self, key: str | int) -> Properties:
        suffix = f"[{key}]" if isinstance(key, int) else f"['{key}']"
        return Properties(self._step, f"{self._path}{suffix}")

    def __repr__(self) -> str:
        return f"Properties({self.reference!r})"

    @property
    def reference(self) -> str:
        """The full reference, ``Steps.<step>.<path>``; the step name is resolved when compiled."""
        return f"Steps.{self._step.name}.{self._path}"

    @property
    def expr(self) -> dict[str, Any]:
        return {"Get": self.reference}

    def placeholder(self) -> placeholders._Properties:
        return placeholders._Properties(self.reference)

    def _referenced_steps(self) -> tuple[Step, ...]:
        return (self._step,)
