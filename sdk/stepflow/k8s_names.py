"""Names and label values within Kubernetes' limits, derived deterministically.

A valid Pipeline name may be 253 characters, but a label value stops at 63 and the names we
derive from it (``<pipeline>-<commit>-<key>``) are longer than the name itself. Rather than
refusing valid names, long ones are cut and given a hash of the whole, so two different long
names never collide and the same name always gives the same result (idempotent creation
relies on that).
"""

from __future__ import annotations

import hashlib
import re

#: metadata.name of most objects (a DNS subdomain).
NAME_LIMIT = 253
#: A label value.
LABEL_LIMIT = 63
_HASH = 8


def bounded(text: str, limit: int) -> str:
    """``text`` when it fits; else its head, ``-`` and 8 hex digits of its sha256."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH]
    head = text[:limit - _HASH - 1].rstrip("-.")
    return f"{head}-{digest}"


def label_value(text: str) -> str:
    return bounded(text, LABEL_LIMIT)


def object_name(text: str) -> str:
    return bounded(text, NAME_LIMIT)


def dns_label(text: str) -> str:
    """``text`` as an RFC 1123 label (what a Job's name must be: its pods carry it as a label).

    Lower-cased, other characters replaced by ``-``; when anything had to change, a hash of
    the original keeps ``Train_2`` and ``train-2`` apart.
    """
    safe = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"
    if safe == text and len(safe) <= LABEL_LIMIT:
        return safe
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH]
    head = safe[:LABEL_LIMIT - _HASH - 1].rstrip("-")
    return f"{head}-{digest}" if head else digest


def job_name(execution_id: str, step: str, attempt: int) -> str:
    """The name of an attempt's job: its Kubernetes Job's name (a DNS label, which its pods
    carry as ``job-name``), and the name the local backend gives it; both are valid SageMaker
    job names (63 characters of letters, digits and hyphens). Deterministic, so a restarted
    orchestrator finds the Job it created."""
    return dns_label(f"{execution_id}-{step}-{attempt}")
