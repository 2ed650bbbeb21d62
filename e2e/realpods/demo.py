"""``make demo-cluster``: the churn example on real pods, end to end, in one command.

    python -m e2e.realpods.demo up     cluster up, S3 up, chart installed, example applied,
                                       wait for Ready + Succeeded, print what to look at
    python -m e2e.realpods.demo down   undo all of it (the cluster too)

The pieces are the cluster suite's: the local cluster (scripts/testenv cluster), the chart
with this tree's operator image (release.py), the in-cluster git server (e2e/gitserver.py)
holding examples/churn/, and versitygw on the bridge gateway as the S3 store. The S3 server
outlives this command (pid file under the demo's directory), so the cluster can be looked at
afterwards; ``down`` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.testenv.binaries import REPO_ROOT, bin_path, cache_dir
from tests.testenv.localcluster import LocalCluster
from tests.testenv.localcluster.layout import GATEWAY
from tests.testenv.localcluster.session import start
from tests.testenv.procs import free_port

from e2e.cluster import Cluster, Tools, wait_for
from e2e.gitrepo import SERVER_NAME, Repo, kubectl_push, server_manifests
from e2e.realpods.release import LocalRelease, git_pod_url

DEMO_DIR = cache_dir() / "demo"
NAMESPACE = "stepflow-demo"
RELEASE = "stepflow"
BUCKET = "stepflow-demo"


def say(msg: str) -> None:
    print(f"demo-cluster: {msg}", flush=True)


def start_s3() -> dict[str, str]:
    """versitygw on the gateway, detached; its endpoint and credentials (kept in s3.json)."""
    info_file = DEMO_DIR / "s3.json"
    if info_file.exists():
        info = json.loads(info_file.read_text())
        if _alive(info["pid"]):
            return info
    data = DEMO_DIR / "s3-data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    info = {"endpoint_url": f"http://{GATEWAY}:{port}", "access_key": "stepflow-demo",
            "secret_key": secrets.token_hex(20), "region": "us-east-1"}
    env = {**os.environ, "ROOT_ACCESS_KEY_ID": info["access_key"], "ROOT_SECRET_ACCESS_KEY": info["secret_key"]}
    with open(DEMO_DIR / "versitygw.log", "ab") as log:
        proc = subprocess.Popen([bin_path("versitygw"), "--region", info["region"], "--port", f"{GATEWAY}:{port}",
                                 "--health", "/health", "--quiet", "posix", str(data)], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    info["pid"] = proc.pid
    info_file.write_text(json.dumps(info))
    client = _s3_client(info)
    wait_for(lambda: _bucket_ready(client), 30, "the S3 server")
    return info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _s3_client(info: dict):  # noqa: ANN202
    from tests.testenv.s3 import boto3_client

    return boto3_client(info["endpoint_url"], info["access_key"], info["secret_key"], info["region"])


def _bucket_ready(client) -> bool:  # noqa: ANN001
    try:
        client.head_bucket(Bucket=BUCKET)
        return True
    except Exception:  # noqa: BLE001 - not up yet, or no bucket yet
        try:
            client.create_bucket(Bucket=BUCKET)
            return True
        except Exception:  # noqa: BLE001
            return False


def example_files() -> dict[str, str]:
    """examples/churn/ as the files of a commit."""
    example = REPO_ROOT / "examples" / "churn"
    return {str(p.relative_to(example)): p.read_text() for p in example.rglob("*.py") if "__pycache__" not in p.parts}


def cluster_handle(kubeconfig: str) -> Cluster:
    return Cluster(Tools("", "", bin_path("kubectl"), bin_path("helm")), "stepflow-local", Path(kubeconfig),
                   owned=False)


def remove_demo(cluster: Cluster) -> None:
    """The Pipelines' namespace first, while the operator runs to release its finalizers."""
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s",
                    check=False, timeout=150)
    subprocess.run([bin_path("helm"), "--kubeconfig", str(cluster.kubeconfig), "uninstall", RELEASE, "--namespace",
                    f"{NAMESPACE}-system", "--wait", "--timeout", "2m"], capture_output=True, check=False)
    cluster.kubectl("delete", "namespace", f"{NAMESPACE}-system", "--ignore-not-found", "--wait=true",
                    "--timeout=120s", check=False, timeout=150)


