"""Run one step attempt: load, verify, prepare, resolve, call, record.

Every way an attempt can end writes an attempt record (``attempts/<n>.json``) before the
process exits, so the orchestrator learns the outcome from the store, the one place that
survives a crash of either side. Only a process killed from outside leaves no record;
the orchestrator then records that itself.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepflow import layout
from stepflow.config import load_config
from stepflow.errors import DeserializationError, SerializationError, StepflowError, StorageError
from stepflow.runtime import (
    EXIT_ENVIRONMENT_ERROR,
    EXIT_INFRASTRUCTURE_ERROR,
    EXIT_OK,
    EXIT_USER_ERROR,
    userframes,
)
from stepflow.runtime.arguments import StepInvocation, parse
from stepflow.runtime.environment import (
    EnvironmentError_,
    check_python_version,
    dependency_python,
    prepare_workspace,
    run_pre_exec,
)
from stepflow.runtime.resolve import ArgumentError, resolve_arguments
from stepflow.serialization import deserialize, failure_reason, serialize, serialize_exception
from stepflow.storage import ObjectStore, open_store
from stepflow.timefmt import millis

PREPARED_ENV = "STEPFLOW_RUNTIME_WORKSPACE"
_KIND = {EXIT_USER_ERROR: "User", EXIT_ENVIRONMENT_ERROR: "User",
         EXIT_INFRASTRUCTURE_ERROR: "Infrastructure"}


class _Outcome(Exception):
    """Ends the attempt with an exit code, a one-line reason and, maybe, the exception."""

    def __init__(self, code: int, reason: str, exc: BaseException | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.exc = code, reason, exc


def _now() -> str:
    return millis()


def _load(store: ObjectStore, prefix: str, key: bytes | None) -> Any:
    return deserialize(store.get_bytes(layout.payload_key(prefix)),
                       store.get_bytes(layout.metadata_key(prefix)), key=key)


def _load_uri(uri: str, key: bytes | None) -> Any:
    return _load(open_store(uri.rsplit("/", 1)[0]), uri.rsplit("/", 1)[1], key)


def _prepare(inv: StepInvocation, store: ObjectStore, argv: Sequence[str], key: bytes | None) -> Path:
    """Set up the workspace; re-exec under the dependency venv when the step declares one."""
    prepared = os.environ.get(PREPARED_ENV)
    if prepared:
        return Path(prepared)
    check_python_version(inv.client_python_version)
    workdir = Path(tempfile.mkdtemp(prefix=f"stepflow-{inv.step_name}-"))
    workspace = prepare_workspace(store, inv.step_name, inv.func_step_s3_dir, workdir)
    run_pre_exec(workspace)
    python = dependency_python(workspace, inv.dependency_file)
    if python:
        sys.stdout.flush()
        sys.stderr.flush()
        env = {**os.environ, PREPARED_ENV: str(workspace)}
        if key is not None and "STEPFLOW_INTEGRITY_KEY_FILE" not in env:
            env["STEPFLOW_INTEGRITY_KEY"] = key.hex()  # the new interpreter verifies too
        os.execve(python, [python, "-m", "stepflow.runtime", *argv], env)
    return workspace


def _attempt(inv: StepInvocation, store: ObjectStore, key: bytes | None,
             argv: Sequence[str]) -> None:
    try:
        workspace = _prepare(inv, store, argv, key)
        os.chdir(workspace)
        sys.path.insert(0, str(workspace))
        func = _load(store, layout.function_prefix(inv.step_name, inv.func_step_s3_dir), key)
        args, kwargs = _load(store, layout.arguments_prefix(inv.step_name, inv.func_step_s3_dir),
                             key)
        args, kwargs = resolve_arguments(args, kwargs, inv.property_references,
                                         lambda uri: _load_uri(uri, key))
    except StorageError as exc:
        raise _Outcome(EXIT_INFRASTRUCTURE_ERROR, failure_reason(exc), exc) from exc
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

    out = layout.results_prefix(inv.execution_id, inv.step_name)
    try:
        artifact = serialize(result, key=key)
    except SerializationError as exc:
        raise _Outcome(EXIT_USER_ERROR, _cut(
            f"SerializationError: the return value of step {inv.step_name!r} cannot be "
            f"pickled: {exc}. Return plain data (dicts, lists, numbers, arrays) instead."), exc) from exc
    document = results_document(result) if inv.serialize_output_to_json else None
    try:
        store.put_bytes(layout.payload_key(out), artifact.payload)
        store.put_bytes(layout.metadata_key(out), artifact.metadata)
        if document is not None:
            store.put_bytes(f"{out}/{layout.RESULTS_DOCUMENT}", document)
    except StorageError as exc:
        raise _Outcome(EXIT_INFRASTRUCTURE_ERROR, failure_reason(exc), exc) from exc


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


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 1024 else text[:1021] + "..."


def _record(store: ObjectStore, inv: StepInvocation, started: str, code: int,
            reason: str | None) -> None:
    record = {
        "attempt": inv.attempt,
        "status": "Succeeded" if code == EXIT_OK else "Failed",
        "exitCode": code,
        "failureReason": reason,
        "failureKind": _KIND.get(code),
        "startedAt": started,
        "finishedAt": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
    }
    store.put_bytes(layout.attempt_record_key(inv.execution_id, inv.step_name, inv.attempt),
                    json.dumps(record, indent=1, sort_keys=True).encode())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    started, clock = os.environ.get("STEPFLOW_ATTEMPT_STARTED_AT") or _now(), time.monotonic()
    try:
        inv = parse(argv)
        store = open_store(inv.s3_base_uri)
        key = load_config().integrity_key
        # The key verifies artifacts; user code has no business with it (it could sign).
        os.environ.pop("STEPFLOW_INTEGRITY_KEY", None)
    except (ValueError, StepflowError) as exc:
        print(f"stepflow runtime: cannot start: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT_ERROR
    os.environ["STEPFLOW_ATTEMPT_STARTED_AT"] = started
    code, reason = EXIT_OK, None
    try:
        _attempt(inv, store, key, argv)
    except _Outcome as outcome:
        code, reason = outcome.code, outcome.reason
        if outcome.exc is not None and code != EXIT_INFRASTRUCTURE_ERROR:
            try:
                artifact = serialize_exception(outcome.exc, key=key)
                prefix = layout.exception_prefix(inv.execution_id, inv.step_name)
                store.put_bytes(layout.payload_key(prefix), artifact.payload)
                store.put_bytes(layout.metadata_key(prefix), artifact.metadata)
            except StepflowError as exc:
                print(f"stepflow runtime: could not store the exception: {exc}", file=sys.stderr)
    verdict = "succeeded" if code == EXIT_OK else f"failed: {reason}"
    print(f"stepflow: step {inv.step_name} attempt {inv.attempt} {verdict} "
          f"({time.monotonic() - clock:.2f}s)", file=sys.stderr)
    try:
        _record(store, inv, started, code, reason)
    except StepflowError as exc:
        print(f"stepflow runtime: could not write the attempt record: {exc}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE_ERROR
    return code
