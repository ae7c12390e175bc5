"""``python -m benchmark profile``: timing profiles of every method's real training step, no per-method code.

Each method runs through the harness as in ``benchmark run``, except that its run context's timer is a
:class:`~benchmark.timing.ProfilingTimer`: after W untimed warm-up steps it times S steps, counts one step's
FLOPs, traces a few steps with ``torch.profiler`` and stops the method by raising ``ProfileComplete`` out of
its loop. Cached dependencies (the shared teacher, a method's own cached teacher) are trained and stored
first, in a preparation pass, and never counted: the shared teacher trains as its own run with its own
timer, and ``run.cached_model`` swaps the timer out while it trains.

Ratios are what this reports with confidence: a ratio is taken within each of R repeats, and the median over
repeats is reported. With one torch thread (``--threads 1``, the choice on a busy machine) every target's
training runs in its own thread within a repeat and the threads take short turns, one at a time, so a change in
the machine's load hits all targets alike; with more torch threads the targets run in turn in the main thread
(see :func:`profile` for why). A
method's ``ratio_to_scratch`` is its step time over the summed step times of the scratch students of its roles
(the same architecture, view and recipe trained alone on the same data): one step of the method costs that
many steps of training its models separately. A baseline without such a pairing (the teacher) and the textbook
loop are compared with the default scratch student; a method with none (SKA) has no ratio.
"""

from __future__ import annotations

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
import torch.nn.functional as F

from benchmark import data as datasets
from benchmark import nn as layers
from benchmark.engine import config as configuration
from benchmark.engine.context import freeze
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings, prepare, run_plan
from benchmark.engine.plan import SCRATCH, make_spec, scratch_spec_for
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.engine.timing import ProfileComplete, ProfilingTimer, StepGate, StepTimer, timed_iter
from benchmark.errors import BadInput
from benchmark.results.store import atomic_write_json

TEXTBOOK = "textbook_kd_loop"
# The same loop fed the way torchvision's MNIST-family datasets feed it: each example a uint8 image turned into
# a PIL image and back into a tensor by ``ToTensor`` (image datasets only).
TEXTBOOK_TORCHVISION = "textbook_kd_loop[torchvision]"
# The teacher again at batches large enough to keep the matrix units busy (the notebook's 64 is reported too).
DEFAULT_VARIANTS = ("teacher:batch_size=256", "teacher:batch_size=1024")
PREFERRED_DATASETS = ("fashion_mnist", "mnist1d")


# ---- running one method under a timer -------------------------------------------------------------------

def target_spec(info: MethodInfo, *, dataset: str, preset: str, overrides: dict[str, Any] | None = None,
                rep: int = 0, base_seed: int = 0, methods: dict[str, MethodInfo] | None = None,
                data_root=None, required: dict[str, RunSpec] | None = None) -> RunSpec:
    """The spec of ``info`` as ``benchmark run`` would plan it (the runs it requires are added to ``required``)."""
    methods = methods or discover()
    data = datasets.load_dataset(dataset, data_root, **configuration.DATA_PRESETS[preset])
    cfg = configuration.resolve(info.cls, preset, overrides or {}, data)
    return make_spec(info, cfg, dataset=dataset, data=data, rep=rep, base_seed=base_seed, preset=preset,
                     methods=methods, specs=required)


def train_requirements(specs: list[RunSpec], settings: Settings, methods: dict[str, MethodInfo]) -> None:
    """Train (or find in the store) every run the profiled specs require, so that their steps are all timed."""
    required: dict[str, RunSpec] = {}
    for spec in specs:
        info = methods[spec.method]
        target_spec(info, dataset=spec.dataset, preset=spec.preset, overrides=spec.config, rep=spec.rep,
                    base_seed=spec.base_seed, methods=methods, data_root=settings.data_root, required=required)
    outcome = run_plan(list(required.values()), settings)  # isolated: a crash of one is its own
    if outcome.failed:
        raise RuntimeError(f"a required run failed: {outcome.failed[0]['error']}")


