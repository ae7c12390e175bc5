"""Sending runs to a Dask distributed cluster (``--backend dask``).

With ``--scheduler ADDR`` the runs go to that scheduler's workers (for SLURM/PBS, start the cluster with
dask-jobqueue and pass its address, see the README); without it a local cluster of ``--jobs`` single-threaded worker
processes is started on loopback. Every worker runs :func:`benchmark.runner.execute`, which writes the run's record
atomically to the shared store, so workers never clobber each other. A worker that dies mid-run has its run
rescheduled on another worker by the scheduler (up to ``distributed.scheduler.allowed-failures`` times); a run that
still cannot finish is recorded as failed, and the suite goes on.
"""

from __future__ import annotations

import logging

from benchmark.errors import BadInput

CONNECT_TIMEOUT_S = 5


def connect(scheduler: str | None, jobs: int):
    """A ``distributed.Client``; BadInput (one line) when the scheduler cannot be reached in time."""
    try:
        from distributed import Client, LocalCluster
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


def _remote(spec_dicts: list[dict], settings, timeout_s: float | None) -> list[dict]:
    """Runs one task on a Dask worker. A run past its time limit is recorded failed and its worker process ends
    (the only way to stop a hung step); the scheduler's retry then finds the record and does not run it again."""
    import os
    import threading

    from benchmark.engine.execute import _failed_record, execute_task
    from benchmark.engine.spec import RunSpec

    specs = [RunSpec.from_dict(d) for d in spec_dicts]
    store = settings.store
    finished: list[dict] = []
    if timeout_s is not None:
        earlier = [store.read_run(s.run_id) for s in specs]
        if all(r is not None and r.get("timed_out_in") == settings.suite for r in earlier):
            return earlier

    def expire():
        for spec in specs:
            if spec.run_id not in {r["run_id"] for r in finished}:
                record = _failed_record(spec, settings, f"timed out after {timeout_s * len(specs):.0f} s "
                                                        "(--run-timeout)", timed_out=True)
                finished.append(record)
        os._exit(75)

    timer = threading.Timer(timeout_s * len(specs), expire) if timeout_s is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        from benchmark.engine.discovery import discover

        for record in execute_task(specs, settings, discover()):
            finished.append(record)
    finally:
        if timer is not None:
            timer.cancel()
    return finished


def run_queue(client, queue, settings, on_done, timeout_s: float | None) -> None:
    """Submit every task as soon as the runs it needs are done (highest priority first), and hand each record to
    ``on_done`` as it arrives."""
    from distributed import as_completed

    running = {}
    stream = as_completed([])

    def submit_ready():
        for task, broken in queue.blocked():
            for spec in task.specs:
                queue.finish(spec.run_id, False)
                on_done(spec, None, f"required run {', '.join(broken)} failed")
        while (task := queue.pop_ready()) is not None:
            future = client.submit(_remote, [s.to_dict() for s in task.specs], settings, timeout_s,
                                   key=f"runs-{task.specs[0].run_id}-{len(task.specs)}", pure=False,
                                   priority=int(task.priority))
            running[future] = task
            stream.add(future)

    submit_ready()
    while running:
        future = next(stream)
        task = running.pop(future)
        try:
            records = {r["run_id"]: r for r in future.result()}
            error = None
        except Exception as exc:  # the scheduler gave up on it (e.g. its workers kept dying)
            records, error = {}, f"worker died: {type(exc).__name__}: {exc}"
        for spec in task.specs:
            record = on_done(spec, records.get(spec.run_id), error or "no record")
            queue.finish(spec.run_id, record.get("status") in ("ok", "skipped"))
        submit_ready()
