"""Compile + publish benchmark: generated pipelines against a real S3 server.

For each shape (linear chain, fan-out/fan-in) and size N it runs, each in a fresh Python
process as a user would (import, build the pipeline, compile, publish):

* ``first``: publish to an empty prefix (artifacts through ``S3Store.put_many``);
* ``republish``: the same pipeline again (unchanged content);
* ``boto3``: a first publish to another empty prefix with ``put_many`` replaced by the
  generic thread pool over boto3's ``put_object`` (what publish did before the bulk path);

and, in this process, a ``baseline``: the same bytes uploaded the way the SageMaker SDK
does (one ``put_object`` per file, serially, every time).

Requests and bytes are counted at the HTTP layer (every urllib3 request the publishing
process sends, boto3's and the bulk path's alike), not taken from stepflow's own report.
The S3 server runs with HTTP keep-alive, as AWS S3 does (versitygw's default closes every
connection; ``--no-keep-alive`` measures that). Run from the repository root:

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


def build_pipeline(shape: str, n: int, name: str, sdk: str = "stepflow") -> Any:
    """A pipeline of ``n`` function steps: a chain, or one source → n-2 branches → one sink.

    ``sdk="sagemaker"`` builds the same pipeline with the SageMaker SDK's own ``@step``
    (run in the benchmark venv that has it; SageMaker needs an image, instance type and role).
    """
    if sdk == "sagemaker":
        import sagemaker
        from sagemaker.workflow.function_step import step as sm_step
        from sagemaker.workflow.pipeline import Pipeline as SmPipeline

        session = sagemaker.session.Session(default_bucket=os.environ["BENCH_BUCKET"])
        settings = {"instance_type": "ml.m5.large", "role": "arn:aws:iam::123456789012:role/bench",
                    "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/bench:latest"}

        def step(name: str) -> Any:
            return sm_step(name=name, **settings)

        def Pipeline(name: str, steps: list[Any]) -> Any:  # noqa: N802 - stands in for the class
            return SmPipeline(name=name, steps=steps, sagemaker_session=session)
    else:
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


def count_requests() -> dict[str, int]:
    """Count every HTTP request this process sends (boto3 and the bulk path both use urllib3)."""
    import urllib3.connectionpool

    counts = {"puts": 0, "put_bytes": 0, "gets": 0}
    original = urllib3.connectionpool.HTTPConnectionPool.urlopen

    def urlopen(self: Any, method: str, url: str, body: Any = None, headers: Any = None,
                *args: Any, **kwargs: Any) -> Any:
        if method == "PUT":
            counts["puts"] += 1
            counts["put_bytes"] += len(body) if isinstance(body, (bytes, bytearray)) else \
                int((headers or {}).get("Content-Length", 0))
        elif method == "GET":
            counts["gets"] += 1
        return original(self, method, url, body, headers, *args, **kwargs)

    urllib3.connectionpool.HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]
    return counts


def run_sagemaker_child(shape: str, n: int, name: str) -> dict[str, Any]:
    """What ``pipeline.definition()`` costs with the SageMaker SDK: it uploads every artifact."""
    started = time.perf_counter()
    import sagemaker.workflow.pipeline  # noqa: F401 - the import is part of what a user pays

    imported = time.perf_counter()
    pipeline = build_pipeline(shape, n, name, sdk="sagemaker")
    built = time.perf_counter()
    counts = count_requests()
    cpu_before = time.process_time()
    definition = pipeline.definition()
    defined = time.perf_counter()
    return {
        "import_s": imported - started,
        "build_s": built - imported,
        "compile_s": 0.0,
        "publish_s": defined - built,  # compile and upload are one call in the SDK
        "publish_client_cpu_s": time.process_time() - cpu_before,
        "definition_bytes": len(definition),
        **counts,
    }


def run_child(shape: str, n: int, name: str, bundle_dir: str, boto3_only: bool) -> dict[str, Any]:
    started = time.perf_counter()
    # compiler.validate.check_acyclic recurses once per step of a chain (reported); until it
    # is iterative a 1,000-step chain needs more than Python's default 1,000 frames.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * n))
    from stepflow.compiler.publish import publish
    from stepflow.storage.base import ObjectStore
    from stepflow.storage.s3 import S3Store

    if boto3_only:
        S3Store.put_many = ObjectStore.put_many  # type: ignore[method-assign]
    imported = time.perf_counter()
    pipeline = build_pipeline(shape, n, name)
    built = time.perf_counter()
    store = pipeline.session.store
    assert isinstance(store, S3Store), store
    counts = count_requests()
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


def start_server(workdir: Path, keep_alive: bool) -> tuple[Any, dict[str, str]]:
    sys.path.insert(0, str(REPO))
    from tests.testenv.s3 import S3Server

    server = S3Server(workdir)
    if keep_alive:  # the fixture has no option for it: start the binary through a wrapper
        workdir.mkdir(parents=True, exist_ok=True)
        wrapper = workdir / "versitygw-keep-alive"
        wrapper.write_text(f'#!/bin/sh\nexec "{server._bin}" --keep-alive "$@"\n')
        wrapper.chmod(0o755)
        server._bin = str(wrapper)
    server.start()
    return server, server.env()


SAGEMAKER_PINS = ("sagemaker==2.257.7", "moto[server]==5.2.5")  # what STEP_SEMANTICS.md was measured with


def sagemaker_venv(venv: Path) -> Path:
    """The benchmark-only venv with the SageMaker SDK and moto (never a stepflow dependency)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {' '.join(SAGEMAKER_PINS)} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *SAGEMAKER_PINS], check=True)
    return venv


