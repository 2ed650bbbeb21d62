"""The thread that drives one execution on its backend, shared by both front ends.

``Backend.run`` blocks for as long as the execution lasts (hours, for real pipelines), so
each execution gets its own thread, never a pool worker. The front ends differ only in what
they do with the news: the operator hops onto its event loop and patches resources,
``stepflow up`` updates its table. Leaving (the front end exits) and stopping (the user
asked) are different: leaving lets the steps run on for the next process to resume.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from stepflow.backends.base import Backend
from stepflow.engine import ExecutionState

log = logging.getLogger(__name__)


class ExecutionRunner:
    """Runs ``backend.run`` in a daemon thread; ``on_change``/``on_finish`` are called from it."""

    def __init__(self, backend: Backend, pipeline_name: str, execution_id: str, *,
                 on_change: Callable[[ExecutionState], object] | None = None,
                 on_finish: Callable[[ExecutionRunner], object] | None = None) -> None:
        self.backend = backend
        self.pipeline_name = pipeline_name
        self.execution_id = execution_id
        #: The newest state seen; after the thread ends, the last one.
        self.latest: ExecutionState | None = None
        #: Why the execution could not be run (not a step's failure: those are in the state).
        self.error: BaseException | None = None
        self._on_change = on_change
        self._on_finish = on_finish
        self._leave = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"execution-{execution_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def leave(self) -> None:
        """Stop orchestrating but let the steps run on: another process will resume."""
        self._leave.set()

    def stop_execution(self) -> None:
        """Stop the execution itself (blocking: call it off an event loop)."""
        self.backend.stop(self.pipeline_name, self.execution_id)

    def join(self, timeout: float | None = None) -> bool:
        """True when the thread has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _changed(self, state: ExecutionState) -> None:
        self.latest = state
        if self._on_change is not None:
            self._on_change(state)

    def _main(self) -> None:
        try:
            final = self.backend.run(self.pipeline_name, self.execution_id, on_change=self._changed,
                                     should_stop=self._leave.is_set)
            self._changed(final)
        except BaseException as exc:  # noqa: BLE001 - reported by the front end
            log.debug("execution %s could not run", self.execution_id, exc_info=True)
            self.error = exc
        finally:
            if self._on_finish is not None:
                self._on_finish(self)
