"""Every way a build fails, through the reconciler: a user error stalls, anything else retries.

The kind comes from the error itself (the build's exit code and ``result.json``), never from a
list of reasons: each case below is a real build in the real sandbox, and the test asserts
the kstatus conditions, that ``lastBuild.kind`` says who must act, and what the next pass
does with the same commit (a user error is not rebuilt; an infrastructure failure is).
"""

from __future__ import annotations

import pytest
from gitops_world import ready, spec_for
from tests.testenv.samples import BAD_MODULES, STEP_HEADER

from stepflow.gitops import conditions as cond

HEADER = STEP_HEADER + "from stepflow.workflow.parameters import ParameterInteger\n"

ONE_STEP = HEADER + '''
@step
def a():
    return 1
'''

#: Small limits, so the runaway modules hit them fast.
_LIMITS = {"loops-forever": {"build": {"timeout": "3s"}}, "allocates": {"build": {"memoryLimit": "512Mi"}}}

#: name -> (files, spec overrides, expected reason). Every one of these is the user's to fix:
#: the shared bad modules (tests/testenv/samples.py) plus the compile errors only a build shows.
USER_ERRORS = {
    **{name: ({"p.py": text}, _LIMITS.get(name, {}), reason) for name, (text, reason) in BAD_MODULES.items()},
    "raises-on-import": ({"p.py": "raise RuntimeError('no config')\n"}, {}, "ModuleError"),
    "missing-module": ({"p.py": ONE_STEP}, {"module": "nowhere.py"}, "ModuleNotFound"),
    "not-a-pipeline": ({"p.py": ONE_STEP + 'pipeline = Pipeline(name="p", steps=[a()])\nthing = 3\n'},
                       {"pipeline": "thing"}, "NotAPipeline"),
    "invalid-name": ({"p.py": ONE_STEP + 'pipeline = Pipeline(name="bad name!", steps=[a()])\n'}, {},
                     "InvalidName"),
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
