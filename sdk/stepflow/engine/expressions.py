"""Pipeline expressions: ``Get``, ``Std:Join`` and ``Std:JsonGet``, as SageMaker's service
evaluates them before it starts a job or decides a condition.

The engine does no I/O, so a ``JsonGet`` cannot read its document. The orchestrator passes
the documents it has already read as a mapping ``uri -> parsed JSON``. Evaluation never stops
at the first missing one: it collects every URI the expression needs and raises
:class:`DocumentsNeeded` with all of them, so one round trip to the store is enough. A
document the orchestrator could not read (absent object, invalid JSON) is passed as an
:class:`UnreadableDocument`, which fails the expression with that reason.

Step properties (``Steps.S.<path>``) are read from the step's own definition, because for
the steps we run they are inputs, not outputs: ``OutputDataConfig.S3OutputPath`` of a
Training step is the ``Std:Join`` in its ``Arguments``, evaluated. What only the step's
*job* reports while it runs (``ProcessingJobStatus``, ``TrainingJobName``,
``ModelArtifacts.S3ModelArtifacts``) is read from the description of that job, a document
in the shape of SageMaker's DescribeProcessingJob/DescribeTrainingJob answer that the
backend records for each attempt: :attr:`Context.jobs` says where the description of each
step's latest job is, and it is passed in with the other documents. A Condition step also
has ``Outcome``, once it has been evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stepflow.errors import StepflowError, ValidationError

from .paths import PathSegment, PathSyntaxError, format_path, parse_path

#: Execution variables a definition may reference and the engine can evaluate.
EXECUTION_VARIABLES = (
    "PipelineName",
    "PipelineArn",
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "StartDateTime",
    "CurrentDateTime",
)

_EXPRESSION_KEYS = ("Get", "Std:Join", "Std:JsonGet")
#: Step types whose jobs report properties beyond their definition (SageMaker's names for
#: them are checked at compile, ``stepflow.compiler.validate``).
JOB_STEP_TYPES = ("Processing", "Training", "Model", "Transform")


class ExpressionError(StepflowError):
    """An expression cannot be evaluated with what the execution has (a user-visible
    step failure, e.g. a JsonGet key the step's result does not contain)."""

    reason = "ExpressionFailed"


class DocumentsNeeded(Exception):
    """Evaluation needs JSON documents the orchestrator has not passed in yet.

    Not an error: the orchestrator reads ``uris`` from the store and evaluates again.
    """

    def __init__(self, uris: tuple[str, ...]) -> None:
        self.uris = uris
        super().__init__("documents needed: " + ", ".join(uris))


@dataclass(frozen=True)
class UnreadableDocument:
    """Stands in for a document the orchestrator tried and failed to read."""

    reason: str


@dataclass(frozen=True)
class Context:
    """Everything an expression may read, as plain data.

    ``steps`` maps a step name to its definition object (``Name``, ``Type``,
    ``Arguments``); ``condition_outcomes`` holds the outcome of each evaluated condition.
    """

    parameters: Mapping[str, Any]
    execution: Mapping[str, str]
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    documents: Mapping[str, Any] = field(default_factory=dict)
    condition_outcomes: Mapping[str, bool] = field(default_factory=dict)
    #: step → the execution it was reused from (selective execution): its properties
    #: evaluate with that execution's id, so they name the source's results.
    sources: Mapping[str, str] = field(default_factory=dict)
    #: step → the URI of the description of its latest job (read like any document), for the
    #: steps whose job properties the definition reads and the backend reports.
    jobs: Mapping[str, str] = field(default_factory=dict)


def is_expression(value: Any) -> bool:
    """True for a ``{"Get": ...}``, ``{"Std:Join": ...}`` or ``{"Std:JsonGet": ...}``."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in _EXPRESSION_KEYS


def evaluate(expr: Any, context: Context) -> Any:
    """The value of ``expr``; literals evaluate to themselves.

    Raises :class:`DocumentsNeeded` listing every missing document, or
    :class:`ExpressionError` when the expression cannot be evaluated at all.
    """
    return Evaluator(context).run(lambda ev: ev.value(expr))


def resolve(value: Any, context: Context) -> Any:
    """``value`` (any JSON structure) with every expression inside it evaluated."""
    return Evaluator(context).run(lambda ev: ev.resolve(value))


def to_text(value: Any) -> str:
    """Stringify like SageMaker's service does inside ``Std:Join`` and job arguments.

    Booleans are JSON's ``true``/``false``, floats keep their decimal point (``6.0``),
    ``None`` is ``null``, lists and objects are compact JSON.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


class _Missing:
    """Value of an expression whose document is not there yet; absorbs every operation."""

    def __repr__(self) -> str:
        return "<missing document>"


MISSING = _Missing()


class Evaluator:
    """One evaluation pass; collects missing documents instead of stopping at the first.

    Public so that condition evaluation shares the collection; most callers use
    :func:`evaluate` or :func:`resolve`.
    """

    def __init__(self, context: Context) -> None:
        self.context = context
        self.missing: set[str] = set()
        self._resolving: list[str] = []

    def run(self, body: Callable[[Evaluator], Any]) -> Any:
        """Run ``body`` and raise :class:`DocumentsNeeded` if it hit a missing document."""
        result = body(self)
        if self.missing:
            raise DocumentsNeeded(tuple(sorted(self.missing)))
        return result

    def resolve(self, value: Any) -> Any:
        if is_expression(value):
            return self.value(value)
        if isinstance(value, Mapping):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def value(self, expr: Any) -> Any:
        if not is_expression(expr):
            return expr
        (kind, body), = expr.items()
        if kind == "Get":
            return self._get(body)
        if kind == "Std:Join":
            return self._join(body)
        return self._json_get(body)

    def _get(self, reference: str) -> Any:
        root, _, rest = reference.partition(".")
        if root == "Parameters":
            if rest not in self.context.parameters:
                raise ExpressionError(f"{{'Get': {reference!r}}}: the execution has no parameter {rest!r}")
            return self.context.parameters[rest]
        if root == "Execution":
            if rest not in self.context.execution:
                raise ExpressionError(
                    f"{{'Get': {reference!r}}}: execution variable {rest!r} is not available in "
                    "this execution (the backend did not set it)")
            return self.context.execution[rest]
        if root == "Steps":
            step, _, path = rest.partition(".")
            return self._step_property(step, path, reference)
        raise ExpressionError(f"{{'Get': {reference!r}}}: unknown reference root {root!r}")

    def _step_property(self, step: str, path: str, reference: str) -> Any:
        definition = self.context.steps.get(step)
        if definition is None:
            raise ExpressionError(f"{{'Get': {reference!r}}}: no step named {step!r}")
        if definition.get("Type") == "Condition" and path == "Outcome":
            if step not in self.context.condition_outcomes:
                raise ExpressionError(f"{{'Get': {reference!r}}}: condition {step!r} has not been evaluated yet")
            return self.context.condition_outcomes[step]
        if reference in self._resolving:
            chain = " -> ".join([*self._resolving, reference])
            raise ExpressionError(f"step properties refer to each other in a loop: {chain}")
        try:
            segments = parse_path(path)
        except PathSyntaxError as exc:
            raise ExpressionError(f"{{'Get': {reference!r}}}: {exc}") from None
        arguments = definition.get("Arguments", {})
        if segments[0] not in arguments and definition.get("Type") in JOB_STEP_TYPES:
            return self._job_property(step, segments, reference)
        try:
            raw = lookup_property(arguments, segments)
        except LookupError as exc:
            raise ExpressionError(f"{{'Get': {reference!r}}}: {exc}") from None
        self._resolving.append(reference)
        context = self.context
        source = context.sources.get(step)
        if source is not None:
            self.context = replace(context, execution=_as_execution(context.execution, source))
        try:
            return self.resolve(raw)
        finally:
            self.context = context
            self._resolving.pop()

    def _job_property(self, step: str, path: tuple[PathSegment, ...], reference: str) -> Any:
        """A property only the step's job reports, from the description of its latest job."""
        uri = self.context.jobs.get(step)
        if uri is None:
            raise ExpressionError(
                f"{{'Get': {reference!r}}}: {format_path(path[:1])} is a property the job of step {step!r} "
                "reports, and this execution has no description of that job (the step ran no job, "
                "or its backend does not report job properties)")
        if uri not in self.context.documents:
            self.missing.add(uri)
            return MISSING
        description = self.context.documents[uri]
        if isinstance(description, UnreadableDocument):
            raise ExpressionError(f"{{'Get': {reference!r}}}: cannot read the description of the job of "
                                  f"step {step!r}: {description.reason}")
        try:
            return lookup_property(description, path, where="the description of the step's job")
        except LookupError as exc:
            keys = ", ".join(sorted(description)) if isinstance(description, Mapping) else "none"
            raise ExpressionError(f"{{'Get': {reference!r}}}: {exc}; its job reports: {keys} "
                                  f"({uri})") from None

    def _join(self, body: Mapping[str, Any]) -> Any:
        values = [self.value(item) for item in body["Values"]]
        if any(item is MISSING for item in values):
            return MISSING
        return to_text(body["On"]).join(to_text(item) for item in values)

    def _json_get(self, body: Mapping[str, Any]) -> Any:
        uri = self.value(body["S3Uri"])
        if uri is MISSING:
            return MISSING
        if not isinstance(uri, str):
            raise ExpressionError(f"JsonGet: S3Uri evaluated to {uri!r}, not a string")
        if uri not in self.context.documents:
            self.missing.add(uri)
            return MISSING
        document = self.context.documents[uri]
        if isinstance(document, UnreadableDocument):
            raise ExpressionError(f"JsonGet: cannot read {uri}: {document.reason}")
        path = parse_path(body["Path"])
        unavailable = result_unavailable(document, path)
        if unavailable is not None:
            raise ExpressionError(
                f"JsonGet {format_path(path)} in {uri}: the step's return value is not available "
                f"as JSON: {unavailable} Conditions and JsonGet read JSON only: return dicts, "
                "lists, strings, finite numbers, booleans and None from a step they read (another "
                "@step receives the pickled value and is not limited to JSON).")
        return json_get(document, path, uri)


def result_unavailable(document: Any, path: tuple[PathSegment, ...]) -> str | None:
    """Why a step's ``results.json`` holds no ``Result`` for ``path``, if it says so.

    The step runtime writes ``{"Result": null, "Exception": "<why>"}`` when the return
    value is not JSON-serializable; the step succeeded, but no path into ``Result`` can be
    read (SageMaker's service records the same failure for these readers).
    """
    if isinstance(document, Mapping) and set(document) == {"Result", "Exception"} \
            and isinstance(document["Exception"], str) and path and path[0] == "Result":
        return document["Exception"]
    return None


def _as_execution(execution: Mapping[str, str], execution_id: str) -> dict[str, str]:
    """Execution variables as another execution of the same pipeline has them."""
    out = {**execution, "PipelineExecutionId": execution_id}
    arn = execution.get("PipelineExecutionArn")
    if arn is not None:
        out["PipelineExecutionArn"] = f"{arn.rsplit('/', 1)[0]}/{execution_id}"
    return out


def json_get(document: Any, path: tuple[PathSegment, ...], uri: str) -> Any:
    """Follow ``path`` into a parsed JSON document; messages name the document and the
    exact segment that is missing, and what is there instead."""
    current = document
    for depth, segment in enumerate(path):
        where = format_path(path[: depth + 1])
        if isinstance(segment, str):
            if not isinstance(current, Mapping):
                raise ExpressionError(
                    f"JsonGet {format_path(path)} in {uri}: {format_path(path[:depth]) or 'the document'} "
                    f"is {_describe(current)}, so it has no key {segment!r}")
            if segment not in current:
                keys = ", ".join(repr(k) for k in current) or "none"
                raise ExpressionError(
                    f"JsonGet {format_path(path)} in {uri}: {where} does not exist; "
                    f"the keys there are: {keys}")
            current = current[segment]
        else:
            if not isinstance(current, list):
                raise ExpressionError(
                    f"JsonGet {format_path(path)} in {uri}: {format_path(path[:depth])} is "
                    f"{_describe(current)}, not a list, so it has no index [{segment}]")
            if not -len(current) <= segment < len(current):
                raise ExpressionError(
                    f"JsonGet {format_path(path)} in {uri}: index [{segment}] is out of range "
                    f"(the list has {len(current)} items)")
            current = current[segment]
    return current


class OpaquePropertyError(LookupError):
    """The path goes inside an expression's value, which only evaluation can tell."""


def lookup_property(arguments: Any, path: tuple[PathSegment, ...], *, where: str | None = None) -> Any:
    """Follow a property path into a step's Arguments (or, ``where`` naming it, into the
    description of the step's job).

    A string key on a list selects the item whose ``...Name`` field equals it, the way
    SageMaker addresses ``Outputs['train']`` or ``InputDataConfig['training']``. Raises
    ``LookupError`` saying which part of the path is not there.
    """
    current = arguments
    for depth, segment in enumerate(path):
        if is_expression(current):
            raise OpaquePropertyError(
                f"{format_path(path[:depth])} is an expression, so the engine cannot look inside it")
        if isinstance(current, list) and isinstance(segment, str):
            matches = [item for item in current if isinstance(item, Mapping)
                       and any(k.endswith("Name") and v == segment for k, v in item.items())]
            if len(matches) != 1:
                raise LookupError(f"{_dotted(path[:depth + 1])} does not name exactly one item of "
                                  f"{_dotted(path[:depth])}")
            current = matches[0]
        elif isinstance(current, list) and isinstance(segment, int) and -len(current) <= segment < len(current):
            current = current[segment]
        elif isinstance(current, Mapping) and isinstance(segment, str) and segment in current:
            current = current[segment]
        elif where is not None:
            raise LookupError(f"property {_dotted(path)} is not in {where} (stopped at "
                              f"{_dotted(path[:depth + 1])})")
        else:
            raise LookupError(
                f"property {_dotted(path)} is not in the step's definition (stopped at "
                f"{_dotted(path[:depth + 1])}); only properties the definition sets, such as "
                "OutputDataConfig.S3OutputPath, can be read before the step's job reports them")
    return current


def _dotted(path: tuple[PathSegment, ...]) -> str:
    out = ""
    for segment in path:
        out += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if out else segment)
    return out


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({to_text(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return "an object"


# ---------------------------------------------------------------------------------------
# Static checks, used when a plan is built.


@dataclass
class References:
    """What an expression tree refers to: step names, parameter names, execution variables."""

    steps: list[str] = field(default_factory=list)
    #: (parameter, where) of every ``Get "Parameters.<name>"``
    parameters: list[tuple[str, str]] = field(default_factory=list)
    execution: list[str] = field(default_factory=list)
    #: (step, property path, where) of every ``Get "Steps.<step>.<path>"``
    properties: list[tuple[str, str, str]] = field(default_factory=list)


def scan(value: Any, where: str, refs: References) -> References:
    """Collect the references in ``value`` and check every expression's shape.

    ``where`` names the location in the definition (``step 'train' Arguments.X[3]``) so a
    ``ValidationError`` points at the exact spot.
    """
    if is_expression(value):
        (kind, body), = value.items()
        if kind == "Get":
            _scan_get(body, where, refs)
        elif kind == "Std:Join":
            if not isinstance(body, Mapping) or not isinstance(body.get("Values"), list) \
                    or not isinstance(body.get("On", ""), str) or "On" not in body:
                raise ValidationError(f"{where}: Std:Join needs {{'On': str, 'Values': [...]}}, got {body!r}")
            for i, item in enumerate(body["Values"]):
                scan(item, f"{where}.Std:Join.Values[{i}]", refs)
        else:
            if not isinstance(body, Mapping) or "S3Uri" not in body or "Path" not in body:
                hint = (" (the PropertyFile form of JsonGet is not supported; use an S3Uri)"
                        if isinstance(body, Mapping) and "PropertyFile" in body else "")
                raise ValidationError(f"{where}: Std:JsonGet needs {{'S3Uri': ..., 'Path': ...}}{hint}")
            try:
                parse_path(body["Path"])
            except PathSyntaxError as exc:
                raise ValidationError(f"{where}: Std:JsonGet Path: {exc}") from None
            scan(body["S3Uri"], f"{where}.Std:JsonGet.S3Uri", refs)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            scan(item, f"{where}.{key}", refs)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            scan(item, f"{where}[{i}]", refs)
    return refs


def _scan_get(reference: Any, where: str, refs: References) -> None:
    if not isinstance(reference, str):
        raise ValidationError(f"{where}: Get needs a string such as 'Parameters.X', got {reference!r}")
    root, _, rest = reference.partition(".")
    if root == "Parameters" and rest:
        refs.parameters.append((rest, where))
    elif root == "Execution" and rest:
        if rest not in EXECUTION_VARIABLES:
            raise ValidationError(
                f"{where}: execution variable {rest!r} is not supported by the stepflow engine; "
                f"supported: {', '.join(EXECUTION_VARIABLES)}")
        refs.execution.append(rest)
    elif root == "Steps" and rest:
        step, _, path = rest.partition(".")
        if not path:
            raise ValidationError(f"{where}: {{'Get': {reference!r}}} names a step but no property")
        try:
            parse_path(path)
        except PathSyntaxError as exc:
            raise ValidationError(f"{where}: {{'Get': {reference!r}}}: {exc}") from None
        if step not in refs.steps:
            refs.steps.append(step)
        refs.properties.append((step, path, where))
    else:
        raise ValidationError(
            f"{where}: cannot read {{'Get': {reference!r}}}; references start with "
            "'Parameters.', 'Execution.' or 'Steps.<name>.'")
