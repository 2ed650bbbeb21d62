"""``python -m stepflow.backends.kubernetes``: the detached orchestrator of one execution
whose attempts are Jobs (its target comes in ``STEPFLOW_KUBERNETES_TARGET``)."""

from __future__ import annotations

import os
import sys

from stepflow.backends.kubernetes import TARGET_ENV, KubernetesBackend, KubernetesTarget
from stepflow.backends.local.detached import main

if __name__ == "__main__":
    target = KubernetesTarget.from_json(os.environ[TARGET_ENV])
    sys.exit(main("python -m stepflow.backends.kubernetes",
                  lambda store, run_dir, key: KubernetesBackend(store, target, run_dir=run_dir, integrity_key=key)))
