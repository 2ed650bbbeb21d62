"""Checks that make a pipeline fail at compile time, pointing at the user's line.

The SageMaker SDK lets duplicate names (found through traversal), cycles and invalid
names through to the service or to run time; each of these is an error here.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from stepflow.engine.paths import parse_path
from stepflow.engine.plan import Plan, PropertyUnavailable
from stepflow.errors import ValidationError
from stepflow.workflow.entities import walk_variables
from stepflow.workflow.parameters import Parameter
from stepflow.workflow.steps import Step

if TYPE_CHECKING:
    from stepflow.compiler.graph import PipelineGraph
    from stepflow.workflow.pipeline import Pipeline

STEP_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")
PIPELINE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")


def validate(pipeline: Pipeline, graph: PipelineGraph) -> None:
    """Raise the first problem found; step names are the graph's (``graph.name_of``)."""
    check_pipeline_name(pipeline)
    check_step_names(graph)
    check_unique_names(graph)
    check_acyclic(graph)
    check_parameters(pipeline, graph)


def check_pipeline_name(pipeline: Pipeline) -> None:
    if not isinstance(pipeline.name, str) or not PIPELINE_NAME.match(pipeline.name):
        raise ValidationError(
            f"Invalid pipeline name {pipeline.name!r}: use 1-256 letters, digits and "
            "hyphens, starting with a letter or digit (e.g. 'churn-training').",
            location=pipeline.location, reason="InvalidName")


def check_step_names(graph: PipelineGraph) -> None:
    for step in graph.steps:
        name = graph.name_of(step)
        if not STEP_NAME.match(name):
            raise ValidationError(
                f"Invalid step name {name!r}: a step name is 1-64 characters from "
                "A-Z a-z 0-9 - _ (pattern ^[A-Za-z0-9\\-_]{1,64}$). Rename the step with "
                "name=... .", location=step.location, reason="InvalidName")


def check_unique_names(graph: PipelineGraph) -> None:
    first: dict[str, Step] = {}
    for step in graph.steps:
        name = graph.name_of(step)
        other = first.setdefault(name, step)
        if other is not step:
            raise ValidationError(
                f"Two steps are named '{name}': one created at {other.location}, the "
                f"other at {step.location}. Step names must be unique in a pipeline, "
                "including condition branches; give one of them another name=... .",
                location=step.location, reason="DuplicateStepName")


def check_acyclic(graph: PipelineGraph) -> None:
    """Iterative depth-first search over 'runs after' edges; report the first cycle found."""
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    for start in graph.steps:
        if id(start) in state:
            continue
        path: list[Step] = [start]
        pending = [iter(graph.upstream.get(id(start), []))]
        state[id(start)] = 1
        while pending:
            up = next(pending[-1], None)
            if up is None:
                state[id(path.pop())] = 2
                pending.pop()
            elif state.get(id(up)) == 1:
                cycle = path[path.index(up):] + [up]
                raise ValidationError(
                    "The pipeline has a dependency cycle: "
                    + " -> ".join(graph.name_of(s) for s in reversed(cycle))
                    + ". Each arrow means 'runs before'; remove one of these dependencies "
                    "(an add_depends_on([...]) or an argument).",
                    location=path[-1].location, reason="DependencyCycle")
            elif id(up) not in state:
                state[id(up)] = 1
                path.append(up)
                pending.append(iter(graph.upstream.get(id(up), [])))


def check_parameters(pipeline: Pipeline, graph: PipelineGraph) -> None:
    declared: dict[str, Parameter] = {}
    for parameter in pipeline.parameters:
        if parameter.name in declared and declared[parameter.name] is not parameter:
            raise ValidationError(
                f"Two pipeline parameters are named '{parameter.name}'; rename one.",
                location=parameter.location, reason="DuplicateParameter")
        declared[parameter.name] = parameter
    for step in graph.steps:
        values = [step.upstream_values()]
        for variable in walk_variables(values):
            if isinstance(variable, Parameter) and variable.name not in declared:
                raise ValidationError(
                    f"Step '{graph.name_of(step)}' uses parameter '{variable.name}', which is not "
                    "in Pipeline(parameters=[...]); add it there so executions can set it.",
                    location=step.location, reason="UndeclaredParameter")


def check_runnable(definition: dict[str, Any], graph: PipelineGraph) -> None:
    """What ``start()`` checks (the engine's plan of the compiled definition), at compile
    time, pointing at the user's line: a definition is never accepted here and refused
    later. A step property neither the definition nor the step's job provides is the
    common case; whether the chosen backend reports job properties is checked at publish
    (``stepflow.backends.capabilities``)."""
    try:
        plan = Plan.from_definition(definition)
    except PropertyUnavailable as exc:
        reader = graph.by_name().get(exc.reader)
        raise ValidationError(exc.message, location=reader.location if reader is not None else None,
                              reason=exc.reason) from None
    for reader_name, step, path in plan.job_property_reads:
        target = plan.steps[step]
        known = job_property_names(target.type)
        if parse_path(path)[0] not in known:
            reader = graph.by_name().get(reader_name)
            raise ValidationError(
                f"Step '{reader_name}' reads Steps.{step}.{path}, which neither {step!r}'s definition "
                f"sets nor its job reports. Properties of a {target.type} step start with: "
                f"{', '.join(sorted(set(target.arguments) | known))}.",
                location=reader.location if reader is not None else None, reason=PropertyUnavailable.reason)


#: The SageMaker call whose answer holds a step type's job properties (the SDK's
#: ``step.properties`` are that answer's shape).
_JOB_DESCRIPTIONS = {"Processing": "DescribeProcessingJob", "Training": "DescribeTrainingJob",
                     "Transform": "DescribeTransformJob", "Model": "DescribeModel"}


@functools.cache
def job_property_names(step_type: str) -> frozenset[str]:
    """The top-level properties a step type's job reports, from botocore's SageMaker model
    (loaded only when a definition reads one)."""
    operation = _JOB_DESCRIPTIONS.get(step_type)
    if operation is None:
        return frozenset()
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.operation_model(operation).output_shape.members)
