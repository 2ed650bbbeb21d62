"""``python -m stepflow.runtime.pod PHASE ATTEMPT [ARGS]``: one @step attempt as a pod's
three containers, so that user code never shares a container with the integrity key.

* ``stage ATTEMPT ARGS`` (the init container: runner image, key, store credentials): the
  runtime's :func:`~stepflow.runtime.invoke.stage_attempt` into ATTEMPT, a folder on an
  emptyDir. When staging fails (an artifact that does not verify, the store down) it ends
  the attempt as the local runtime does and exits non-zero: the step's container never starts.
* ``user ATTEMPT`` (the step's container: the step's image, its declared environment and
  nothing else): the user part on ATTEMPT; its exit status, and whether the kernel's OOM
  killer ended it (this container's memory cgroup), go to ``outputs/exit.json``. It holds
  ``running.lock`` while it lives (``stepflow.runtime.sidecar``).
* ``collect ATTEMPT ARGS`` (beside it: runner image, key, store credentials): waits for the
  exit file, then :func:`~stepflow.runtime.invoke.collect` and
  :func:`~stepflow.runtime.invoke.finish`: signed results, the attempt record. A step's
  container killed whole writes no exit file; the collector then records nothing and the
  orchestrator reads why from the pod's status (OOMKilled, the deadline).

ARGS are the runtime's (``stepflow.runtime.arguments``). Everything the user part may have
written is read as the local runtime reads it: without following links, never trusted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from stepflow.errors import StepflowError
from stepflow.runtime import EXIT_ENVIRONMENT_ERROR, EXIT_INFRASTRUCTURE_ERROR, handoff, sidecar
from stepflow.runtime.arguments import parse
from stepflow.runtime.invoke import Outcome, UserExit, collect, finish, run_user, stage_attempt
from stepflow.runtime.isolation import step_user
from stepflow.runtime.key import read_key
from stepflow.storage import open_store
from stepflow.timefmt import millis, parse_or_none

_USAGE = "usage: python -m stepflow.runtime.pod stage|collect ATTEMPT RUNTIME_ARGS... | user ATTEMPT"


def _stage(attempt: Path, argv: Sequence[str]) -> int:
    started, clock = millis(), time.monotonic()
    key = read_key()
    inv = parse(argv)
    store = open_store(inv.s3_base_uri)
    attempt.mkdir(mode=0o700)
    (attempt / handoff.STARTED).write_text(started)
    try:
        stage_attempt(inv, store, key, attempt)
    except Outcome as outcome:
        return finish(inv, store, key, outcome, started=started, seconds=time.monotonic() - clock)
    return 0


def _user(attempt: Path) -> int:
    sidecar.hold(attempt / handoff.RUNNING)
    try:
        ended = run_user(attempt, step_user())
    except Outcome as outcome:  # the step's user cannot run here: said as the user part says it
        handoff.write_outcome(attempt, outcome.code, outcome.reason)
        ended = UserExit(outcome.code)
    handoff.write_output(attempt, handoff.EXIT, json.dumps({"status": ended.status,
                                                            "oom_limit": ended.oom_limit}).encode())
    return 0 if ended.status == 0 else 1


def read_exit(attempt: Path) -> UserExit | None:
    """The step container's exit file, checked (the user's code could have written it)."""
    raw = handoff.read_output(attempt, handoff.EXIT)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("status"), int):
        return None if raw is None else UserExit(EXIT_ENVIRONMENT_ERROR)
    limit = value.get("oom_limit")
    return UserExit(value["status"], limit[:32] if isinstance(limit, str) else None)


def _collect(attempt: Path, argv: Sequence[str]) -> int:
    clock = time.monotonic()
    key = read_key()
    inv = parse(argv)
    store = open_store(inv.s3_base_uri)
    ended = sidecar.wait_for_exit(lambda: read_exit(attempt), attempt / handoff.RUNNING)
    if ended is None:
        print("stepflow: the step's container ended without reporting how (killed whole); the pod's "
              "status says why", file=sys.stderr)
        return EXIT_INFRASTRUCTURE_ERROR
    outcome = None
    try:
        collect(inv, store, key, attempt, ended)
    except Outcome as failed:
        outcome = failed
    return finish(inv, store, key, outcome, started=_started(attempt), seconds=time.monotonic() - clock)


def _started(attempt: Path) -> str:
    """When staging began (informational: the step's container could have rewritten it)."""
    try:
        text = (attempt / handoff.STARTED).read_text().strip()
    except OSError:
        return millis()
    return text if parse_or_none(text) is not None else millis()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] not in ("stage", "user", "collect"):
        print(_USAGE, file=sys.stderr)
        return EXIT_ENVIRONMENT_ERROR
    phase, attempt, rest = argv[0], Path(argv[1]), argv[2:]
    try:
        if phase == "user":
            return _user(attempt)
        return _stage(attempt, rest) if phase == "stage" else _collect(attempt, rest)
    except (ValueError, StepflowError) as exc:
        print(f"stepflow runtime: cannot {phase}: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT_ERROR


if __name__ == "__main__":
    sys.exit(main())
