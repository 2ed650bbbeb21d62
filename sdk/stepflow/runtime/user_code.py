"""``python -m stepflow.runtime.user_code ATTEMPT``: the user part of one step attempt.

Runs everything the user wrote, with no key, no store and no credentials (see
``stepflow.runtime.isolation``): the pre-execution commands, ``pip install`` of the declared
dependencies (then re-executes itself under that venv), unpickling the function and its
arguments (verified by the trusted part), resolving pipeline variables, the call, and
pickling what it returned or raised. It reports through ``outputs/`` of the attempt folder
(``stepflow.runtime.handoff``) and exits with the outcome's code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from stepflow import layout
from stepflow.errors import DeserializationError, SerializationError
from stepflow.runtime import EXIT_ENVIRONMENT_ERROR, EXIT_OK, EXIT_USER_ERROR, handoff, userframes
from stepflow.runtime.environment import (
    EnvironmentError_,
    check_python_version,
    dependency_python,
    run_pre_exec,
)
from stepflow.runtime.resolve import ArgumentError, resolve_arguments
from stepflow.serialization import SerializedArtifact, failure_reason, loads, serialize, serialize_exception

#: Set when the user part re-executed itself under the step's dependency venv.
_PREPARED_ENV = "STEPFLOW_USER_PART_PREPARED"


class _Outcome(Exception):
    def __init__(self, code: int, reason: str, exc: BaseException | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.exc = code, reason, exc


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 1024 else text[:1021] + "..."


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def results_document(result: Any) -> bytes:
    """``results.json`` for conditions and ``JsonGet``: ``{"Result": ..., "Exception": null}``.

    A value JSON cannot hold (a DataFrame, a model, NaN) does not fail the step, as in
    SageMaker: downstream @steps read the pickled value, and the document records why
    there is no JSON, so a condition or JsonGet reading it fails with that reason.
    """
    try:
        return json.dumps({"Result": result, "Exception": None}, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        reason = f"The function return ({_short_repr(result)}) is not JSON serializable ({exc})."
        return json.dumps({"Result": None, "Exception": reason}).encode()


def _prepare(attempt: Path, inv: handoff.Invocation, workspace: Path) -> None:
    """Pre-exec commands and dependencies; re-exec under the venv when there is one."""
    if os.environ.get(_PREPARED_ENV):
        return
    run_pre_exec(workspace)
    python = dependency_python(workspace, inv.dependency_file, Path(os.environ[handoff.STEP_ENVS_ENV]))
    if python:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(python, [python, "-m", "stepflow.runtime.user_code", str(attempt)],
                  {**os.environ, _PREPARED_ENV: "1"})


def _run(attempt: Path, inv: handoff.Invocation) -> None:
    workspace = attempt / handoff.WORKSPACE / layout.WORKSPACE_ROOT
    try:
        check_python_version(inv.client_python_version)
        os.chdir(workspace)
        _prepare(attempt, inv, workspace)
        sys.path.insert(0, str(workspace))
        func = loads((attempt / handoff.INPUTS / handoff.FUNCTION).read_bytes())
        args, kwargs = loads((attempt / handoff.INPUTS / handoff.ARGUMENTS).read_bytes())

        def load_result(uri: str) -> Any:
            if uri not in inv.upstream:
                raise ArgumentError(f"The result of the upstream step at {uri} does not exist; "
                                    "that step did not succeed or its result was deleted.")
            return loads((attempt / inv.upstream[uri]).read_bytes())

        args, kwargs = resolve_arguments(args, kwargs, inv.property_references, load_result)
    except (EnvironmentError_, DeserializationError, ArgumentError) as exc:
        hint = userframes.missing_module_hint(exc)
        reason = f"{exc.reason}: {exc}" + (f"; {hint}" if hint else "")
        raise _Outcome(EXIT_ENVIRONMENT_ERROR, _cut(reason), exc) from exc

    try:
        result = func(*args, **kwargs)
    except BaseException as exc:  # the user's code: whatever it raised is the step's failure
        userframes.print_traceback(exc)
        where, hint = userframes.location(exc), userframes.missing_module_hint(exc)
        if hint:
            print(f"stepflow: {hint}", file=sys.stderr)
        reason = failure_reason(exc) + (f" (at {where})" if where else "") + (f": {hint}" if hint else "")
        raise _Outcome(EXIT_USER_ERROR, _cut(reason), exc) from exc

    try:
        artifact = serialize(result)
    except SerializationError as exc:
        raise _Outcome(EXIT_USER_ERROR, _cut(
            f"SerializationError: the return value of step {inv.step_name!r} cannot be "
            f"pickled: {exc}. Return plain data (dicts, lists, numbers, arrays) instead."), exc) from exc
    if inv.serialize_output_to_json:
        handoff.write_output(attempt, handoff.RESULT_DOCUMENT, results_document(result))
    handoff.write_output(attempt, handoff.RESULT, artifact.payload)
    handoff.write_output(attempt, handoff.RESULT_METADATA, artifact.metadata)


def main(argv: list[str] | None = None) -> int:
    attempt = Path((sys.argv[1:] if argv is None else argv)[0])
    inv = handoff.Invocation.read(attempt)
    code, reason = EXIT_OK, None
    try:
        _run(attempt, inv)
    except _Outcome as outcome:
        code, reason = outcome.code, outcome.reason
        if outcome.exc is not None:
            artifact: SerializedArtifact = serialize_exception(outcome.exc)
            handoff.write_output(attempt, handoff.EXCEPTION, artifact.payload)
            handoff.write_output(attempt, handoff.EXCEPTION_METADATA, artifact.metadata)
    handoff.write_outcome(attempt, code, reason)
    return code


if __name__ == "__main__":
    sys.exit(main())
