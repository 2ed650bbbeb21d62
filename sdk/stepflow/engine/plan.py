"""The plan: a definition flattened into steps with their dependencies, checked once.

SageMaker nests the steps of a condition's branches inside the ConditionStep and infers
dependencies from ``Get "Steps.X..."`` references at run time. The engine needs the flat
picture up front: every step, what it waits for (explicit ``DependsOn`` plus every step
its arguments or conditions reference), which branch of which condition it belongs to,
and its retry budget. Building the plan is where bad definitions are refused, with the
location in the definition: duplicate names, references to unknown steps or parameters,
unsupported step types or expressions, and cycles (the message spells the cycle out).
"""

from __future__ import annotations

import copy
import difflib
import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from stepflow.errors import ValidationError

from .conditions import scan_conditions
from .expressions import JOB_STEP_TYPES, OpaquePropertyError, References, lookup_property, scan
from .parameters import ParameterSpec, parse_parameter_specs
from .paths import parse_path
from .retry import RetrySettings, parse_retry_settings

#: The step types a definition may hold; which backend runs which is
#: ``stepflow.backends.capabilities``' business (Model and Transform: SageMaker only).
STEP_TYPES = ("Training", "Processing", "Model", "Transform", "Condition", "Fail")
#: Where each container step type keeps the arguments a launcher passes to its process.
CONTAINER_ARGUMENTS = {
    "Training": ("AlgorithmSpecification", "ContainerArguments"),
    "Processing": ("AppSpecification", "ContainerArguments"),
}


@dataclass(frozen=True)
class Branch:
    """Membership of a step in a condition's branch: it runs only when ``condition``
    evaluated to ``when`` (True for IfSteps, False for ElseSteps)."""

    condition: str
    when: bool


@dataclass(frozen=True)
class StepPlan:
    """One step as the engine sees it. ``definition`` is the step's own object from the
    definition (for a Condition, including its nested branches)."""

    name: str
    type: str
    definition: Mapping[str, Any]
    dependencies: tuple[str, ...]
    branch: Branch | None
    retry: RetrySettings
    where: str

    @property
    def arguments(self) -> Mapping[str, Any]:
        return self.definition.get("Arguments") or {}

    @property
    def runs_container(self) -> bool:
        return self.type in CONTAINER_ARGUMENTS


@dataclass(frozen=True)
class Plan:
    """A checked, flattened definition. ``order`` is a topological order (ties broken by
    position in the definition); decisions list steps in this order."""

    definition: Mapping[str, Any]
    parameters: tuple[ParameterSpec, ...]
    steps: Mapping[str, StepPlan]
    order: tuple[str, ...]
    #: (reader, step, path) of every read of a property the step's *job* reports while it
    #: runs (``ProcessingJobStatus``, ``ModelArtifacts.S3ModelArtifacts``): legal SageMaker,
    #: available on backends that report job properties (backends.capabilities), which
    #: describe the job of each of these steps (``Context.jobs``).
    job_property_reads: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> Plan:
        """Flatten and validate; raises ``ValidationError`` saying what, where, and how to fix."""
        if not isinstance(definition, Mapping) or not isinstance(definition.get("Steps"), list):
            raise ValidationError("a pipeline definition is a JSON object with a 'Steps' list")
        definition = copy.deepcopy(dict(definition))
        parameters = parse_parameter_specs(definition)
        flat = _flatten(definition["Steps"], "Steps", None)
        _check_unique(flat)
        names = [item.name for item in flat]
        declared = {p.name for p in parameters}
        steps: dict[str, StepPlan] = {}
        references = {item.name: _references(item) for item in flat}
        for item in flat:
            refs = references[item.name]
            for parameter, where in refs.parameters:
                if parameter not in declared:
                    raise ValidationError(
                        f"{where} reads parameter {parameter!r}, which the "
                        f"pipeline does not declare{_suggest(parameter, declared)}; add it to the "
                        "Pipeline's parameters")
            explicit = item.raw.get("DependsOn") or []
            if not isinstance(explicit, list) or not all(isinstance(d, str) for d in explicit):
                raise ValidationError(f"{item.where} ({item.name}): DependsOn must be a list of step names")
            dependencies: list[str] = []
            for dep in [*explicit, *refs.steps]:
                if dep not in names:
                    raise ValidationError(
                        f"{item.where} ({item.name}) depends on step {dep!r}, which is not in the "
                        f"pipeline{_suggest(dep, names)}; pipeline steps: {', '.join(names)}")
                if dep not in dependencies:
                    dependencies.append(dep)
            steps[item.name] = StepPlan(
                item.name, item.type, item.raw, tuple(dependencies), item.branch,
                parse_retry_settings(item.raw, f"{item.where} ({item.name})"), item.where)
        job_reads: list[tuple[str, str, str]] = []
        for reader, refs in references.items():
            job_reads += _check_properties(reader, refs, steps)
        kinds = {p.name: p.type for p in parameters}
        for step in steps.values():
            name = step.retry.max_retry_parameter
            if name is not None and kinds.get(name) != "Integer":
                raise ValidationError(
                    f"{step.where} ({step.name}): RetryStrategy.MaximumRetryAttempts reads parameter "
                    f"{name!r}, which is {'not declared' if name not in kinds else 'a ' + kinds[name]}; "
                    "it must be an Integer parameter")
        order = _topological_order(names, steps)
        return cls(definition, parameters,
                   MappingProxyType({name: steps[name] for name in order}), tuple(order), tuple(job_reads))

    def step(self, name: str) -> StepPlan:
        try:
            return self.steps[name]
        except KeyError:
            raise KeyError(f"no step named {name!r} in this plan") from None


