"""The one queue loop: the runs to train as tasks handed to a backend, each after the runs it requires, longest
expected first (:mod:`benchmark.runner.schedule`), and what happens when a task ends badly.

What can go wrong in a run stays in that run:

- a method that raises, calls ``sys.exit`` or produces NaN: the run is stored ``failed`` where it executes
  (:func:`benchmark.engine.execute.execute`), like any other record;
- a task whose worker died (SIGKILL, out of memory; on Dask, once the cluster gave up on it): a task of several
  runs is split, each unfinished run going back in the queue alone; a single run is tried once more, alone, and
  recorded ``failed: worker died ...`` if its worker dies again. Nothing else is charged;
- a task past its time limit (``timeout_s`` times its number of runs, from its ``started`` event): cancelled (its
  worker killed) and split like a death, a single run recorded ``failed: timed out after N s``. A backend that
  sends no ``started`` enforces the limit itself (Dask, on the worker: its unfinished runs are recorded timed out;
  this process: no limit);
- a run whose required run failed is recorded failed without being started, and so are the runs waiting on it.

One claim per run (:mod:`benchmark.store.claims`): a run is claimed here before its task is handed to the backend,
and released when its record is written or it is charged. A run that another live suite holds is not trained here:
the runner waits for that suite's claim to go (polling every :data:`POLL_S`), then takes the stored record as the
run's end (``elsewhere``), or trains the run itself if none was stored. Its dependants wait with it. Past the run
time limit, or the ``stop_at`` deadline, it gives up: the run and its dependants are ``held``, left for a rerun.

A ``stop_at`` deadline (``--stop-after``): no task starts that is expected to end after it (its expected seconds,
the forecast's where the caller passes them), and none at all once it has passed; a shorter task further down the
queue may still start. The running tasks finish; the runs not started are ``left``, for the next invocation.

:func:`run_plan` is the entry point: it trains exactly the runs it is given (the caller has set the cached ones
aside with :func:`benchmark.runner.status.partition`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmark.engine import device as devices
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings, failed_record
from benchmark.engine.spec import RunSpec
from benchmark.runner.accelerator import AcceleratorBackend
from benchmark.runner.backend import Backend, Event
from benchmark.runner.dask_backend import DaskBackend
from benchmark.runner.inprocess import InProcessBackend
from benchmark.runner.local import LocalBackend
from benchmark.runner.schedule import Batching, Queue, Task, expected_seconds, history, stopping_fractions, tasks
from benchmark.runner.status import is_done
from benchmark.store.claims import Claims, Owner

POLL_S = 1.0  # how often a run held by another suite is looked at
RETRIES_AFTER_DEATH = 1  # a run whose worker died is tried once more, alone, before it is charged
BACKENDS = ("local", "dask", "inprocess")  # "local" with GPUs is the accelerator backend


@dataclass
class Outcome:
    """What :func:`run_plan` trained: every run's record, in the order the runs ended."""

    records: list[dict] = field(default_factory=list)
    left: list[RunSpec] = field(default_factory=list)  # not started: the deadline passed, or they would end after it
    elsewhere: list[dict] = field(default_factory=list)  # records of runs another suite trained meanwhile
    held: list[tuple[RunSpec, str]] = field(default_factory=list)  # (run, who): still trained by another suite

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]


def clock() -> float:
    """The time a ``stop_at`` deadline is measured in (seconds, monotonic)."""
    return time.monotonic()


@dataclass
class _Running:
    task: Task
    limit: float | None  # seconds, from its start
    started: float | None = None  # when the backend said it began (None: not yet, or never told)
    reported: set[str] = field(default_factory=set)  # its runs whose record came back


@dataclass
class _Elsewhere:
    task: Task  # one run, held by another suite
    owner: Owner
    since: float = field(default_factory=time.time)