def run_with_timer(spec: RunSpec, settings: Settings, methods: dict[str, MethodInfo],
                   timer: StepTimer) -> bool:
    """Train ``spec`` as the runner would (nothing is stored for it), with ``timer`` as its step timer.

    Returns True if the timer stopped the loop (``ProfileComplete``), False if the method finished first.
    """
    method, cfg, dataset, _, run = prepare(spec, settings, methods)
    reason = method.skip(cfg, dataset)
    if reason:
        raise RuntimeError(f"skipped: {reason}")
    run.timer = timer
    return until_complete(timer, lambda: method.train(run, cfg))


def until_complete(timer: StepTimer, loop) -> bool:
    """Run ``loop()``; True if ``timer`` stopped it (``ProfileComplete``), False if it ended first. The timer's
    instruments are released either way."""
    try:
        loop()
        return False
    except ProfileComplete:
        return True
    finally:
        if isinstance(timer, ProfilingTimer):
            timer.close()


# ---- the references: matmul peak, the textbook loop -----------------------------------------------------

def matmul_peak(size: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of the best of ``repeats`` fp32 ``size``² matrix products (2·size³ FLOPs each)."""
    a, b, out = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


class TorchvisionStyle(torch.utils.data.Dataset):
    """Examples as ``torchvision.datasets.FashionMNIST`` serves them: a uint8 image -> PIL -> ``ToTensor``
    (then flattened for the MLPs)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision.transforms import ToTensor

        self.images = (images * 255).round().to(torch.uint8).squeeze(1).numpy()  # [N, H, W] or [N, C, H, W]
        self.labels, self.to_tensor = labels.tolist(), ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        image = self.images[i]
        image = Image.fromarray(image if image.ndim == 2 else image.transpose(1, 2, 0))
        return self.to_tensor(image).flatten(), self.labels[i]


def textbook_kd_loop(dataset, timer: StepTimer, *, batch_size: int = 64, temperature: float = 10.0,
                     alpha: float = 0.1, lr: float = 1e-3, seed: int = 0, max_epochs: int = 1000,
                     torchvision_style: bool = False) -> bool:
    """Hinton KD as a tutorial writes it: a ``DataLoader`` over a ``TensorDataset`` (per-example fetch and
    collation; or, ``torchvision_style``, per-example PIL and ``ToTensor`` as torchvision's datasets do) and
    the frozen 784-1200-1200-10 teacher's forward pass at every step of a 784-300-10 student.

    The harness's ``hinton_kd`` computes the same loss from index batches of in-memory tensors and the
    teacher's logits computed once. The teacher here is untrained: its forward pass costs the same. Runs until
    ``timer`` raises ``ProfileComplete`` (returns True) or ``max_epochs`` end (False).
    """
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    x, y = dataset.view("flat", "train"), dataset.labels("train")
    shape, classes = dataset.view_shape("flat"), dataset.num_classes
    teacher = freeze(layers.build("hinton_teacher", shape, classes))
    student = layers.build("hinton_student", shape, classes)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr, eps=1e-7)
    examples = TorchvisionStyle(dataset.view("image", "train"), y) if torchvision_style else TensorDataset(x, y)
    loader = DataLoader(examples, batch_size=batch_size, shuffle=True)

    def loop():
        for _ in range(max_epochs):
            for xb, yb in timed_iter(loader, timer):
                with torch.no_grad():
                    teacher_logits = teacher(xb)
                logits = student(xb)
                soft = F.kl_div(F.log_softmax(logits / temperature, dim=1),
                                F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
                loss = alpha * F.cross_entropy(logits, yb) + (1 - alpha) * temperature**2 * soft
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    return until_complete(timer, loop)


# ---- what gets profiled ---------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    kind: str  # method | baseline | reference
    spec: RunSpec | None  # None for the textbook loop
    scratch: list[str] = field(default_factory=list)  # targets whose summed step times the ratio divides by
    records: list[dict[str, Any]] = field(default_factory=list)  # timings, one per repeat
    instruments: dict[str, Any] = field(default_factory=dict)  # FLOPs of one step, the trace's top operators
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
    reference: bool = True
    data_root: Path | None = None
    progress: bool = True


def profile(opts: Options, methods: dict[str, MethodInfo] | None = None, log=print) -> dict[str, Any]:
    """Profile every target on every dataset; write ``<out>/profiles/profile.{csv,json,png}``; return the
    JSON document."""
    methods = methods or discover()
    settings = Settings(out=opts.out, data_root=opts.data_root, progress=opts.progress)
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
    rows = [row for dataset, targets in plans.items()
            for row in _summarise(targets, dataset, peaks, opts, settings)]
    result = {
        "rows": rows,
        "targets": check_targets(rows),
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
        })
        rows.append(row)
    return rows


