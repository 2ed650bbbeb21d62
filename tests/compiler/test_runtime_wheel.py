"""The runtime wheel: the running stepflow, reproducible to the byte, in the integrity format."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile

import stepflow
from stepflow.compiler.runtime_wheel import runtime_wheel, runtime_wheel_artifact


def test_the_wheel_holds_the_runtime_and_a_true_record() -> None:
    name, data = runtime_wheel()
    assert name == f"stepflow-{stepflow.__version__}-py3-none-any.whl"
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = set(archive.namelist())
    assert {"stepflow/runtime/__main__.py", "stepflow/compiler/bootstrap/job_driver.sh"} <= names
    assert not any("__pycache__" in n or n.startswith("stepflow_operator") for n in names)
    dist_info = f"stepflow-{stepflow.__version__}.dist-info"
    metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "Requires-Dist: cloudpickle" in metadata and "extra ==" not in metadata
    for line in archive.read(f"{dist_info}/RECORD").decode().splitlines():
        path, digest, size = line.split(",")
        if path.endswith("RECORD"):
            continue
        content = archive.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(content)), path


def test_another_process_builds_the_same_bytes() -> None:
    """Same stepflow ⇒ same wheel ⇒ a republish uploads nothing."""
    _, data = runtime_wheel()
    other = subprocess.run([sys.executable, "-c", "import sys; from stepflow.compiler.runtime_wheel import "
                            "runtime_wheel; sys.stdout.buffer.write(runtime_wheel()[1])"],
                           capture_output=True, check=True, timeout=120).stdout
    assert other == data


def test_the_artifact_metadata_names_the_wheel_and_its_digest() -> None:
    payload, metadata = runtime_wheel_artifact()
    parsed = json.loads(metadata)
    assert parsed["sha256_hash"] == hashlib.sha256(payload).hexdigest()
    assert parsed["file_name"] == runtime_wheel()[0] and parsed["serialization_module"] == "file"
