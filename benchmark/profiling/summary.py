"""A profile's rows (:func:`summarise`), the speed targets they are checked against (:func:`check_targets`) and the
suite's training time they imply (:func:`suite_estimate`)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from benchmark.engine.discovery import MethodInfo
from benchmark.engine.plan import SCRATCH, plan
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.profiling.reference import TEXTBOOK, TEXTBOOK_TORCHVISION
from benchmark.profiling.targets import Options, Target, label
from benchmark.runner.schedule import Batching


def summarise(targets: dict[str, Target], dataset: str, peaks: list[float], opts: Options) -> list[dict]:
    """One row per target: its step time, ratio to its scratch students, FLOP rate against the matmul peak, top
    operators (and GPU kernels), and its packed repetitions against one."""
    peak = float(np.median(peaks)) if peaks else math.nan
    medians = {n: [r.get("step_median_s", math.nan) for r in t.records] for n, t in targets.items()}
    n_train = opts.load(dataset).size("train")
    rows = []
    for name, t in targets.items():
        row: dict[str, Any] = {"dataset": dataset, "target": name, "label": label(t), "kind": t.kind,
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
        kernels = t.instruments.get("kernels", [])
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
            "top_kernels": "; ".join(f"{k['name'][:60]} {k['share']:.0%}" for k in kernels[:5]),
            "kernels": kernels, "n_train": n_train, **_packed_columns(t, opts),
        })
        rows.append(row)
    return rows


def _packed_columns(t: Target, opts: Options) -> dict[str, Any]:
    """The packed-repetitions measurement: ``batched_ratio``, the step of the first R over one repetition's (the
    README's "R batched"), and for every R the time per repetition and its throughput against R = 1."""
    first = opts.batched_reps[0] if opts.batched_reps else None
    measured = t.batched.get(first, {})
    out = {"batched_reps": first if measured else None, "batched_ratio": measured.get("ratio", math.nan),
           "batched_note": next((b["note"] for b in t.batched.values() if b.get("note")), "")}
    for reps, b in t.batched.items():
        out[f"per_rep_ms_R{reps}"] = b.get("batched_ms", math.nan) / reps
        out[f"per_rep_speedup_R{reps}"] = reps / b["ratio"] if b.get("ratio") else math.nan
    return out


def check_targets(rows: list[dict], methods: dict[str, MethodInfo], device: str = "cpu",
                  opts_reps: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """The speed targets the profiled methods declare (``Method.speed_targets``), each with its measured value
    and whether it is met; and the batched-repetitions target of every batched row (on a GPU: at every R >= 8,
    the per-repetition throughput at least 3x one repetition's)."""
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
        if device == "cuda":
            for reps in (r for r in opts_reps if r >= 8):
                # a GPU's step of one repetition leaves it mostly idle: R packed should cost far less than R steps
                speedup = row.get(f"per_rep_speedup_R{reps}", math.nan)
                if not math.isfinite(speedup):
                    continue
                add(f"{reps} packed repetitions of {name}: >= 3x the per-repetition throughput of one", dataset,
                    speedup, 3.0, speedup >= 3.0)
        elif ratio is not None and math.isfinite(ratio):
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
    specs = plan(infos, data=[dataset], reps=reps, preset=opts.preset, base_seed=0, methods=methods,
                 device=opts.device, precision=opts.precision)
    step_by_kind = {}
    for row in rows:
        t = targets.get(row["target"])
        if row["dataset"] == dataset and row["status"] == "ok" and t is not None and t.spec is not None:
            step_by_kind[_kind(t.spec)] = (row["step_median_ms"] / 1e3, row.get("batched_ratio", math.nan),
                                           row.get("batched_reps") or 1)
    batching = Batching(reps, methods, opts.data_root)
    one_gpu = opts.device == "cuda"  # the profile's GPU: several workers share it, their steps do not add up
    total, missing = 0.0, set()
    for spec in specs:
        kind = _kind(spec)
        if kind not in step_by_kind:
            missing.add(spec.variant if spec.method == SCRATCH else spec.method)
            continue
        info = methods[spec.method]
        cfg = config_from_dict(info, spec.config)
        data = opts.load(dataset)
        epochs, batch_size = info.cls().budget(cfg, data)
        steps = epochs * math.ceil(data.size("train") / (batch_size or data.size("train")))
        step, ratio, measured_reps = step_by_kind[kind]
        if batching(spec) > 1 and math.isfinite(ratio):
            step = step * ratio / measured_reps
        total += steps * step
    cores = 1 if one_gpu else os.cpu_count() or 1
    return {"dataset": dataset, "repetitions": reps, "runs": len(specs), "train_s": total,
            "wall_s_on_cores": total / cores, "cores": cores, "unit": "GPU" if one_gpu else "cores",
            "not_profiled": sorted(missing)}


def _kind(spec: RunSpec) -> str:
    return json.dumps([spec.method, spec.config], sort_keys=True, default=list)