def check_targets(rows: list[dict]) -> list[dict[str, Any]]:
    """The issue's speed targets that these rows measure, each with its value and whether it is met."""
    by = {(r["dataset"], r["target"]): r for r in rows if r["status"] == "ok"}
    out = []
    for (dataset, name), row in by.items():
        if name == "hinton_kd":
            out.append({"target": "hinton_kd step <= 1.05x the scratch student's step", "dataset": dataset,
                        "measured": row["ratio_to_scratch"], "threshold": 1.05,
                        "met": bool(row["ratio_to_scratch"] <= 1.05)})
            for reference, fed in ((TEXTBOOK, "TensorDataset"), (TEXTBOOK_TORCHVISION, "torchvision-style")):
                textbook = by.get((dataset, reference))
                if textbook is None:
                    continue
                speedup = float(np.median([a / b for a, b in zip(textbook["step_median_ms_per_repeat"],
                                                                  row["step_median_ms_per_repeat"])]))
                out.append({"target": f"epoch loop (hinton_kd) >= 5x faster than the textbook loop ({fed})",
                            "dataset": dataset, "measured": speedup, "threshold": 5.0,
                            "met": bool(speedup >= 5.0),
                            "detail": f"epoch {textbook['epoch_s']:.3f} s vs {row['epoch_s']:.3f} s"})
        if row["method"] == "teacher":
            out.append({"target": f"teacher step >= 50% of the matmul peak (batch {row['batch_size']})",
                        "dataset": dataset, "measured": row["peak_fraction"], "threshold": 0.5,
                        "met": bool(row["peak_fraction"] >= 0.5)})
    return out


# ---- outputs --------------------------------------------------------------------------------------------

def write_outputs(result: dict[str, Any], folder: Path) -> dict[str, Path]:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "profile.json", "csv": folder / "profile.csv", "figure": folder / "profile.png"}
    atomic_write_json(paths["json"], result)
    flat = [{k: ";".join(f"{x:.4g}" for x in v) if k == "step_median_ms_per_repeat" else v
             for k, v in r.items() if k != "operators"} for r in result["rows"]]
    table = pd.DataFrame(flat)
    tmp = paths["csv"].with_name(".tmp-profile.csv")
    table.to_csv(tmp, index=False)
    os.replace(tmp, paths["csv"])
    ok = table[table["status"] == "ok"] if len(table) else table
    if len(ok):
        _figure(ok, paths["figure"])
    return paths


