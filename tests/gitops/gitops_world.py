"""Helpers of the GitOps core's tests: a real git repository, specs, conditions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stepflow.gitops import conditions as cond

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn" / "pipelines" / "churn.py"
BUILD_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        _git(path, "init", "-q", "-b", "main")

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        _git(self.path, "add", "-A")
        _git(self.path, "commit", "-q", "-m", message)
        return _git(self.path, "rev-parse", "HEAD")


def spec_for(repo: Repo, **extra) -> dict:
    spec = {"source": {"url": str(repo.path), "ref": {"branch": "main"}, "interval": "1m"},
            "module": "pipelines/churn.py"}
    spec.update(extra)
    return spec


def ready(status) -> dict:
    return cond.get_condition(status["conditions"], "Ready")
