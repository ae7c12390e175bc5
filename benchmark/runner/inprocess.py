"""This process as a backend (``inprocess``): tasks execute one at a time in the caller's process, in the order
they are started. For tests, profiling and ``reproduce``, where a worker process would only add start-up time:
a run that kills its process takes the caller down with it, and no time limit can stop a run here."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from benchmark.engine.discovery import MethodInfo
from benchmark.engine.execute import Settings, execute_task
from benchmark.engine.spec import RunSpec
from benchmark.runner.backend import Event


class InProcessBackend:
    """Executes a task when the runner waits for events, yielding each run's record as it is stored. It sends no
    ``started`` event: the runner has no time limit to enforce on a run it cannot stop."""

    slots = 1

    def __init__(self, settings: Settings, methods: dict[str, MethodInfo]):
        self.settings, self.methods = settings, methods
        self.pending: deque[tuple[int, list[RunSpec]]] = deque()

    def start(self, task_id: int, specs: list[RunSpec], time_limit: float | None, priority: float = 0.0) -> None:
        self.pending.append((task_id, specs))

    def wait(self, timeout: float | None) -> Iterator[Event]:
        if not self.pending:
            return
        task_id, specs = self.pending.popleft()
        for record in execute_task(specs, self.settings, self.methods):
            yield Event("record", task_id, record)
        yield Event("done", task_id)

    def cancel(self, task_id: int) -> None:
        self.pending = deque(t for t in self.pending if t[0] != task_id)

    def close(self) -> None:
        self.pending.clear()
