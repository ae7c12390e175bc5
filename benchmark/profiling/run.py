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
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark import data as datasets
from benchmark import nn as layers
from benchmark.engine import config as configuration
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import SCRATCH, plan, scratch_spec_for
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.engine.stacked import stackable
from benchmark.profiling.figure import write_outputs
from benchmark.profiling.measure import measure_batched, run_with_timer, target_spec, train_requirements
from benchmark.profiling.reference import TEXTBOOK, TEXTBOOK_TORCHVISION, matmul_peak, textbook_kd_loop
from benchmark.profiling.timer import ProfilingTimer, StepGate
from benchmark.runner.schedule import Batching
from benchmark.store import Store

# ---- what gets profiled ---------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    kind: str  # method | baseline | reference
    spec: RunSpec | None  # None for the textbook loop
    scratch: list[str] = field(default_factory=list)  # targets whose summed step times the ratio divides by
    records: list[dict[str, Any]] = field(default_factory=list)  # timings, one per repeat
    instruments: dict[str, Any] = field(default_factory=dict)  # FLOPs of one step, the trace's top operators
    batched: dict[str, Any] = field(default_factory=dict)  # R batched repetitions against one
    error: str | None = None


def _name(spec: RunSpec) -> str:
    return spec.method if spec.variant == "default" else f"{spec.method}[{spec.variant}]"


def _label(t: Target) -> str:
    """A short name for the figure: a paired scratch student by its architecture, view and batch size."""
    if t.spec is None or t.spec.method != SCRATCH or t.spec.variant == "default":
        return t.name
    c = t.spec.config
    return f"scratch[{c.get('arch')}, {c.get('view')}, batch {c.get('batch_size')}]"


def plan_targets(selected: list[tuple[MethodInfo, dict[str, Any]]], methods: dict[str, MethodInfo], *,
                 dataset: str, preset: str, reference: bool) -> dict[str, Target]:
    """The targets on ``dataset``: the selected configurations and the scratch students they pair with."""
    targets: dict[str, Target] = {}

    def add(spec: RunSpec, kind: str) -> str:
        name = _name(spec)
        targets.setdefault(name, Target(name, kind, spec))
        return name

    has_scratch = SCRATCH in methods and methods[SCRATCH].ok
    default_scratch = None
    if has_scratch:
        default_scratch = add(target_spec(methods[SCRATCH], dataset=dataset, preset=preset, methods=methods),
                              "baseline")
    for info, overrides in selected:
        spec = target_spec(info, dataset=dataset, preset=preset, overrides=overrides, methods=methods)
        data = datasets.load_dataset(dataset, **configuration.DATA_PRESETS[preset])
        cfg = config_from_dict(info, spec.config)
        name = add(spec, info.kind)
        pairs = []
        for role in info.cls().roles(cfg, data).values():
            if role.scratch is not None and has_scratch:
                pairs.append(add(scratch_spec_for(role, methods, dataset=dataset, data=data, rep=0, base_seed=0,
                                                  preset=preset, cfg=cfg), "baseline"))
        if info.name == SCRATCH:
            pairs = [name]
        elif not pairs and info.kind == "baseline" and default_scratch:
            pairs = [default_scratch]
        targets[name].scratch = pairs
    for t in targets.values():
        if t.spec is not None and t.spec.method == SCRATCH:
            t.scratch = [t.name]
    if reference:
        pairs = [default_scratch] if default_scratch else []
        targets[TEXTBOOK] = Target(TEXTBOOK, "reference", None, pairs)
        shape = datasets.load_dataset(dataset, **configuration.DATA_PRESETS[preset]).view_shape("image")
        if len(shape) == 3 and shape[0] in (1, 3):  # an image PIL can hold
            targets[TEXTBOOK_TORCHVISION] = Target(TEXTBOOK_TORCHVISION, "reference", None, pairs)
    return targets


# ---- the profile ----------------------------------------------------------------------------------------

@dataclass
class Options:
    out: Path = Path("results")
    datasets: list[str] = field(default_factory=list)
    selected: list[tuple[MethodInfo, dict[str, Any]]] = field(default_factory=list)
    preset: str = "quick"
    warmup: int = 10
    steps: int = 50
    repeats: int = 5
    trace_steps: int = 10
    # Length of a target's turn. Long enough that what the previous turn leaves behind (cold caches, the
    # previous thread's OpenMP workers still spinning for a few ms) touches few of its steps, short enough that
    # the machine's load cannot change much within a round of turns.
    turn_s: float = 0.1
    top_ops: int = 8
    batched_reps: int = 5  # R of the batched measurement (1: not measured)
    batched_rounds: int = 3  # alternations of one and R repetitions
    reference: bool = True
    data_root: Path | None = None
    progress: bool = True


