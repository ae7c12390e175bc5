"""Executing runs in this process: one spec (:func:`execute`), or one task of the runner (:func:`execute_task`: one
run, or the repetitions of one configuration trained as one batch), each run's record stored as it finishes.

Which runs execute, when and where (worker processes, Dask, this process) is the runner's business
(:mod:`benchmark.runner`); this module is on the training path (its source is part of every run's id), so it holds
nothing else."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import random
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmark.contract import Role, Trained
from benchmark.data import load_dataset
from benchmark.data.splits import omitted_class
from benchmark.engine import device as devices
from benchmark.engine.code import code_hash, run_code
from benchmark.engine.context import FINAL, RunContext, checkpoint
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.fit import NotBatchable, Rendezvous
from benchmark.engine.plan import SCRATCH, SMOOTHING, partner_config, scratch_config, smoothed
from benchmark.engine.spec import RunSpec, config_from_dict, config_to_dict, pair_key
from benchmark.errors import disk_full
from benchmark.omitted import omitted_metrics
from benchmark.store import Store, UnstorableRecord, atomic_torch_save, provenance
from benchmark.store.provenance import describe_cpu, same_cpu


@dataclass
class Settings:
    """Where and how runs execute (not part of a run's identity). ``store``: where records and checkpoints go,
    made once by the caller (``Store(args.out)``) and handed down."""

    store: Store
    data_root: Path | None = None
    download: bool = False
    # Torch threads per run. One by default on every backend: the notebooks' models are small, so a run gains little
    # from a second thread while a busy machine makes the threads wait for each other (a batch-8 step measured 40x
    # slower with 2 threads on a loaded 2-core machine); parallelism comes from --jobs. A fixed count also keeps the
    # same seed bit-identical whatever --jobs or backend is used.
    threads: int = 1
    # Repetitions of one configuration trained as one batch where that is faster (small models); 1: never.
    batch_reps: int = 5
    suite: str = ""  # identifies one invocation of the command line (a timed-out run is not retried within it)
    # The GPU that trains a CUDA run here (None: the process's current one); each worker of the accelerator
    # backend has its own. Any GPU of one model gives the same numbers, so it is not part of a run's identity.
    gpu: int | None = None


def dataset_for(spec: RunSpec, settings: Settings):
    """The dataset a spec trains on: its budget and validation split."""
    return dataset_budget(spec, settings.data_root, settings.download)


def dataset_budget(spec: RunSpec, data_root=None, download: bool = False):
    return load_dataset(spec.dataset, data_root, download, max_train=spec.data.get("max_train"),
                        max_test=spec.data.get("max_test"), validation=spec.data.get("validation", "stratified"),
                        transfer=spec.data.get("transfer", "all"))


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def tune_process() -> None:
    """Speed settings that change no result. glibc returns large freed blocks to the kernel (mmap above 128 KiB,
    trimming above 128 KiB), so every training step's activations page-fault and are zeroed by the kernel again;
    keeping up to 32 MiB blocks and 1 GiB of free heap made CNN steps 1.2-1.4x faster here. With deterministic
    algorithms on, torch also fills every new tensor with NaN first (``fill_uninitialized_memory``), a debugging aid
    that changes no computed value: off."""
    torch.utils.deterministic.fill_uninitialized_memory = False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(32 * 1024 * 1024))
        libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(1 << 30))


def seed_everything(seed: int, device: str = "cpu", precision: str = "fp32") -> None:
    # Deterministic kernels where torch has a choice (warn, not fail, where an op has none); recorded in provenance.
    devices.configure(device, precision)
    tune_process()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def prepare(spec: RunSpec, settings: Settings, methods: dict[str, MethodInfo]):
    """(method, cfg, dataset, roles, run context) for a spec, after checking that its code is what was planned."""
    info = methods.get(spec.method)
    if info is None or not info.ok:
        raise RuntimeError(info.error if info else f"method {spec.method!r} is no longer discoverable")
    cfg = config_from_dict(info, spec.config)
    method = info.cls()
    dataset = dataset_for(spec, settings)
    roles = method.roles(cfg, dataset)
    now = code_hash(run_code(info, {r.arch for r in roles.values()}, spec.dataset))
    if now != spec.source_hash:
        raise RuntimeError(f"the code {spec.method} executes changed after the run was planned; plan it again")
    on = devices.bind(spec.device, settings.gpu)
    seed_everything(spec.seed, spec.device, spec.precision)
    return method, cfg, dataset, roles, RunContext(spec, cfg, dataset, settings.store, roles, device=on)


def execute(spec: RunSpec, settings: Settings, methods: dict[str, MethodInfo] | None = None) -> dict:
    """Run one spec and store its record. Never raises for a method's own failure."""
    store = settings.store
    methods = methods or discover()
    started = time.time()
    record = _new_record(spec)
    torch.set_num_threads(settings.threads)
    # BLAS under numpy/scikit-learn (PCA, linear probes) gets the same budget as torch.
    with threadpool_limits(limits=settings.threads):
        try:
            _run(spec, settings, methods, record)
        except (Exception, SystemExit) as exc:  # sys.exit() inside a method ends that run, not the suite
            if disk_full(exc) is not None:  # not the run's fault: every later write would fail too; the suite stops
                raise disk_full(exc) from None
            record["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if isinstance(exc, SystemExit):
                record["error"] = f"the method called sys.exit({exc.code!r})"
            record["traceback"] = traceback.format_exc()
    return _store(record, store, time.time() - started)


def _new_record(spec: RunSpec) -> dict[str, Any]:
    return {**spec.to_dict(), "run_id": spec.run_id, "seed": spec.seed, "status": "failed", "error": None,
            "roles": {}, "metrics": [], "timing": {}}


def _store(record: dict, store: Store, wall_time_s: float) -> dict:
    record["wall_time_s"] = wall_time_s
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["provenance"] = {**provenance(), **devices.describe(record.get("device", "cpu"))}
    n_test = record.pop(N_TEST, 0)
    earlier = store.read_run(record["run_id"]) if record["status"] == "ok" else None
    if earlier is not None and earlier["status"] == "ok":  # trained again because its checkpoint was missing
        differ = sum(a != b for a, b in zip(earlier["metrics"], record["metrics"], strict=False)) + \
            abs(len(earlier["metrics"]) - len(record["metrics"]))
        if not differ:
            return earlier  # the same numbers: the stored record (a committed reference, say) stays as it was
        record["replaced"] = (f"trained again for its missing checkpoint, {differ} of its "
                              f"{len(earlier['metrics'])} metrics came out different from its stored record (kept in "
                              f"{store.SET_ASIDE}/; {why_different(earlier, record, n_test)}): runs that loaded the "
                              "earlier model keep numbers made with it (train them anew with --out DIR)")
        store.set_aside(store.run_path(record["run_id"]), record["replaced"], warn=lambda line: None)
    try:
        store.write_run(record)
    except UnstorableRecord as exc:  # never stored: the run failed, whatever it trained (the command exits 1)
        record.update(status="failed", error=str(exc))
    return record


N_TEST = "_test_examples"


def why_different(earlier: dict, record: dict, n_test: int) -> str:
    """One clause: whether the final test accuracies agree within one test example, and whether the stored record
    was made on another CPU (its model or torch's CPU capability; unrecorded counts as another)."""
    def finals(rec):
        return {(role, metric): value for role, epoch, metric, value in rec["metrics"]
                if epoch == FINAL and metric == "test_acc"}

    a, b = finals(earlier), finals(record)
    delta = max((abs(a[k] - b[k]) for k in a.keys() & b.keys()), default=0.0)
    agree = n_test > 0 and a.keys() == b.keys() and delta <= 1 / n_test + 1e-12
    accuracy = (f"final test accuracies {'agree within' if agree else 'differ by more than'} one test example "
                f"(largest difference {100 * delta:.3g} pp)")
    if record.get("device", "cpu") != "cpu":
        return accuracy
    if same_cpu(earlier.get("provenance"), record.get("provenance")):
        return f"{accuracy}, on the same CPU"
    return (f"{accuracy}, on another CPU (stored: {describe_cpu(earlier.get('provenance'))}; "
            f"now: {describe_cpu(record.get('provenance'))})")


def _run(spec: RunSpec, settings: Settings, methods, record: dict, rendezvous=None, index: int = 0) -> None:
    """Prepare, train and evaluate one run, filling ``record`` (raises what the method raises)."""
    method, cfg, dataset, roles, run = prepare(spec, settings, methods)
    record["roles"] = {name: _role_record(r, methods, spec, cfg, dataset) for name, r in roles.items()}
    reason = method.skip(cfg, dataset)
    if reason:
        if rendezvous is not None:
            raise NotBatchable("a skipped run is not trained")
        record.update(status="skipped", error=reason)
        return
    run.rendezvous, run.rendezvous_index = rendezvous, index
    _train(method, cfg, roles, run, spec, settings.store)
    record["metrics"] = [[r["role"], r["epoch"], r["metric"], r["value"]] for r in run.rows]
    record[N_TEST] = dataset.size("test")  # for _store's message only; never written
    record["timing"] = run.timer.summary()
    record["status"] = "ok"


def execute_batched(specs: list[RunSpec], settings: Settings, methods) -> list[dict] | None:
    """The repetitions ``specs`` of one configuration trained as one batch (see benchmark.engine.fit); their
    records, stored; or None, with nothing stored, when they cannot be (a step that needs its own order, a run
    that fails): the caller then runs them one by one, so that a failure is charged to its own run."""
    store = settings.store
    if settings.gpu is None and specs[0].device == "cuda" and torch.cuda.is_available():
        # the runs train in threads of their own, whose current GPU is not this thread's unless told
        settings = dataclasses.replace(settings, gpu=torch.cuda.current_device())
    rendezvous = Rendezvous(len(specs))
    records = [_new_record(spec) for spec in specs]
    errors: list[BaseException | None] = [None] * len(specs)

    def work(i: int) -> None:
        try:
            _run(specs[i], settings, methods, records[i], rendezvous, i)
        except BaseException as exc:  # noqa: B036 - the batch is abandoned and its runs are redone one by one
            errors[i] = exc
            rendezvous.abort()

    started = time.time()
    torch.set_num_threads(settings.threads)
    with threadpool_limits(limits=settings.threads):
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(specs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if any(e is not None for e in errors):
        return None
    elapsed = time.time() - started
    batch = {"reps": [s.rep for s in specs], "run_ids": [s.run_id for s in specs], "wall_time_s": elapsed}
    out = []
    for record in records:
        record["batch"] = batch  # trained together; the numbers are each run's own (see benchmark.engine.stacked)
        out.append(_store(record, store, elapsed / len(specs)))
    return out


def _train(method, cfg, roles: dict[str, Role], run: RunContext, spec: RunSpec, store: Store) -> None:
    result = method.train(run, cfg)
    trained = result if isinstance(result, Trained) else Trained(dict(result))
    if set(trained.models) != set(roles):
        raise RuntimeError(f"train() returned roles {sorted(trained.models)}, declared {sorted(roles)}")
    undeclared = run.built - {r.arch for r in roles.values()}
    if undeclared:
        raise RuntimeError(f"train() built {', '.join(sorted(undeclared))}, which no role declares: declare it, so "
                           "that the run's id covers the architecture's source")
    for row in trained.rows:
        run.log(row["role"], row["metric"], row["value"], row.get("epoch", FINAL))
    for name, model in trained.models.items():
        if roles[name].classifier:
            for split in ("val", "test"):
                if run.data.size(split):
                    for metric, value in run.evaluate(model, roles[name].view, split).items():
                        run.log(name, f"{split}_{metric}", value)
            _log_omitted(run, name, model, roles[name].view, spec)
    if method.saves_models(cfg):
        atomic_torch_save(store.cache_path(spec.method, spec.run_id), checkpoint(trained.models, spec.run_id))


def _log_omitted(run: RunContext, role: str, model, view: str, spec: RunSpec) -> None:
    """A run trained on a transfer set without a class: that class's test accuracy and the bias correction
    (benchmark.omitted), for every classifier role of every method, scratch students included."""
    omitted = omitted_class(spec.data.get("transfer", "all"))
    if omitted is None or not run.data.size("test"):
        return
    val = [run.logits(model, view, "val").cpu(), run.data.labels("val")] if run.data.size("val") else \
        [run.logits(model, view, "test").cpu()[:0], run.data.labels("test")[:0]]
    test = [run.logits(model, view, "test").cpu(), run.data.labels("test")]
    for metric, value in omitted_metrics(*val, *test, omitted).items():
        run.log(role, metric, value)


def _role_record(role: Role, methods, spec: RunSpec, cfg, dataset) -> dict[str, Any]:
    """What the tables pair a role by: ``pair_key``, its scratch student's (a scratch student's own config; a
    label-smoothing control's config without ``smoothing``, i.e. its scratch student's), and
    ``label_smoothing_key``, its label-smoothing control's (that control's own config, on its runs)."""
    entry = {"arch": role.arch, "view": role.view, "classifier": role.classifier, "pairing": role.pairing,
             "distilled": role.distilled, "pair_key": None}
    if spec.method == SCRATCH:
        entry["pair_key"] = pair_key(spec.config)
    elif spec.method == SMOOTHING:
        entry["pair_key"] = pair_key({k: v for k, v in spec.config.items() if k != "smoothing"})
        entry["label_smoothing_key"] = pair_key(spec.config)
    elif role.scratch is not None and SCRATCH in methods:
        scfg = scratch_config(role, methods, preset=spec.preset, data=dataset, cfg=cfg)
        entry["pair_key"] = pair_key(config_to_dict(scfg))
    if spec.method != SMOOTHING and smoothed(role, methods[spec.method], methods):
        lcfg = partner_config(SMOOTHING, role, methods, preset=spec.preset, data=dataset, cfg=cfg)
        entry["label_smoothing_key"] = pair_key(config_to_dict(lcfg))
    return entry


def execute_task(specs: list[RunSpec], settings: Settings, methods: dict[str, MethodInfo]) -> Iterator[dict]:
    """Execute the runs of one task (one run, or repetitions to train as one batch), yielding each record as it
    is stored."""
    if len(specs) > 1:
        records = execute_batched(specs, settings, methods)
        if records is not None:
            yield from records
            return
    for spec in specs:
        yield execute(spec, settings, methods)


def failed_record(spec: RunSpec, settings: Settings, error: str, timed_out: bool = False) -> dict:
    """Record a run that failed outside the method's own code (its worker was killed, it timed out, a required
    run failed); ``timed_out`` marks it timed out in this suite (``settings.suite``)."""
    store = settings.store
    existing = store.read_run(spec.run_id)
    if existing is not None and existing.get("status") in ("ok", "skipped"):
        return existing  # it finished before the worker died
    record = {**_new_record(spec), "error": error, "wall_time_s": None,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "provenance": {**provenance(), "device": spec.device}}
    if timed_out:
        record["timed_out_in"] = settings.suite
    store.write_run(record)
    return record
