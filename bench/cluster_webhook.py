"""Cluster benchmark: git push → Ready through the push webhook, on the real-pods cluster.

The operator is the chart's Deployment running this tree's image (backend local, file://
store on its emptyDir, as the cluster suite installs it); git is the in-cluster server; the
Pipeline polls hourly and has ``onChange: false``, so each figure is one reconcile and no
execution competes for the node's 2 CPUs. For each of N pushes: commit a changed module and
push it (untimed), POST the GitHub-signed push event to the receiver Service (through
``kubectl port-forward``), and poll the Pipeline every 20 ms (API client) until it is Ready on
the new revision. The operator's own histograms, scraped before and after each push, split
the time: ls-remote (resolve), fetch, build, publish, the whole reconcile; ``outside`` is
the rest (the receiver's annotate, the watch event reaching the Pipeline's daemon, the
status patch, this poll). Goal: median ≤ 2 s.

Needs root and the local cluster (``scripts/testenv cluster status``); a healthy cluster is
reused and left running. From the repository root:

    .venv/bin/python bench/cluster_webhook.py --pushes 10 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from e2e.cluster import Cluster, Tools, wait_for  # noqa: E402
from e2e.gitrepo import SERVER_NAME, Repo, kubectl_push, server_manifests  # noqa: E402
from e2e.realpods.operations import (  # noqa: E402
    STAGES,
    Webhook,
    delete_stepflow_objects,
    github_push,
    post,
    ready_on,
    stage_seconds,
)
from e2e.realpods.release import git_pod_url, install_release, uninstall_release  # noqa: E402
from e2e.test_kind_gitops import pipeline_manifest  # noqa: E402
from tests.testenv.binaries import bin_path  # noqa: E402
from tests.testenv.localcluster.session import finish, start  # noqa: E402
from tests.testenv.samples import TWO_STEPS as MODULE  # noqa: E402


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "min": round(min(values), 3)}


def run(pushes: int) -> dict[str, Any]:
    session = start()
    cluster = Cluster(Tools(docker="", kind="", kubectl=bin_path("kubectl"), helm=bin_path("helm")),
                      "stepflow-local", Path(session.kubeconfig), owned=False)
    from kubernetes import client

    api = client.CustomObjectsApi(session.api_client)
    image = session.images["operator"]["ref"]
    namespace = f"bench-hook-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    release, hook = None, None
    try:
        cluster.apply(namespace, *server_manifests(image))
        cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{SERVER_NAME}", "--timeout=180s",
                        timeout=200)
        release = install_release(cluster, image, namespace)
        hook = Webhook(cluster, release, namespace, token=secrets.token_urlsafe(24)).setup()
        work = Path(tempfile.mkdtemp(prefix="bench-hook-"))
        unique = f"bench-{secrets.token_hex(3)}"
        repo = Repo(unique, f"{git_pod_url(cluster, namespace)}/{unique}.git",
                    kubectl_push(cluster.kubectl, namespace), work)
        name = "bench-hook"
        first = repo.commit({"pipelines/flow.py": MODULE.format(factor=1, name=name)}, "v1")
        manifest = pipeline_manifest(name, repo.url)
        manifest["spec"]["source"]["interval"] = "1h"
        manifest["spec"]["trigger"] = {"onChange": False}
        cluster.apply(namespace, manifest)

        def pipeline() -> dict:
            return api.get_namespaced_custom_object("stepflow.dev", "v1alpha1", namespace, "pipelines", name)

        wait_for(lambda: ready_on(pipeline(), first[:7]), 300, "the first revision Ready")
        rows: list[dict[str, float]] = []
        for i in range(pushes):
            sha = repo.commit({"pipelines/flow.py": MODULE.format(factor=i + 2, name=name)}, f"v{i + 2}")
            before = hook.scrape()
            body, headers = github_push(hook.token, repo.url, sha)
            began = time.monotonic()
            status = post(hook.url, body, headers)
            if status != 202:
                raise RuntimeError(f"the receiver answered {status}")
            found = wait_for(lambda sha=sha: (lambda p: p if ready_on(p, sha[:7]) else None)(pipeline()), 120,
                             f"Ready on {sha[:7]}", interval=0.02)
            total = time.monotonic() - began
            spent = wait_for(lambda before=before: (lambda s: s if s["reconcile"] > 0 else None)(
                stage_seconds(before, hook.scrape())), 30, "the reconcile's histograms")
            row = {"total": total, **spent, "outside": total - spent["reconcile"],
                   "sandbox_build": float(found["status"]["lastBuild"]["durationSeconds"])}
            rows.append(row)
            print(f"push {i + 1}/{pushes}: {total:.2f}s (" + ", ".join(
                f"{k} {row[k]:.2f}" for k in (*STAGES, "reconcile", "outside")) + ")", flush=True)
        keys = ("total", *STAGES, "reconcile", "outside", "sandbox_build")
        return {"pushes": pushes, "seconds": {k: _summary([r[k] for r in rows]) for k in keys}, "rows": rows}
    finally:
        if hook is not None:
            hook.close()
        if release is not None:
            delete_stepflow_objects(cluster, namespace)
            uninstall_release(cluster, release)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        finish(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.pushes)
    print(json.dumps(result["seconds"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