@dataclass(frozen=True)
class _Flat:
    name: str
    type: str
    raw: Mapping[str, Any]
    branch: Branch | None
    where: str


def _flatten(steps: Any, where: str, branch: Branch | None) -> list[_Flat]:
    if not isinstance(steps, list):
        raise ValidationError(f"{where} must be a list of steps")
    out: list[_Flat] = []
    for i, raw in enumerate(steps):
        here = f"{where}[{i}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("Name"), str) or not raw["Name"]:
            raise ValidationError(f"{here}: every step needs a non-empty string Name")
        kind = raw.get("Type")
        if kind not in STEP_TYPES:
            raise ValidationError(
                f"{here} ({raw['Name']}): step type {kind!r} is not supported by the stepflow engine; "
                f"supported: {', '.join(STEP_TYPES)}")
        if not isinstance(raw.get("Arguments", {}), Mapping):
            raise ValidationError(f"{here} ({raw['Name']}): Arguments must be an object")
        out.append(_Flat(raw["Name"], kind, raw, branch, here))
        if kind == "Condition":
            arguments = raw.get("Arguments") or {}
            out += _flatten(arguments.get("IfSteps") or [], f"{here}.Arguments.IfSteps", Branch(raw["Name"], True))
            out += _flatten(arguments.get("ElseSteps") or [], f"{here}.Arguments.ElseSteps",
                            Branch(raw["Name"], False))
    return out


def _check_unique(flat: list[_Flat]) -> None:
    seen: dict[str, str] = {}
    for item in flat:
        if item.name in seen:
            raise ValidationError(
                f"step name {item.name!r} is used twice, at {seen[item.name]} and at {item.where}; "
                "step names must be unique across the pipeline and its condition branches, so "
                "rename one of them")
        seen[item.name] = item.where


def _references(item: _Flat) -> References:
    refs = References()
    arguments = item.raw.get("Arguments") or {}
    where = f"{item.where} ({item.name}) Arguments"
    if item.type == "Condition":
        return scan_conditions(arguments.get("Conditions", []), f"{where}.Conditions", refs)
    if item.type == "Fail":
        return scan(arguments.get("ErrorMessage", ""), f"{where}.ErrorMessage", refs)
    return scan(arguments, where, refs)


def _check_properties(reader: str, refs: References, steps: Mapping[str, StepPlan]) -> list[tuple[str, str, str]]:
    """Refuse ``Steps.X.<path>`` when X's definition cannot provide that property, so a
    typo fails at upsert instead of in the middle of a run; return the reads of job
    properties, which only some backends provide."""
    job_reads: list[tuple[str, str, str]] = []
    for step, path, where in refs.properties:
        target = steps[step]
        if target.type == "Condition":
            if path != "Outcome":
                raise ValidationError(f"{where}: condition step {step!r} has only the property 'Outcome', "
                                      f"not {path!r}")
            continue
        try:
            lookup_property(target.arguments, parse_path(path))
        except OpaquePropertyError:
            continue
        except LookupError as exc:
            if parse_path(path)[0] not in target.arguments:
                if target.type in JOB_STEP_TYPES:
                    job_reads.append((reader, step, path))
                    continue
                raise PropertyUnavailable(
                    f"{where} reads Steps.{step}.{path}, which {step!r}'s definition does not set; "
                    f"properties of a {target.type} step start with: {', '.join(sorted(target.arguments))}.",
                    reader=reader) from None
            raise PropertyUnavailable(f"{where} reads Steps.{step}.{path}: {exc}", reader=reader) from None
    return job_reads


class PropertyUnavailable(ValidationError):
    """A ``Get`` of a step property the step's definition does not provide."""

    reason = "PropertyNotAvailable"

    def __init__(self, message: str, *, reader: str) -> None:
        super().__init__(message)
        self.reader = reader
        """The step that reads the property."""


def _topological_order(names: list[str], steps: Mapping[str, StepPlan]) -> list[str]:
    position = {name: i for i, name in enumerate(names)}
    waits = {name: set(steps[name].dependencies) | ({branch.condition} if (branch := steps[name].branch) else set())
             for name in names}
    for name in names:
        if name in waits[name]:
            raise ValidationError(f"step {name!r} depends on itself; remove it from its own DependsOn "
                                  "or arguments")
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in waits[name]:
            dependents[dep].append(name)
    remaining = {name: len(waits[name]) for name in names}
    ready = [(position[n], n) for n in names if remaining[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in dependents[name]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(ready, (position[child], child))
    if len(order) < len(names):
        cycle = _find_cycle([n for n in names if remaining[n] > 0], waits)
        raise ValidationError(
            "steps depend on each other in a cycle: " + " -> ".join(cycle)
            + " (each waits for the next); remove one of these dependencies (DependsOn, "
            "add_depends_on, or a step output passed as an argument)")
    return order


def _find_cycle(stuck: list[str], waits: Mapping[str, set[str]]) -> list[str]:
    """Walk 'waits for' edges from the first stuck step until a step repeats."""
    stuck_set = set(stuck)
    path: list[str] = []
    node = stuck[0]
    while node not in path:
        path.append(node)
        node = min((d for d in waits[node] if d in stuck_set), key=stuck.index)
    return path[path.index(node):] + [node]


def _suggest(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
