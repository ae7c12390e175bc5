"""``python -m benchmark profile``: timing profiles of every method's real training step, no per-method code.

Each method runs through the harness as in ``benchmark run``, except that its run context's timer is a
:class:`~benchmark.profiling.timer.ProfilingTimer`: after W untimed warm-up steps it times S steps, counts one step's
FLOPs, traces a few steps with ``torch.profiler`` and stops the method by raising ``StopTraining`` out of
its loop. The runs a target requires (the shared teacher) are trained first, as runs of their own in the store,
and never counted.

Ratios are what this reports with confidence: a ratio is taken within each of R repeats, and the median over
repeats is reported. With one torch thread (``--threads 1``, the choice on a busy machine) every target's
training runs in its own thread within a repeat and the threads take short turns, one at a time, so a change in
the machine's load hits all targets alike; with more torch threads the targets run in turn in the main thread
(see :func:`profile` for why). A method's ``ratio_to_scratch`` is its step time over the summed step times of the
scratch students of its roles (the same architecture, view and recipe trained alone on the same data): one step of
the method costs that many steps of training its models separately. A baseline without such a pairing (the
teacher) and the textbook loop are compared with the default scratch student; a method with none (SKA) has no
ratio. ``batched_ratio``: the step of R repetitions trained as one batch over the step of one, measured in
alternation (R steps for the price of that many single steps). The speed targets checked are those each method
declares (``Method.speed_targets``).

On a GPU (``--device cuda``) each step is timed between synchronisations of the GPU, the matmul peak is that GPU's
(IEEE float32, and TensorFloat-32 beside it), the trace records the GPU's kernels too, and the textbook loops (a
CPU's DataLoader) are not run.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark import nn as layers
from benchmark.engine import device as devices
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings
from benchmark.engine.spec import config_from_dict
from benchmark.engine.stacked import stackable
from benchmark.profiling.figure import write_outputs
from benchmark.profiling.measure import measure_batched, run_with_timer, train_requirements
from benchmark.profiling.reference import TEXTBOOK_TORCHVISION, matmul_peak, textbook_kd_loop
from benchmark.profiling.summary import check_targets, suite_estimate, summarise
from benchmark.profiling.targets import Options, Target, plan_targets
from benchmark.profiling.timer import ProfilingTimer, StepGate, profile_clock
from benchmark.store import Store

__all__ = ["Options", "Target", "plan_targets", "profile"]


def profile(opts: Options, methods: dict[str, MethodInfo] | None = None, log=print) -> dict[str, Any]:
    """Profile every target on every dataset; write ``<out>/profiles/profile.{csv,json,png}``; return the
    JSON document."""
    methods = methods or discover()
    on = devices.bind(opts.device, opts.gpu)
    settings = Settings(store=Store(opts.out), data_root=opts.data_root,
                        gpu=on.index if on.type == "cuda" else None)
    load_before, started = os.getloadavg(), time.time()
    plans = {d: plan_targets(opts.selected, methods, dataset=d, preset=opts.preset, reference=opts.reference,
                             device=opts.device, precision=opts.precision)
             for d in opts.datasets}
    for dataset, targets in plans.items():
        # The runs the targets require (the shared teacher) are trained first, as runs of their own in the
        # store; then one untimed pass per target, in this thread, counts one step's FLOPs and traces a few steps.
        log(f"preparing {len(targets)} targets on {dataset} (missing required runs are trained now)")
        train_requirements([t.spec for t in targets.values() if t.spec is not None], settings, methods)
        for t in targets.values():
            timer = ProfilingTimer(opts.warmup, 0, trace_steps=opts.trace_steps, top_ops=opts.top_ops,
                                   clock=profile_clock(on))
            try:
                _measure(t, dataset, settings, methods, opts, timer)
                t.instruments = {"flops_per_step": timer.flops, "flop_samples": timer.flop_samples,
                                 "operators": timer.operators, "kernels": timer.kernels}
            except Exception as exc:
                t.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log(f"  {t.name} is left out: {t.error}")
    peaks = []
    bar = _progress(opts, sum(len(t) for t in plans.values()) * opts.repeats)
    # Interleaving runs each target in a thread of its own. With more than one torch thread that would slow
    # every step down: libgomp stops spinning once it manages more threads than there are cores, and each
    # parallel region then waits for a sleeping worker (measured here: 0.7 ms -> 1.8 ms per student step).
    interleaved = torch.get_num_threads() == 1
    for repeat in range(opts.repeats):
        peaks.append(matmul_peak(device=on, precision=opts.precision))
        for dataset, targets in plans.items():
            live = [t for t in targets.values() if t.error is None]
            if interleaved:
                _interleave(live, dataset, settings, methods, opts, bar=bar)
            else:
                _in_turn(live, dataset, settings, methods, opts, shift=repeat, bar=bar)
    if bar is not None:
        bar.close()
    for targets in plans.values():
        _measure_batched(targets, settings, methods, opts, log)
    rows = [row for dataset, targets in plans.items() for row in summarise(targets, dataset, peaks, opts)]
    result = {
        "rows": rows,
        "targets": check_targets(rows, methods, opts.device, opts.batched_reps),
        "suite_estimate": [suite_estimate(d, targets, rows, methods, opts) for d, targets in plans.items()],
        "peak_gflops_per_repeat": peaks,
        "settings": {"preset": opts.preset, "warmup": opts.warmup, "steps": opts.steps,
                     "repeats": opts.repeats, "datasets": opts.datasets,
                     "schedule": "interleaved" if interleaved else "in turn"},
        "machine": {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "python": sys.version.split()[0],
                    "platform": platform.platform(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg(), "wall_time_s": time.time() - started,
                    **devices.describe(opts.device), "precision": opts.precision},
    }
    if on.type == "cuda":  # the other float32 peak, for reading the first against it
        result["machine"]["tf32_peak_gflops"] = matmul_peak(device=on, precision="tf32")
    write_outputs(result, Path(opts.out) / "profiles")
    return result


def _interleave(targets: list[Target], dataset: str, settings: Settings, methods, opts: Options, *,
                bar=None) -> None:
    """One repeat: each target's training runs in its own thread, and the threads take turns of at least
    ``opts.turn_s`` seconds (in a rotating order) until every target is done. Only one thread runs at any time,
    set-up and evaluation included, and a change in the machine's load over the repeat affects every target
    alike, so the ratios between targets stay meaningful on a busy machine."""
    runs = []
    for t in targets:
        gate = StepGate()
        timer = ProfilingTimer(opts.warmup, opts.steps, trace_steps=0, count_flops=False, gate=gate,
                               clock=profile_clock(_device(settings)))
        outcome: dict[str, bool] = {}
        thread = threading.Thread(target=_work, args=(t, dataset, settings, methods, opts, timer, outcome),
                                  daemon=True)
        thread.start()
        runs.append((t, timer, outcome, thread))
    active, round_ = list(runs), 0
    while active:
        shift = round_ % len(active)
        for run in active[shift:] + active[:shift]:
            began = time.perf_counter()
            while time.perf_counter() - began < opts.turn_s:
                if not run[1].gate.turn():
                    active.remove(run)
                    if bar is not None:
                        bar.update(1)
                    break
        round_ += 1
    for t, timer, outcome, thread in runs:
        thread.join()
        error = timer.gate.error
        if error is not None:
            t.error = f"{type(error).__name__}: {error}".splitlines()[0]
        else:
            t.records.append({**timer.report(), "stopped_by_timer": outcome["stopped"]})


def _in_turn(targets: list[Target], dataset: str, settings: Settings, methods, opts: Options, *, shift: int,
             bar=None) -> None:
    """One repeat, in this thread: each target's steps in turn, starting with a different target each
    repeat (so slow drift of the load is not always the same target's bias)."""
    shift %= max(len(targets), 1)
    for t in targets[shift:] + targets[:shift]:
        timer = ProfilingTimer(opts.warmup, opts.steps, trace_steps=0, count_flops=False,
                               clock=profile_clock(_device(settings)))
        try:
            stopped = _measure(t, dataset, settings, methods, opts, timer)
            t.records.append({**timer.report(), "stopped_by_timer": stopped})
        except Exception as exc:
            t.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if bar is not None:
            bar.update(1)


def _work(t: Target, dataset: str, settings: Settings, methods, opts: Options, timer: ProfilingTimer,
          outcome: dict[str, bool]) -> None:
    timer.gate.begin()
    error = None
    try:
        devices.bind(opts.device, settings.gpu)  # a thread's current GPU is its own
        outcome["stopped"] = _measure(t, dataset, settings, methods, opts, timer)
    except BaseException as exc:  # noqa: B036 - recorded for the target, never lost
        error = exc
    finally:
        timer.gate.finish(error)


def _measure(t: Target, dataset: str, settings: Settings, methods, opts: Options,
             timer: ProfilingTimer) -> bool:
    if t.spec is not None:
        return run_with_timer(t.spec, settings, methods, timer)
    return textbook_kd_loop(opts.load(dataset), timer, torchvision_style=t.name == TEXTBOOK_TORCHVISION)


def _device(settings: Settings) -> torch.device:
    return torch.device("cpu") if settings.gpu is None else torch.device("cuda", settings.gpu)


def _progress(opts: Options, total: int):
    if not opts.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="profile", unit="target", file=sys.stderr)


