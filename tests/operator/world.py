"""A real operator process in a fresh namespace, and ways to look at what it does.

Shared by the operator's end-to-end tests (tests/operator/conftest.py makes the ``world``
fixture): ``python -m stepflow_operator`` runs as a separate process, so killing and
restarting it is real.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.testenv import free_port, wait_for
from tests.testenv.procs import WaitTimeout

BUILD_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"



class Operator:
    """``python -m stepflow_operator`` as a child process with its own log file."""

    def __init__(self, kube: Any, s3: Any, namespace: str, work_dir: Path, log: Path,
                 extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ("--standalone",)) -> None:
        self.namespace = namespace
        self.args = args
        self.log = log
        self.env = {**os.environ, **kube.env, **s3.env(),
                    "STEPFLOW_CACHE_DIR": str(work_dir),
                    "STEPFLOW_S3_ROOT_URI": s3.root_uri,
                    "STEPFLOW_BUILD_PYTHON": BUILD_PYTHON,
                    "PYTHONUNBUFFERED": "1",
                    **(extra_env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> Operator:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stepflow_operator", *self.args, f"--namespace={self.namespace}"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL the operator only: step processes are detached and must survive it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 80) -> str:
        return "\n".join(self.text().splitlines()[-n:])


class World:
    """One test's namespace, operator(s), and ways to look at resources."""

    def __init__(self, kube: Any, s3: Any, base: Path) -> None:
        self.kube, self.s3, self.base = kube, s3, base
        self.namespace = f"op-{secrets.token_hex(4)}"
        kube.kubectl("create", "namespace", self.namespace)
        self.work_dir = base / "work"
        self.operators: list[Operator] = []

    def operator(self, *args: str, **extra_env: str) -> Operator:
        """Start ``python -m stepflow_operator ARGS`` (default ``--standalone``) with ``extra_env``.

        Its metrics and receiver ports are free loopback ports unless ``extra_env`` sets them
        (never the defaults on every interface: other test sessions may run beside this one).
        """
        env = {"STEPFLOW_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
               "STEPFLOW_RECEIVER_ADDRESS": f"127.0.0.1:{free_port()}", **extra_env}
        op = Operator(self.kube, self.s3, self.namespace, self.work_dir,
                      self.base / f"operator-{len(self.operators)}.log", env,
                      args or ("--standalone",)).start()
        self.operators.append(op)
        return op

    def log_text(self) -> str:
        return "\n".join(op.text() for op in self.operators)

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.kube.kubectl("-n", self.namespace, *args, **kw)

    def apply(self, obj: dict) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str) -> dict:
        return json.loads(self.kubectl("get", kind, name, "-o", "json").stdout)

    def items(self, kind: str) -> list[dict]:
        return json.loads(self.kubectl("get", kind, "-o", "json").stdout)["items"]

    def events(self, name: str | None = None) -> list[dict]:
        events = self.items("events")
        return [e for e in events if name is None or e["involvedObject"].get("name") == name]

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return wait_for(predicate, timeout, 0.1, what)
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\n--- operator log (tail) ---\n"
                                 + "\n".join(op.tail() for op in self.operators)) from None

    def condition(self, name: str, type_: str = "Ready") -> dict:
        status = self.get("pipeline", name).get("status") or {}
        return next((c for c in status.get("conditions") or () if c["type"] == type_), {})

    def wait_ready(self, name: str, value: str = "True", timeout: float = 60, **match: Any) -> dict:
        def ready() -> dict | None:
            pipeline = self.get("pipeline", name)
            status = pipeline.get("status") or {}
            c = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), None)
            if c and c["status"] == value and all(_dig(status, k) == v for k, v in match.items()):
                return pipeline
            return None
        return self.wait(ready, timeout, f"Pipeline {name} Ready={value} with {match}")

    def wait_execution(self, name: str, phase: str = "Succeeded", timeout: float = 60) -> dict:
        def done() -> dict | None:
            found = [e for e in self.items("pipelineexecutions") if e["metadata"]["name"] == name]
            if found and (found[0].get("status") or {}).get("phase") == phase:
                return found[0]
            return None
        return self.wait(done, timeout, f"PipelineExecution {name} {phase}")


def _dig(data: dict, dotted: str) -> Any:
    for part in dotted.split("__"):
        data = (data or {}).get(part)
    return data


def pipeline_manifest(name: str, url: str, module: str = "pipelines/flow.py", **spec: Any) -> dict:
    source = {"url": url, "ref": {"branch": "main"}, "interval": "1s"}
    source.update(spec.pop("source", {}))
    return {"apiVersion": "stepflow.dev/v1alpha1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"source": source, "module": module, **spec}}


SLOW_MIDDLE = '''
import os
import time

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline

MARKS = {marks!r}


def _mark(name):
    with open(os.path.join(MARKS, name), "a") as f:
        f.write("ran\\n")


@step(name="first")
def first() -> int:
    _mark("first")
    return 1


@step(name="slow")
def slow(x: int) -> int:
    _mark("slow")
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(MARKS, "go")):
        if time.monotonic() > deadline:
            raise TimeoutError("nobody created the go file")
        time.sleep(0.05)
    return x + 1


@step(name="last")
def last(x: int) -> int:
    _mark("last")
    return x * 10


pipeline = Pipeline(name="{name}", steps=[last(slow(first()))])
'''


def slow_pipeline(world: World, git_remote: Any, name: str, shared: Path) -> tuple[Path, str]:
    """``shared``: a folder the steps' user (uid 65534) reaches (the ``traversable_dir``
    fixture); not under /tmp or /var/tmp, which a confined step sees as a private tmpfs."""
    marks = shared / f"marks-{name}"
    marks.mkdir(mode=0o777)
    marks.chmod(0o777)
    git_remote.commit({"pipelines/flow.py": SLOW_MIDDLE.format(marks=str(marks), name=name)}, "slow")
    world.apply(pipeline_manifest(name, git_remote.url))
    return marks, name


def step_phase(world: World, execution: str, step: str) -> str | None:
    found = [e for e in world.items("pipelineexecutions") if e["metadata"]["name"] == execution]
    steps = ((found[0].get("status") or {}).get("steps") or []) if found else []
    return next((s.get("phase") for s in steps if s["name"] == step), None)


# ---- /metrics -------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape_until(world: World, port: int, predicate: Callable[[Samples], bool], what: str) -> Samples:
    """The first scrape for which ``predicate`` holds (series move a moment after the status)."""
    return world.wait(lambda: next(iter([s for s in [scrape(port)] if predicate(s)]), None), 30, what)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels`` (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def conditions(samples: Samples, namespace: str, name: str) -> set[tuple[str, str, str]]:
    return {(dict(ls)["type"], dict(ls)["status"], dict(ls)["reason"])
            for (n, ls), v in samples.items()
            if n == "stepflow_pipeline_condition" and v == 1
            and dict(ls)["namespace"] == namespace and dict(ls)["name"] == name}