def up() -> int:
    t0 = time.monotonic()
    say("starting the cluster (scripts/testenv cluster up) ...")
    session = start()
    cluster = cluster_handle(session.kubeconfig)
    say(f"cluster ready ({time.monotonic() - t0:.0f}s); starting S3 on {GATEWAY} ...")
    s3 = start_s3()
    remove_demo(cluster)  # a previous run's, if any: start clean
    cluster.kubectl("create", "namespace", NAMESPACE)
    image = session.images["operator"]["ref"]
    say(f"helm install {RELEASE} charts/stepflow with {image} ...")
    release = LocalRelease(cluster, name=RELEASE, namespace=f"{NAMESPACE}-system", watched=NAMESPACE, image=image,
                           store=f"s3://{BUCKET}/stepflow", s3=s3, runner=session.images["runner"]["ref"])
    release.install()
    say("git server pod with examples/churn/ ...")
    cluster.apply(NAMESPACE, *server_manifests(image))
    cluster.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{SERVER_NAME}", "--timeout=180s",
                    timeout=200)
    work = DEMO_DIR / f"work-{secrets.token_hex(3)}"
    work.mkdir(parents=True)
    repo = Repo("churn", f"{git_pod_url(cluster, NAMESPACE)}/churn.git", kubectl_push(cluster.kubectl, NAMESPACE),
                work)
    commit = repo.commit(example_files(), "the churn example")
    import yaml

    manifest = yaml.safe_load((REPO_ROOT / "examples" / "manifests" / "churn.yaml").read_text())
    manifest["spec"]["source"]["url"] = repo.url
    manifest["spec"]["source"]["interval"] = "10s"
    cluster.apply(NAMESPACE, manifest)
    say(f"applied Pipeline churn (examples/manifests/churn.yaml, source {repo.url} @ {commit[:7]}); waiting ...")
    cluster.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pipeline/churn", "--timeout=600s",
                    timeout=620)

    def ended() -> dict | None:
        items = cluster.get(NAMESPACE, "pipelineexecutions", selector="stepflow.dev/pipeline=churn")["items"]
        done = [e for e in items if (e.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Stopped")]
        return done[0] if done else None

    execution = wait_for(ended, 900, "the churn execution to end", interval=1)
    phase = execution["status"]["phase"]
    kc = f"kubectl --kubeconfig {session.kubeconfig} -n {NAMESPACE}"
    print()
    print(f"$ {kc} get pipelines")
    print(cluster.kubectl("-n", NAMESPACE, "get", "pipelines").stdout)
    print(f"$ {kc} get pipelineexecutions")
    print(cluster.kubectl("-n", NAMESPACE, "get", "pipelineexecutions").stdout)
    name = execution["metadata"]["name"]
    print(f"$ {kc} get jobs -l stepflow.dev/execution={name}   # backend kubernetes: one Job per step")
    print(cluster.kubectl("-n", NAMESPACE, "get", "jobs", "-l", f"stepflow.dev/execution={name}").stdout)
    print(f"""Done in {time.monotonic() - t0:.0f}s: execution {name} {phase}.

Look further:
  export KUBECONFIG={session.kubeconfig}
  {bin_path('kubectl')} -n {NAMESPACE} describe pipeline churn
  {bin_path('kubectl')} -n {NAMESPACE} describe pipelineexecution {name}
  {bin_path('kubectl')} -n {NAMESPACE}-system logs deploy/{RELEASE}
  AWS_ACCESS_KEY_ID={s3['access_key']} AWS_SECRET_ACCESS_KEY={s3['secret_key']} \\
  STEPFLOW_S3_ENDPOINT_URL={s3['endpoint_url']} \\
  .venv/bin/stepflow logs --store s3://{BUCKET}/stepflow {name} preprocess   # a step's output
Tear down (operator, S3 server, cluster):
  make demo-cluster-down""")
    return 0 if phase == "Succeeded" else 1


def down() -> int:
    cluster = LocalCluster()
    if cluster.healthy():
        remove_demo(cluster_handle(cluster.kubeconfig))
    info_file = DEMO_DIR / "s3.json"
    if info_file.exists():
        pid = json.loads(info_file.read_text())["pid"]
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            wait_for(lambda: not _alive(pid) or _reap(pid), 20, "the S3 server to stop", interval=0.1)
        info_file.unlink()
    restored = cluster.down()
    say("down" + (f"; restored {', '.join(restored)}" if restored else ""))
    return 0


def _reap(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args()
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
