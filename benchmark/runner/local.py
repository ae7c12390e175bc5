"""Local worker processes: every run executes in a worker, never in the process that holds the suite.

Each worker takes one task at a time (one run, or the repetitions of one configuration trained together) and writes
each run's record itself. What can go wrong in a run stays in that run:

- a method that raises, calls ``sys.exit`` or produces NaN is recorded ``failed`` by the worker (``execute``);
- a run that exceeds its time limit: its worker is killed, the run is recorded ``failed: timed out after N s``;
- a worker that dies (SIGKILL, out of memory): the runs it had not finished go back in the queue and run alone
  in a fresh worker; a run that kills a worker a second time is recorded ``failed: worker died ...``. Runs on the
  other workers go on untouched, and nothing else is charged;
- the suite itself interrupted (Ctrl-C, SIGTERM) or killed: workers ignore SIGINT, are killed by the suite on the
  way out, and die with it if it is killed (``PR_SET_PDEATHSIG`` on Linux, and a watchdog on the parent's pid).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import connection, get_context

from benchmark.engine.spec import RunSpec
from benchmark.runner.schedule import Queue, Task

RETRIES_AFTER_DEATH = 1  # a run whose worker died is tried once more, alone, before it is charged
POLL_S = 0.5


def _die_with_parent(parent: int) -> None:
    """Never outlive the suite: the kernel kills this worker when its parent dies (Linux), and a watchdog thread
    catches the rest (the parent's pid changes when it is gone)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker(conn, settings, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the suite's to handle: one line, no tracebacks
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    import torch

    from benchmark.engine.discovery import discover
    from benchmark.engine.execute import execute_task

    torch.set_num_threads(settings.threads)
    methods = discover()
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        task_id, spec_dicts = message
        conn.send(("started", task_id, None))  # the run's clock starts now, not while this worker was importing
        specs = [RunSpec.from_dict(d) for d in spec_dicts]
        for record in execute_task(specs, settings, methods):
            conn.send(("record", task_id, record))
        conn.send(("done", task_id, None))


@dataclass
class _Worker:
    process: object
    conn: object
    task: Task | None = None
    task_id: int = -1
    started: float | None = None  # when the worker began the task (None: not yet)
    reported: set[str] = field(default_factory=set)


class Pool:
    """Up to ``jobs`` worker processes running the tasks of a queue; ``on_record(spec, record_or_None, error)``
    is called for every run as it finishes."""

    def __init__(self, jobs: int, settings, on_record, timeout_s: float | None):
        self.jobs, self.settings, self.on_record, self.timeout_s = max(jobs, 1), settings, on_record, timeout_s
        self.workers: list[_Worker] = []
        self.context = get_context("spawn")
        self.deaths: dict[str, int] = {}
        self.next_id = 0

    def _start(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(child, self.settings, os.getpid()), daemon=True)
        # Born ignoring SIGINT (an ignored signal stays ignored through exec, and Python then keeps it so): a
        # terminal's Ctrl-C reaches the whole process group, and it is the suite's to handle, even while a new
        # worker is still importing.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            process.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        child.close()
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def _limit(self, task: Task) -> float | None:
        return None if self.timeout_s is None else self.timeout_s * len(task.specs)

    def run(self, queue: Queue) -> None:
        try:
            self._loop(queue)
        finally:
            self.close()

    def _loop(self, queue: Queue) -> None:
        while True:
            for task, broken in queue.blocked():
                for spec in task.specs:
                    self._finish(queue, spec, None, f"required run {', '.join(broken)} failed")
            idle = [w for w in self.workers if w.task is None]
            while queue and (idle or len(self.workers) < self.jobs):
                task = queue.pop_ready()
                if task is None:
                    break
                worker = idle.pop() if idle else self._start()
                self.next_id += 1
                worker.task, worker.task_id, worker.started, worker.reported = task, self.next_id, None, set()
                worker.conn.send((worker.task_id, [s.to_dict() for s in task.specs]))
            busy = [w for w in self.workers if w.task is not None]
            if not busy:
                if queue:  # nothing runnable and nothing running: what is left waits on runs that never finish
                    for task in list(queue.pending):
                        queue.pending.remove(task)
                        for spec in task.specs:
                            self._finish(queue, spec, None, "a required run did not finish")
                return
            waits = [w.conn for w in busy] + [w.process.sentinel for w in busy]
            deadline = min((w.started + lim for w in busy
                            if (lim := self._limit(w.task)) is not None and w.started is not None), default=None)
            timeout = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.time()))
            for ready in connection.wait(waits, timeout=timeout):
                worker = next(w for w in busy if ready in (w.conn, w.process.sentinel))
                if worker.task is not None:
                    self._service(queue, worker)
            now = time.time()
            for worker in busy:
                limit = worker.task and self._limit(worker.task)
                if worker.task is not None and limit is not None and worker.started is not None \
                        and now - worker.started > limit:
                    self._abandon(queue, worker, f"timed out after {limit:.0f} s (--run-timeout)")

    def _service(self, queue: Queue, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                kind, task_id, record = worker.conn.recv()
                if task_id != worker.task_id:
                    continue
                if kind == "started":
                    worker.started = time.time()
                elif kind == "record":
                    worker.reported.add(record["run_id"])
                    spec = next(s for s in worker.task.specs if s.run_id == record["run_id"])
                    self._finish(queue, spec, record, None)
                elif kind == "done":
                    worker.task = None
                    return
        except (EOFError, OSError):
            pass
        if not worker.process.is_alive():
            code = worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            self._abandon(queue, worker, f"worker died ({how}) while running this run", died=True)

    def _abandon(self, queue: Queue, worker: _Worker, reason: str, died: bool = False) -> None:
        """The worker's unfinished runs: retried alone (a multi-run task, or a first death), or charged."""
        task = worker.task
        worker.task = None
        self._kill(worker)
        left = [s for s in task.specs if s.run_id not in worker.reported]
        for spec in left:
            tries = self.deaths.get(spec.run_id, 0)
            if len(task.specs) > 1 or (died and tries < RETRIES_AFTER_DEATH):
                self.deaths[spec.run_id] = tries + (0 if len(task.specs) > 1 else 1)
                queue.push(Task([spec], task.expected_s / len(task.specs), task.needs, task.priority))
            else:
                retried = " (also on its retry)" if tries else ""
                self._finish(queue, spec, None, reason + retried)

    def _finish(self, queue: Queue, spec: RunSpec, record, error) -> None:
        record = self.on_record(spec, record, error)
        queue.finish(spec.run_id, record is not None and record.get("status") in ("ok", "skipped"))

    def _kill(self, worker: _Worker) -> None:
        with contextlib.suppress(Exception):
            worker.process.kill()
        worker.process.join(timeout=10)
        with contextlib.suppress(Exception):
            worker.conn.close()
        self.workers.remove(worker)

    def close(self) -> None:
        for worker in list(self.workers):
            with contextlib.suppress(Exception):
                if worker.task is None:
                    worker.conn.send(None)
        deadline = time.time() + 5
        for worker in list(self.workers):
            if worker.task is None:
                worker.process.join(timeout=max(0.0, deadline - time.time()))
            self._kill(worker)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def install_sigterm() -> None:
    """SIGTERM ends the suite like Ctrl-C: workers are stopped and the runs already stored are kept."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
