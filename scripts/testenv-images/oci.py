"""Write OCI image archives (for ``ctr images import``) from directories: no Docker, no registry.

Each layer is an uncompressed tar of a directory. A directory that is the upper dir of an
overlay mount may hold overlayfs whiteouts (0:0 character devices) and opaque-directory
xattrs; they are written as OCI whiteouts (``.wh.<name>``, ``.wh..wh..opq``) so a layer made
by changing a lower layer under overlayfs means what it meant there.
Standard library only: scripts/testenv runs it with the system python3.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class ImageConfig:
    """The parts of an OCI image config the cluster's images use."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str = ""
    env: list[str] = field(default_factory=lambda: [DEFAULT_PATH])
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        out: dict = {"Env": self.env}
        if self.entrypoint is not None:
            out["Entrypoint"] = self.entrypoint
        if self.cmd is not None:
            out["Cmd"] = self.cmd
        if self.user:
            out["User"] = self.user
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.labels:
            out["Labels"] = self.labels
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tar_tree(root: Path, out: Path) -> None:
    """A whole root filesystem as a layer: GNU tar is much faster than tarfile for 250 MB."""
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-exclude=trusted.*",
                    "--xattrs-exclude=security.*", "--sort=name", "--mtime=@0",
                    "-C", str(root), "-cf", str(out), "."], check=True)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def tar_upper(upper: Path, out: Path) -> None:
    """An overlayfs upper dir as a layer, whiteouts converted to the OCI form."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        for dirpath, dirnames, filenames in os.walk(upper):
            dirnames.sort()
            base = Path(dirpath)
            rel_dir = base.relative_to(upper)
            if rel_dir != Path(".") and _is_opaque(base):
                t.addfile(_empty(str(rel_dir / ".wh..wh..opq")))
            for name in sorted(dirnames) + sorted(filenames):
                path = base / name
                rel = str(rel_dir / name) if rel_dir != Path(".") else name
                st = os.lstat(path)
                if _is_whiteout(st):
                    parent = str(rel_dir) if rel_dir != Path(".") else ""
                    t.addfile(_empty(os.path.join(parent, ".wh." + name)))
                    continue
                info = t.gettarinfo(str(path), arcname=rel)
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)


def _empty(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0
    info.mtime = 0
    return info


def write_archive(ref: str, layers: list[Path], config: ImageConfig, out: Path) -> None:
    """An OCI image layout archive holding ``layers`` (tar files, bottom first) as ``ref``."""
    layer_descs, diff_ids = [], []
    for layer in layers:
        digest = _sha256_file(layer)
        diff_ids.append("sha256:" + digest)
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": "sha256:" + digest, "size": layer.stat().st_size})
    cfg = {"architecture": "amd64", "os": "linux", "created": EPOCH, "config": config.as_json(),
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    cfg_digest = hashlib.sha256(cfg_bytes).hexdigest()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + cfg_digest, "size": len(cfg_bytes)},
                "layers": layer_descs}
    man_bytes = json.dumps(manifest, sort_keys=True).encode()
    man_digest = hashlib.sha256(man_bytes).hexdigest()
    tag = ref.rsplit(":", 1)[1]
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": "sha256:" + man_digest, "size": len(man_bytes),
                            "annotations": {"io.containerd.image.name": ref,
                                            "org.opencontainers.image.ref.name": tag}}]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".tmp-", delete=False) as tmp:
        with tarfile.open(fileobj=tmp, mode="w") as t:
            _add_bytes(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(t, "index.json", json.dumps(index).encode())
            _add_bytes(t, f"blobs/sha256/{cfg_digest}", cfg_bytes)
            _add_bytes(t, f"blobs/sha256/{man_digest}", man_bytes)
            for layer, desc in zip(layers, layer_descs):
                t.add(str(layer), arcname="blobs/sha256/" + desc["digest"].split(":", 1)[1])
    os.replace(tmp.name, out)


def _add_bytes(t: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    t.addfile(info, io.BytesIO(data))
