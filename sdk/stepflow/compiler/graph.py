"""From the leaf steps a Pipeline was given to the whole graph
(docs/SAGEMAKER-COMPATIBILITY.md, "Building the graph").

Discovery is breadth-first from the inputs, following explicit dependencies and every
step a pipeline variable in a step's arguments reads, so the output order matches the
SDK's (leaf first). Condition branches are compiled inside their ConditionStep; what
they read upstream joins the top level. Automatic names are decided here, once the
whole graph is known: the function's name, then ``-2``, ``-3`` ... in creation order,
never taking a name a step was given explicitly. They are returned in the graph
(``PipelineGraph.names``), never written into the steps; code rendering the steps runs
inside ``graph.names.active()`` (see :mod:`stepflow.workflow.naming`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stepflow.errors import ValidationError
from stepflow.workflow.entities import referenced_steps
from stepflow.workflow.function_step import FunctionStep
from stepflow.workflow.naming import StepNames
from stepflow.workflow.step_outputs import as_step
from stepflow.workflow.steps import Step

if TYPE_CHECKING:
    from stepflow.workflow.pipeline import Pipeline


@dataclass
class PipelineGraph:
    top_level: list[Step]
    """Steps emitted at the top of ``Steps``, in discovery (BFS) order."""
    steps: list[Step]
    """Every step, top level and nested, in discovery order."""
    parent: dict[int, Step] = field(default_factory=dict)
    """Nested step id → the ConditionStep that holds it."""
    upstream: dict[int, list[Step]] = field(default_factory=dict)
    """Step id → steps it must run after (explicit, data, branch parent)."""
    data_upstream: dict[int, list[Step]] = field(default_factory=dict)
    """Step id → steps whose outputs it reads through pipeline variables."""
    names: StepNames = field(default_factory=lambda: StepNames({}))
    """Every step's name in this pipeline, explicit or automatic."""

    def name_of(self, step: Step) -> str:
        """``step``'s name in this pipeline (whether or not ``names`` is active)."""
        return self.names.get(step) or step.name

    def by_name(self) -> dict[str, Step]:
        return {self.name_of(s): s for s in self.steps}


def build_graph(pipeline: Pipeline) -> PipelineGraph:
    inputs = _unique([as_step(s) for s in pipeline.steps])
    nested_owner: dict[int, Step] = {}
    for owner, child in _all_condition_branches(inputs):
        if id(child) in nested_owner and nested_owner[id(child)] is not owner:
            raise ValidationError(
                f"Step '{child.name}' is in the branches of two ConditionSteps "
                f"('{nested_owner[id(child)].name}' and '{owner.name}'); a step can be in "
                "one branch only.", location=child.location)
        nested_owner[id(child)] = owner
    for step in inputs:
        if id(step) in nested_owner:
            raise ValidationError(
                f"Step '{step.name}' is both in Pipeline(steps=[...]) and in a branch of "
                f"ConditionStep '{nested_owner[id(step)].name}': list it in one place only.",
                location=step.location)

    graph = PipelineGraph(top_level=[], steps=[])
    seen: set[int] = set()
    queue: deque[Step] = deque()

    def discover(step: Step, parent: Step | None) -> None:
        if id(step) in seen:
            return
        seen.add(id(step))
        graph.steps.append(step)
        if parent is not None:
            graph.parent[id(step)] = parent
        else:
            graph.top_level.append(step)
        queue.append(step)

    for step in inputs:
        discover(step, None)
    while queue:
        step = queue.popleft()
        data = referenced_steps(step.upstream_values())
        explicit = [as_step(d) for d in step.depends_on if not isinstance(d, str)]
        graph.data_upstream[id(step)] = data
        upstream = _unique(explicit + data)
        parent = graph.parent.get(id(step))
        graph.upstream[id(step)] = upstream + ([parent] if parent is not None else [])
        for child in step.nested_steps():
            discover(child, step)
        for up in upstream:
            discover(up, nested_owner.get(id(up)))
    graph.names = _decide_names(graph.steps)
    _resolve_named_dependencies(graph)
    return graph


def _all_condition_branches(inputs: list[Step]) -> list[tuple[Step, Step]]:
    """(condition, branch step) pairs reachable from the inputs through branches only."""
    pairs: list[tuple[Step, Step]] = []
    stack = list(inputs)
    visited: set[int] = set()
    while stack:
        step = stack.pop()
        if id(step) in visited:
            continue
        visited.add(id(step))
        for child in step.nested_steps():
            pairs.append((step, child))
            stack.append(child)
    return pairs


def _unique(steps: list[Step]) -> list[Step]:
    out: dict[int, Step] = {}
    for s in steps:
        out.setdefault(id(s), s)
    return list(out.values())


def _decide_names(steps: list[Step]) -> StepNames:
    taken = {s.explicit_name for s in steps if s.explicit_name is not None}
    names = {id(s): s.explicit_name for s in steps if s.explicit_name is not None}
    next_suffix: dict[str, int] = {}
    for step in sorted((s for s in steps if s.explicit_name is None),
                       key=lambda s: s.creation_order):
        base = step.base_name()
        name, n = base, next_suffix.get(base, 1)
        if n > 1 or name in taken:
            while name in taken:
                n += 1
                suffix = f"-{n}"
                name = base[:64 - len(suffix)] + suffix
        next_suffix[base] = n
        taken.add(name)
        names[id(step)] = name
    return StepNames(names, steps)


def _resolve_named_dependencies(graph: PipelineGraph) -> None:
    """``add_depends_on(["name"])`` entries must name a step of this pipeline."""
    names = graph.by_name()
    for step in graph.steps:
        for ref in step.depends_on:
            if isinstance(ref, str):
                if ref not in names:
                    raise ValidationError(
                        f"Step '{graph.name_of(step)}' depends on '{ref}', which is not a "
                        f"step of this pipeline (steps: {', '.join(sorted(names))}). Fix the "
                        "name, or pass the step (or its return value) instead of a string.",
                        location=step.location)
                target = names[ref]
                if target not in graph.upstream[id(step)]:
                    graph.upstream[id(step)].append(target)


def depends_on_names(graph: PipelineGraph, step: Step) -> list[str]:
    """``DependsOn``: explicit dependencies, then @step functions whose output it reads."""
    names: dict[str, None] = {}
    for ref in step.depends_on:
        if isinstance(ref, str):
            names[ref] = None
        else:
            names[graph.name_of(as_step(ref))] = None
    for up in graph.data_upstream[id(step)]:
        if isinstance(up, FunctionStep):
            names[graph.name_of(up)] = None
    return list(names)


def output_readers(graph: PipelineGraph) -> set[int]:
    """Ids of @step function steps whose output another step reads (they write results.json)."""
    readers: set[int] = set()
    for step in graph.steps:
        for up in graph.data_upstream[id(step)]:
            readers.add(id(up))
    return readers

