"""Running a suite command: plan its grid, say what it will do, train what is not stored yet, add repetitions where
``--until-ci`` asks for them, publish the tables, figures and report, and say how it went.

Which planned runs are cached is decided once per run (:func:`benchmark.runner.status.partition`); the runner
trains exactly the others. The exit status is 0 when everything planned is stored, or when ``--stop-after`` left
runs unstarted and nothing failed; 1 when a run failed, a method could not be loaded or a dataset could not be read
(all listed at the end).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from benchmark.engine.discovery import MethodInfo
from benchmark.engine.execute import Settings
from benchmark.engine.plan import order
from benchmark.engine.spec import RunSpec
from benchmark.errors import BadInput, NothingPublished
from benchmark.reporting import precision
from benchmark.reporting.publish import publish
from benchmark.runner import dask_backend, status
from benchmark.runner import runner as queue_loop
from benchmark.runner.runner import run_plan
from benchmark.store import Store, committed_files
from benchmark.suite.forecast import forecast
from benchmark.suite.grid import Grid
from benchmark.suite.request import GPU_BATCH_REPS


def warn(line: str) -> None:
    print(f"benchmark: {line}", file=sys.stderr)


@dataclass
class Tally:
    """What the suite's rounds did."""

    planned: int = 0
    cached: int = 0
    records: list[dict] = field(default_factory=list)
    unpublished: str = ""  # why a part of the outputs could not be written
    left: list[RunSpec] = field(default_factory=list)  # not started: --stop-after's time was up, or would be
    stop_at: float | None = None  # the runner's clock time after which no run may end (--stop-after)
    expected: dict[str, float] = field(default_factory=dict)  # run id -> the forecast's expected seconds
    elsewhere: int = 0  # runs another suite on the same store trained meanwhile (not trained here)
    held: list[tuple[RunSpec, str]] = field(default_factory=list)  # still being trained by another suite

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]


def run_suite(grid: Grid, store: Store, broken: list[MethodInfo] = (), published_with: dict | None = None) -> int:
    """Plan, train and publish ``grid`` into ``store``; the exit status. ``published_with``: the methods'
    declarations the tables and report name (``publish``'s keyword arguments)."""
    request = grid.request
    stop_at = None if request.stop_after is None else queue_loop.clock() + request.stop_after
    specs = grid.specs(request.seeds)  # every value is validated here, before anything is written
    if store.root.exists() and not store.root.is_dir():
        raise BadInput(f"the results folder {store.root} is a file: pass --out a folder")
    if request.dry_run:
        return _dry_run(specs, Store(store.root, read_only=True), grid)  # a dry run writes and moves nothing
    cached, todo = status.partition(specs, store, grid.methods, warn)
    client = _connect(request, todo)  # an unreachable scheduler: one line before --out is created
    try:
        store.open()  # an unwritable --out: one line before anything trains
        expected = _forecast(cached, todo, store, grid) if todo else None
        if expected is not None:
            print("\n".join(expected.lines()))
        _say_reference(cached, store)
        settings = Settings(store=store, data_root=request.data_root, download=request.download,
                            threads=request.threads, suite=uuid.uuid4().hex, batch_reps=_batch_reps(request))
        tally = Tally(planned=len(specs), cached=len(cached), stop_at=stop_at,
                      expected=dict(expected.seconds) if expected is not None else {})
        began = time.monotonic()
        _train(request, todo, settings, client, tally)
        if expected is not None:
            print(expected.versus(time.monotonic() - began))
        if request.until_ci is not None and not tally.left:
            _until_ci(grid, store, settings, client, tally)
    finally:
        if client is not None:
            dask_backend.close(client)
    if request.report:
        try:
            published = publish(store, **(published_with or {}))
            for line in published.warnings:
                warn(f"warning: {line}")
        except NothingPublished as exc:  # the tables and report are written; the figures are not
            tally.unpublished = str(exc)
    return _summary(tally, grid, store, broken)


def _forecast(cached, todo, store: Store, grid: Grid):
    request = grid.request
    return forecast(cached, todo, store.iter_runs(), grid.methods, jobs=request.jobs, batch_reps=_batch_reps(request),
                    data_root=request.data_root, device=request.device, probe=None if request.probe else False)


def _dry_run(specs: list[RunSpec], store: Store, grid: Grid) -> int:
    cached, todo = status.partition(specs, store, grid.methods, warn)
    listed = {s.run_id for s in cached}
    for s in specs:
        state = "cached" if s.run_id in listed else "to run"
        print(f"{state:7s} {s.run_id} {s.method:18s} {s.dataset:14s} rep={s.rep} {s.variant}")
    print("\n".join(_forecast(cached, todo, store, grid).lines()))
    return 0


def _say_reference(cached: list[RunSpec], store: Store) -> None:
    """How many cached runs are the committed reference results, and how to train them anew."""
    committed = committed_files(store.runs_dir)
    reference = sum(store.run_path(s.run_id).name in committed for s in cached)
    if reference:
        warn(f"{reference} of the {len(cached)} cached runs are the committed reference results in "
             f"{store.runs_dir}: to train them anew, pass --out DIR (a new folder)")


def _batch_reps(request) -> int:
    if not request.batch_reps:
        return 1
    return GPU_BATCH_REPS if request.device == "cuda" else Settings.batch_reps


def _connect(request, todo: list[RunSpec]):
    if request.backend != "dask" or (not todo and request.until_ci is None):
        return None
    return dask_backend.connect(request.scheduler, request.jobs)  # unreachable: BadInput before anything trains