def _measure_batched(targets: dict[str, Target], settings: Settings, methods, opts: Options, log) -> None:
    """For each target whose models stack: R repetitions as one batch against one, for every R of
    ``opts.batched_reps``, alternated in this thread."""
    reps = [r for r in opts.batched_reps if r > 1]
    if not reps:
        return
    for t in targets.values():
        if t.spec is None or t.error:
            continue
        info = methods[t.spec.method]
        cfg = config_from_dict(info, t.spec.config)
        data = opts.load(t.spec.dataset)
        if not all(stackable(_model(r, data)) for r in info.cls().roles(cfg, data).values()):
            t.batched = {reps[0]: {"note": "not stackable"}}
            continue
        steps = max(opts.steps // 2, 5)
        one, many = [], {r: [] for r in reps}
        for _ in range(opts.batched_rounds):
            one.append(measure_batched(t.spec, 1, settings, methods, warmup=opts.warmup, steps=steps))
            for r in reps:
                many[r].append(measure_batched(t.spec, r, settings, methods, warmup=opts.warmup, steps=steps))
        for r in reps:
            if any(v is None for v in one + many[r]):
                t.batched[r] = {"note": "the step cannot be batched (trained one by one)"}
                continue
            ratio = float(np.median([m / o for o, m in zip(one, many[r])]))
            t.batched[r] = {"ratio": ratio, "single_ms": float(np.median(one)) * 1e3,
                            "batched_ms": float(np.median(many[r])) * 1e3}
            log(f"  {t.name}: {r} batched repetitions = {ratio:.2f}x one")


def _model(role, data):
    return layers.build(role.arch, data.view_shape(role.view), data.num_classes, **role.options)


