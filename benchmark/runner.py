"""Planning and executing runs: the grid (methods x datasets x repetitions), the paired scratch students each role
needs, cache checks, and execution in this process or in local worker processes."""

from __future__ import annotations

import itertools
import random
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmark import config as configuration
from benchmark import data as datasets
from benchmark.contract import Role, Trained
from benchmark.discovery import MethodInfo, discover
from benchmark.run import FINAL, RunContext, checkpoint
from benchmark.spec import RunSpec, config_from_dict, make_spec, pair_key
from benchmark.store import Store, atomic_torch_save, provenance

SCRATCH = "scratch_student"


@dataclass
class Settings:
    """Where and how runs execute (not part of a run's identity)."""

    out: Path
    data_root: Path | None = None
    download: bool = False
    # Torch threads per run. One by default on every backend: the notebooks' models are small, so a run gains little
    # from a second thread while a busy machine makes the threads wait for each other (a batch-8 step measured 40x
    # slower with 2 threads on a loaded 2-core machine); parallelism comes from --jobs. A fixed count also keeps the
    # same seed bit-identical whatever --jobs or backend is used.
    threads: int = 1
    progress: bool = True


# ---- planning ---------------------------------------------------------------------------------------------------

def scratch_spec_for(role: Role, methods: dict[str, MethodInfo], *, dataset: str, rep: int, base_seed: int,
                     preset: str) -> RunSpec:
    info = methods[SCRATCH]
    cfg = configuration.resolve(info.cls, preset, role.scratch)
    return make_spec(info, cfg, dataset=dataset, rep=rep, base_seed=base_seed, preset=preset)


def plan(infos: Iterable[MethodInfo], *, datasets_: list[str], reps: int, preset: str, base_seed: int,
         overrides: dict[str, dict[str, Any]] | None = None, grids: dict[str, list[dict[str, Any]]] | None = None,
         methods: dict[str, MethodInfo] | None = None) -> list[RunSpec]:
    """Specs for every (method, configuration, dataset, repetition), plus the scratch students the roles pair with.

    ``overrides`` maps a method name to its ``--set`` values; ``grids`` maps a method name to a list of parameter
    dicts (an ablation), each applied on top of the overrides.
    """
    methods = methods or discover()
    specs: dict[str, RunSpec] = {}
    for info in infos:
        points = (grids or {}).get(info.name) or [{}]
        for point, dataset, rep in itertools.product(points, datasets_, range(reps)):
            cfg = configuration.resolve(info.cls, preset, {**(overrides or {}).get(info.name, {}), **point})
            spec = make_spec(info, cfg, dataset=dataset, rep=rep, base_seed=base_seed, preset=preset)
            specs.setdefault(spec.run_id, spec)
            for name, baseline_overrides in info.cls().requires(cfg).items():
                base = methods[name]
                b = make_spec(base, configuration.resolve(base.cls, preset, baseline_overrides), dataset=dataset,
                              rep=rep, base_seed=base_seed, preset=preset)
                specs.setdefault(b.run_id, b)
            for role in info.cls().roles(cfg).values():
                if role.scratch is not None and SCRATCH in methods:
                    s = scratch_spec_for(role, methods, dataset=dataset, rep=rep, base_seed=base_seed, preset=preset)
                    specs.setdefault(s.run_id, s)
    # Cache-providing baselines (the teacher) first, so methods find their models ready.
    ordered = sorted(specs.values(), key=lambda s: not _provides_cache(methods, s.method))
    return ordered


def _provides_cache(methods: dict[str, MethodInfo], name: str) -> bool:
    info = methods.get(name)
    return bool(info and info.cls and info.cls.provides_cache)


# ---- executing one run ------------------------------------------------------------------------------------------