def profile(opts: Options, methods: dict[str, MethodInfo] | None = None, log=print) -> dict[str, Any]:
    """Profile every target on every dataset; write ``<out>/profiles/profile.{csv,json,png}``; return the
    JSON document."""
    methods = methods or discover()
    settings = Settings(store=Store(opts.out), data_root=opts.data_root)
    load_before, started = os.getloadavg(), time.time()
    plans = {d: plan_targets(opts.selected, methods, dataset=d, preset=opts.preset, reference=opts.reference)
             for d in opts.datasets}
    for dataset, targets in plans.items():
        # The runs the targets require (the shared teacher) are trained first, as runs of their own in the
        # store; then one untimed pass per target, in this thread, counts one step's FLOPs and traces a few steps.
        log(f"preparing {len(targets)} targets on {dataset} (missing required runs are trained now)")
        train_requirements([t.spec for t in targets.values() if t.spec is not None], settings, methods)
        for t in targets.values():
            timer = ProfilingTimer(opts.warmup, 0, trace_steps=opts.trace_steps, top_ops=opts.top_ops)
            try:
                _measure(t, dataset, settings, methods, opts, timer)
                t.instruments = {"flops_per_step": timer.flops, "flop_samples": timer.flop_samples,
                                 "operators": timer.operators}
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
        peaks.append(matmul_peak())
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
    rows = [row for dataset, targets in plans.items()
            for row in _summarise(targets, dataset, peaks, opts, settings)]
    result = {
        "rows": rows,
        "targets": check_targets(rows, methods),
        "suite_estimate": [suite_estimate(d, targets, rows, methods, opts) for d, targets in plans.items()],
        "peak_gflops_per_repeat": peaks,
        "settings": {"preset": opts.preset, "warmup": opts.warmup, "steps": opts.steps,
                     "repeats": opts.repeats, "datasets": opts.datasets,
                     "schedule": "interleaved" if interleaved else "in turn"},
        "machine": {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "python": sys.version.split()[0],
                    "platform": platform.platform(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg(), "wall_time_s": time.time() - started},
    }
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
        timer = ProfilingTimer(opts.warmup, opts.steps, trace_steps=0, count_flops=False, gate=gate)
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
        timer = ProfilingTimer(opts.warmup, opts.steps, trace_steps=0, count_flops=False)
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
        outcome["stopped"] = _measure(t, dataset, settings, methods, opts, timer)
    except BaseException as exc:  # noqa: B036 - recorded for the target, never lost
        error = exc
    finally:
        timer.gate.finish(error)


def _measure(t: Target, dataset: str, settings: Settings, methods, opts: Options,
             timer: ProfilingTimer) -> bool:
    if t.spec is not None:
        return run_with_timer(t.spec, settings, methods, timer)
    data = datasets.load_dataset(dataset, settings.data_root, **configuration.DATA_PRESETS[opts.preset])
    return textbook_kd_loop(data, timer, torchvision_style=t.name == TEXTBOOK_TORCHVISION)


def _progress(opts: Options, total: int):
    if not opts.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="profile", unit="target", file=sys.stderr)


