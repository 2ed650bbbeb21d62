"""Run one step attempt: stage, run the user part, sign and store, record.

This is the runtime's *trusted part* (``stepflow.runtime.isolation``): it holds the
integrity key (``stepflow.runtime.key``) and the store's credentials, verifies the artifacts
(``stepflow.runtime.staging``), and runs the user's code in a separate, confined process
that has neither. Every way an attempt can end writes an attempt record
(``attempts/<n>.json``) before the process exits, so the orchestrator learns the outcome
from the store, the one place that survives a crash of either side. Only a process killed
from outside leaves no record; the orchestrator then records that itself.

An attempt has four phases, each a function here: :func:`stage_attempt`, :func:`run_user`,
:func:`collect` and :func:`finish`. :func:`main` runs them in one process and its child
(the local backend); ``stepflow.runtime.pod`` runs them in a pod's three containers, the
user part in one that never has the key.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stepflow import confine, layout
from stepflow.cache import cache_dir
from stepflow.errors import DeserializationError, StepflowError, StorageError
from stepflow.runtime import (
    EXIT_ENVIRONMENT_ERROR,
    EXIT_INFRASTRUCTURE_ERROR,
    EXIT_OK,
    EXIT_USER_ERROR,
    handoff,
    oom,
)
from stepflow.runtime.arguments import StepInvocation, parse
from stepflow.runtime.environment import EnvironmentError_
from stepflow.runtime.isolation import (
    STEP_PYTHON_ENV,
    StepUser,
    envs_dir,
    hand_over,
    run_user_part,
    step_user,
    user_environment,
)
from stepflow.runtime.key import read_key
from stepflow.runtime.record import write_record
from stepflow.runtime.staging import signed_output, stage
from stepflow.serialization import failure_reason, serialize_exception
from stepflow.storage import ObjectStore, open_store
from stepflow.timefmt import millis

_KIND = {EXIT_USER_ERROR: "User", EXIT_ENVIRONMENT_ERROR: "User",
         EXIT_INFRASTRUCTURE_ERROR: "Infrastructure"}


class Outcome(Exception):
    """Ends the attempt with an exit code, a one-line reason and, maybe, the exception."""

    def __init__(self, code: int, reason: str, exc: BaseException | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.exc = code, reason, exc


@dataclass(frozen=True)
class UserExit:
    """How the user part ended: its exit status as ``subprocess`` reports it (negative:
    killed by that signal), and the memory limit when the kernel's OOM killer killed it."""

    status: int
    oom_limit: str | None = None


def stage_attempt(inv: StepInvocation, store: ObjectStore, key: bytes | None, attempt: Path) -> None:
    """Download and verify the attempt's artifacts into ``attempt``; an :class:`Outcome` when
    the store fails (retried) or an artifact or the workspace is refused."""
    try:
        stage(inv, store, key, attempt)
    except StorageError as exc:
        raise Outcome(EXIT_INFRASTRUCTURE_ERROR, failure_reason(exc), exc) from exc
    except (EnvironmentError_, DeserializationError, StepflowError) as exc:
        raise Outcome(EXIT_ENVIRONMENT_ERROR, _cut(f"{exc.reason}: {exc}"), exc) from exc


def run_user(attempt: Path, user: StepUser) -> UserExit:
    """Run the user part on a staged ``attempt`` as ``user``, confined, and see how it ended."""
    try:
        envs = envs_dir(user, cache_dir())
    except StepflowError as exc:
        raise Outcome(EXIT_ENVIRONMENT_ERROR, _cut(f"{exc.reason}: {exc}"), exc) from exc
    hand_over(attempt, user)
    env = user_environment(user, os.environ, home=attempt / handoff.HOME, tmp=attempt / handoff.TMP, envs=envs)
    oom_before = oom.oom_kills()
    status = run_user_part(attempt, user, env, keep=(envs,))
    if status == -signal.SIGKILL and oom_before is not None and (oom.oom_kills() or 0) > oom_before:
        return UserExit(status, oom.memory_limit())
    return UserExit(status)


