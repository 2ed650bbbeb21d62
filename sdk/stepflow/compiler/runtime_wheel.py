"""The stepflow runtime as a wheel, published next to the job driver for training jobs.

A SageMaker training job's image has Python and pip but cannot reach our package index, so
the compiler ships the very stepflow that compiled the definition: a wheel built from the
running ``stepflow`` package (editable or installed alike), byte-identical for identical
sources (fixed timestamps and order), so republishing uploads nothing. It goes into the
bundle as an artifact in the store's usual integrity format, ``payload.pkl`` (the wheel's
bytes) + ``metadata.json`` (its digest and file name): the trusted publisher HMAC-signs it
like every other artifact (``Bundle.sign``), and ``job_driver.sh`` checks it with the
runtime's key before pip sees it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import io
import json
import zipfile
from pathlib import Path

from stepflow.serialization import FILE_MODULE, FORMAT_VERSION

#: Files of the package that a runtime needs (sources and package data, as pyproject ships).
_SUFFIXES = (".py", ".sh", ".json", ".yaml", ".typed")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata(version: str) -> bytes:
    distribution = importlib.metadata.distribution("stepflow")
    lines = ["Metadata-Version: 2.1", "Name: stepflow", f"Version: {version}",
             f"Requires-Python: {distribution.metadata['Requires-Python'] or '>=3.11'}"]
    lines += [f"Requires-Dist: {r}" for r in distribution.requires or () if "extra ==" not in r]
    return ("\n".join(lines) + "\n").encode()


@functools.cache
def runtime_wheel() -> tuple[str, bytes]:
    """``(file name, bytes)`` of a wheel of the running stepflow, built once per process."""
    import stepflow

    version = stepflow.__version__
    package = Path(stepflow.__file__).resolve().parent
    dist_info = f"stepflow-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in _SUFFIXES and "__pycache__" not in path.parts:
            files[f"stepflow/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = _metadata(version)
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: stepflow\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return f"stepflow-{version}-py3-none-any.whl", out.getvalue()


def runtime_wheel_artifact() -> tuple[bytes, bytes]:
    """``(payload, metadata.json)``: the wheel in the store's integrity format, unkeyed (the
    publisher signs it)."""
    name, data = runtime_wheel()
    metadata = {"sha256_hash": hashlib.sha256(data).hexdigest(), "version": FORMAT_VERSION,
                "serialization_module": FILE_MODULE, "file_name": name}
    return data, json.dumps(metadata).encode()
