"""Git submodules (issue 15, point 8): checked out recursively at the commits their parent
records, with the parent's credentials on the parent's host, against the real git server."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitops_world import ready
from tests.testenv.git import GitRemote, run_git

from stepflow.gitops.gitauth import GitCredentials
from stepflow.gitops.source import GitSource, Ref, SourceError

PASSWORD = "subm0dule-pa55"

FLOW = '''
from helpers.maths import FACTOR, STEP_NAME
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name=STEP_NAME)
def scaled(n: int) -> int:
    return n * FACTOR


pipeline = Pipeline(name="flow", steps=[scaled(3)])
'''


def _with_submodule(app: GitRemote, path: str, url: str, commit: str) -> str:
    """Commit a gitlink at ``path`` (and its .gitmodules entry) on app's main; return the sha."""
    app.commit({".gitmodules": f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url}\n'},
               "declare the submodule")
    run_git("update-index", "--add", "--cacheinfo", f"160000,{commit},{path}", cwd=app.work)
    run_git("commit", "--quiet", "-m", f"submodule {path}", cwd=app.work)
    run_git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=app.work)
    return run_git("rev-parse", "HEAD", cwd=app.work)


@pytest.fixture
def source(tmp_path: Path) -> GitSource:
    return GitSource(tmp_path / "cache")


def test_a_submodule_on_the_same_host_is_checked_out_with_the_parents_credentials(source, git_server, git_remote):
    lib = GitRemote(git_server, f"{git_remote.name}-lib")
    nested = GitRemote(git_server, f"{git_remote.name}-nested")
    deep = nested.commit({"deep.txt": "deep\n"})
    lib.http_url_with_auth("ci", PASSWORD)
    nested.http_url_with_auth("ci", PASSWORD)
    lib.commit({"maths.py": "FACTOR = 7\nSTEP_NAME = 'from-submodule'\n"}, "lib")
    lib_sha = _with_submodule(lib, "vendor/nested", f"../{nested.name}.git", deep)
    url = git_remote.http_url_with_auth("ci", PASSWORD)
    commit = _with_submodule(git_remote, "helpers", f"../{lib.name}.git", lib_sha)
    credentials = GitCredentials(username="ci", password=PASSWORD)
    with source.fetch(url, Ref(branch="main"), commit, credentials) as checkout:
        assert (checkout.path / "helpers" / "maths.py").read_text().startswith("FACTOR = 7")
        assert (checkout.path / "helpers" / "vendor" / "nested" / "deep.txt").read_text() == "deep\n"
        assert not (checkout.path / "helpers" / ".git").exists()


def test_a_submodule_that_cannot_be_fetched_is_named_with_its_url(source, git_remote):
    commit = _with_submodule(git_remote, "helpers", "../does-not-exist.git", "1" * 40)
    with pytest.raises(SourceError) as failure:
        source.fetch(git_remote.url, Ref(branch="main"), commit)
    message = str(failure.value)
    assert "submodule 'helpers'" in message, message
    assert "/anon/does-not-exist.git" in message, message
    assert not any(source.cache_dir.joinpath("checkouts").iterdir()), "no half checkout is left behind"


def test_a_remote_repository_cannot_point_a_submodule_at_the_operators_disk(source, git_remote, tmp_path):
    local = GitRemote(git_remote.server, f"{git_remote.name}-local")
    sha = local.commit({"secret.txt": "operator files\n"})
    commit = _with_submodule(git_remote, "helpers", local.file_url, sha)
    with pytest.raises(SourceError) as failure:
        source.fetch(git_remote.url, Ref(branch="main"), commit)
    assert failure.value.reason == "InvalidSourceURL" and "submodule 'helpers'" in str(failure.value)


async def test_a_pipeline_module_imports_from_a_submodule(world, git_server, git_remote):
    _, reconciler, _ = world
    lib = GitRemote(git_server, f"{git_remote.name}-lib")
    lib_sha = lib.commit({"maths.py": "FACTOR = 7\nSTEP_NAME = 'from-submodule'\n"}, "lib")
    git_remote.commit({"pipelines/flow.py": FLOW}, "the pipeline")
    _with_submodule(git_remote, "helpers", lib.url, lib_sha)
    spec = {"source": {"url": git_remote.url, "ref": {"branch": "main"}, "interval": "1m"},
            "module": "pipelines/flow.py"}
    out = await reconciler.reconcile("flow", spec, {})
    assert ready(out.status)["status"] == "True", ready(out.status)
    assert out.status["definition"]["steps"] == 1
    uri = out.status["definition"]["uri"]
    assert "from-submodule" in Path(uri.removeprefix("file://")).read_text(), "the step came from the submodule"
