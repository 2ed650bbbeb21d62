"""The operator refuses to start, at once and in one line, when it cannot work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY = "import runpy, sys; {hide}runpy.run_module('stepflow_operator', run_name='__main__')"


def _start(tmp_path: Path, env: dict[str, str], hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m stepflow_operator`` (through runpy, so modules can be hidden first)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG", "STEPFLOW_"))}
    code = ENTRY.format(hide="".join(f"sys.modules[{m!r}] = None; " for m in hide))
    return subprocess.run([sys.executable, "-c", code, "--standalone"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={**clean, "HOME": str(tmp_path), **env})


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("stepflow-operator: cannot start: ")
    return lines[0]


def test_no_kubeconfig_and_not_in_a_pod(tmp_path):
    line = _one_line(_start(tmp_path, {}))
    assert "no Kubernetes credentials" in line and "set KUBECONFIG" in line


def test_a_kubeconfig_path_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "nope" / "config"
    line = _one_line(_start(tmp_path, {"KUBECONFIG": str(missing)}))
    assert str(missing) in line


@pytest.mark.parametrize("module", ["kopf", "prometheus_client"])
def test_without_the_operator_extra(tmp_path, module):
    line = _one_line(_start(tmp_path, {}, hide=(module,)))
    assert f"no module {module}" in line and "pip install 'stepflow[operator]'" in line


def test_a_bad_setting_is_named_before_any_cluster_work(tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                      "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
                      "current-context: x\n")
    line = _one_line(_start(tmp_path, {"KUBECONFIG": str(config), "STEPFLOW_OPERATOR_WORKERS": "lots"}))
    assert "STEPFLOW_OPERATOR_WORKERS='lots'" in line
