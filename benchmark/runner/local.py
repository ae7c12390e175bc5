"""Local worker processes (``--backend local``): every run executes in a worker, never in the process that holds the
suite, so that a run that kills its process or hangs takes only itself down.

Each worker executes one task at a time and writes each run's record itself. A worker that dies is reported to the
runner (``died``, with its exit status); one the runner cancels (a task past its time limit) is killed. The suite
itself interrupted (Ctrl-C, SIGTERM) or killed: workers ignore SIGINT, are killed on the way out (:meth:`close`),
and die with the suite if it is killed (``PR_SET_PDEATHSIG`` on Linux, and a watchdog on the parent's pid).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing import connection, get_context

import torch

from benchmark.engine import device as devices
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, execute_task
from benchmark.engine.spec import RunSpec
from benchmark.errors import disk_full
from benchmark.runner.backend import Event


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


def _worker(conn, settings: Settings, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the suite's to handle: one line, no tracebacks
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    torch.set_num_threads(settings.threads)
    if settings.gpu is not None:  # a worker of the accelerator backend: its GPU, from its first CUDA call on
        devices.bind("cuda", settings.gpu)
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
        try:
            for record in execute_task(specs, settings, methods):
                conn.send(("record", task_id, record))
        except OSError as exc:
            if disk_full(exc) is None:
                raise
            conn.send(("stop", task_id, disk_full(exc)))  # the suite's one line, not this worker's traceback
            return
        conn.send(("done", task_id, None))


@dataclass
class _Worker:
    process: object
    conn: object
    task_id: int | None = None  # the task it is executing (None: idle)
    gpu: int | None = None  # the GPU it is bound to (the accelerator backend's workers)


class LocalBackend:
    """Up to ``jobs`` worker processes (spawned as needed, reused from task to task), each executing one task at a
    time. Time limits are the runner's: it cancels a task that runs past its limit, and the worker is killed."""

    def __init__(self, jobs: int, settings: Settings):
        self.slots = max(jobs, 1)
        self.settings = settings
        self.context = get_context("spawn")
        self.idle: list[_Worker] = []
        self.busy: dict[int, _Worker] = {}

    def _spawn(self) -> _Worker:
        return self._spawn_with(self.settings)

    def _spawn_with(self, settings: Settings) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(child, settings, os.getpid()), daemon=True)
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
        return _Worker(process, parent, gpu=settings.gpu)

    def start(self, task_id: int, specs: list[RunSpec], time_limit: float | None, priority: float = 0.0) -> None:
        worker = self.idle.pop() if self.idle else self._spawn()
        worker.task_id = task_id
        self.busy[task_id] = worker
        worker.conn.send((task_id, [s.to_dict() for s in specs]))

    def wait(self, timeout: float | None) -> list[Event]:
        by_handle = {}
        for worker in self.busy.values():
            by_handle[worker.conn] = by_handle[worker.process.sentinel] = worker
        events: list[Event] = []
        for ready in connection.wait(list(by_handle), timeout=timeout):
            worker = by_handle[ready]
            if worker.task_id is not None:  # not already serviced through its other handle
                events += self._service(worker)
        return events

    def _service(self, worker: _Worker) -> list[Event]:
        """The worker's messages so far, and its death if it died."""
        events = []
        try:
            while worker.conn.poll():
                kind, task_id, payload = worker.conn.recv()
                events.append(Event(kind, task_id, payload))
                if kind == "done":
                    del self.busy[task_id]
                    worker.task_id = None
                    self.idle.append(worker)
                    return events
        except (EOFError, OSError):
            pass
        if not worker.process.is_alive():
            code = worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            events.append(Event("died", worker.task_id, f"worker died ({how}) while running this run"))
            self._kill(self.busy.pop(worker.task_id))
        return events

    def cancel(self, task_id: int) -> None:
        worker = self.busy.pop(task_id, None)
        if worker is not None:
            self._kill(worker)

    def _kill(self, worker: _Worker) -> None:
        worker.task_id = None
        with contextlib.suppress(Exception):
            worker.process.kill()
        worker.process.join(timeout=10)
        with contextlib.suppress(Exception):
            worker.conn.close()

    def close(self) -> None:
        for worker in self.idle:
            with contextlib.suppress(Exception):
                worker.conn.send(None)
        deadline = time.time() + 5
        for worker in self.idle:
            worker.process.join(timeout=max(0.0, deadline - time.time()))
        for worker in self.idle + list(self.busy.values()):
            self._kill(worker)
        self.idle, self.busy = [], {}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def install_sigterm() -> None:
    """SIGTERM ends the suite like Ctrl-C: workers are stopped and the runs already stored are kept."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