def start_moto(venv: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server, standing in for the SageMaker, STS and IAM APIs the SDK calls."""
    import http.client

    from tests.testenv.procs import free_port, wait_for

    port = free_port()
    log = open(workdir / "moto.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen([str(venv / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/moto-api/")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    wait_for(up, 30, 0.05, "moto_server", ignore=(OSError, http.client.HTTPException))
    return process, f"http://127.0.0.1:{port}"


def run_whole_process(shape: str, n: int, name: str, bundle_dir: Path,
                      env: dict[str, str], boto3_only: bool = False, python: str = sys.executable) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run(
        [python, __file__, "--child", shape, str(n), name, str(bundle_dir), str(int(boto3_only))],
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
    parser.add_argument("--no-keep-alive", action="store_true",
                        help="let the S3 server close every connection (versitygw's default)")
    parser.add_argument("--no-sagemaker", action="store_true",
                        help="skip the SageMaker SDK's own definition() (needs a venv with it)")
    parser.add_argument("--sagemaker-venv", type=Path, default=REPO / ".cache" / "bench-venv-sagemaker")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        shape, n, name, bundle_dir, boto3_only = args.child
        if os.environ.get("BENCH_BUCKET"):
            result = run_sagemaker_child(shape, int(n), name)
        else:
            result = run_child(shape, int(n), name, bundle_dir, boto3_only == "1")
        print(json.dumps(result))
        return

    import psutil

    work = Path(tempfile.mkdtemp(prefix="stepflow-bench-"))
    server, server_env = start_server(work / "s3", keep_alive=not args.no_keep_alive)
    moto: subprocess.Popen[bytes] | None = None
    try:
        bucket = server.new_bucket("bench").bucket
        base_env = {**os.environ, **server_env, "STEPFLOW_ADMIN_CONFIG": "", "STEPFLOW_USER_CONFIG": "",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "sdk"), os.environ.get("PYTHONPATH")]))}
        server_pid = server.process.pid if server.process else None
        rows: list[dict[str, Any]] = []
        print(f"S3 server: versitygw at {server.endpoint_url} (keep-alive {not args.no_keep_alive}); "
              f"machine: {psutil.cpu_count()} CPUs, Python {sys.version.split()[0]}", flush=True)
        sm_python, sm_env = None, {}
        if not args.no_sagemaker:
            venv = sagemaker_venv(args.sagemaker_venv)
            moto, moto_url = start_moto(venv, work)
            sm_python = str(venv / "bin" / "python")
            sm_env = {**base_env, "BENCH_BUCKET": bucket, "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
                      **{f"AWS_ENDPOINT_URL_{api}": moto_url for api in ("SAGEMAKER", "STS", "IAM")}}
            print(f"SageMaker SDK {SAGEMAKER_PINS[0]}: S3 on the same server, its APIs on moto at {moto_url}",
                  flush=True)
        for shape in args.shapes:
            for n in args.sizes:
                name = f"{shape}-{n}"
                for phase in ("first", "republish", "boto3"):
                    root = "boto3-threads" if phase == "boto3" else "stepflow"
                    env = {**base_env, "STEPFLOW_S3_ROOT_URI": f"s3://{bucket}/{root}"}
                    server_cpu = cpu_seconds(server_pid)
                    result = run_whole_process(shape, n, name, work / f"{name}-{phase}", env,
                                               boto3_only=phase == "boto3")
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
                if sm_python:
                    server_cpu = cpu_seconds(server_pid)
                    result = run_whole_process(shape, n, name, work / f"{name}-sagemaker", sm_env,
                                               python=sm_python)
                    after = cpu_seconds(server_pid)
                    result.update(shape=shape, n=n, phase="sagemaker",
                                  server_cpu_s=None if server_cpu is None else after - server_cpu)
                    rows.append(result)
                    print(_line(result), flush=True)
        print()
        print(_summary(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        server.stop()


def _line(r: dict[str, Any]) -> str:
    if r["phase"] == "sagemaker":
        return (f"{r['shape']:7} N={r['n']:5} sagemaker  process {r['wall_s']:6.2f}s (import {r['import_s']:.2f} "
                f"build {r['build_s']:.2f} definition() {r['publish_s']:.2f}, client CPU "
                f"{r['publish_client_cpu_s']:.2f})  PUT {r['puts']:6} {r['put_bytes'] / 1e6:8.2f} MB  "
                f"GET {r['gets']}  server CPU {r['server_cpu_s'] or 0:5.2f}s")
    if r["phase"] == "baseline":
        return (f"{r['shape']:7} N={r['n']:5} baseline   serial upload {r['publish_s']:7.2f}s "
                f"PUT {r['puts']:6} {r['put_bytes'] / 1e6:8.2f} MB  server CPU {r['server_cpu_s'] or 0:5.2f}s")
    return (f"{r['shape']:7} N={r['n']:5} {r['phase']:10} process {r['wall_s']:6.2f}s "
            f"(import {r['import_s']:.2f} build {r['build_s']:.2f} compile {r['compile_s']:.2f} "
            f"publish {r['publish_s']:.2f}, client CPU {r['publish_client_cpu_s']:.2f})  "
            f"PUT {r['puts']:6} {r['put_bytes'] / 1e6:8.2f} MB  "
            f"GET {r['gets']}  files {r['files']}  server CPU {r['server_cpu_s'] or 0:5.2f}s")


def _summary(rows: list[dict[str, Any]]) -> str:
    by = {(r["shape"], r["n"], r["phase"]): r for r in rows}
    with_sdk = any(r["phase"] == "sagemaker" for r in rows)
    lines = ["| shape | N | files | first: process s (compile / publish) | PUTs | MB | publish client CPU s | "
             "republish: process s | PUTs | bytes | boto3 threads: process s (publish) | "
             "serial baseline upload s |" + (" SageMaker SDK: process s (definition()) | PUTs | "
                                              "SDK / first | SDK / republish |" if with_sdk else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if with_sdk else "")]
    for shape, n in dict.fromkeys((r["shape"], r["n"]) for r in rows):
        first, again = by[(shape, n, "first")], by[(shape, n, "republish")]
        boto, base = by[(shape, n, "boto3")], by[(shape, n, "baseline")]
        line = (
            f"| {shape} | {n} | {first['files']} | {first['wall_s']:.2f} ({first['compile_s']:.2f} / "
            f"{first['publish_s']:.2f}) | {first['puts']} | {first['put_bytes'] / 1e6:.2f} | "
            f"{first['publish_client_cpu_s']:.2f} | {again['wall_s']:.2f} | {again['puts']} | "
            f"{again['put_bytes']} | {boto['wall_s']:.2f} ({boto['publish_s']:.2f}) | {base['publish_s']:.2f} |"
        )
        sdk = by.get((shape, n, "sagemaker"))
        if sdk:
            line += (f" {sdk['wall_s']:.2f} ({sdk['publish_s']:.2f}) | {sdk['puts']} | "
                     f"{sdk['wall_s'] / first['wall_s']:.1f}x | {sdk['wall_s'] / again['wall_s']:.1f}x |")
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