def collect(inv: StepInvocation, store: ObjectStore, key: bytes | None, attempt: Path, ended: UserExit) -> None:
    """Store what the user part produced, signed; raise its outcome unless it succeeded."""
    status = ended.status
    if ended.oom_limit is not None:
        raise Outcome(EXIT_USER_ERROR, f"OutOfMemory: the step's process was killed for using more than "
                      f"its memory limit ({ended.oom_limit}); use a larger instance_type.")
    outcome = handoff.read_outcome(attempt)
    if outcome is None and status == confine.CANNOT_START:
        raise Outcome(EXIT_ENVIRONMENT_ERROR, (
            "RuntimeEnvironmentError: the step's interpreter could not be started (the log says "
            f"why); set {STEP_PYTHON_ENV} to a Python the step's user can execute, with stepflow "
            "installed where that user can read it"))
    if outcome is None and status < 0:  # killed from outside (OOM killer, an operator): retried
        raise Outcome(EXIT_INFRASTRUCTURE_ERROR, f"the step's process was killed by "
                      f"{_signal_name(-status)} before it reported an outcome")
    if outcome is None:
        raise Outcome(EXIT_USER_ERROR, f"the step's process exited with code {status} before "
                      "it reported an outcome (did the step call os._exit?)")
    code = outcome["code"] if outcome["code"] in (EXIT_OK, EXIT_USER_ERROR, EXIT_ENVIRONMENT_ERROR) \
        else EXIT_USER_ERROR
    reason = _cut(str(outcome.get("reason") or "the step failed without a reason"))
    try:
        if code != EXIT_OK:
            artifact = signed_output(attempt, handoff.EXCEPTION, handoff.EXCEPTION_METADATA, key)
            if artifact is not None:
                prefix = layout.exception_prefix(inv.execution_id, inv.step_name)
                store.put_bytes(layout.payload_key(prefix), artifact[0])
                store.put_bytes(layout.metadata_key(prefix), artifact[1])
            raise Outcome(code, reason)
        result = signed_output(attempt, handoff.RESULT, handoff.RESULT_METADATA, key)
        if result is None:
            raise Outcome(EXIT_USER_ERROR, "the step's process reported success but wrote no result")
        out = layout.results_prefix(inv.execution_id, inv.step_name)
        store.put_bytes(layout.payload_key(out), result[0])
        store.put_bytes(layout.metadata_key(out), result[1])
        document = handoff.read_output(attempt, handoff.RESULT_DOCUMENT)
        if inv.serialize_output_to_json and document is not None:
            store.put_bytes(f"{out}/{layout.RESULTS_DOCUMENT}", document)
    except StorageError as exc:
        raise Outcome(EXIT_INFRASTRUCTURE_ERROR, failure_reason(exc), exc) from exc
    except DeserializationError as exc:  # what the user part wrote does not verify
        raise Outcome(EXIT_USER_ERROR, _cut(f"{exc.reason}: {exc}")) from exc


def finish(inv: StepInvocation, store: ObjectStore, key: bytes | None, outcome: Outcome | None, *,
           started: str, seconds: float) -> int:
    """End the attempt: the exception (signed) and the attempt record in the store, one line
    in the log; the exit code."""
    code, reason = (EXIT_OK, None) if outcome is None else (outcome.code, outcome.reason)
    if outcome is not None and outcome.exc is not None and code != EXIT_INFRASTRUCTURE_ERROR:
        try:
            artifact = serialize_exception(outcome.exc, key=key)
            prefix = layout.exception_prefix(inv.execution_id, inv.step_name)
            store.put_bytes(layout.payload_key(prefix), artifact.payload)
            store.put_bytes(layout.metadata_key(prefix), artifact.metadata)
        except StepflowError as exc:
            print(f"stepflow runtime: could not store the exception: {exc}", file=sys.stderr)
    verdict = "succeeded" if code == EXIT_OK else f"failed: {reason}"
    print(f"stepflow: step {inv.step_name} attempt {inv.attempt} {verdict} ({seconds:.2f}s)", file=sys.stderr)
    try:
        write_record(store, inv.execution_id, inv.step_name, inv.attempt, started=started, code=code,
                     reason=reason, kind=_KIND.get(code))
    except StepflowError as exc:
        print(f"stepflow runtime: could not write the attempt record: {exc}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE_ERROR
    return code


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 1024 else text[:1021] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    started, clock = millis(), time.monotonic()
    try:
        key = read_key()  # first: the key's pipe is closed before anything else runs
        inv = parse(argv)
        store = open_store(inv.s3_base_uri)
        user = step_user()
    except (ValueError, StepflowError) as exc:
        print(f"stepflow runtime: cannot start: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT_ERROR
    outcome = None
    attempt = Path(tempfile.mkdtemp(prefix=f"stepflow-{inv.step_name}-"))
    try:
        stage_attempt(inv, store, key, attempt)
        collect(inv, store, key, attempt, run_user(attempt, user))
    except Outcome as ended:
        outcome = ended
    finally:
        shutil.rmtree(attempt, ignore_errors=True)
    return finish(inv, store, key, outcome, started=started, seconds=time.monotonic() - clock)
