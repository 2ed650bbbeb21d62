"""Root conftest: loads the test-environment plugin (fixtures kube, s3, git_remote, ...).

Everything lives in tests/testenv/ (see docs/TESTING.md); keep this file small.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `from tests.testenv import ...` works however pytest is started
    sys.path.insert(0, _ROOT)

from tests.testenv.plugin import (  # noqa: E402,F401 - registers the fixtures and hooks
    git_remote,
    git_server,
    kube,
    local_cluster,
    moto,
    moto_server,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_terminal_summary,
    pytest_unconfigure,
    s3,
    s3_server,
    sagemaker_front,
)

# store, store_root, session and compile_ for tests/compiler, tests/workflow, tests/storage.
pytest_plugins = ["tests.fixtures"]