class Runner:
    """Executes the tasks of a queue on ``backend``; ``on_record(spec, record)`` is called for every run as it
    ends, with its stored record (one the runner wrote, when the run failed outside its method's code)."""

    def __init__(self, backend: Backend, settings: Settings, *, timeout_s: float | None = None,
                 on_record: Callable[[RunSpec, dict], None] | None = None, stop_at: float | None = None,
                 done: Callable[[RunSpec], bool] | None = None):
        self.backend, self.settings, self.timeout_s = backend, settings, timeout_s
        self.stop_at = stop_at  # start no task expected to end after it; the running tasks finish
        self.left: list[RunSpec] = []
        self.on_record = on_record or (lambda spec, record: None)
        self.claims = Claims(settings.store.claims_dir)
        self.done = done or (lambda spec: False)  # stored and complete (another suite trained it meanwhile)
        self.elsewhere: dict[str, _Elsewhere] = {}  # run id -> its wait for another suite
        self.by_others: list[dict] = []  # records of runs another suite trained meanwhile
        self.held: list[tuple[RunSpec, str]] = []  # given up waiting: (run, who holds it)
        self.running: dict[int, _Running] = {}
        self.deaths: dict[str, int] = {}  # run id -> deaths of the worker while it ran alone
        self.next_id = 0

    def run(self, queue: Queue) -> None:
        try:
            self._loop(queue)
        finally:
            try:
                self.backend.close()
            finally:
                self.claims.release_all()

    def _loop(self, queue: Queue) -> None:
        while True:
            while blocked := queue.blocked():
                for task, broken in blocked:
                    self._charge(queue, task.specs, f"required run {', '.join(broken)} failed")
            stopping = self.stop_at is not None and clock() >= self.stop_at
            self._look_elsewhere(queue, stopping)
            while not stopping and len(self.running) < self.backend.slots and \
                    (task := queue.pop_ready(self._fits)) is not None:
                self._claim_and_start(queue, task)
            if not self.running and not self.elsewhere:
                # the deadline passed, or every ready task would end after it: none will fit later
                if stopping or queue.has_ready():  # left for the next invocation, which finds the finished runs stored
                    self.left = [spec for task in queue.drain() for spec in task.specs]
                    return
                self._drain_waiting(queue)
                return
            if not self.running:
                time.sleep(POLL_S)
                continue
            deadline = self._next_deadline()
            if self.elsewhere:
                deadline = POLL_S if deadline is None else min(deadline, POLL_S)
            for event in self.backend.wait(deadline):
                self._handle(queue, event)
            self._expire(queue)

    def _fits(self, task: Task) -> bool:
        """Whether ``task`` is expected to end before the ``stop_at`` deadline (always, without one)."""
        return self.stop_at is None or clock() + task.expected_s <= self.stop_at

    def _claim_and_start(self, queue: Queue, task: Task) -> None:
        """Start the runs of ``task`` this process could claim; a run that another suite holds waits for it, and
        a run found finished once claimed (another suite stored it meanwhile) is not trained again."""
        mine = []
        for spec in task.specs:
            owner = self.claims.claim(spec.run_id)
            if owner is not None:
                self.elsewhere[spec.run_id] = _Elsewhere(Task([spec], task.expected_s / len(task.specs), task.needs,
                                                              task.priority), owner)
            elif self.done(spec):
                self._by_another(queue, spec)
            else:
                mine.append(spec)
        if len(mine) == len(task.specs):
            self._start(task)
        elif mine:
            self._start(Task(mine, task.expected_s * len(mine) / len(task.specs), task.needs, task.priority))

    def _look_elsewhere(self, queue: Queue, stopping: bool) -> None:
        """The runs held by other suites: ended there (their record), free again (trained here), or given up."""
        now = time.time()
        for run_id, wait in list(self.elsewhere.items()):
            spec = wait.task.specs[0]
            owner = self.claims.owner(run_id)
            if owner is None or owner.gone():
                del self.elsewhere[run_id]
                if self.done(spec):
                    self._by_another(queue, spec)
                else:  # its suite ended without a stored record: trained here
                    queue.push(wait.task)
            elif stopping or (self.timeout_s is not None and now - wait.since > self.timeout_s):
                del self.elsewhere[run_id]
                self.held.append((spec, f"being trained by another suite ({owner.describe()})"))

    def _by_another(self, queue: Queue, spec: RunSpec) -> None:
        self.claims.release(spec.run_id)
        queue.finish(spec.run_id, True)
        record = self.settings.store.read_run(spec.run_id)
        if record is not None:
            self.by_others.append(record)

    def _drain_waiting(self, queue: Queue) -> None:
        """Nothing runnable and nothing running: the runs left wait on a run another suite still holds (left for
        a rerun), or on runs that never end (charged)."""
        blocked = {spec.run_id for spec, _ in self.held}
        for task in queue.drain():
            if task.needs & blocked:
                waits = ", ".join(sorted(task.needs & blocked))
                self.held += [(spec, f"waits on {waits}, being trained by another suite") for spec in task.specs]
                blocked.update(task.ids)
            else:
                self._charge(queue, task.specs, "a required run did not finish")

    def _start(self, task: Task) -> None:
        self.next_id += 1
        limit = None if self.timeout_s is None else self.timeout_s * len(task.specs)
        self.running[self.next_id] = _Running(task, limit)
        self.backend.start(self.next_id, task.specs, limit, task.priority)

    def _next_deadline(self) -> float | None:
        """Seconds until the first running task reaches its time limit (None: no task is being timed)."""
        deadlines = [r.started + r.limit for r in self.running.values()
                     if r.started is not None and r.limit is not None]
        return max(0.0, min(deadlines) - time.time()) if deadlines else None

    def _handle(self, queue: Queue, event: Event) -> None:
        running = self.running.get(event.task_id)
        if running is None:  # a task given up already
            return
        if event.kind == "started":
            running.started = running.started or time.time()
        elif event.kind == "record":
            spec = next(s for s in running.task.specs if s.run_id == event.payload["run_id"])
            running.reported.add(spec.run_id)
            self._finish(queue, spec, event.payload)
        elif event.kind == "done":
            del self.running[event.task_id]
            left = [s for s in running.task.specs if s.run_id not in running.reported]
            self._charge(queue, left, "its task ended without a record of it")
        elif event.kind == "stop":  # a full disk: the other tasks are stopped (close) and it is said in one line
            del self.running[event.task_id]
            raise event.payload
        elif event.kind == "died":
            del self.running[event.task_id]
            self._abandon(queue, running, event.payload, died=True)

    def _expire(self, queue: Queue) -> None:
        now = time.time()
        for task_id, running in list(self.running.items()):
            if running.started is not None and running.limit is not None and now - running.started > running.limit:
                del self.running[task_id]
                self.backend.cancel(task_id)
                self._abandon(queue, running, f"timed out after {running.limit:.0f} s (--run-timeout)", died=False)

    def _abandon(self, queue: Queue, running: _Running, reason: str, died: bool) -> None:
        """The unfinished runs of a task that died or timed out: back in the queue alone (a task of several runs,
        or a run's first death), or charged."""
        task = running.task
        for spec in (s for s in task.specs if s.run_id not in running.reported):
            tries = self.deaths.get(spec.run_id, 0)
            if len(task.specs) > 1 or (died and tries < RETRIES_AFTER_DEATH):
                self.deaths[spec.run_id] = tries + (0 if len(task.specs) > 1 else 1)
                queue.push(Task([spec], task.expected_s / len(task.specs), task.needs, task.priority))
            else:
                self._charge(queue, [spec], reason + (" (also on its retry)" if tries else ""))

    def _charge(self, queue: Queue, specs: list[RunSpec], error: str) -> None:
        for spec in specs:
            self._finish(queue, spec, failed_record(spec, self.settings, error))

    def _finish(self, queue: Queue, spec: RunSpec, record: dict) -> None:
        self.claims.release(spec.run_id)  # its record is written: another suite may look at it now
        queue.finish(spec.run_id, record.get("status") in ("ok", "skipped"))
        self.on_record(spec, record)


