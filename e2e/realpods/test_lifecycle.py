"""`scripts/testenv cluster` as a second user of the machine sees it: `up` on a healthy
cluster reuses it, `status` reports it, and a cluster from another state directory is
refused at once with a message that names the running one."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from tests.testenv.binaries import REPO_ROOT
from tests.testenv.localcluster import ClusterError, Layout, LocalCluster


def test_up_on_a_healthy_cluster_reuses_it(local_cluster):
    again = LocalCluster(local_cluster.cluster.layout)
    t0 = time.monotonic()
    again.up(local_cluster.images)
    assert not again.started_here
    assert time.monotonic() - t0 < 30
    status = json.loads(subprocess.run([str(REPO_ROOT / "scripts" / "testenv"), "cluster", "status"],
                                       capture_output=True, text=True, check=True).stdout)
    assert status["healthy"] and all(status["daemons"].values()), status


def test_a_second_cluster_fails_fast_naming_the_first(local_cluster, tmp_path: Path):
    other = LocalCluster(Layout(tmp_path / "other"))
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="another stepflow test cluster runs on this machine") as caught:
        other.up(local_cluster.images)
    assert str(local_cluster.cluster.layout.root) in str(caught.value)
    assert time.monotonic() - t0 < 5
    assert not (tmp_path / "other" / "run").exists()
