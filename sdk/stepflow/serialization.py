"""Pickled artifacts with an integrity check that is verified before anything is unpickled.

Every stored artifact is two objects: ``payload.pkl`` (cloudpickle bytes) and
``metadata.json``, shaped like the SageMaker SDK's (docs/SAGEMAKER-COMPATIBILITY.md,
"Serialization and integrity")::

    {"sha256_hash": "<hex>", "version": "2023-04-24",
     "python_version": "3.11.7", "serialization_module": "cloudpickle"}

With a key, the digest field is ``"hmac_sha256"`` instead of ``"sha256_hash"``: the field
name records the scheme. The *reader's* key decides which scheme is acceptable, never the
metadata: a reader holding a key rejects an unkeyed artifact (otherwise anyone with write
access to the bucket could replace a payload and recompute a plain hash), and a reader
without a key rejects a keyed one (it cannot check it). Unpickling runs code, so nothing is
unpickled before the digest matched.

The bytes are a pure function of the object, the key and the interpreter version (no
timestamps, no randomness), so an unchanged step re-serializes to identical bytes and
publishing skips it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
import re
import traceback
from dataclasses import dataclass
from typing import Any

import cloudpickle
from tblib import pickling_support

from stepflow.errors import (
    ConfigurationError,
    DeserializationError,
    IntegrityError,
    SerializationError,
    StepflowError,
)

__all__ = [
    "FILE_MODULE",
    "FORMAT_VERSION",
    "SerializedArtifact",
    "RemoteException",
    "serialize",
    "dumps",
    "seal",
    "deserialize",
    "serialize_exception",
    "failure_reason",
    "sign",
    "verify",
    "loads",
]

FORMAT_VERSION = "2023-04-24"
"""The metadata ``version`` SageMaker's SDK writes; we keep it so unkeyed artifacts read alike."""

_MODULE = "cloudpickle"
#: The ``serialization_module`` of a file artifact that is never unpickled (the runtime
#: wheel): signed and verified like the others, read as plain bytes.
FILE_MODULE = "file"
_UNKEYED_FIELD = "sha256_hash"
_KEYED_FIELD = "hmac_sha256"
# Pinned rather than the interpreter's highest, so the bytes do not change with it.
_PROTOCOL = 5
_MAX_REASON = 1024
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")

_INTEGRITY_ADVICE = (
    "Nothing was unpickled. Restrict write access to the bucket, and make sure every process "
    "reading it uses the same integrity key as the one that wrote it (STEPFLOW_INTEGRITY_KEY)."
)


@dataclass(frozen=True)
class SerializedArtifact:
    """The two objects stored for one artifact: ``payload.pkl`` and ``metadata.json``."""

    payload: bytes
    metadata: bytes