def plan_queue(specs: list[RunSpec], settings: Settings, methods: dict[str, MethodInfo],
               expected: dict[str, float] | None = None) -> Queue:
    """The specs as a queue of tasks: expected times from ``expected`` (run id -> seconds: the forecast's), else
    from the store's history, else FLOP estimates; repetitions batched per ``settings.batch_reps``."""
    given = expected or {}
    rest = [s for s in specs if s.run_id not in given]
    seconds = dict(given)
    if rest:
        stored = list(settings.store.iter_runs())
        seconds.update(expected_seconds(rest, history(stored), methods, settings.data_root,
                                        fractions=stopping_fractions(stored)))
    return Queue(tasks(specs, seconds, Batching(settings.batch_reps, methods, settings.data_root)))


def make_backend(name: str, settings: Settings, methods: dict[str, MethodInfo], *, jobs: int = 1,
                 client=None, gpus: tuple[int, ...] = ()) -> Backend:
    if name == "local":
        return AcceleratorBackend(jobs, settings, gpus) if gpus else LocalBackend(jobs, settings)
    if name == "dask":
        return DaskBackend(client, settings)
    if name == "inprocess":
        return InProcessBackend(settings, methods)
    raise ValueError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")


def run_plan(todo: list[RunSpec], settings: Settings, *, jobs: int = 1, backend: str | Backend = "local",
             client=None, timeout_s: float | None = None, progress=None, gpus: tuple[int, ...] | None = None,
             stop_at: float | None = None, expected: dict[str, float] | None = None) -> Outcome:
    """Train every spec of ``todo``, each after the runs it requires, longest expected first.

    ``backend``: ``local`` (``jobs`` worker processes; for CUDA runs, the accelerator backend's workers spread over
    ``gpus``, default every visible GPU), ``dask`` (``client`` from
    :func:`benchmark.runner.dask_backend.connect`), ``inprocess`` (this process, one task at a time, no time limit:
    tests, ``reproduce``), or a :class:`~benchmark.runner.backend.Backend` of the caller's. Torch threads
    per run: ``settings.threads`` on every backend, so a run gives the same numbers wherever it executes.
    ``timeout_s``: the time limit of one run. ``progress``: a tqdm-like bar, advanced as each run ends.
    ``stop_at``: a :func:`clock` time; no task starts that is expected to end after it, the running ones finish,
    and the runs not started are the outcome's ``left``. ``expected``: run id -> expected seconds (the forecast's;
    runs without one are estimated here).
    """
    outcome = Outcome()
    if not todo:
        return outcome
    methods = discover()
    queue = plan_queue(todo, settings, methods, expected)

    def on_record(spec: RunSpec, record: dict) -> None:
        outcome.records.append(record)
        if progress is not None:
            progress.update(1)
            progress.set_postfix_str(f"{spec.method}/{spec.dataset}/r{spec.rep}", refresh=False)

    if gpus is None:
        gpus = tuple(range(devices.cuda_count())) if any(s.device == "cuda" for s in todo) else ()
    chosen = make_backend(backend, settings, methods, jobs=jobs, client=client, gpus=gpus) \
        if isinstance(backend, str) else backend
    runner = Runner(chosen, settings, timeout_s=timeout_s, on_record=on_record, stop_at=stop_at,
                    done=lambda spec: is_done(spec, settings.store, methods))
    runner.run(queue)
    outcome.left, outcome.elsewhere, outcome.held = runner.left, runner.by_others, runner.held
    return outcome
