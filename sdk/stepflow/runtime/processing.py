"""SageMaker's processing contract around a container step's own image, in a pod.

``python -m stepflow.runtime.processing download SPEC`` (an init container) copies each
input's S3 prefix to its ``LocalPath`` before the user's container starts;
``python -m stepflow.runtime.processing upload SPEC`` (a container beside the user's) waits
for the user's command to exit, uploads each output's ``LocalPath`` to its S3 URI, and
writes the attempt record the orchestrator reads, as the step runtime does for ``@step``
functions. SPEC is JSON: ``{"store", "execution", "step", "attempt", "inputs": [[uri,
path]], "outputs": [[path, uri]], "exit_file"}``. The user's command writes its exit code
to ``exit_file`` (a shell wrapper in its container), so no API access is needed here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stepflow.errors import StepflowError
from stepflow.runtime.record import write_record
from stepflow.runtime.sidecar import wait_for_exit
from stepflow.storage import open_store
from stepflow.timefmt import millis


def _split(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → (``s3://bucket``, ``a/b``)."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    return f"{scheme}://{bucket}", key


def download(inputs: list[list[str]]) -> int:
    count = 0
    for uri, path in inputs:
        root, prefix = _split(uri)
        store = open_store(root)
        objects = list(store.list(prefix))
        for info in objects:
            rel = info.key[len(prefix):].lstrip("/") if info.key != prefix else Path(info.key).name
            target = Path(path) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get_bytes(info.key))
            count += 1
        print(f"stepflow: input {uri} -> {path} ({len(objects)} objects)", file=sys.stderr, flush=True)
    return count


def upload(outputs: list[list[str]]) -> int:
    count = 0
    for path, uri in outputs:
        root, prefix = _split(uri)
        store = open_store(root)
        base = Path(path)
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        for file in files:
            store.put_file(f"{prefix.rstrip('/')}/{file.relative_to(base).as_posix()}", file)
            count += 1
        print(f"stepflow: output {path} -> {uri} ({len(files)} files)", file=sys.stderr, flush=True)
    return count


def _record(spec: dict[str, Any], started: str, code: int, reason: str | None, kind: str | None) -> None:
    write_record(open_store(spec["store"]), spec["execution"], spec["step"], spec["attempt"], started=started,
                 code=code, reason=reason, kind=kind)


def _exit_code(exit_file: Path) -> int | None:
    """What the step's shell wrapper wrote (1 if unreadable), or None before it ends."""
    if not exit_file.exists():
        return None
    text = exit_file.read_text().strip()
    return int(text) if text.lstrip("-").isdigit() else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] not in ("download", "upload"):
        print("usage: python -m stepflow.runtime.processing download|upload SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(argv[1])
    if argv[0] == "download":
        try:
            download(spec["inputs"])
        except (OSError, StepflowError) as exc:
            print(f"stepflow: could not download the inputs: {exc}", file=sys.stderr)
            return 3
        return 0
    started = millis()
    exit_file = Path(spec["exit_file"])
    code = wait_for_exit(lambda: _exit_code(exit_file))
    assert code is not None  # no lock: it waits for the file
    reason, kind = None, None
    if code != 0:
        reason, kind = f"AlgorithmError: the processing container exited with code {code}", "User"
    else:
        try:
            upload(spec["outputs"])
        except (OSError, StepflowError) as exc:
            code, reason, kind = 3, f"the outputs could not be uploaded: {exc}", "Infrastructure"
    _record(spec, started, code, reason, kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