class RemoteException(Exception):
    """Stands in for an exception that could not be pickled itself.

    Keeps what a person needs to debug the failure: the original type, message and the
    formatted traceback.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(type_name, message, traceback_text)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


def _check_key(key: bytes | None) -> None:
    if key is not None and not key:
        raise ConfigurationError(
            "The integrity key is empty. Set STEPFLOW_INTEGRITY_KEY to a hex key "
            "(e.g. `openssl rand -hex 32`) or unset it to use plain SHA-256."
        )


def _digest(payload: bytes, key: bytes | None) -> str:
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def serialize(obj: Any, *, key: bytes | None = None) -> SerializedArtifact:
    """Pickle ``obj`` with cloudpickle and describe it in ``metadata.json``.

    A :class:`~stepflow.errors.StepflowError` raised while pickling (pipeline variables
    refuse to be pickled with their own advice) propagates unchanged; any other failure
    becomes a :class:`SerializationError` naming the type that could not be pickled.
    """
    _check_key(key)
    return seal(dumps(obj), key=key)


def dumps(obj: Any) -> bytes:
    """The cloudpickle bytes of ``obj`` (errors as for :func:`serialize`).

    Separate from :func:`seal` because an @step call is pickled when the function is
    called, and signed later, when the pipeline is compiled and the key is known.
    """
    try:
        return cloudpickle.dumps(obj, protocol=_PROTOCOL)
    except StepflowError:
        raise
    except Exception as exc:  # pickling can fail with almost any exception type
        raise SerializationError(
            f"Error when serializing object of type {_type_name(obj)}: {type(exc).__name__}: {exc}. "
            "Only picklable values can be passed to or returned from a step: create open files, "
            "locks, sockets, clients and generators inside the step function instead of passing them."
        ) from exc


def seal(payload: bytes, *, key: bytes | None = None) -> SerializedArtifact:
    """``payload`` (bytes from :func:`dumps`) with its ``metadata.json``."""
    _check_key(key)
    field = _UNKEYED_FIELD if key is None else _KEYED_FIELD
    metadata = {
        field: _digest(payload, key),
        "version": FORMAT_VERSION,
        "python_version": platform.python_version(),
        "serialization_module": _MODULE,
    }
    return SerializedArtifact(payload=payload, metadata=json.dumps(metadata).encode())


def _parse_metadata(metadata: bytes, modules: tuple[str, ...] = (_MODULE,)) -> dict[str, Any]:
    try:
        parsed = json.loads(metadata)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeserializationError(
            f"metadata.json is not valid JSON ({exc}). The artifact is corrupt or was not written "
            "by stepflow: publish the pipeline again."
        ) from exc
    if not isinstance(parsed, dict):
        raise DeserializationError(
            "metadata.json must be a JSON object. The artifact is corrupt or was not written by "
            "stepflow: publish the pipeline again."
        )
    module = parsed.get("serialization_module")
    if module not in modules:
        raise DeserializationError(
            f"metadata.json names serialization module {module!r}; only {_MODULE!r} is supported. "
            "Publish the pipeline again with this version of stepflow."
        )
    version = parsed.get("version")
    if version != FORMAT_VERSION:
        raise DeserializationError(
            f"metadata.json has format version {version!r}; this stepflow reads {FORMAT_VERSION!r}. "
            "Use the same stepflow version to write and to read the artifact."
        )
    return parsed


def _verify(payload: bytes, parsed: dict[str, Any], key: bytes | None) -> None:
    expected_field, other_field = (
        (_UNKEYED_FIELD, _KEYED_FIELD) if key is None else (_KEYED_FIELD, _UNKEYED_FIELD)
    )
    recorded = parsed.get(expected_field)
    if recorded is None:
        if other_field in parsed and key is None:
            raise IntegrityError(
                "Integrity check failed: the artifact is signed with an integrity key (HMAC-SHA256) "
                "but no key was given to read it. " + _INTEGRITY_ADVICE
            )
        if other_field in parsed:
            raise IntegrityError(
                "Integrity check failed: an integrity key is configured but the artifact only "
                "carries a plain SHA-256 hash, which anyone with write access could recompute. "
                + _INTEGRITY_ADVICE
            )
        raise DeserializationError(
            "metadata.json has no integrity digest (sha256_hash or hmac_sha256). The artifact is "
            "corrupt or was not written by stepflow: publish the pipeline again."
        )
    if not isinstance(recorded, str) or not _HEX_DIGEST.match(recorded):
        raise IntegrityError(
            f"Integrity check failed: the recorded {expected_field} is not a SHA-256 hex digest. "
            + _INTEGRITY_ADVICE
        )
    if not hmac.compare_digest(_digest(payload, key), recorded):
        raise IntegrityError(
            "Integrity check failed: the payload does not match its recorded "
            f"{'HMAC-SHA256' if key is not None else 'SHA-256'} digest (it was changed after it "
            "was written, or it was signed with another key). " + _INTEGRITY_ADVICE
        )


def sign(payload: bytes, metadata: bytes, *, key: bytes) -> bytes:
    """Re-sign an unkeyed artifact with ``key``: the trusted side of a sandboxed build.

    User code compiles without the key (it must not be able to forge signatures); the
    operator checks the plain SHA-256 the build recorded and replaces it with the HMAC.
    Returns the new ``metadata.json`` bytes, identical for identical inputs.
    """
    _check_key(key)
    parsed = _parse_metadata(metadata, (_MODULE, FILE_MODULE))
    _verify(payload, parsed, None)
    parsed.pop(_UNKEYED_FIELD, None)
    signed = {_KEYED_FIELD: _digest(payload, key), **parsed}
    return json.dumps(signed).encode()


def verify(payload: bytes, metadata: bytes, *, key: bytes | None = None) -> None:
    """Check ``payload`` against ``metadata`` without unpickling it (the reader's key decides).

    For a process that verifies what another, less trusted one will unpickle.
    """
    _check_key(key)
    _verify(payload, _parse_metadata(metadata), key)


def deserialize(payload: bytes, metadata: bytes, *, key: bytes | None = None) -> Any:
    """Check ``payload`` against ``metadata`` and only then unpickle it."""
    _check_key(key)
    parsed = _parse_metadata(metadata)
    _verify(payload, parsed, key)
    return loads(payload, written_by=parsed.get("python_version"))


def loads(payload: bytes, *, written_by: str | None = None) -> Any:
    """Unpickle a payload that was verified already (by another, trusted process)."""
    try:
        return cloudpickle.loads(payload)
    except Exception as exc:
        raise DeserializationError(
            f"Could not unpickle the artifact: {type(exc).__name__}: {exc}. It was written by "
            f"Python {written_by or 'an unknown version'} and is read by Python "
            f"{platform.python_version()}; install the same Python, stepflow and library "
            "versions (and make the step's modules importable) where it runs."
        ) from exc


def serialize_exception(exc: BaseException, *, key: bytes | None = None) -> SerializedArtifact:
    """Pickle an exception together with its traceback (and its cause/context chain).

    If the exception itself cannot be pickled, a :class:`RemoteException` carrying its type,
    message and formatted traceback is stored instead, so a failure is never lost.
    """
    pickling_support.install(exc)
    try:
        return serialize(exc, key=key)
    except SerializationError:
        stand_in = RemoteException(
            _type_name(exc),
            _one_line(str(exc)),
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        return serialize(stand_in, key=key)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def failure_reason(exc: BaseException) -> str:
    """``"ValueError: boom"``: one line, at most 1024 characters, for a step's FailureReason."""
    message = _one_line(str(exc))
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 3] + "..."
    return reason