def _summarise(targets: dict[str, Target], dataset: str, peaks: list[float], opts: Options,
               settings: Settings) -> list[dict]:
    peak = float(np.median(peaks)) if peaks else math.nan
    medians = {n: [r.get("step_median_s", math.nan) for r in t.records] for n, t in targets.items()}
    n_train = datasets.load_dataset(dataset, settings.data_root,
                                    **configuration.DATA_PRESETS[opts.preset]).size("train")
    rows = []
    for name, t in targets.items():
        row: dict[str, Any] = {"dataset": dataset, "target": name, "label": _label(t), "kind": t.kind,
                               "method": t.spec.method if t.spec else t.name, "status": "ok", "note": ""}
        pooled = np.concatenate([r["step_times_s"] for r in t.records] or [np.array([])])
        if t.error or pooled.size == 0:
            note = t.error or "no timed step: the method ended during the warm-up (lower --warmup)"
            rows.append({**row, "status": "failed", "note": note})
            continue
        q1, median, q3 = np.percentile(pooled, [25, 50, 75])
        batch = int(np.median([r["batch_size"] for r in t.records if r["batch_size"]]))
        ratios = []
        for i, own in enumerate(medians[name]):
            refs = [medians[s][i] if i < len(medians[s]) else math.nan for s in t.scratch]
            ratios.append(own / sum(refs) if refs else math.nan)
        ratios = np.asarray(ratios, dtype=float)
        finite = bool(np.isfinite(ratios).any())
        # FLOPs of the counted step scaled to the median batch (an epoch's last batch may be smaller)
        counted = t.instruments.get("flops_per_step")
        flops = counted * batch / t.instruments["flop_samples"] if counted else None
        gflops = flops / median / 1e9 if flops else math.nan
        if not all(r["stopped_by_timer"] for r in t.records):
            row["note"] = "the method ended before the planned steps: fewer timed steps"
        row.update({
            "batch_size": batch, "repeats": len(t.records), "timed_steps": int(pooled.size),
            "step_median_ms": median * 1e3, "step_q1_ms": q1 * 1e3, "step_q3_ms": q3 * 1e3,
            "step_iqr_ms": (q3 - q1) * 1e3, "step_median_ms_per_repeat": [m * 1e3 for m in medians[name]],
            "samples_per_s": batch / median, "scratch_reference": "+".join(t.scratch),
            "ratio_to_scratch": float(np.nanmedian(ratios)) if finite else math.nan,
            "ratio_min": float(np.nanmin(ratios)) if finite else math.nan,
            "ratio_max": float(np.nanmax(ratios)) if finite else math.nan,
            "gflop_per_step": flops / 1e9 if flops else math.nan, "gflops": gflops, "peak_gflops": peak,
            # within each repeat (its own matmul peak), then the median: load changes between repeats
            "peak_fraction": float(np.median([flops / m / p / 1e9 for m, p in zip(medians[name], peaks)]))
            if flops else math.nan,
            "epoch_s": median * math.ceil(n_train / batch),
            "top_ops": "; ".join(f"{o['name']} {o['share']:.0%}" for o in t.instruments["operators"][:5]),
            "operators": t.instruments["operators"],
            "batched_reps": t.batched.get("reps"), "batched_ratio": t.batched.get("ratio", math.nan),
            "batched_note": t.batched.get("note", ""), "n_train": n_train,
        })
        rows.append(row)
    return rows


