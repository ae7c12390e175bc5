"""Sending runs to a Dask distributed cluster (``--backend dask``).

With ``--scheduler ADDR`` the runs go to that scheduler's workers (for SLURM/PBS, start the cluster with
dask-jobqueue and pass its address, see the README); without it a local cluster of ``--jobs`` single-threaded worker
processes is started on loopback. Every ready task is submitted at once, with its priority, and the scheduler
queues them. A worker executes a task with :func:`benchmark.engine.execute.execute_task`, which writes each run's
record atomically to the shared store, so workers never clobber each other. A worker that dies mid-task has its task
rescheduled on another worker by the scheduler (up to ``distributed.scheduler.allowed-failures`` times); a task the
scheduler gives up on is reported to the runner as died. A task's time limit is enforced on the worker (the runner
cannot tell when a task leaves the cluster's queue).

Workers with GPUs (``--device cuda``) work as the accelerator backend's do: a CUDA task trains on its worker's GPU,
the worker keeps its datasets there between tasks, and a configuration's repetitions train as one packed model. A
worker's GPU is its first visible one: start one worker per GPU with ``CUDA_VISIBLE_DEVICES`` set (dask-cuda's
``dask cuda worker`` does this), or several per GPU. On the local cluster (no ``--scheduler``) every worker sees
every GPU, and worker i takes GPU i mod their number.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading

from benchmark.engine import device as devices
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, execute_task, failed_record
from benchmark.engine.spec import RunSpec
from benchmark.errors import BadInput, disk_full, one_line
from benchmark.runner.backend import Event
from benchmark.runner.status import is_done

CONNECT_TIMEOUT_S = 5


def connect(scheduler: str | None, jobs: int):
    """A ``distributed.Client``; BadInput (one line) when the scheduler cannot be reached in time."""
    try:
        from distributed import Client, LocalCluster  # optional: only --backend dask needs it
    except ImportError:
        raise BadInput("--backend dask needs dask.distributed: pip install -e '.[dask]'") from None
    logging.getLogger("distributed").setLevel(logging.ERROR)  # shutdown chatter is not the user's concern
    if scheduler:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise BadInput(f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S}s "
                           f"({type(exc).__name__}); start one with `dask scheduler` or drop --scheduler") from None
    cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    client._benchmark_owns_cluster = cluster  # closed with the client
    return client


def close(client) -> None:
    cluster = getattr(client, "_benchmark_owns_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def _ended_before(spec: RunSpec, settings: Settings, methods) -> dict | None:
    """The record of a run an earlier try of this task ended (the scheduler runs a task again when its worker
    died): finished, or timed out in this suite (never tried again within it)."""
    store = settings.store
    record = store.read_run(spec.run_id)
    if record is not None and (record.get("timed_out_in") == settings.suite or is_done(spec, store, methods)):
        return record
    return None


def _remote(spec_dicts: list[dict], settings: Settings, time_limit: float | None) -> list[dict]:
    """Runs one task on a Dask worker. A task past its time limit has its unfinished runs recorded failed and its
    worker process ended (the only way to stop a hung step); the scheduler's retry then finds those records and
    does not run them again."""
    methods = discover()
    specs = [RunSpec.from_dict(d) for d in spec_dicts]
    if settings.gpu is None and any(s.device == "cuda" for s in specs):
        settings = dataclasses.replace(settings, gpu=_worker_gpu())
    finished = [r for s in specs if (r := _ended_before(s, settings, methods)) is not None]
    todo = [s for s in specs if s.run_id not in {r["run_id"] for r in finished}]

    def expire():
        for spec in todo:
            if spec.run_id not in {r["run_id"] for r in finished}:
                finished.append(failed_record(spec, settings, f"timed out after {time_limit:.0f} s (--run-timeout)",
                                              timed_out=True))
        os._exit(75)

    timer = threading.Timer(time_limit, expire) if time_limit is not None and todo else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        for record in execute_task(todo, settings, methods):
            finished.append(record)
    finally:
        if timer is not None:
            timer.cancel()
    return finished


def _worker_gpu() -> int | None:
    """This Dask worker's GPU: worker i of the local cluster (named 0, 1, ...) takes GPU i mod their number; any
    other worker its first visible one (None)."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return None
    count = devices.cuda_count()
    return name % count if isinstance(name, int) and count else None


class SchedulerLost(ConnectionError):
    """The scheduler went away mid-suite: one line (an OSError, so the command line says it and exits 2), not the
    traceback of every cancelled future."""


class DaskBackend:
    """Tasks as futures of ``client``; its scheduler queues them (``slots`` unlimited) by priority."""

    slots = math.inf

    def __init__(self, client, settings: Settings):
        self.client, self.settings = client, settings
        self.futures: dict[object, int] = {}  # future -> task id

    def start(self, task_id: int, specs: list[RunSpec], time_limit: float | None, priority: float = 0.0) -> None:
        future = self.client.submit(_remote, [s.to_dict() for s in specs], self.settings, time_limit,
                                    key=f"runs-{specs[0].run_id}-{len(specs)}-{task_id}", pure=False,
                                    priority=int(priority))
        self.futures[future] = task_id

    def wait(self, timeout: float | None) -> list[Event]:
        from distributed import wait  # optional dependency, present once a client exists

        try:
            finished = wait(list(self.futures), timeout=timeout, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return []
        except Exception as exc:  # noqa: BLE001 - the scheduler is gone (every future cancelled) or unreachable
            raise SchedulerLost(f"the Dask scheduler was lost while runs were queued ({one_line(exc)[:200]}): "
                                "start it again and rerun the same command to go on") from None
        events = []
        for future in finished:
            task_id = self.futures.pop(future)
            try:
                records = future.result()
            except Exception as exc:  # the scheduler gave up on it (e.g. its workers kept dying)
                if disk_full(exc) is not None:
                    raise disk_full(exc) from None
                events.append(Event("died", task_id, f"worker died: {type(exc).__name__}: {exc}"))
                continue
            events += [Event("record", task_id, r) for r in records] + [Event("done", task_id)]
        return events

    def cancel(self, task_id: int) -> None:
        for future, owner in list(self.futures.items()):
            if owner == task_id:
                del self.futures[future]
                future.cancel()

    def close(self) -> None:
        if self.futures:
            self.client.cancel(list(self.futures))
        self.futures = {}
