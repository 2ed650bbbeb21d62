"""Per-step overhead of the local backend, against the process-spawn floor and Metaflow.

Four workloads of trivial steps (each returns a small int):

* ``linear`` N = 10, 50: a chain ``s0 -> s1 -> ... -> s(N-1)``, each step reading the
  previous one's result;
* ``fanout`` N = 20, 100: a source, N branches reading it, and a join reading every branch
  (N + 2 steps).

Each is run, in the same invocation, by

* stepflow: ``stepflow run flow.py --parallelism P -o json`` against a fresh ``file://``
  store (each step a separate runtime process, the orchestrator in the CLI process);
* Metaflow's local runtime: ``python flow.py run --max-workers P`` with the equivalent
  FlowSpec (linear steps; ``foreach`` + join), from a virtualenv this script creates under
  ``.cache/bench-venv`` (Metaflow is not a stepflow dependency);
* the floor: the same number of ``python -c pass`` processes, one after the other for a
  chain, at most P at a time for a fan-out.

Per-step overhead is reported two ways: wall time divided by the number of steps, and the
*marginal* cost, the slope between the two sizes of a shape ((T(big) - T(small)) /
(steps(big) - steps(small))), which cancels fixed costs (interpreter and CLI start,
compile, publish, Metaflow's graph checks) and leaves what each additional step costs.

    .venv/bin/python bench/step_overhead.py                 # everything, 3 repeats, best kept
    .venv/bin/python bench/step_overhead.py --repeat 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
STEPFLOW = str(Path(PYTHON).parent / "stepflow")
SIZES = {"linear": (10, 50), "fanout": (20, 100)}


def steps_in(shape: str, n: int) -> int:
    return n if shape == "linear" else n + 2


# -- the workloads ------------------------------------------------------------------------


def stepflow_module(shape: str, n: int) -> str:
    head = "from stepflow import Pipeline, step\n\n"
    if shape == "linear":
        body = ["@step\ndef s0():\n    return 0\n"]
        body += [f"@step(name='s{i}')\ndef s{i}(x):\n    return x + 1\n" for i in range(1, n)]
        chain = "s0()"
        for i in range(1, n):
            chain = f"s{i}({chain})"
        return head + "\n".join(body) + f"\npipeline = Pipeline(name='linear{n}', steps=[{chain}])\n"
    return head + textwrap.dedent(f"""
        @step
        def source():
            return 1

        @step
        def join(*parts):
            return sum(parts)

        src = source()
        branches = []
        for i in range({n}):
            @step(name=f"b{{i}}")
            def branch(x, i=i):
                return x + i
            branches.append(branch(src))
        pipeline = Pipeline(name='fanout{n}', steps=[join(*branches)])
        """)


def metaflow_module(shape: str, n: int) -> str:
    head = "from metaflow import FlowSpec, step\n\n"
    if shape == "linear":
        lines = [head, f"class Linear{n}(FlowSpec):"]
        names = ["start", *[f"s{i}" for i in range(1, n - 1)], "end"]
        for i, name in enumerate(names):
            nxt = f"        self.next(self.{names[i + 1]})\n" if i + 1 < len(names) else ""
            value = "0" if i == 0 else "self.x + 1"
            lines.append(f"    @step\n    def {name}(self):\n        self.x = {value}\n{nxt}")
        lines.append(f"if __name__ == '__main__':\n    Linear{n}()\n")
        return "\n".join(lines)
    return head + textwrap.dedent(f"""
        class Fanout{n}(FlowSpec):
            @step
            def start(self):
                self.x = 1
                self.items = list(range({n}))
                self.next(self.branch, foreach="items")

            @step
            def branch(self):
                self.y = self.x + self.input
                self.next(self.join)

            @step
            def join(self, inputs):
                self.total = sum(i.y for i in inputs)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            Fanout{n}()
        """)


# -- runners ------------------------------------------------------------------------------


def run_stepflow(shape: str, n: int, parallelism: int, work: Path) -> dict:
    folder = work / f"stepflow-{shape}{n}"
    folder.mkdir()
    (folder / "flow.py").write_text(stepflow_module(shape, n))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
    config = folder / "config.yaml"
    config.write_text("# nothing configured\n")
    env.update(STEPFLOW_S3_ROOT_URI=(folder / "store").as_uri(), STEPFLOW_CONFIG=str(config),
               STEPFLOW_CACHE_DIR=str(folder / "cache"))
    start = time.perf_counter()
    proc = subprocess.run([STEPFLOW, "run", "flow.py", "--parallelism", str(parallelism), "-o", "json"],
                          cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"stepflow {shape} {n} failed:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(proc.stdout)
    from datetime import datetime

    def t(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return {"wall": wall, "execution": t(data["endTime"]) - t(data["startTime"]),
            "steps": len(data["steps"])}


def run_metaflow(shape: str, n: int, parallelism: int, work: Path, python: str) -> dict:
    folder = work / f"metaflow-{shape}{n}"
    folder.mkdir()
    (folder / "flow.py").write_text(metaflow_module(shape, n))
    env = dict(os.environ, USERNAME="bench", METAFLOW_DEFAULT_DATASTORE="local",
               METAFLOW_DEFAULT_METADATA="local", METAFLOW_HOME=str(folder / ".mfhome"))
    start = time.perf_counter()
    proc = subprocess.run([python, "flow.py", "--quiet", "--no-pylint", "run", "--max-workers", str(parallelism),
                           "--max-num-splits", str(max(n, 100))],
                          cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"metaflow {shape} {n} failed:\n{proc.stdout}\n{proc.stderr}")
    return {"wall": wall, "steps": steps_in(shape, n) if shape == "fanout" else n}


def run_floor(shape: str, n: int, parallelism: int) -> dict:
    count = steps_in(shape, n)

    def spawn(_: int = 0) -> None:
        subprocess.run([PYTHON, "-c", "pass"], check=True)

    start = time.perf_counter()
    if shape == "linear":
        for _ in range(count):
            spawn()
    else:
        spawn()  # the source
        with ThreadPoolExecutor(parallelism) as pool:
            list(pool.map(spawn, range(n)))
        spawn()  # the join
    return {"wall": time.perf_counter() - start, "steps": count}


def metaflow_python(venv: Path) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with metaflow (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "metaflow"], check=True)
    return str(python)


# -- report -------------------------------------------------------------------------------


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the fastest is kept")
    parser.add_argument("--parallelism", type=int, default=16, help="concurrent steps for every runner")
    parser.add_argument("--venv", type=Path, default=REPO / ".cache" / "bench-venv")
    parser.add_argument("--no-metaflow", action="store_true")
    parser.add_argument("--shapes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args(argv)
    mf_python = None if args.no_metaflow else metaflow_python(args.venv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="stepflow-bench-") as tmp:
        work = Path(tmp)
        for shape in args.shapes:
            for n in SIZES[shape]:
                cell: dict[str, dict] = {}
                for rep in range(args.repeat):
                    rep_dir = work / f"{shape}{n}-{rep}"
                    rep_dir.mkdir()
                    runs = {"floor": run_floor(shape, n, args.parallelism),
                            "stepflow": run_stepflow(shape, n, args.parallelism, rep_dir)}
                    if mf_python:
                        runs["metaflow"] = run_metaflow(shape, n, args.parallelism, rep_dir, mf_python)
                    for name, run in runs.items():
                        if name not in cell or run["wall"] < cell[name]["wall"]:
                            cell[name] = run
                results[f"{shape}{n}"] = {"shape": shape, "n": n, "steps": steps_in(shape, n), **cell}
                print(f"{shape:6} N={n:3}: " + ", ".join(f"{k} {v['wall']:.2f}s" for k, v in cell.items()),
                      file=sys.stderr, flush=True)
    print_table(results, args.shapes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict[str, dict], shapes: list[str]) -> None:
    runners = [r for r in ("floor", "stepflow", "metaflow") if any(r in c for c in results.values())]
    print("| shape | N | steps | " + " | ".join(f"{r} wall s (ms/step)" for r in runners)
          + " | stepflow execution s (ms/step) |")
    print("|---|---|---|" + "---|" * (len(runners) + 1))
    for cell in results.values():
        row = [cell["shape"], str(cell["n"]), str(cell["steps"])]
        for r in runners:
            row.append(f"{cell[r]['wall']:.2f} ({1000 * cell[r]['wall'] / cell['steps']:.0f})")
        ex = cell["stepflow"]["execution"]
        row.append(f"{ex:.2f} ({1000 * ex / cell['steps']:.0f})")
        print("| " + " | ".join(row) + " |")
    print()
    print("Marginal cost of one more step (slope between the two sizes), ms:")
    print("| shape | " + " | ".join(runners) + " | stepflow / floor | stepflow / metaflow |")
    print("|---|" + "---|" * (len(runners) + 2))
    for shape in shapes:
        small, big = (results[f"{shape}{n}"] for n in SIZES[shape])
        extra = big["steps"] - small["steps"]
        slope = {r: 1000 * (big[r]["wall"] - small[r]["wall"]) / extra for r in runners}
        ratios = [f"{slope['stepflow'] / slope['floor']:.1f}x"]
        ratios.append(f"{slope['stepflow'] / slope['metaflow']:.2f}x" if "metaflow" in slope else "-")
        print(f"| {shape} | " + " | ".join(f"{slope[r]:.0f}" for r in runners) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    sys.exit(main())
