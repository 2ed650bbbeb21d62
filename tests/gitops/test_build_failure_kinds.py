"""Every way a build fails, through the reconciler: a user error stalls, anything else retries.

The kind comes from the error itself (the build's exit code and ``result.json``), never from a
list of reasons: each case below is a real build in the real sandbox, and the test asserts
the kstatus conditions, that ``lastBuild.kind`` says who must act, and what the next pass
does with the same commit (a user error is not rebuilt; an infrastructure failure is).
"""

from __future__ import annotations

import pytest
from gitops_world import ready, spec_for

from stepflow.gitops import conditions as cond

HEADER = '''
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.step_outputs import get_step
from stepflow.workflow.parameters import ParameterInteger
'''

ONE_STEP = HEADER + '''
@step
def a():
    return 1
'''

#: name -> (files, spec overrides, expected reason). Every one of these is the user's to fix.
USER_ERRORS = {
    "syntax": ({"p.py": "def oops(:\n"}, {}, "SyntaxError"),
    "import-error": ({"p.py": "import module_that_does_not_exist_anywhere\n"}, {}, "ImportError"),
    "raises-on-import": ({"p.py": "raise RuntimeError('no config')\n"}, {}, "ModuleError"),
    "missing-module": ({"p.py": ONE_STEP}, {"module": "nowhere.py"}, "ModuleNotFound"),
    "no-pipeline": ({"p.py": ONE_STEP}, {}, "NoPipeline"),
    "two-pipelines": ({"p.py": ONE_STEP + 'one = Pipeline(name="one", steps=[a()])\n'
                                           'two = Pipeline(name="two", steps=[a()])\n'}, {}, "AmbiguousPipeline"),
    "not-a-pipeline": ({"p.py": ONE_STEP + 'pipeline = Pipeline(name="p", steps=[a()])\nthing = 3\n'},
                       {"pipeline": "thing"}, "NotAPipeline"),
    "invalid-name": ({"p.py": ONE_STEP + 'pipeline = Pipeline(name="bad name!", steps=[a()])\n'}, {},
                     "InvalidName"),
    "duplicate-step-names": ({"p.py": HEADER + '''
@step(name="same")
def a():
    return 1

@step(name="same")
def b(x):
    return x

pipeline = Pipeline(name="dup", steps=[b(a())])
'''}, {}, "DuplicateStepName"),
    "cycle": ({"p.py": HEADER + '''
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
'''}, {}, "DependencyCycle"),
    "unpicklable-argument": ({"p.py": HEADER + '''
import threading

@step
def use(lock):
    return 1

pipeline = Pipeline(name="unpicklable", steps=[use(threading.Lock())])
'''}, {}, "SerializationFailed"),
    "duplicate-parameter": ({"p.py": HEADER + '''
@step
def use(x):
    return x

pipeline = Pipeline(name="dupparam", parameters=[ParameterInteger(name="N"), ParameterInteger(name="N")],
                    steps=[use(ParameterInteger(name="N"))])
'''}, {}, "DuplicateParameter"),
    "undeclared-parameter": ({"p.py": HEADER + '''
@step
def use(x):
    return x

pipeline = Pipeline(name="undeclared", steps=[use(ParameterInteger(name="N"))])
'''}, {}, "UndeclaredParameter"),
    "missing-dependencies-file": ({"p.py": HEADER + '''
@step(dependencies="no-such-requirements.txt")
def a():
    return 1

pipeline = Pipeline(name="deps", steps=[a()])
'''}, {}, "FileNotFound"),
    "path-traversal": ({"p.py": ONE_STEP}, {"module": "../../etc/passwd"}, "InvalidModulePath"),
    "loops-forever": ({"p.py": "while True:\n    pass\n"}, {"build": {"timeout": "3s"}}, "BuildTimeout"),
    "allocates": ({"p.py": "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))\n"},
                  {"build": {"memoryLimit": "512Mi"}}, "BuildOutOfMemory"),
}

#: A bug in stepflow's own build code (simulated: the module breaks the bundle writer).
INTERNAL_ERROR = ONE_STEP + '''
from stepflow.compiler.bundle import Bundle

def _broken(*args, **kwargs):
    raise KeyError("simulated bug in stepflow")

Bundle.write = classmethod(_broken)
pipeline = Pipeline(name="p", steps=[a()])
'''


@pytest.mark.parametrize("case", sorted(USER_ERRORS))
async def test_a_user_error_stalls_and_the_same_commit_is_not_built_again(world, case):
    repo, reconciler, _ = world
    files, overrides, reason = USER_ERRORS[case]
    repo.commit(files)
    spec = spec_for(repo, **{"module": "p.py", **overrides})
    out = await reconciler.reconcile("p", spec, {})
    assert (ready(out.status)["status"], ready(out.status)["reason"]) == ("False", reason), ready(out.status)
    assert cond.is_true(out.status["conditions"], "Stalled")
    assert cond.get_condition(out.status["conditions"], "Reconciling") is None
    assert out.status["lastBuild"]["kind"] == "User"
    again = await reconciler.reconcile("p", spec, out.status)
    assert again.status["lastBuild"] == out.status["lastBuild"], "the same commit must not be built again"
    assert cond.is_true(again.status["conditions"], "Stalled")


async def test_an_infrastructure_failure_is_retried_with_the_same_commit(world):
    repo, reconciler, _ = world
    repo.commit({"p.py": INTERNAL_ERROR})
    spec = spec_for(repo, module="p.py")
    out = await reconciler.reconcile("p", spec, {})
    r = ready(out.status)
    assert (r["status"], r["reason"]) == ("False", "InternalError"), r
    assert "simulated bug" in r["message"]
    assert not cond.is_true(out.status["conditions"], "Stalled")
    reconciling = cond.get_condition(out.status["conditions"], "Reconciling")
    assert reconciling["status"] == "True" and reconciling["reason"] == "ProgressingWithRetry"
    assert out.status["lastBuild"]["kind"] == "Infrastructure" and out.requeue_after is not None
    again = await reconciler.reconcile("p", spec, out.status)
    assert again.status["lastBuild"]["startedAt"] >= out.status["lastBuild"]["startedAt"]
    assert again.status["lastBuild"] != out.status["lastBuild"], "an infrastructure failure must be built again"
