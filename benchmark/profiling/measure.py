"""Running a planned run under a profiling timer: alone (the method's real loop, stopped by its timer once it has
measured enough steps), or with its repetitions trained as one batch."""

from __future__ import annotations

import threading
from typing import Any

from benchmark import data as datasets
from benchmark.engine import config as configuration
from benchmark.engine import device as devices
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings, prepare
from benchmark.engine.fit import Rendezvous
from benchmark.engine.plan import make_spec
from benchmark.engine.spec import RunSpec
from benchmark.engine.timing import StepTimer, StopTraining
from benchmark.profiling.timer import ProfilingTimer, profile_clock
from benchmark.runner.runner import run_plan
from benchmark.runner.status import partition


def target_spec(info: MethodInfo, *, dataset: str, preset: str, overrides: dict[str, Any] | None = None,
                rep: int = 0, base_seed: int = 0, methods: dict[str, MethodInfo] | None = None,
                data_root=None, required: dict[str, RunSpec] | None = None, device: str = "cpu",
                precision: str = "fp32") -> RunSpec:
    """The spec of ``info`` as ``benchmark run`` would plan it on a ``device`` kind (the runs it requires are
    added to ``required``)."""
    methods = methods or discover()
    data = datasets.load_dataset(dataset, data_root, **configuration.DATA_PRESETS[device][preset])
    cfg = configuration.resolve(info.cls, preset, overrides or {}, data)
    return make_spec(info, cfg, dataset=dataset, data=data, rep=rep, base_seed=base_seed, preset=preset,
                     methods=methods, specs=required, device=device, precision=precision)


def like(spec: RunSpec, info: MethodInfo, methods, settings: Settings, *, rep: int | None = None,
         required: dict[str, RunSpec] | None = None) -> RunSpec:
    """``spec``'s configuration planned again (at repetition ``rep``), its required runs added to ``required``."""
    return target_spec(info, dataset=spec.dataset, preset=spec.preset, overrides=spec.config,
                       rep=spec.rep if rep is None else rep, base_seed=spec.base_seed, methods=methods,
                       data_root=settings.data_root, required=required, device=spec.device,
                       precision=spec.precision)


def train_requirements(specs: list[RunSpec], settings: Settings, methods: dict[str, MethodInfo]) -> None:
    """Train (or find in the store) every run the profiled specs require, so that their steps are all timed."""
    required: dict[str, RunSpec] = {}
    for spec in specs:
        like(spec, methods[spec.method], methods, settings, required=required)
    _, todo = partition(list(required.values()), settings.store, methods)
    gpus = None if settings.gpu is None else (settings.gpu,)
    outcome = run_plan(todo, settings, gpus=gpus)  # in a worker process: a crash of one is its own
    if outcome.failed:
        raise RuntimeError(f"a required run failed: {outcome.failed[0]['error']}")


def run_with_timer(spec: RunSpec, settings: Settings, methods: dict[str, MethodInfo],
                   timer: StepTimer) -> bool:
    """Train ``spec`` as the runner would (nothing is stored for it), with ``timer`` as its step timer.

    Returns True if the timer stopped the loop (``StopTraining``), False if the method finished first.
    """
    method, cfg, dataset, _, run = prepare(spec, settings, methods)
    reason = method.skip(cfg, dataset)
    if reason:
        raise RuntimeError(f"skipped: {reason}")
    run.timer = timer
    return until_complete(timer, lambda: method.train(run, cfg))


def until_complete(timer: StepTimer, loop) -> bool:
    """Run ``loop()``; True if ``timer`` stopped it (``StopTraining``), False if it ended first. The timer's
    instruments are released either way."""
    try:
        loop()
        return False
    except StopTraining:
        return True
    finally:
        if isinstance(timer, ProfilingTimer):
            timer.close()


def measure_batched(spec: RunSpec, reps: int, settings: Settings, methods: dict[str, MethodInfo], *,
                    warmup: int, steps: int) -> float | None:
    """Median step time (seconds) of ``reps`` repetitions of ``spec``'s configuration trained as one batch (``reps``
    1: one repetition, through the same code), or None when they cannot be batched. The runs they require must be
    in the store (:func:`train_requirements`)."""
    info = methods[spec.method]
    specs = [like(spec, info, methods, settings, rep=r) for r in range(reps)]
    train_requirements(specs, settings, methods)
    prepared = [prepare(s, settings, methods) for s in specs]
    timer = ProfilingTimer(warmup, steps, trace_steps=0, count_flops=False, clock=profile_clock(prepared[0][4].device))
    rendezvous = Rendezvous(reps)
    errors: list[BaseException | None] = [None] * reps

    def work(i: int) -> None:
        devices.bind(spec.device, settings.gpu)  # a thread's current GPU is its own
        method, cfg, _, _, run = prepared[i]
        run.timer = timer if i == 0 else StepTimer()
        run.rendezvous, run.rendezvous_index = rendezvous, i
        try:
            method.train(run, cfg)
        except BaseException as exc:  # noqa: B036 - StopTraining ends every repetition's loop
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(reps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    timer.close()
    if not all(isinstance(e, StopTraining) for e in errors):
        return None
    return timer.summary().get("step_median_s")