def _measure_batched(targets: dict[str, Target], settings: Settings, methods, opts: Options, log) -> None:
    """For each target whose models stack: R repetitions as one batch against one, alternated in this thread."""
    if opts.batched_reps <= 1:
        return
    for t in targets.values():
        if t.spec is None or t.error:
            continue
        info = methods[t.spec.method]
        cfg = config_from_dict(info, t.spec.config)
        data = datasets.load_dataset(t.spec.dataset, opts.data_root, **configuration.DATA_PRESETS[opts.preset])
        if not all(stackable(_model(r, data)) for r in info.cls().roles(cfg, data).values()):
            t.batched = {"note": "not stackable"}
            continue
        steps = max(opts.steps // 2, 5)
        one, many = [], []
        for _ in range(opts.batched_rounds):
            one.append(measure_batched(t.spec, 1, settings, methods, warmup=opts.warmup, steps=steps))
            many.append(measure_batched(t.spec, opts.batched_reps, settings, methods, warmup=opts.warmup,
                                        steps=steps))
        if any(v is None for v in one + many):
            t.batched = {"reps": opts.batched_reps, "note": "the step cannot be batched (trained one by one)"}
            continue
        ratios = [m / o for o, m in zip(one, many)]
        t.batched = {"reps": opts.batched_reps, "ratio": float(np.median(ratios)),
                     "single_ms": float(np.median(one)) * 1e3, "batched_ms": float(np.median(many)) * 1e3}
        log(f"  {t.name}: {opts.batched_reps} batched repetitions = {t.batched['ratio']:.2f}x one")


def _model(role, data):
    return layers.build(role.arch, data.view_shape(role.view), data.num_classes, **role.options)


def check_targets(rows: list[dict], methods: dict[str, MethodInfo]) -> list[dict[str, Any]]:
    """The speed targets the profiled methods declare (``Method.speed_targets``), each with its measured value
    and whether it is met; and the batched-repetitions target of every batched row."""
    by = {(r["dataset"], r["target"]): r for r in rows if r["status"] == "ok"}
    out = []

    def add(target: str, dataset: str, measured: float, threshold: float, met: bool, **extra) -> None:
        out.append({"target": target, "dataset": dataset, "measured": measured, "threshold": threshold,
                    "met": bool(met), **extra})

    for (dataset, name), row in by.items():
        info = methods.get(row["method"])
        declared = dict(getattr(info.cls, "speed_targets", {}) if info is not None and info.ok else {})
        batch = row.get("batch_size")
        if "max_ratio_to_scratch" in declared:
            limit = declared["max_ratio_to_scratch"]
            add(f"{name} step <= {limit}x its scratch students' steps", dataset, row["ratio_to_scratch"], limit,
                row["ratio_to_scratch"] <= limit)
        if "min_peak_fraction" in declared:
            limit = declared["min_peak_fraction"]
            add(f"{name} step >= {limit:.0%} of the matmul peak (batch {batch})", dataset, row["peak_fraction"],
                limit, row["peak_fraction"] >= limit)
        if "min_textbook_speedup" in declared:
            limit = declared["min_textbook_speedup"]
            for reference, fed in ((TEXTBOOK, "TensorDataset"), (TEXTBOOK_TORCHVISION, "torchvision-style")):
                textbook = by.get((dataset, reference))
                if textbook is None:
                    continue
                speedup = float(np.median([a / b for a, b in zip(textbook["step_median_ms_per_repeat"],
                                                                  row["step_median_ms_per_repeat"])]))
                add(f"epoch loop ({name}) >= {limit}x faster than the textbook loop ({fed})", dataset, speedup,
                    limit, speedup >= limit, detail=f"epoch {textbook['epoch_s']:.3f} s vs {row['epoch_s']:.3f} s")
        ratio = row.get("batched_ratio")
        if ratio is not None and math.isfinite(ratio):
            # The small datasets' steps are per-operator overhead, which a batch shares; a larger one's are not.
            limit = 1.5 if row["n_train"] <= 5000 else 2.5
            add(f"{row['batched_reps']} batched repetitions of {name} <= {limit}x one repetition's step", dataset,
                ratio, limit, ratio <= limit)
    return out


def suite_estimate(dataset: str, targets: dict[str, Target], rows: list[dict], methods, opts: Options,
                   reps: int = 5) -> dict[str, Any]:
    """Training time of ``all`` on ``dataset`` at this preset with ``reps`` repetitions, from the profiled step
    times: every planned run's steps (its full epoch budget: early stopping not counted) times its step time (the
    batched share where its repetitions train as one batch), over the cores. Evaluation, set-up and start-up are
    not counted, and runs without a profiled target are left out (listed)."""
    infos = [i for i in methods.values() if i.ok]
    specs = plan(infos, data=[dataset], reps=reps, preset=opts.preset, base_seed=0, methods=methods)
    step_by_kind = {}
    for row in rows:
        t = targets.get(row["target"])
        if row["dataset"] == dataset and row["status"] == "ok" and t is not None and t.spec is not None:
            step_by_kind[_kind(t.spec)] = (row["step_median_ms"] / 1e3, row.get("batched_ratio", math.nan))
    batching = Batching(reps, methods, opts.data_root)
    total, missing = 0.0, set()
    for spec in specs:
        kind = _kind(spec)
        if kind not in step_by_kind:
            missing.add(spec.variant if spec.method == SCRATCH else spec.method)
            continue
        info = methods[spec.method]
        cfg = config_from_dict(info, spec.config)
        data = datasets.load_dataset(dataset, opts.data_root, **configuration.DATA_PRESETS[opts.preset])
        epochs, batch_size = info.cls().budget(cfg, data)
        steps = epochs * math.ceil(data.size("train") / (batch_size or data.size("train")))
        step, ratio = step_by_kind[kind]
        if batching(spec) > 1 and math.isfinite(ratio):
            step = step * ratio / reps
        total += steps * step
    cores = os.cpu_count() or 1
    return {"dataset": dataset, "repetitions": reps, "runs": len(specs), "train_s": total,
            "wall_s_on_cores": total / cores, "cores": cores, "not_profiled": sorted(missing)}


def _kind(spec: RunSpec) -> str:
    return json.dumps([spec.method, spec.config], sort_keys=True, default=list)
