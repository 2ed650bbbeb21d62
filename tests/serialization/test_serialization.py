"""Artifacts: cloudpickle payload + metadata.json, integrity checked before unpickling."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest

from stepflow.errors import (
    ConfigurationError,
    DeserializationError,
    IntegrityError,
    SerializationError,
    StepflowError,
)
from stepflow.serialization import (
    FORMAT_VERSION,
    RemoteException,
    SerializedArtifact,
    deserialize,
    failure_reason,
    serialize,
    serialize_exception,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class _Marker:
    """Unpickling this object creates a file: proof of whether a payload was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path(self.path).touch, ())


def _meta(artifact: SerializedArtifact) -> dict:
    return json.loads(artifact.metadata)


# --- round trip and shape ------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_round_trip_of_functions_closures_and_data(key):
    factor = 3

    def scale(x):
        return x * factor

    value = {"fn": scale, "lam": lambda y: y + 1, "data": [1, 2.5, "s", (None, True)]}
    artifact = serialize(value, key=key)
    back = deserialize(artifact.payload, artifact.metadata, key=key)
    assert back["fn"](2) == 6
    assert back["lam"](1) == 2
    assert back["data"] == [1, 2.5, "s", (None, True)]


def test_unkeyed_metadata_has_the_sagemaker_shape_and_a_real_sha256():
    artifact = serialize({"a": 1})
    meta = _meta(artifact)
    assert list(meta) == ["sha256_hash", "version", "python_version", "serialization_module"]
    assert meta["sha256_hash"] == hashlib.sha256(artifact.payload).hexdigest()
    assert meta["version"] == FORMAT_VERSION
    assert meta["python_version"] == platform.python_version()
    assert meta["serialization_module"] == "cloudpickle"


def test_keyed_metadata_records_the_scheme_and_an_hmac_of_the_payload():
    artifact = serialize({"a": 1}, key=KEY)
    meta = _meta(artifact)
    assert "sha256_hash" not in meta
    assert meta["hmac_sha256"] == hmac.new(KEY, artifact.payload, hashlib.sha256).hexdigest()
    assert meta["hmac_sha256"] != hashlib.sha256(artifact.payload).hexdigest()


@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_same_object_same_key_gives_identical_bytes_in_fresh_processes(key):
    code = (
        "import sys; from stepflow.serialization import serialize\n"
        f"a = serialize({{'steps': [1, 2, 3], 'name': 'train'}}, key={key!r})\n"
        "sys.stdout.buffer.write(a.payload.hex().encode() + b' ' + a.metadata.hex().encode())\n"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    here = serialize({"steps": [1, 2, 3], "name": "train"}, key=key)
    assert runs == {here.payload.hex().encode() + b" " + here.metadata.hex().encode()}


# --- integrity: verified before anything is unpickled -----------------------------------

@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_tampered_payload_is_rejected_before_unpickling(tmp_path, key):
    marker = tmp_path / "unpickled"
    good = serialize({"ok": 1}, key=key)
    evil = serialize(_Marker(str(marker)), key=key)
    with pytest.raises(IntegrityError, match="does not match its recorded") as info:
        deserialize(evil.payload, good.metadata, key=key)
    assert info.value.reason == "IntegrityCheckFailed"
    assert "Nothing was unpickled" in str(info.value)
    assert not marker.exists()
    # The control: the same payload with its own metadata does unpickle (and runs code).
    deserialize(evil.payload, evil.metadata, key=key)
    assert marker.exists()


def test_attacker_recomputing_a_plain_hash_cannot_pass_a_keyed_reader(tmp_path):
    """Downgrade: replace a signed artifact with an unkeyed one whose hash is correct."""
    marker = tmp_path / "unpickled"
    forged = serialize(_Marker(str(marker)))  # what anyone with bucket write access can make
    with pytest.raises(IntegrityError, match="only carries a plain SHA-256"):
        deserialize(forged.payload, forged.metadata, key=KEY)
    assert not marker.exists()


def test_keyed_artifact_fails_without_a_key_and_with_another_key(tmp_path):
    marker = tmp_path / "unpickled"
    signed = serialize(_Marker(str(marker)), key=KEY)
    with pytest.raises(IntegrityError, match="no key was given"):
        deserialize(signed.payload, signed.metadata)
    with pytest.raises(IntegrityError, match="signed with another key"):
        deserialize(signed.payload, signed.metadata, key=OTHER_KEY)
    assert not marker.exists()


def test_forged_digest_field_with_both_schemes_still_needs_the_key(tmp_path):
    marker = tmp_path / "unpickled"
    forged = serialize(_Marker(str(marker)))
    meta = _meta(forged)
    meta["hmac_sha256"] = meta["sha256_hash"]
    with pytest.raises(IntegrityError):
        deserialize(forged.payload, json.dumps(meta).encode(), key=KEY)
    assert not marker.exists()


def test_digest_that_is_not_hex_is_an_integrity_error():
    artifact = serialize(1)
    meta = _meta(artifact)
    meta["sha256_hash"] = "zz"
    with pytest.raises(IntegrityError, match="not a SHA-256 hex digest"):
        deserialize(artifact.payload, json.dumps(meta).encode())


# --- metadata problems -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: b"{not json", "not valid JSON"),
        (lambda m: b"[1, 2]", "must be a JSON object"),
        (lambda m: json.dumps({**m, "serialization_module": "dill"}).encode(), "'dill'"),
        (lambda m: json.dumps({**m, "version": "1999-01-01"}).encode(), "'1999-01-01'"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "sha256_hash"}).encode(),
         "no integrity digest"),
    ],
    ids=["bad-json", "not-object", "other-module", "other-version", "no-digest"],
)
def test_bad_metadata_is_a_deserialization_error(mutate, message):
    artifact = serialize([1, 2])
    with pytest.raises(DeserializationError, match=message) as info:
        deserialize(artifact.payload, mutate(_meta(artifact)))
    assert not isinstance(info.value, IntegrityError)


