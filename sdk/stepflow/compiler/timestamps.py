"""The ``<ts>`` folder of a step's artifacts (docs/ARCHITECTURE.md, "Determinism").

A folder is reused while its content is unchanged: the previous index (published key →
sha256) tells which folders already hold exactly these files. New content gets the
build time: ``SOURCE_DATE_EPOCH`` when set (the operator sets the commit time), else now.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections import defaultdict
from collections.abc import Mapping

from stepflow import layout
from stepflow.errors import ConfigurationError

FORMAT_EXAMPLE = "2026-11-24-23-34-22-739"


def build_timestamp(now: dt.datetime | None = None) -> str:
    """``YYYY-MM-DD-HH-MM-SS-mmm`` in UTC."""
    if now is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if epoch:
            try:
                now = dt.datetime.fromtimestamp(float(epoch), tz=dt.UTC)
            except ValueError:
                raise ConfigurationError(
                    f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in seconds; unset it or "
                    "set it to e.g. the commit time (git log -1 --format=%ct).") from None
        else:
            now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%d-%H-%M-%S-") + f"{now.microsecond // 1000:03d}"


def content_digest(files: Mapping[str, str]) -> str:
    """Digest of a folder: its relative paths and their sha256s.

    ``metadata.json`` files are left out: they are derived from their payload and differ
    only by how they are signed (a sandboxed build writes them unkeyed, the operator signs
    them before publishing), which must not make an unchanged step look changed.
    """
    h = hashlib.sha256()
    for rel in sorted(files):
        if rel.rpartition("/")[2] == layout.METADATA:
            continue
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


class PreviousFolders:
    """Folders ``<prefix>/<ts>/...`` already published, by prefix, with their digests."""

    def __init__(self, previous_index: Mapping[str, str] | None) -> None:
        groups: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
        for key, sha in (previous_index or {}).items():
            parts = key.split("/", 3)  # pipeline / step / ts / relative path
            if len(parts) == 4:
                groups[f"{parts[0]}/{parts[1]}"][parts[2]][parts[3]] = sha
        self._digests = {prefix: {ts: content_digest(files) for ts, files in by_ts.items()}
                         for prefix, by_ts in groups.items()}

    def fresh(self, prefix: str, ts: str) -> str:
        """``ts``, or the next free millisecond after it if ``prefix`` already has that folder.

        Commit times have one-second resolution: two quick commits would otherwise put
        different content in the same published folder.
        """
        taken = self._digests.get(prefix, {})
        if ts not in taken:
            return ts
        moment = dt.datetime.strptime(ts, "%Y-%m-%d-%H-%M-%S-%f").replace(tzinfo=dt.UTC)
        while ts in taken:
            moment += dt.timedelta(milliseconds=1)
            ts = build_timestamp(moment)
        return ts

    def reuse(self, prefix: str, digest: str) -> str | None:
        """The newest ``<ts>`` under ``prefix`` whose content has this digest, if any."""
        matches = [ts for ts, d in self._digests.get(prefix, {}).items() if d == digest]
        return max(matches) if matches else None
