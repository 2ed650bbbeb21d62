"""The operator image scripts/testenv builds is operator/Dockerfile's, checked on the archive
the cluster imported: the same entrypoint, command, user, environment and port, and the
files the chart relies on with the Dockerfile's owners and modes. (e2e/test_image_static.py
checks the Dockerfile against the chart; together: image = Dockerfile = chart.)"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from e2e.test_image_static import instructions


def _archive(images: dict, name: str) -> tuple[dict, list[Path]]:
    """(image config, layer members by name) of an OCI archive from scripts/testenv images."""
    path = images[name]["archive"]
    with tarfile.open(path) as t:
        index = json.load(t.extractfile("index.json"))
        manifest = json.load(t.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        config = json.load(t.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))
    return config, [layer["digest"].split(":")[1] for layer in manifest["layers"]]


def _members(archive: str, layer: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as outer:
        inner = outer.extractfile(f"blobs/sha256/{layer}")
        with tarfile.open(fileobj=inner) as t:
            return {m.name.removeprefix("./"): m for m in t.getmembers()}


def test_operator_image_config_is_the_dockerfiles(cluster_images):
    config, _ = _archive(cluster_images, "operator")
    found = instructions()
    c = config["config"]
    assert c["Entrypoint"] == json.loads(found["ENTRYPOINT"][-1])
    assert c["Cmd"] == json.loads(found["CMD"][-1])
    assert c["User"] == found["USER"][-1]
    env = dict(e.split("=", 1) for e in c["Env"])
    for line in found["ENV"]:
        for key, value in re.findall(r'([A-Za-z_]\w*)=("[^"]*"|\S+)', line):
            assert env.get(key) == value.strip('"'), key
    assert set(c.get("ExposedPorts", {})) == {f"{p}/tcp" for line in found["EXPOSE"] for p in line.split()}
    ref = cluster_images["operator"]["ref"]
    assert not ref.endswith(":latest") and re.search(r":\d+\.\d+\.\d+-[0-9a-f]{12}$", ref), ref


@pytest.mark.parametrize("path, uid, gid, mode", [
    ("var/cache/stepflow", 65532, 65532, 0o711),   # install -d -o 65532 -g 65532 -m 0711
])
def test_operator_image_files_have_the_dockerfiles_owners_and_modes(cluster_images, path, uid, gid, mode):
    archive = cluster_images["operator"]["archive"]
    _, layers = _archive(cluster_images, "operator")
    member = _members(archive, layers[-1])[path]
    assert (member.uid, member.gid, member.mode & 0o7777) == (uid, gid, mode)


def test_operator_image_has_the_user_and_the_tools_the_chart_runs(cluster_images):
    archive = cluster_images["operator"]["archive"]
    _, layers = _archive(cluster_images, "operator")
    base, app = (_members(archive, layer) for layer in layers)
    files = {**base, **app}
    for tool in ("usr/bin/tini", "usr/bin/git", "usr/bin/ssh", "usr/bin/setpriv", "usr/local/bin/kopf",
                 "usr/local/bin/stepflow-operator"):
        assert tool in files, tool
    assert files["usr/local/bin/python"].issym()
    passwd = tarfile.open(archive)  # /etc/passwd of the top layer names the image's user
    with passwd:
        inner = tarfile.open(fileobj=passwd.extractfile(f"blobs/sha256/{layers[-1]}"))
        text = inner.extractfile(next(m for m in inner.getmembers() if m.name.removeprefix("./") == "etc/passwd"))
        assert "stepflow:x:65532:65532::/nonexistent:/usr/sbin/nologin" in text.read().decode()
