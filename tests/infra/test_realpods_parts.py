"""The real-pods cluster's parts that need no cluster: the OCI archive writer, the overlay
layer's whiteouts, and the configuration that took the most finding out (FINDINGS-style
facts kept from regressing). The cluster itself is exercised by e2e/realpods."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest
from tests.testenv.binaries import REPO_ROOT
from tests.testenv.localcluster import Layout, configs
from tests.testenv.localcluster.layout import GATEWAY, PORTS


def _oci():
    path = REPO_ROOT / "scripts" / "testenv-images" / "oci.py"
    spec = importlib.util.spec_from_file_location("testenv_oci", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _read(archive: Path) -> tuple[dict, dict, dict, tarfile.TarFile]:
    t = tarfile.open(archive)
    index = json.load(t.extractfile("index.json"))
    manifest = json.load(t.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
    config = json.load(t.extractfile("blobs/sha256/" + manifest["config"]["digest"][7:]))
    return index, manifest, config, t


def test_archive_names_the_image_and_its_blobs_match_their_digests(tmp_path: Path):
    oci = _oci()
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    layer = tmp_path / "layer.tar"
    oci.tar_tree(root, layer)
    out = tmp_path / "img.tar"
    oci.write_archive("stepflow.test/hello:1.0-abc", [layer], oci.ImageConfig(entrypoint=["/bin/hello"], user="1:1"),
                      out)
    index, manifest, config, t = _read(out)
    with t:
        annotations = index["manifests"][0]["annotations"]
        assert annotations == {"io.containerd.image.name": "stepflow.test/hello:1.0-abc",
                               "org.opencontainers.image.ref.name": "1.0-abc"}
        for desc in [manifest["config"], *manifest["layers"]]:
            blob = t.extractfile("blobs/sha256/" + desc["digest"][7:]).read()
            assert hashlib.sha256(blob).hexdigest() == desc["digest"][7:] and len(blob) == desc["size"]
        assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
        assert (config["config"]["Entrypoint"], config["config"]["User"]) == (["/bin/hello"], "1:1")


@pytest.mark.skipif(os.geteuid() != 0, reason="an overlayfs whiteout is a 0:0 character device: mknod needs root")
def test_overlay_whiteouts_become_oci_whiteouts(tmp_path: Path):
    oci = _oci()
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "new.conf").write_text("x\n")
    try:
        os.mknod(upper / "etc" / "gone.conf", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    except PermissionError:
        pytest.skip("mknod is not permitted here")
    out = tmp_path / "layer.tar"
    oci.tar_upper(upper, out)
    with tarfile.open(out) as t:
        names = sorted(m.name for m in t.getmembers())
    assert names == ["etc", "etc/.wh.gone.conf", "etc/new.conf"]


def test_containerd_config_carries_what_these_machines_need(tmp_path: Path):
    text = configs.containerd_toml(Layout(tmp_path), "stepflow.test/pause:3.10-x")
    # no CAP_SYS_RESOURCE in the VM's bounding set: without it every sandbox fails in runc
    assert "restrict_oom_score_adj = true" in text
    assert "SystemdCgroup = false" in text and 'sandbox_image = "stepflow.test/pause:3.10-x"' in text
    assert 'stream_server_address = "127.0.0.1"' in text


def test_kubelet_and_kubeconfig_point_where_pods_and_the_host_both_reach(tmp_path: Path):
    layout = Layout(tmp_path)
    kubelet = json.loads(configs.kubelet_config(layout))
    assert (kubelet["cgroupDriver"], kubelet["failCgroupV1"], kubelet["resolvConf"]) == ("cgroupfs", False, "")
    assert (kubelet["address"], kubelet["port"]) == ("127.0.0.1", PORTS["kubelet"])
    kubeconfig = json.loads(configs.kubeconfig(layout, "t0ken"))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{GATEWAY}:{PORTS['apiserver']}"
    cni = json.loads(configs.cni_conflist(layout))
    assert cni["plugins"][0]["ipMasq"] is False


def test_fixed_ports_stay_below_the_ephemeral_range_the_other_fixtures_use():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert max(PORTS.values()) < low and len(set(PORTS.values())) == len(PORTS)
