"""Exercises what made pickles unstable: sets of strings, classes defined here, helpers."""

import dataclasses

from stepflow.workflow.function_step import step
from stepflow.workflow.parameters import ParameterString
from stepflow.workflow.pipeline import Pipeline

LABELS = {"churned", "stayed", "unknown", "paused", "upgraded", "downgraded"}
FROZEN = frozenset({"alpha", "beta", "gamma", "delta"})


@dataclasses.dataclass
class Settings:
    columns: list
    tags: frozenset


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, values):
        return [v * self.factor for v in values]


def helper(values):
    return sorted(v for v in values if v in LABELS or v in FROZEN)


@step
def prepare(uri: str, settings: Settings) -> tuple:
    """Prepare the data."""
    return helper(["churned", "alpha"]), Scaler(2).apply([1, 2])


@step
def fit(features, scale):
    return {"n": len(features), "scale": scale}


region = ParameterString(name="Region", default_value="eu")
prepared = prepare(region, Settings(columns=["a", "b"], tags=frozenset({"x", "y", "z"})))
fitted = fit(prepared[0], prepared[1])
again = fit(prepared[1], 3)

pipeline = Pipeline(name="determinism", parameters=[region], steps=[fitted, again])
