"""Following a SageMaker execution: one poller per execution, backed off, jittered.

SageMaker has no watch: its executions are learnt by polling DescribePipelineExecution and
ListPipelineExecutionSteps, calls an account pays for in its API rate. So every thread of a
process that follows the same execution shares one :class:`Poller`: one thread polls, the
others read what it publishes and take over if it lets go. The delay grows from ``min``
to ``max`` while nothing changes and drops back when something does; each sleep is
jittered (so executions started together do not poll together), and a throttled poll
doubles the delay instead of failing the execution.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stepflow.backends.base import OnChange, ShouldStop
from stepflow.backends.sagemaker import errors
from stepflow.engine import ExecutionState
from stepflow.errors import BackendError

#: How often ``should_stop`` is asked while a poller sleeps.
_STOP_CHECK = 0.25


@dataclass(frozen=True)
class Backoff:
    """Poll delays in seconds: ``min`` after a change, growing by ``factor`` to ``max``."""

    min: float = 2.0
    max: float = 30.0
    factor: float = 1.5

    def next(self, delay: float, changed: bool) -> float:
        return self.min if changed else min(self.max, delay * self.factor)

    @staticmethod
    def jittered(delay: float) -> float:
        """Between half and all of ``delay``: spreads pollers, never polls faster than min/2."""
        return delay * random.uniform(0.5, 1.0)


def _signature(state: ExecutionState) -> str:
    return state.to_json()


class Poller:
    """The one follower of an execution in this process (see :class:`Pollers`)."""

    def __init__(self, fetch: Callable[[], ExecutionState], backoff: Backoff) -> None:
        self._fetch = fetch
        self._backoff = backoff
        self._driving = threading.Lock()
        self._news = threading.Condition()
        self.latest: ExecutionState | None = None
        self.version = 0

    def follow(self, on_change: OnChange | None, should_stop: ShouldStop) -> ExecutionState:
        """Report each new state to ``on_change`` until the execution ends or ``should_stop()``."""
        seen = 0
        while True:
            if self._driving.acquire(blocking=False):
                try:
                    return self._drive(on_change, should_stop, seen)
                finally:
                    self._driving.release()
                    with self._news:
                        self._news.notify_all()  # a follower takes over if we left early
            with self._news:
                if self.version == seen:
                    self._news.wait(_STOP_CHECK)
                latest, version = self.latest, self.version
            if latest is not None and version != seen:
                seen = version
                if on_change is not None:
                    on_change(latest)
                if latest.terminal:
                    return latest
            if should_stop():
                if latest is not None:
                    return latest
                return self._fetch()

    def _drive(self, on_change: OnChange | None, should_stop: ShouldStop, seen: int) -> ExecutionState:
        delay = self._backoff.min
        while True:
            try:
                state = self._fetch()
            except BackendError as exc:
                if exc.reason != errors.THROTTLED:
                    raise
                delay = min(self._backoff.max, delay * 2)  # botocore retried already: slow down
                state = None
            changed = False
            if state is not None:
                previous = self.latest
                changed = previous is None or _signature(previous) != _signature(state)
                if changed:
                    with self._news:
                        self.latest = state
                        self.version += 1
                        self._news.notify_all()
                if self.version != seen:
                    seen = self.version
                    if on_change is not None:
                        on_change(state)
                if state.terminal:
                    return state
                delay = self._backoff.next(delay, changed)
            if self._sleep(self._backoff.jittered(delay), should_stop):
                if self.latest is not None:
                    return self.latest
                return self._fetch()

    @staticmethod
    def _sleep(seconds: float, should_stop: ShouldStop) -> bool:
        """Sleep, asking ``should_stop`` now and then; True when it said stop."""
        deadline = time.monotonic() + seconds
        while True:
            if should_stop():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_STOP_CHECK, left))


class Pollers:
    """``execution ARN -> Poller`` for one process; a poller is forgotten once nobody follows."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self._lock = threading.Lock()
        self._pollers: dict[str, tuple[Poller, int]] = {}

    def follow(self, arn: str, fetch: Callable[[], ExecutionState], on_change: OnChange | None,
               should_stop: ShouldStop) -> ExecutionState:
        with self._lock:
            poller, users = self._pollers.get(arn) or (Poller(fetch, self.backoff), 0)
            self._pollers[arn] = (poller, users + 1)
        try:
            return poller.follow(on_change, should_stop)
        finally:
            with self._lock:
                poller, users = self._pollers[arn]
                if users <= 1:
                    del self._pollers[arn]
                else:
                    self._pollers[arn] = (poller, users - 1)

    def active(self) -> int:
        """How many executions are being followed (tests check that threads share one)."""
        with self._lock:
            return len(self._pollers)
