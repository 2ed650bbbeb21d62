"""What a reconcile reports while it runs, for a front end that keeps metrics.

The GitOps core stays free of any metrics library: the reconciler calls these hooks, the
operator's :mod:`stepflow_operator.metrics` turns them into Prometheus series, and
``stepflow up`` keeps the no-op default.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from stepflow.compiler.publish import PublishReport

#: The timed stages of one reconcile: ``ls-remote``, fetching the commit, the sandbox build,
#: and signing + uploading + recording the definition.
Stage = Literal["resolve", "fetch", "build", "publish"]


@dataclass
class StageRun:
    """One stage in progress; the caller sets ``ok`` when the stage fails without raising."""

    ok: bool = True


class ReconcileObserver:
    """Hooks a reconcile calls; every one does nothing here."""

    def stage_started(self, stage: Stage) -> None:
        """``stage`` began (builds in flight are counted from this)."""

    def stage_finished(self, stage: Stage, seconds: float, ok: bool) -> None:
        """``stage`` ended after ``seconds``; ``ok`` is False when it failed."""

    def published(self, report: PublishReport) -> None:
        """A bundle was published: what was uploaded and what the store already had."""

    @contextmanager
    def stage(self, stage: Stage) -> Iterator[StageRun]:
        """Time ``stage``: started, then finished with the run's ``ok`` (False on an exception)."""
        run = StageRun()
        self.stage_started(stage)
        began = time.monotonic()
        try:
            yield run
        except BaseException:
            run.ok = False
            raise
        finally:
            self.stage_finished(stage, time.monotonic() - began, run.ok)
