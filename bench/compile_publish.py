"""Compile + publish benchmark: generated pipelines against a real S3 server.

For each shape (linear chain, fan-out/fan-in) and size N it runs, each in a fresh Python
process as a user would (import, build the pipeline, compile, publish):

* ``first``: publish to an empty prefix;
* ``republish``: the same pipeline again (unchanged content);

and, in this process, a ``baseline``: the same bytes uploaded the way the SageMaker SDK
does (one ``put_object`` per file, serially, every time).

PUT requests and bytes are counted by botocore event hooks on the real client, not taken
from stepflow's own report. Run from the repository root:

    .venv/bin/python bench/compile_publish.py                 # N = 10, 200, 1000
    .venv/bin/python bench/compile_publish.py --sizes 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("linear", "fanout")

# --- child: one whole-process compile + publish ----------------------------------------


def build_pipeline(shape: str, n: int, name: str) -> Any:
    """A pipeline of ``n`` function steps: a chain, or one source → n-2 branches → one sink."""
    from stepflow.workflow.function_step import step
    from stepflow.workflow.pipeline import Pipeline

    def source() -> list[int]:
        return list(range(10))

    def work(values: list[int], i: int) -> list[int]:
        return [v * 2 + i for v in values]

    def combine(*parts: list[int]) -> int:
        return sum(sum(p) for p in parts)

    if shape == "linear":
        value = step(name="s0")(source)()
        for i in range(1, n):
            value = step(name=f"s{i}")(work)(value, i)
        leaf = value
    else:
        root = step(name="source")(source)()
        branches = [step(name=f"b{i}")(work)(root, i) for i in range(n - 2)]
        leaf = step(name="sink")(combine)(*branches)
    return Pipeline(name=name, steps=[leaf])


def run_child(shape: str, n: int, name: str, bundle_dir: str) -> dict[str, Any]:
    started = time.perf_counter()
    # compiler.validate.check_acyclic recurses once per step of a chain (reported); until it
    # is iterative a 1,000-step chain needs more than Python's default 1,000 frames.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * n))
    from stepflow.compiler.publish import publish
    from stepflow.storage.s3 import S3Store

    imported = time.perf_counter()
    pipeline = build_pipeline(shape, n, name)
    built = time.perf_counter()
    store = pipeline.session.store
    assert isinstance(store, S3Store), store
    counts = {"puts": 0, "put_bytes": 0, "gets": 0}

    def on_put(params: dict[str, Any], **_: Any) -> None:
        counts["puts"] += 1
        counts["put_bytes"] += len(params.get("Body") or b"")

    def on_get(**_: Any) -> None:
        counts["gets"] += 1

    store.client.meta.events.register("before-parameter-build.s3.PutObject", on_put)
    store.client.meta.events.register("before-call.s3.GetObject", on_get)
    bundle = pipeline.compile(bundle_dir)
    compiled = time.perf_counter()
    cpu_before = time.process_time()
    report = publish(bundle, store)
    published = time.perf_counter()
    publish_cpu = time.process_time() - cpu_before
    return {
        "import_s": imported - started,
        "build_s": built - imported,
        "compile_s": compiled - built,
        "publish_s": published - compiled,
        "publish_client_cpu_s": publish_cpu,
        "files": len(bundle.files),
        "bundle_bytes": sum(f.size for f in bundle.files),
        "uploaded_files": report.uploaded_files,
        "uploaded_bytes": report.uploaded_bytes,
        **counts,
    }


# --- parent: server, runs, baseline, table ------------------------------------------------


def start_server(workdir: Path) -> tuple[Any, dict[str, str]]:
    sys.path.insert(0, str(REPO))
    from tests.testenv.s3 import S3Server

    server = S3Server(workdir).start()
    return server, server.env()


def run_whole_process(shape: str, n: int, name: str, bundle_dir: Path,
                      env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", shape, str(n), name, str(bundle_dir)],
        env=env, capture_output=True, text=True, cwd=str(REPO),
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"child {shape} N={n} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def serial_baseline(bundle_dir: Path, bucket: str, prefix: str, env: dict[str, str]) -> dict[str, Any]:
    """One put_object per file, one after the other: what the SageMaker SDK does on every compile."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=env["STEPFLOW_S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    files = [(f["key"], bundle_dir / "files" / f["key"]) for f in manifest["files"]]
    started = time.perf_counter()
    sent = 0
    for key, path in files:
        data = path.read_bytes()
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)
        sent += len(data)
    definition = (bundle_dir / "definition.json").read_bytes()
    client.put_object(Bucket=bucket, Key=f"{prefix}/definition.json", Body=definition)
    sent += len(definition)
    return {"publish_s": time.perf_counter() - started, "puts": len(files) + 1, "put_bytes": sent}


def cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 200, 1000])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        shape, n, name, bundle_dir = args.child
        print(json.dumps(run_child(shape, int(n), name, bundle_dir)))
        return

    import psutil

    work = Path(tempfile.mkdtemp(prefix="stepflow-bench-"))
    server, server_env = start_server(work / "s3")
    try:
        bucket = server.new_bucket("bench").bucket
        base_env = {**os.environ, **server_env, "STEPFLOW_ADMIN_CONFIG": "", "STEPFLOW_USER_CONFIG": "",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "sdk"), os.environ.get("PYTHONPATH")]))}
        server_pid = server.process.pid if server.process else None
        rows: list[dict[str, Any]] = []
        print(f"S3 server: versitygw at {server.endpoint_url}; machine: {psutil.cpu_count()} CPUs, "
              f"Python {sys.version.split()[0]}", flush=True)
        for shape in args.shapes:
            for n in args.sizes:
                name = f"{shape}-{n}"
                env = {**base_env, "STEPFLOW_S3_ROOT_URI": f"s3://{bucket}/stepflow"}
                for phase in ("first", "republish"):
                    server_cpu = cpu_seconds(server_pid)
                    result = run_whole_process(shape, n, name, work / f"{name}-{phase}", env)
                    after = cpu_seconds(server_pid)
                    result.update(shape=shape, n=n, phase=phase,
                                  server_cpu_s=None if server_cpu is None else after - server_cpu)
                    rows.append(result)
                    print(_line(result), flush=True)
                server_cpu = cpu_seconds(server_pid)
                baseline = serial_baseline(work / f"{name}-first", bucket, f"baseline/{name}", base_env)
                after = cpu_seconds(server_pid)
                baseline.update(shape=shape, n=n, phase="baseline",
                                server_cpu_s=None if server_cpu is None else after - server_cpu)
                rows.append(baseline)
                print(_line(baseline), flush=True)
        print()
        print(_summary(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        server.stop()


def _line(r: dict[str, Any]) -> str:
    if r["phase"] == "baseline":
        return (f"{r['shape']:7} N={r['n']:5} baseline   serial upload {r['publish_s']:7.2f}s "
                f"PUT {r['puts']:6} {r['put_bytes'] / 1e6:8.2f} MB  server CPU {r['server_cpu_s'] or 0:5.2f}s")
    return (f"{r['shape']:7} N={r['n']:5} {r['phase']:10} process {r['wall_s']:6.2f}s "
            f"(import {r['import_s']:.2f} build {r['build_s']:.2f} compile {r['compile_s']:.2f} "
            f"publish {r['publish_s']:.2f}, client CPU {r['publish_client_cpu_s']:.2f})  PUT {r['puts']:6} {r['put_bytes'] / 1e6:8.2f} MB  "
            f"GET {r['gets']}  files {r['files']}  server CPU {r['server_cpu_s'] or 0:5.2f}s")


def _summary(rows: list[dict[str, Any]]) -> str:
    lines = ["| shape | N | files | first: process s (compile / publish) | PUTs | MB | "
             "republish: process s | PUTs | bytes | serial baseline upload s | publish speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["shape"], r["n"], r["phase"]): r for r in rows}
    for shape, n in dict.fromkeys((r["shape"], r["n"]) for r in rows):
        first, again, base = by[(shape, n, "first")], by[(shape, n, "republish")], by[(shape, n, "baseline")]
        lines.append(
            f"| {shape} | {n} | {first['files']} | {first['wall_s']:.2f} ({first['compile_s']:.2f} / "
            f"{first['publish_s']:.2f}) | {first['puts']} | {first['put_bytes'] / 1e6:.2f} | "
            f"{again['wall_s']:.2f} | {again['puts']} | {again['put_bytes']} | {base['publish_s']:.2f} | "
            f"{base['publish_s'] / first['publish_s']:.1f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