def execute(spec: RunSpec, settings: Settings, methods: dict[str, MethodInfo] | None = None) -> dict:
    """Run one spec (unless already done) and store its record. Never raises for a method's own failure."""
    store = Store(settings.out)
    done = store.read_run(spec.run_id)
    if done is not None and done.get("status") in ("ok", "skipped"):
        return done
    methods = methods or discover()
    info = methods.get(spec.method)
    started = time.time()
    record: dict[str, Any] = {**spec.to_dict(), "run_id": spec.run_id, "seed": spec.seed, "status": "failed",
                              "error": None, "roles": {}, "metrics": [], "timing": {}}
    torch.set_num_threads(settings.threads)
    # BLAS under numpy/scikit-learn (PCA, linear probes) gets the same budget as torch.
    with threadpool_limits(limits=settings.threads):
        try:
            if info is None or not info.ok:
                raise RuntimeError(info.error if info else f"method {spec.method!r} is no longer discoverable")
            if info.source_hash != spec.source_hash:
                raise RuntimeError(f"{spec.method}'s source changed after the run was planned; plan it again")
            cfg = config_from_dict(info, spec.config)
            method = info.cls()
            dataset = dataset_for(spec, settings)
            roles = method.roles(cfg)
            record["roles"] = {name: _role_record(r, methods, spec) for name, r in roles.items()}
            reason = method.skip(cfg, dataset)
            if reason:
                record.update(status="skipped", error=reason)
            else:
                run = context_for(spec, cfg, dataset, settings, methods)
                result = method.train(run, cfg)
                trained = result if isinstance(result, Trained) else Trained(dict(result))
                missing = set(roles) - set(trained.models)
                extra = set(trained.models) - set(roles)
                if missing or extra:
                    raise RuntimeError(f"train() returned roles {sorted(trained.models)}, declared {sorted(roles)}")
                for row in trained.rows:
                    run.log(row["role"], row["metric"], row["value"], row.get("epoch", FINAL))
                for name, model in trained.models.items():
                    if roles[name].classifier:
                        _final_metrics(run, name, model, roles[name])
                if method.provides_cache:
                    atomic_torch_save(store.cache_path(spec.method, spec.run_id), checkpoint(trained.models))
                record["metrics"] = [[r["role"], r["epoch"], r["metric"], r["value"]] for r in run.rows]
                record["timing"] = run.timer.summary()
                record["status"] = "ok"
        except Exception as exc:
            record["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            record["traceback"] = traceback.format_exc()
    record["wall_time_s"] = time.time() - started
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["provenance"] = provenance()
    store.write_run(record)
    return record


def dataset_for(spec: RunSpec, settings: Settings):
    """The dataset a spec trains on, with its data budget."""
    return datasets.load_dataset(spec.dataset, settings.data_root, settings.download,
                                 max_train=spec.data.get("max_train"), max_test=spec.data.get("max_test"))


def context_for(spec: RunSpec, cfg, dataset, settings: Settings, methods: dict[str, MethodInfo]) -> RunContext:
    """Seed everything from the spec and give the method its run context (which can run the baselines it uses)."""
    _seed_everything(spec.seed)
    return RunContext(spec, cfg, dataset, Store(settings.out),
                      execute=lambda name, ov, parent: _ensure_baseline(name, ov, parent, settings, methods))


def _role_record(role: Role, methods, spec: RunSpec) -> dict[str, Any]:
    entry = {"arch": role.arch, "view": role.view, "classifier": role.classifier, "pair_key": None}
    if spec.method == SCRATCH:
        entry["pair_key"] = pair_key(spec.config)
    elif role.scratch is not None and SCRATCH in methods:
        s = scratch_spec_for(role, methods, dataset=spec.dataset, rep=spec.rep, base_seed=spec.base_seed,
                             preset=spec.preset)
        entry["pair_key"] = pair_key(s.config)
    return entry


def _final_metrics(run: RunContext, role: str, model, declared: Role) -> None:
    for split in ("val", "test"):
        for metric, value in run.evaluate(model, declared.view, split).items():
            run.log(role, f"{split}_{metric}", value)


def _seed_everything(seed: int) -> None:
    # Deterministic kernels where torch has a choice (warn, not fail, where an op has none); recorded in provenance.
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _ensure_baseline(name: str, overrides: dict[str, Any], parent: RunSpec, settings: Settings,
                     methods: dict[str, MethodInfo]) -> Path:
    """The checkpoint of baseline ``name`` for the parent's dataset and repetition, running it if needed."""
    info = methods[name]
    cfg = configuration.resolve(info.cls, parent.preset, overrides)
    spec = make_spec(info, cfg, dataset=parent.dataset, rep=parent.rep, base_seed=parent.base_seed,
                     preset=parent.preset)
    store = Store(settings.out)
    path = store.cache_path(name, spec.run_id)
    if not path.exists():
        if store.read_run(spec.run_id) is not None:
            store.run_path(spec.run_id).unlink(missing_ok=True)  # record without its checkpoint: redo both
        torch_state = torch.random.get_rng_state()
        record = execute(spec, settings, methods)
        torch.random.set_rng_state(torch_state)
        if record["status"] != "ok":
            raise RuntimeError(f"baseline {name} failed: {record['error']}")
    return path


# ---- executing a plan -------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    records: list[dict] = field(default_factory=list)
    cached: int = 0

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _execute_in_worker(spec_dict: dict, settings: Settings) -> dict:
    return execute(RunSpec.from_dict(spec_dict), settings)


def run_plan(specs: list[RunSpec], settings: Settings, *, jobs: int = 1, progress=None, backend: str = "local",
             client=None) -> Outcome:
    """Execute every spec not already done. Cache-providing baselines run first (in parallel among themselves).

    ``backend`` is ``local`` (this process for ``jobs == 1``, else ``jobs`` worker processes) or ``dask`` (``client``
    from :func:`benchmark.dask_backend.connect`). Torch threads per run: ``settings.threads`` (1 by default) on every
    backend, so a run gives the same numbers wherever it executes.
    """
    store = Store(settings.out)
    methods = discover()
    outcome = Outcome()
    todo = []
    for spec in specs:
        if store.is_done(spec.run_id):
            outcome.cached += 1
        else:
            todo.append(spec)

    def done(spec: RunSpec, record: dict | None, error: str | None = None) -> None:
        if record is None:
            record = _failed_record(spec, settings, error or "unknown failure")
        outcome.records.append(record)
        if progress is not None:
            progress.update(1)

    phases = [[s for s in todo if _provides_cache(methods, s.method)],
              [s for s in todo if not _provides_cache(methods, s.method)]]
    for phase in filter(None, phases):
        if backend == "dask":
            from benchmark import dask_backend

            dask_backend.run_phase(client, phase, settings, _execute_in_worker, done)
        elif jobs <= 1 or len(phase) == 1:  # no worker processes (and their imports) for a single run
            for spec in phase:
                if progress is not None:
                    progress.set_postfix_str(f"{spec.method}/{spec.dataset}/r{spec.rep}", refresh=True)
                done(spec, execute(spec, settings, methods))
        else:
            _run_pool(phase, settings, jobs, done)
    return outcome


def _run_pool(phase: list[RunSpec], settings: Settings, jobs: int, done) -> None:
    """Local worker processes. If a worker dies (killed, out of memory), the pool breaks: the runs it had not
    finished are retried once in a fresh pool, then recorded as failed."""
    remaining = list(phase)
    for attempt in range(2):
        broken: list[RunSpec] = []
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=_worker_init, initargs=(settings.threads,)) as pool:
            futures = {pool.submit(_execute_in_worker, s.to_dict(), settings): s for s in remaining}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    done(spec, future.result())
                except BrokenProcessPool as exc:
                    if attempt == 0:
                        broken.append(spec)
                    else:
                        done(spec, None, f"worker died: {exc}")
        if not broken:
            return
        remaining = broken


def _failed_record(spec: RunSpec, settings: Settings, error: str) -> dict:
    """Record a run that died outside the method's own code (its worker was killed)."""
    existing = Store(settings.out).read_run(spec.run_id)
    if existing is not None and existing.get("status") in ("ok", "skipped"):
        return existing  # it finished before the worker died
    record = {**spec.to_dict(), "run_id": spec.run_id, "seed": spec.seed, "status": "failed", "error": error,
              "roles": {}, "metrics": [], "timing": {}, "provenance": provenance()}
    Store(settings.out).write_run(record)
    return record
