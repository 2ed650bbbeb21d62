"""The pipeline graph as Mermaid or Graphviz source, for ``stepflow graph``.

Shapes say what a step is (function, container job, condition, fail); solid arrows are
data (an output passed on), dashed ones explicit ``add_depends_on`` order, and condition
branches are labelled ``if`` / ``else``. A condition shows its expression
(``evaluate['accuracy'] >= Threshold``) and a note lists the pipeline's parameters with
their types and defaults.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import FunctionStep
from stepflow.workflow.step_outputs import as_step
from stepflow.workflow.steps import Step

if TYPE_CHECKING:
    from stepflow.compiler.graph import PipelineGraph
    from stepflow.workflow.pipeline import Pipeline

Edge = tuple[Step, Step, str]  # (from, to, kind: data | order | if | else)


def edges(graph: PipelineGraph) -> list[Edge]:
    out: list[Edge] = []
    for step in graph.steps:
        data = graph.data_upstream[id(step)]
        for up in data:
            out.append((up, step, "data"))
        names = graph.by_name()
        for ref in step.depends_on:
            up = names[ref] if isinstance(ref, str) else as_step(ref)
            if all(up is not d for d in data):
                out.append((up, step, "order"))
        if isinstance(step, ConditionStep):
            out += [(step, as_step(s), "if") for s in step.if_steps]
            out += [(step, as_step(s), "else") for s in step.else_steps]
    return out


_OPERATORS = {"Equals": "==", "GreaterThan": ">", "GreaterThanOrEqualTo": ">=", "LessThan": "<",
              "LessThanOrEqualTo": "<="}


def expression_text(value: Any) -> str:
    """A rendered pipeline value (the definition's JSON form) as a person writes it."""
    if not isinstance(value, dict):
        return json.dumps(value)
    if "Get" in value:
        ref = str(value["Get"])
        return ref.removeprefix("Parameters.").removeprefix("Execution.")
    if "Std:JsonGet" in value:
        get = value["Std:JsonGet"]
        source = get.get("PropertyFile") or get.get("S3Uri") or {}
        path = str(get.get("Path", ""))
        text = json.dumps(source)
        step = text.split("Steps.", 1)[1].split(".", 1)[0] if "Steps." in text else expression_text(source)
        return f"{step}{path.removeprefix('Result')}" if path.startswith("Result") else f"{step}:{path}"
    if "Std:Join" in value:
        join = value["Std:Join"]
        values = ", ".join(expression_text(v) for v in join.get("Values", []))
        return f"Join({json.dumps(join.get('On', ''))}, [{values}])"
    return json.dumps(value)


def condition_text(request: dict[str, Any]) -> str:
    """One condition of a ConditionStep (``to_request()`` form) as an expression."""
    kind = request.get("Type")
    if kind in _OPERATORS:
        return f"{expression_text(request['LeftValue'])} {_OPERATORS[kind]} {expression_text(request['RightValue'])}"
    if kind == "In":
        values = ", ".join(expression_text(v) for v in request.get("Values", []))
        return f"{expression_text(request['QueryValue'])} in [{values}]"
    if kind == "Not":
        return f"not ({condition_text(request['Condition'])})"
    if kind == "Or":
        return " or ".join(f"({condition_text(c)})" for c in request.get("Conditions", []))
    return json.dumps(request)


def _label(step: Step) -> str:
    if isinstance(step, FunctionStep):
        return f"{step.name}\n{step.func.__name__}()"
    if isinstance(step, ConditionStep):
        conditions = " and ".join(condition_text(c.to_request()) for c in step.conditions)
        return f"{step.name}\n{conditions}" if conditions else f"{step.name}\n{step.step_type.value}"
    return f"{step.name}\n{step.step_type.value}"


def parameters_text(pipeline: Pipeline) -> str | None:
    """``Epochs: Integer = 3`` per line, or None for a pipeline without parameters."""
    lines = []
    for parameter in pipeline.parameters or []:
        request = parameter.to_request()
        default = f" = {json.dumps(request['DefaultValue'])}" if request.get("DefaultValue") is not None else ""
        lines.append(f"{request['Name']}: {request['Type']}{default}")
    return "\n".join(["parameters", *lines]) if lines else None


def to_mermaid(pipeline: Pipeline, graph: PipelineGraph) -> str:
    ids = {id(s): f"s{n}" for n, s in enumerate(graph.steps)}
    lines = ["flowchart TD", f"  %% pipeline {pipeline.name}"]
    params = parameters_text(pipeline)
    if params:
        lines.append(f"  params[/{json.dumps(params.replace(chr(10), '<br/>'))}\\]")
    for step in graph.steps:
        text = json.dumps(_label(step).replace("\n", "<br/>"))
        node = ids[id(step)]
        if isinstance(step, ConditionStep):
            lines.append(f"  {node}{{{text}}}")
        elif isinstance(step, FailStep):
            lines.append(f"  {node}[/{text}/]")
        elif isinstance(step, FunctionStep):
            lines.append(f"  {node}({text})")
        else:
            lines.append(f"  {node}[{text}]")
    for up, down, kind in edges(graph):
        arrow = {"data": "-->", "order": "-.->", "if": "-->|if|", "else": "-->|else|"}[kind]
        lines.append(f"  {ids[id(up)]} {arrow} {ids[id(down)]}")
    lines += ["  classDef fail fill:#fde2e1,stroke:#c0392b",
              "  classDef cond fill:#fff4d6,stroke:#b7950b",
              *(["  classDef params fill:#f4f4f4,stroke:#999999", "  class params params"] if params else [])]
    for step in graph.steps:
        if isinstance(step, FailStep):
            lines.append(f"  class {ids[id(step)]} fail")
        elif isinstance(step, ConditionStep):
            lines.append(f"  class {ids[id(step)]} cond")
    return "\n".join(lines) + "\n"


def to_dot(pipeline: Pipeline, graph: PipelineGraph) -> str:
    lines = [f"digraph {json.dumps(pipeline.name)} {{",
             "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=11, style="filled,rounded", '
             'shape=box, fillcolor="#e8f1fb", color="#2e6da4"];',
             '  edge [fontname="Helvetica", fontsize=10, color="#555555"];']
    params = parameters_text(pipeline)
    if params:
        lines.append(f"  {json.dumps('(parameters)')} [label={json.dumps(params)}, shape=note, "
                     'style="filled", fillcolor="#f4f4f4", color="#999999"];')
    for step in graph.steps:
        attrs = {"label": _label(step)}
        if isinstance(step, ConditionStep):
            attrs.update(shape="diamond", style="filled", fillcolor="#fff4d6", color="#b7950b")
        elif isinstance(step, FailStep):
            attrs.update(shape="octagon", style="filled", fillcolor="#fde2e1", color="#c0392b")
        elif not isinstance(step, FunctionStep):
            attrs.update(fillcolor="#eeeeee", color="#666666")
        rendered = ", ".join(f"{k}={json.dumps(v)}" for k, v in attrs.items())
        lines.append(f"  {json.dumps(step.name)} [{rendered}];")
    for up, down, kind in edges(graph):
        style = {"data": "", "order": ' [style="dashed"]', "if": ' [label="if"]',
                 "else": ' [label="else"]'}[kind]
        lines.append(f"  {json.dumps(up.name)} -> {json.dumps(down.name)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