def _figure(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = table.sort_values(["dataset", "step_median_ms"]).reset_index(drop=True)
    labels = table["label"].to_numpy()
    if table["dataset"].nunique() > 1:
        labels = (table["label"] + " (" + table["dataset"] + ")").to_numpy()
    panels = [("step_median_ms", "median step, ms (bars: IQR)"),
              ("ratio_to_scratch", "step / paired scratch step(s)"),
              ("peak_fraction", "fraction of matmul peak")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.32 * len(table) + 1.6), sharey=True)
    for ax, (column, title) in zip(axes, panels, strict=True):
        values = table[column].to_numpy(dtype=float)
        sns.barplot(x=values, y=labels, ax=ax, color="steelblue", orient="h")
        ax.set_title(title)
        if column == "step_median_ms":
            spread = [values - table["step_q1_ms"].to_numpy(), table["step_q3_ms"].to_numpy() - values]
            ax.errorbar(values, np.arange(len(table)), xerr=spread, fmt="none", color="k", lw=0.8)
        if column != "peak_fraction":
            ax.set_xscale("log")
        if column == "ratio_to_scratch":
            ax.axvline(1.0, color="k", lw=0.8, ls="--")
        if column == "peak_fraction":
            ax.axvline(0.5, color="k", lw=0.8, ls="--")
    fig.tight_layout()
    tmp = path.with_name(".tmp-" + path.name)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _cell(value, spec: str, scale: float = 1.0) -> str:
    """``value`` formatted, or "-" where it is missing (JSON stores NaN as null)."""
    width = int(spec.split(".")[0] or 1)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-".rjust(width)
    return format(value * scale, spec)


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'dataset':14s} {'target':44s} {'batch':>5s} {'median ms':>9s} {'IQR ms':>7s} "
             f"{'samples/s':>9s} {'x scratch':>9s} {'GFLOP/s':>8s} {'% peak':>6s}"]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"{r['dataset']:14s} {r['target'][:44]:44s} failed: {r['note']}")
            continue
        cells = [_cell(r["batch_size"], "5.0f"), _cell(r["step_median_ms"], "9.3f"),
                 _cell(r["step_iqr_ms"], "7.3f"), _cell(r["samples_per_s"], "9.0f"),
                 _cell(r["ratio_to_scratch"], "9.3f"), _cell(r["gflops"], "8.1f"),
                 _cell(r["peak_fraction"], "6.1f", 100)]
        lines.append(f"{r['dataset']:14s} {r['target'][:44]:44s} " + " ".join(cells))
    m = result["machine"]
    peaks = result["peak_gflops_per_repeat"]
    lines.append(f"matmul peak {np.median(peaks):.1f} GFLOP/s (1024² fp32; {min(peaks):.0f}-{max(peaks):.0f} "
                 "over the repeats, each ratio uses its own repeat's); "
                 f"{m['threads']} torch threads; load average {m['load_average_before'][0]:.1f} before, "
                 f"{m['load_average_after'][0]:.1f} after, on {m['cpu_count']} CPUs")
    for t in result["targets"]:
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"target [{t['dataset']}] {t['target']}: {_cell(t['measured'], '.3f')} "
                     f"(threshold {t['threshold']}) {verdict}")
    return "\n".join(lines)


# ---- command line ---------------------------------------------------------------------------------------

def add_arguments(p) -> None:
    p.add_argument("--methods", help="comma-separated methods and baselines (default: every one that loads)")
    p.add_argument("--variant", action="append", metavar="METHOD:KEY=VALUE[,KEY=VALUE]",
                   help=f"also profile METHOD with these config values; repeatable (default: "
                        f"{' and '.join(DEFAULT_VARIANTS)} when the teacher is profiled; 'none': no extra)")
    p.add_argument("--datasets", help="comma-separated datasets (default: fashion_mnist if available, "
                                      "else mnist1d)")
    p.add_argument("--preset", default="quick", help="configs and data budget (default quick)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing (default 10)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per target per repeat (default 50)")
    p.add_argument("--repeats", type=int, default=5, help="repeats; medians over them (default 5)")
    p.add_argument("--top", type=int, default=8, help="operators kept from the profiler trace (default 8)")
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
        variants = [v for v in DEFAULT_VARIANTS if v.partition(":")[0] in names]
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
    return Options(out=args.out, datasets=_datasets(args), selected=selected, preset=args.preset,
                   warmup=args.warmup, steps=args.steps, repeats=args.repeats, top_ops=args.top,
                   reference=not args.no_reference, data_root=args.data_root, progress=not args.no_progress)


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