def test_corrupt_payload_with_a_matching_hash_names_the_python_versions():
    payload = b"definitely not a pickle"
    metadata = json.dumps({
        "sha256_hash": hashlib.sha256(payload).hexdigest(), "version": FORMAT_VERSION,
        "python_version": "3.9.1", "serialization_module": "cloudpickle",
    }).encode()
    with pytest.raises(DeserializationError, match="written by Python 3.9.1") as info:
        deserialize(payload, metadata)
    assert platform.python_version() in str(info.value)


@pytest.mark.parametrize("call", [lambda: serialize(1, key=b""), lambda: deserialize(b"", b"{}", key=b"")])
def test_an_empty_key_is_a_configuration_error(call):
    with pytest.raises(ConfigurationError, match="integrity key is empty"):
        call()


# --- serialization errors ------------------------------------------------------------------

def test_unpicklable_object_names_its_type_and_says_what_to_do():
    with pytest.raises(SerializationError) as info:
        serialize(threading.Lock())
    message = str(info.value)
    assert message.startswith("Error when serializing object of type _thread.lock: ")
    assert "create open files, locks" in message
    assert info.value.reason == "SerializationFailed"


def test_unpicklable_value_inside_a_container_names_the_container_type():
    def gen():
        yield 1

    with pytest.raises(SerializationError, match=r"object of type dict: .*generator"):
        serialize({"g": gen()})


def test_stepflow_error_raised_while_pickling_propagates_unchanged():
    advice = StepflowError("Pipeline variables cannot be pickled: pass them as arguments.",
                           reason="NestedPipelineVariable")

    class PipelineVariableLike:
        def __reduce__(self):
            raise advice

    with pytest.raises(StepflowError) as info:
        serialize({"nested": [PipelineVariableLike()]})
    assert info.value is advice
    assert not isinstance(info.value, SerializationError)


# --- exceptions ----------------------------------------------------------------------------

def _raise_chain():
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("boom") from exc


def test_exception_round_trip_keeps_traceback_and_cause():
    with pytest.raises(ValueError) as info:
        _raise_chain()
    artifact = serialize_exception(info.value, key=KEY)
    back = deserialize(artifact.payload, artifact.metadata, key=KEY)
    assert type(back) is ValueError and str(back) == "boom"
    frames = [frame.name for frame in traceback.extract_tb(back.__traceback__)]
    assert "_raise_chain" in frames
    assert isinstance(back.__cause__, KeyError)
    assert traceback.extract_tb(back.__cause__.__traceback__)[-1].name == "_raise_chain"


def test_unpicklable_exception_is_stored_as_a_remote_exception():
    class HoldsALock(Exception):
        def __init__(self, message):
            super().__init__(message)
            self.lock = threading.Lock()

    def fail():
        raise HoldsALock("cannot ship me")

    with pytest.raises(HoldsALock) as info:
        fail()
    artifact = serialize_exception(info.value)
    back = deserialize(artifact.payload, artifact.metadata)
    assert isinstance(back, RemoteException)
    assert back.type_name.endswith("HoldsALock")
    assert back.message == "cannot ship me"
    assert "in fail" in back.traceback_text
    assert str(back).endswith("HoldsALock: cannot ship me")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("boom"), "ValueError: boom"),
        (RuntimeError(), "RuntimeError"),
        (KeyError("k"), "KeyError: 'k'"),
        (ValueError("line one\n  line two\r\n"), "ValueError: line one line two"),
    ],
)
def test_failure_reason_is_one_line(exc, expected):
    assert failure_reason(exc) == expected


def test_failure_reason_is_truncated_to_1024_characters():
    reason = failure_reason(ValueError("x" * 5000))
    assert len(reason) == 1024
    assert reason.startswith("ValueError: xxx") and reason.endswith("...")
