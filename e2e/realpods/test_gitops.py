"""The kind suite's GitOps scenarios (e2e/test_kind_gitops.py), unchanged, on real pods here:
git push → ``kubectl get pipelines`` Ready on the new revision and the execution's steps
Succeeded; a change, a no-op and a broken commit (Ready=False with file:line)."""

from e2e.test_kind_gitops import (  # noqa: F401 - collected here with this directory's fixtures
    test_change_noop_and_broken_commits,
    test_push_builds_runs_and_shows_in_kubectl,
)
