"""Merge patches between two versions of a resource's ``.status``.

The shapes themselves are the GitOps core's (:mod:`stepflow.gitops.execution_status`, the
reconciler's ``Outcome``); writing only what changed is the operator's business, so that
keys another writer owns are never touched. Pure; nothing here talks to the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 JSON merge patch that turns ``old`` into ``new`` (empty: no change).

    Objects are patched key by key, so keys another writer owns and that neither side
    changed are left alone; a key ``new`` dropped becomes ``null`` (deleted); lists are
    replaced whole, which is what conditions and steps need.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value is None:
            if before is not None:
                patch[key] = None
        elif value != before:
            patch[key] = _plain(value)
    for key in old:
        if key not in new and old[key] is not None:
            patch[key] = None
    return patch


def _plain(value: Any) -> Any:
    """Drop None members of new objects: merge patch would read them as "delete"."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
