"""Exception types shared by every layer.

Each error a user can cause says what is wrong, where (the user's file and line when we
know it) and how to fix it, so the CLI, the operator's status and an exception all carry
the same actionable sentence. ``reason`` is a stable CamelCase word the operator puts in a
condition's ``reason`` field and tests match on.

``kind`` says who must act, and so what a controller does with the error: a ``USER`` error
needs a change to the input (the code, the spec, the repository), so retrying the same input
is pointless and the resource stalls; an ``INFRASTRUCTURE`` error (a server down, a timeout,
our own bug) may pass, so it is retried with backoff. The kind is declared with the error's
type, and a raiser that knows better passes ``kind=``; nobody downstream keeps lists of
reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Who must act on an error (see the module docstring). The engine uses the same two words
#: for a step attempt's failure.
USER, INFRASTRUCTURE = "User", "Infrastructure"
ERROR_KINDS = (USER, INFRASTRUCTURE)


@dataclass(frozen=True)
class SourceLocation:
    """Where in the user's code an error points."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class StepflowError(Exception):
    """Base of every error stepflow raises on purpose."""

    reason: str = "Error"
    kind: str = USER

    def __init__(self, message: str, *, location: SourceLocation | None = None,
                 reason: str | None = None, kind: str | None = None) -> None:
        self.message = message
        self.location = location
        if reason is not None:
            self.reason = reason
        if kind is not None:
            if kind not in ERROR_KINDS:
                raise ValueError(f"kind must be one of {ERROR_KINDS}, not {kind!r}")
            self.kind = kind
        super().__init__(str(self))

    @property
    def retryable(self) -> bool:
        return self.kind == INFRASTRUCTURE

    def __str__(self) -> str:
        return f"{self.message} (at {self.location})" if self.location else self.message


class ValidationError(StepflowError, ValueError):
    """The pipeline as written cannot be compiled; nothing was published."""

    reason = "ValidationFailed"


class SerializationError(StepflowError):
    """A function, argument or result could not be pickled."""

    reason = "SerializationFailed"


class DeserializationError(StepflowError):
    """Stored bytes could not be read back (bad metadata, version, or pickle)."""

    reason = "DeserializationFailed"


class IntegrityError(DeserializationError):
    """Stored bytes do not match their recorded digest: someone changed them."""

    reason = "IntegrityCheckFailed"


class ConfigurationError(StepflowError, ValueError):
    """A configuration file, environment variable or URI is invalid."""

    reason = "InvalidConfiguration"


class StorageError(StepflowError):
    """The object store refused or failed an operation."""

    reason = "StorageFailed"
    kind = INFRASTRUCTURE


class BackendError(StepflowError):
    """The execution backend cannot do what was asked."""

    reason = "BackendFailed"
    kind = INFRASTRUCTURE
