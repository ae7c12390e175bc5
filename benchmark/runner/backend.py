"""What the runner asks of a backend: the place where tasks execute (local worker processes, a Dask cluster, this
process; tomorrow worker processes that each own an accelerator). A backend knows nothing of the queue: it runs the
tasks it is given and reports what happens to them as events; ordering, dependencies, retries, time limits and the
failure of dependants are the runner's (:mod:`benchmark.runner.runner`).

A task is one run or the repetitions of one configuration trained as one batch; whatever executes it calls
:func:`benchmark.engine.execute.execute_task`, which stores each run's record itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NamedTuple, Protocol

from benchmark.engine.spec import RunSpec

EventKind = Literal["started", "record", "done", "died", "stop"]


class Event(NamedTuple):
    """``started``: the task began executing (its time limit counts from here); ``record``: one of its runs
    finished, ``payload`` its stored record; ``done``: it ended normally; ``died``: it ended abnormally (its worker
    was killed, the cluster gave up on it), ``payload`` why, in one line; ``stop``: it hit an error that stops the
    whole suite (a full disk), ``payload`` the exception, which the runner raises. ``record`` events of a task come
    between its ``started`` and its ``done``, ``died`` or ``stop``; after those the backend says no more of it."""

    kind: EventKind
    task_id: int
    payload: Any = None


class Backend(Protocol):
    """``slots``: how many tasks it executes at once; the runner never starts more (``math.inf``: every ready task
    is handed over at once, and the backend queues them itself, by ``priority``, higher first).

    Time limits: the runner measures a task from its ``started`` event and calls :meth:`cancel` when it runs past
    its ``time_limit``. A backend that cannot tell when a task starts (Dask: a task waits on the cluster) sends no
    ``started`` and enforces ``time_limit`` itself, where the task runs, recording the runs it stops as failed."""

    slots: float

    def start(self, task_id: int, specs: list[RunSpec], time_limit: float | None, priority: float = 0.0) -> None:
        """Begin executing a task (or queue it); returns at once."""

    def wait(self, timeout: float | None) -> Iterable[Event]:
        """The events since the last call, waiting up to ``timeout`` seconds (None: until there is one) for the
        first; empty when the time is up."""

    def cancel(self, task_id: int) -> None:
        """Stop a task now (killing whatever executes it if need be); no event of it follows."""

    def close(self) -> None:
        """Stop everything and release the workers; called once, also after an interrupt."""

