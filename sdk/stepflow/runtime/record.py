"""The attempt record (``attempts/<n>.json``): how every runtime tells the orchestrator how
an attempt ended. The orchestrator trusts it over any exit code: it is in the store, the one
place that survives a crash of the runtime, the pod or the orchestrator itself.
"""

from __future__ import annotations

import json
import os
import platform
import socket

from stepflow import layout
from stepflow.storage import ObjectStore
from stepflow.timefmt import millis


def write_record(store: ObjectStore, execution_id: str, step: str, attempt: int, *, started: str, code: int,
                 reason: str | None, kind: str | None) -> None:
    """Write the record; ``code`` 0 is success, ``kind`` is ``User`` or ``Infrastructure``."""
    record = {
        "attempt": attempt,
        "status": "Succeeded" if code == 0 else "Failed",
        "exitCode": code,
        "failureReason": reason,
        "failureKind": kind,
        "startedAt": started,
        "finishedAt": millis(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
    }
    store.put_bytes(layout.attempt_record_key(execution_id, step, attempt),
                    json.dumps(record, indent=1, sort_keys=True).encode())