def _train(request, todo: list[RunSpec], settings: Settings, client, tally: Tally) -> None:
    """Train ``todo``, adding its records (and the runs --stop-after left unstarted) to ``tally``."""
    if not todo:
        return
    bar = None
    if request.progress:
        bar = tqdm(total=len(todo), desc="runs", unit="run", file=sys.stderr)
    try:
        outcome = run_plan(todo, settings, jobs=request.jobs, progress=bar, backend=request.backend, client=client,
                           timeout_s=request.timeout_s, gpus=request.gpus, stop_at=tally.stop_at,
                           expected=tally.expected)
    finally:
        if bar is not None:
            bar.close()
    tally.records += outcome.records
    tally.left += outcome.left
    tally.elsewhere += len(outcome.elsewhere)
    tally.held += outcome.held


def _until_ci(grid: Grid, store: Store, settings: Settings, client, tally: Tally) -> None:
    """Rounds of more repetitions for the comparisons still wider than ±W pp (:mod:`benchmark.reporting.precision`),
    each round planned per configuration and dataset, until every comparison is narrow enough or at the cap."""
    request, tried = grid.request, set()
    width, cap = request.until_ci, request.most_seeds
    while True:
        want = precision.next_reps(store.iter_runs(), width, cap)
        specs: dict[str, RunSpec] = {}
        for info in grid.infos:
            for point in (grid.points or {}).get(info.name) or [{}]:
                points = {info.name: [point]}
                for spec in (s for s in grid.specs(1, infos=[info], points=points) if s.method == info.name):
                    n = want.get(precision.Cell(info.name, spec.variant, spec.dataset, spec.preset), 0)
                    if n:
                        more = grid.specs(n, infos=[info], points=points)
                        specs.update((s.run_id, s) for s in more if s.dataset == spec.dataset)
        cached, todo = status.partition(order(list(specs.values())), store, grid.methods, warn)
        if not todo or tried.issuperset(s.run_id for s in todo):  # nothing new, or only runs that failed already
            break
        tried.update(s.run_id for s in todo)
        tally.planned += len(todo)
        warn(f"until-ci: {len(want)} configurations wider than ±{width:g} pp; {len(todo)} more runs")
        _train(request, todo, settings, client, tally)
        if tally.left:  # --stop-after: the next invocation goes on from the stored runs
            return
    for cell in precision.open_at_max(store.iter_runs(), width, cap):
        warn(f"until-ci: {cell.method} {cell.variant} on {cell.dataset} is still wider than ±{width:g} pp "
             f"at {cap} repetitions")


def _per_method(specs: list[RunSpec]) -> str:
    """How many of ``specs`` each method has, as "2 dkd, 1 teacher"."""
    return ", ".join(f"{n} {k}" for k, n in sorted(Counter(s.method for s in specs).items()))


def _summary(tally: Tally, grid: Grid, store: Store, broken) -> int:
    trained = sum(r["status"] == "ok" for r in tally.records)
    skipped = sum(r["status"] == "skipped" for r in tally.records)
    if tally.cached == tally.planned:
        print(f"all {tally.planned} runs were cached; nothing trained")
    else:
        others = f", {tally.elsewhere} trained by another suite meanwhile" if tally.elsewhere else ""
        print(f"{tally.planned} runs: {trained} trained, {tally.cached} cached, {skipped} skipped, "
              f"{len(tally.failed)} failed{others}")
    if grid.request.report:
        print(f"report: {store.report_path}")
    else:
        print(f"runs stored in {store.root}; tables, figures and report not written (--no-report): "
              f"`python -m benchmark report --out {store.root}` writes them")
    if tally.left:
        print(f"stopped by --stop-after: {len(tally.left)} planned runs not started ({_per_method(tally.left)}): "
              "the time was up or they were expected to end after it"
              + ("; the tables and report are written from the runs stored so far" if grid.request.report else "")
              + "; run the same command again to resume from them")
        window = grid.request.stop_after
        longer = [s for s in tally.left if tally.expected.get(s.run_id, 0.0) > window]
        if longer:
            print(f"{len(longer)} of them ({_per_method(longer)}) are expected to take longer than --stop-after itself "
                  f"({window / 60:.0f} min): give a longer --stop-after, or none, to train them")
    if tally.held:
        print(f"{len(tally.held)} planned runs are being trained by another suite on {store.root} and were not "
              "waited for to the end; run the same command again once it is done to go on from them")
        for spec, who in tally.held:
            warn(f"{spec.method} {spec.dataset} rep={spec.rep} ({spec.run_id}): {who}")
    for r in tally.records:
        if r.get("replaced"):
            warn(f"{r['method']} {r['dataset']} rep={r['rep']} ({r['run_id']}): {r['replaced']}")
    unreadable = grid.datasets.unreadable
    if not (tally.failed or broken or unreadable or tally.unpublished):
        return 0
    print("failures:")
    if tally.unpublished:
        print(f"  outputs: {tally.unpublished}")
    for r in tally.failed:
        print(f"  {r['method']} {r['dataset']} rep={r['rep']} {r['variant']} ({r['run_id']}): {r['error']}")
    for info in broken:
        print(f"  {info.name}: cannot be loaded: {info.error}")
    for name, why in unreadable.items():
        print(f"  dataset {name}: cannot be read: {why}")
    return 1
