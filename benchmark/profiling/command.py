"""The ``profile`` command's arguments and its printed table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark import data as datasets
from benchmark.engine import config as configuration
from benchmark.engine import device as devices
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.errors import BadInput
from benchmark.profiling.run import Options, profile

PREFERRED_DATASETS = ("fashion_mnist", "mnist1d")


def _cell(value, spec: str, scale: float = 1.0) -> str:
    """``value`` formatted, or "-" where it is missing (JSON stores NaN as null)."""
    width = int(spec.split(".")[0] or 1)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-".rjust(width)
    return format(value * scale, spec)


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'dataset':14s} {'target':44s} {'batch':>5s} {'median ms':>9s} {'IQR ms':>7s} "
             f"{'samples/s':>9s} {'x scratch':>9s} {'GFLOP/s':>8s} {'% peak':>6s} {'R batched':>9s}"]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"{r['dataset']:14s} {r['target'][:44]:44s} failed: {r['note']}")
            continue
        cells = [_cell(r["batch_size"], "5.0f"), _cell(r["step_median_ms"], "9.3f"),
                 _cell(r["step_iqr_ms"], "7.3f"), _cell(r["samples_per_s"], "9.0f"),
                 _cell(r["ratio_to_scratch"], "9.3f"), _cell(r["gflops"], "8.1f"),
                 _cell(r["peak_fraction"], "6.1f", 100), _cell(r.get("batched_ratio"), "9.2f")]
        lines.append(f"{r['dataset']:14s} {r['target'][:44]:44s} " + " ".join(cells))
    m = result["machine"]
    peaks = result["peak_gflops_per_repeat"]
    where = f"8192² {m.get('precision', 'fp32')} on {m['gpu']}" if m.get("gpu") else "1024² fp32"
    lines.append(f"matmul peak {np.median(peaks):.1f} GFLOP/s ({where}; {min(peaks):.0f}-{max(peaks):.0f} "
                 "over the repeats, each ratio uses its own repeat's); "
                 f"{m['threads']} torch threads; load average {m['load_average_before'][0]:.1f} before, "
                 f"{m['load_average_after'][0]:.1f} after, on {m['cpu_count']} CPUs")
    if m.get("tf32_peak_gflops"):
        lines.append(f"TF32 matmul peak on the same GPU: {m['tf32_peak_gflops']:.0f} GFLOP/s")
    for r in result["rows"]:
        if r.get("top_kernels"):
            lines.append(f"kernels [{r['target'][:40]}]: {r['top_kernels']}")
    for e in result.get("suite_estimate", []):
        lines.append(f"estimate [{e['dataset']}] `all` ({e['repetitions']} repetitions, {e['runs']} runs): "
                     f"{e['train_s'] / 60:.1f} min of training steps, {e['wall_s_on_cores'] / 60:.1f} min on "
                     f"{e['cores']} {e.get('unit', 'cores')} (full epoch budgets; evaluation and start-up not "
                     "counted)"
                     + (f"; not profiled: {', '.join(e['not_profiled'])}" if e["not_profiled"] else ""))
    for t in result["targets"]:
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"target [{t['dataset']}] {t['target']}: {_cell(t['measured'], '.3f')} "
                     f"(threshold {t['threshold']}) {verdict}")
    return "\n".join(lines)


# ---- command line ---------------------------------------------------------------------------------------

def add_arguments(p) -> None:
    """The profile's own options (the command line adds ``--device``, which several commands share)."""
    p.add_argument("--methods", help="comma-separated methods and baselines (default: every one that loads)")
    p.add_argument("--variant", action="append", metavar="METHOD:KEY=VALUE[,KEY=VALUE]",
                   help="also profile METHOD with these config values; repeatable (default: the variants each "
                        "profiled method declares, e.g. the teacher at larger batches; 'none': no extra)")
    p.add_argument("--datasets", help="comma-separated datasets (default: fashion_mnist if available, "
                                      "else mnist1d)")
    p.add_argument("--preset", default="quick", help="configs and data budget (default quick)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing (default 10)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per target per repeat (default 50)")
    p.add_argument("--repeats", type=int, default=5, help="repeats; medians over them (default 5)")
    p.add_argument("--top", type=int, default=8, help="operators kept from the profiler trace (default 8)")
    p.add_argument("--batched-reps", default="5", metavar="R[,R...]",
                   help="repetitions in the batched-step measurement, one or more (default 5; 1: not measured; "
                        "on a GPU e.g. 8,64)")
    p.add_argument("--tf32", action="store_true", help="CUDA only: float32 products in TensorFloat-32")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--no-reference", action="store_true", help="skip the textbook DataLoader loop")
    p.add_argument("--data-root", type=Path, help="dataset folder (default $BENCHMARK_DATA_ROOT or ~/.cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args, methods: dict[str, MethodInfo]) -> Options:
    bounds = (("--warmup", args.warmup, 0), ("--steps", args.steps, 1), ("--repeats", args.repeats, 1),
              ("--top", args.top, 1), ("--threads", 1 if args.threads is None else args.threads, 1))
    for flag, value, low in bounds:
        if value < low:
            raise BadInput(f"{flag} must be at least {low}, got {value}")
    if args.preset not in configuration.PRESETS:
        raise BadInput(f"unknown preset {args.preset!r}: use one of {', '.join(configuration.PRESETS)}")
    if args.methods:
        names = [n.strip() for n in args.methods.split(",") if n.strip()]
    else:
        names = [n for n, i in methods.items() if i.ok]
    for n in names:
        if n not in methods:
            raise BadInput(f"unknown method {n!r}: `python -m benchmark list` shows {', '.join(methods)}")
        if not methods[n].ok:
            raise BadInput(f"{methods[n].kind} {n!r} cannot be loaded: {methods[n].error}")
    selected = [(methods[n], {}) for n in names]
    if args.variant is None:
        variants = [f"{n}:{v}" for n in names for v in getattr(methods[n].cls, "profile_variants", ())]
    else:
        variants = [v for v in args.variant if v.strip().lower() != "none"]
    for item in variants:
        name, sep, values = item.partition(":")
        if not sep or name not in methods or not methods[name].ok:
            raise BadInput(f"--variant takes METHOD:KEY=VALUE[,KEY=VALUE] naming a loadable method, "
                           f"got {item!r}")
        overrides = configuration.parse_assignments(values.split(","), flag="--variant")
        configuration.resolve(methods[name].cls, args.preset, overrides)  # BadInput for a bad key or value
        selected.append((methods[name], overrides))
    batched = _batched_reps(args.batched_reps)
    choice = devices.choose(args.device)
    precision = "tf32" if args.tf32 else "fp32"
    devices.check_precision(choice.kind, precision)
    return Options(out=args.out, datasets=_datasets(args), selected=selected, preset=args.preset,
                   batched_reps=batched, device=choice.kind, gpu=choice.gpus[0] if choice.gpus else None,
                   precision=precision,
                   warmup=args.warmup, steps=args.steps, repeats=args.repeats, top_ops=args.top,
                   reference=not args.no_reference, data_root=args.data_root, progress=not args.no_progress)


def _batched_reps(text: str) -> tuple[int, ...]:
    try:
        reps = tuple(int(r) for r in str(text).split(",") if r.strip())
    except ValueError:
        raise BadInput(f"--batched-reps takes whole numbers R[,R...], got {text!r}") from None
    if not reps or min(reps) < 1:
        raise BadInput(f"--batched-reps must be at least 1, got {text!r}")
    return reps


def _datasets(args) -> list[str]:
    if args.datasets:
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        for n in names:
            if not datasets.is_known(n):
                raise BadInput(f"unknown dataset {n!r}: choose from {', '.join(datasets.DATASET_NAMES)}")
            ok, fix = datasets.availability(n, args.data_root)
            if not ok:
                raise BadInput(fix)
        return names
    for n in PREFERRED_DATASETS:
        if datasets.availability(n, args.data_root)[0]:
            return [n]
    return ["digits"]


def command(args) -> int:
    methods = discover()
    opts = options_from_args(args, methods)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = profile(opts, methods)
    print(format_table(result))
    print(f"written: {Path(opts.out) / 'profiles'}/profile.csv, profile.json, profile.png")
    return 1 if any(r["status"] != "ok" for r in result["rows"]) else 0
