"""Where an execution keeps its records in the store, relative to ``<root>/<pipeline>``.

One module owns these keys so the runtime that writes them and the backends and CLI that
read them cannot drift apart. Compile-time artifact keys live in the compiler.
"""

from __future__ import annotations

EXECUTION_STATE = "execution.json"


def execution_prefix(execution_id: str) -> str:
    return f"{execution_id}/"


def execution_state_key(execution_id: str) -> str:
    return f"{execution_id}/{EXECUTION_STATE}"


def results_prefix(execution_id: str, step: str) -> str:
    return f"{execution_id}/{step}/results"


def exception_prefix(execution_id: str, step: str) -> str:
    return f"{execution_id}/{step}/exception"


def attempt_record_key(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/attempts/{attempt}.json"


def attempt_log_key(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/logs/{attempt}.log"


def stop_request_key(execution_id: str) -> str:
    return f"{execution_id}/stop-requested"
