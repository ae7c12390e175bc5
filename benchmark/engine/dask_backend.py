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
from typing import Any

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


def run_phase(client, specs: list, settings, execute_remote, on_done) -> None:
    """Submit every spec, wait for all, and hand each record to ``on_done`` as it arrives."""
    from distributed import as_completed

    futures = {}
    for spec in specs:
        future = client.submit(execute_remote, spec.to_dict(), settings, key=f"run-{spec.run_id}", pure=False)
        futures[future] = spec
    for future in as_completed(list(futures)):
        spec = futures[future]
        try:
            record: dict[str, Any] | None = future.result()
        except Exception as exc:  # the scheduler gave up on it (e.g. its workers kept dying)
            record = None
            error = f"{type(exc).__name__}: {exc}"
        on_done(spec, record, None if record is not None else error)
