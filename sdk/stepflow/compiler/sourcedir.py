"""``sourcedir.tar.gz``: a training step's script-mode files, byte-stable.

The SDK tars ``source_dir`` (or the entry point) and the dependencies for the SageMaker
training toolkit, which unpacks it and runs ``sagemaker_program``. Here the archive is
built from sorted paths with fixed times, owners and modes and a zero gzip timestamp, so
the same files give the same bytes and an unchanged step keeps its ``<ts>`` folder.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path


def sourcedir_archive(files: Mapping[str, Path]) -> bytes:
    """The archive of ``files`` (archive path → local file)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name].read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if files[name].stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as zipped:
        zipped.write(raw.getvalue())
    return out.getvalue()
