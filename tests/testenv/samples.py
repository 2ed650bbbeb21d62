"""Pipeline sources shared by the operator tests, the GitOps core tests, the kind suite and the
operator benchmark."""

from __future__ import annotations

#: Two chained steps; format with ``factor`` (changes the definition) and ``name``.
TWO_STEPS = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="make")
def make(n: int) -> list:
    return list(range(n))


@step(name="total")
def total(values: list) -> int:
    return sum(values) * {factor}


pipeline = Pipeline(name="{name}", steps=[total(make(5))])
'''

_PROBE = '''
import glob, json, os

found = {{}}
for key in os.environ:
    if key.startswith(("AWS_", "KUBE", "STEPFLOW_S3", "STEPFLOW_INTEGRITY")):
        found["env:" + key] = "visible"
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        continue
    if any(marker in data for marker in {markers!r}):
        found[path] = "readable"
for path in {paths!r}:
    try:
        with open(path, "rb") as f:
            f.read(1)
        found[path] = "readable"
    except OSError:
        pass
raise RuntimeError("probe " + json.dumps(found, sort_keys=True))
'''


def probe_module(paths: list[str], proc_markers: list[bytes]) -> str:
    """A pipeline module whose import reports what build-time user code can see.

    The build fails with ``RuntimeError: probe {...}`` listing every visible secret-bearing
    variable, readable file among ``paths``, and other process whose environment (found by
    ``proc_markers``) it could read: ``{}`` means the sandbox held.
    """
    return _PROBE.format(paths=list(paths), markers=list(proc_markers))


#: Imports every bad module below starts with.
STEP_HEADER = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.step_outputs import get_step
'''

#: Modules that must fail to build, each with the reason the build reports. A new commit
#: fixes them, so a controller stalls on them rather than retrying.
BAD_MODULES: dict[str, tuple[str, str]] = {
    "syntax": ("def oops(:\n", "SyntaxError"),
    "import-error": ("import module_that_does_not_exist_anywhere\n", "ImportError"),
    "no-pipeline": (STEP_HEADER + "\n@step\ndef a():\n    return 1\n", "NoPipeline"),
    "two-pipelines": (STEP_HEADER + '''
@step
def a():
    return 1

one = Pipeline(name="one", steps=[a()])
two = Pipeline(name="two", steps=[a()])
''', "AmbiguousPipeline"),
    "cycle": (STEP_HEADER + '''
@step
def a():
    return 1

@step
def b(x):
    return x

first = a()
second = b(first)
get_step(first).add_depends_on([second])
pipeline = Pipeline(name="cycle", steps=[second])
''', "DependencyCycle"),
    "duplicate-names": (STEP_HEADER + '''
@step(name="same")
def a():
    return 1

@step(name="same")
def b(x):
    return x

pipeline = Pipeline(name="dup", steps=[b(a())])
''', "DuplicateStepName"),
    "unpicklable": (STEP_HEADER + '''
import threading

@step
def use(lock):
    return 1

pipeline = Pipeline(name="unpicklable", steps=[use(threading.Lock())])
''', "SerializationFailed"),
    "loops-forever": ("while True:\n    pass\n", "BuildTimeout"),
    "allocates": ("chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))\n",
                  "BuildOutOfMemory"),
}
