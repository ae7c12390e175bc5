"""Figures (seaborn style, PNG) under ``<out>/figures/``, drawn from the store alone.

Every figure is driven by what the runs logged, never by method names: a figure whose data is absent is
skipped. Means over repetitions carry 95% Student-t intervals (as in the tables), not bootstrap bands.

| file | what |
|---|---|
| ``accuracy_<dataset>_<preset>.png`` | final accuracies (test, probes) per method and role; scratch level |
| ``forest_<dataset>_<preset>.png`` | paired Δ vs the scratch student, final and validation-selected |
| ``cost_<dataset>_<preset>.png`` | test accuracy against wall time per run |
| ``step_time_<dataset>_<preset>.png`` | median training-step time per method (per-repetition points) |
| ``curves_<method>_<dataset>_<preset>.png`` | learning curves per role, with the paired scratch student |
| ``ablation_<method>_<dataset>_<preset>.png`` | each variant's paired Δ vs the default, a panel per factor |
| ``heatmap_<method>_<dataset>_<preset>.png`` | per-step metrics (entropy, cos θ) per layer role |
| ``outputs_<method>_<dataset>_<preset>.png`` | per-step mean outputs (``mean_output_<unit>`` rows) |
| ``schedule_<dataset>_<preset>.png`` | per-epoch weight schedules (``lambda`` rows) |

Only the default variant of each method (every variant of a baseline, and every variant of a method stored
without a default) appears in the per-dataset overviews; other variants are in the ablation figures. A scratch
student is labelled by the role it is the control for (``tables.scratch_labels``), a role that shares only the
batch order with its scratch student says "order-paired only", and a paired Δ without an interval (all
differences equal) is drawn as a cross with no bar, never as a zero-width interval.
"""

from __future__ import annotations

import io
import re
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator

from benchmark.reporting import stats
from benchmark.store import Store, atomic_write_bytes
from benchmark.reporting.tables import (
    FINAL_SEL,
    ORDER,
    ORDER_ONLY,
    PRIMARY,
    SCRATCH,
    UNTRAINED,
    VAL_SEL,
    VS_DEFAULT,
    Results,
    config_label,
    is_percent,
    load_results,
    main_metric,
    main_rows,
    order_rows,
)

CURVE_METRICS = ("train_loss", "val_acc", "test_acc")  # per-epoch rows drawn as learning curves
HEATMAP_METRICS = {"entropy": "Blues_r", "cos_theta": "coolwarm_r"}  # per-step, per-layer rows -> colour map
OUTPUT_PREFIX = "mean_output_"  # per-step rows "mean_output_<unit>" are drawn as output evolution
SCHEDULE_METRICS = ("lambda",)  # per-epoch weights of a loss term
DPI = 100
LABEL_WIDTH = 56  # characters per line of a method/variant/role label
TICK_FONT = 7.5  # points, for those labels on the y axis
KEY = ["preset", "dataset", "method", "variant"]


@dataclass
class FigureFile:
    path: Path
    kind: str
    title: str
    preset: str | None = None
    dataset: str | None = None
    method: str | None = None


@dataclass
class FigureSet:
    files: list[FigureFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per figure function that failed
    seconds: float = 0.0


def write_figures(out: Path | str, results: Results | None = None) -> FigureSet:
    """Draw every figure the store has data for; PNGs from earlier calls that are not redrawn are removed."""
    import matplotlib
    import seaborn as sns

    started = time.perf_counter()
    results = results or load_results(out)
    folder = Store(out).figures_dir
    folder.mkdir(parents=True, exist_ok=True)
    result = FigureSet()
    with matplotlib.rc_context():  # seaborn's theme for these figures only, not for the caller's
        sns.set_theme(style="whitegrid", context="paper")
        for draw in DRAWERS:
            try:
                result.files += draw(results, folder)
            except Exception as exc:  # one broken figure must not cost the others (or a suite's tables)
                result.errors.append(f"{draw.__name__}: {type(exc).__name__}: {exc}")
    drawn = {f.path.resolve() for f in result.files}
    for stale in folder.glob("*.png"):
        if stale.resolve() not in drawn:
            stale.unlink()
    result.seconds = time.perf_counter() - started
    return result


# ---- helpers -------------------------------------------------------------------------------------------

def slug(*parts) -> str:
    text = "_".join(str(p) for p in parts if p is not None)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-")[:120]


def natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def label(method: str, variant: str, role: str | None = None) -> str:
    """``method [variant] · role``, wrapped at commas so that long variant names do not squeeze the axes."""
    text = method if variant == "default" else f"{method} [{variant.replace(',', ', ')}]"
    text = f"{text} · {role}" if role else text
    return textwrap.fill(text, LABEL_WIDTH, break_long_words=True)


def height(labels, minimum: float = 0.35) -> float:
    """Inches of axis needed for these (possibly multi-line) tick labels."""
    return sum(max(minimum, 0.14 + 0.14 * (1 + name.count("\n"))) for name in labels)


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kwargs):
    """A figure on its own Agg canvas: no pyplot, no global backend, nothing left open."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def save(fig, folder: Path, name: str) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    path = folder / f"{name}.png"
    atomic_write_bytes(path, buffer.getvalue())
    return path


def scale(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def band(values_by_x: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean and t-interval of ``value`` per ``x`` (over repetitions)."""
    rows = [(k, *stats.mean_ci(g.value.to_numpy())) for k, g in values_by_x.groupby(x, sort=True)]
    return pd.DataFrame(rows, columns=[x, "mean", "std", "lo", "hi"])


def row_label(name: str, method: str, role: str | None = None, pairing: str | None = None) -> str:
    """A table row's readable ``name`` (``tables.model_labels``) · role, wrapped; a scratch student's name says
    what it is the control for, so its role is left out; "(order-paired only)" when the pairing is that."""
    text = name if method == SCRATCH or not role or role == name else f"{name} · {role}"
    if pairing == ORDER:
        text += f" ({ORDER_ONLY})"
    return textwrap.fill(text, LABEL_WIDTH, break_long_words=True)


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    names = frame["label"] if "label" in frame else [config_label(m, v) for m, v in zip(frame.method,
                                                                                         frame.variant, strict=True)]
    pairing = frame["pairing"] if "pairing" in frame else [None] * len(frame)
    labels = [row_label(n if isinstance(n, str) else config_label(m, v), m, r, p)
              for n, m, v, r, p in zip(names, frame.method, frame.variant, frame.role, pairing, strict=True)]
    return frame.assign(label=labels)


def palette(n: int):
    import seaborn as sns

    return sns.color_palette("tab10" if n <= 10 else "husl", max(n, 1))


def per_dataset(frame: pd.DataFrame):
    for (preset, dataset), block in frame.groupby(["preset", "dataset"], sort=True):
        yield preset, dataset, block


# ---- per-dataset overviews -----------------------------------------------------------------------------

def accuracy_figures(res: Results, folder: Path) -> list[FigureFile]:
    s = res.summary
    s = main_rows(s[(s.selection == FINAL_SEL) & s.metric.str.endswith(("_acc", "_acc" + UNTRAINED))])
    files = []
    for preset, dataset, block in per_dataset(s):
        rows = with_labels(order_rows(block))
        order = list(dict.fromkeys(rows.label))
        metrics = sorted(rows.metric.unique(), key=lambda m: (m != PRIMARY, m))
        fig, axes = new_figure(8.5, 1.2 + height(order))
        ax = axes[0, 0]
        y = {name: i for i, name in enumerate(order)}
        colors = dict(zip(metrics, palette(len(metrics)), strict=True))
        offsets = np.linspace(-0.2, 0.2, len(metrics)) if len(metrics) > 1 else [0.0]
        for metric, off in zip(metrics, offsets, strict=True):
            part = rows[rows.metric == metric]
            ys = [y[name] + off for name in part.label]
            err = np.vstack([part["mean"] - part.ci_low, part.ci_high - part["mean"]]).clip(min=0) * 100
            ax.errorbar(part["mean"] * 100, ys, xerr=np.nan_to_num(err), fmt="o", color=colors[metric],
                        label=metric, capsize=2, markersize=4)
        levels = scratch_levels(res, rows[(rows.metric == PRIMARY) & (rows.method != SCRATCH)])
        if len(levels):
            ax.plot(levels["mean"] * 100, [y[name] for name in levels.label], "|", color="0.25",
                    markersize=14, mew=2, label="its scratch student")
        ax.set_yticks(range(len(order)), order, fontsize=TICK_FONT)
        ax.invert_yaxis()
        ax.set_xlabel("accuracy, % (mean ± 95% CI over repetitions)")
        ax.set_title(f"{dataset} ({preset}): final accuracy")
        ax.legend(loc="best", fontsize="small")
        files.append(FigureFile(save(fig, folder, slug("accuracy", dataset, preset)), "accuracy",
                                f"Final accuracy on {dataset}", preset, dataset))
    return files


def scratch_levels(res: Results, rows: pd.DataFrame) -> pd.DataFrame:
    """For each row (a method's role), the mean of the scratch student it is paired with (same pair_key)."""
    v = res.values[res.values.selection == FINAL_SEL].dropna(subset=["pair_key"])
    key_of = v.drop_duplicates(["preset", "dataset", "method", "variant", "role"]).set_index(
        ["preset", "dataset", "method", "variant", "role"]).pair_key
    scratch = v[v.method == SCRATCH].drop_duplicates(["preset", "dataset", "pair_key"]).set_index(
        ["preset", "dataset", "pair_key"]).variant
    s = res.summary
    s = s[(s.method == SCRATCH) & (s.metric == PRIMARY) & (s.selection == FINAL_SEL)].set_index(
        ["preset", "dataset", "variant"])["mean"]
    out = []
    for r in rows.itertuples():
        key = key_of.get((r.preset, r.dataset, r.method, r.variant, r.role))
        variant = scratch.get((r.preset, r.dataset, key)) if key is not None else None
        if variant is not None and (r.preset, r.dataset, variant) in s.index:
            out.append({"label": r.label, "mean": s[(r.preset, r.dataset, variant)]})
    return pd.DataFrame(out, columns=["label", "mean"])


def forest_figures(res: Results, folder: Path) -> list[FigureFile]:
    s = res.summary
    to_scratch = s.delta_vs.map(lambda v: isinstance(v, str) and v.startswith(SCRATCH)).astype(bool)
    s = s[to_scratch & s.delta_mean.notna() & s.metric.eq(PRIMARY)]
    files = []
    for preset, dataset, block in per_dataset(main_rows(s)):
        block = with_labels(order_rows(block))
        order = list(dict.fromkeys(block.label))
        fig, axes = new_figure(8.0, 1.3 + height(order))
        ax = axes[0, 0]
        y = {name: i for i, name in enumerate(order)}
        for selection, off, marker, color in ((FINAL_SEL, -0.12, "o", "C0"), (VAL_SEL, 0.12, "s", "C1")):
            part = block[block.selection == selection]
            if part.empty:
                continue
            bounded = part[part.delta_ci_low.notna() & part.delta_ci_high.notna()]
            err = np.vstack([bounded.delta_mean - bounded.delta_ci_low,
                             bounded.delta_ci_high - bounded.delta_mean]) * 100
            if len(bounded):
                ax.errorbar(bounded.delta_mean * 100, [y[n] + off for n in bounded.label], xerr=err,
                            fmt=marker, color=color, capsize=2, markersize=5, markerfacecolor="none",
                            label=f"{selection} (filled: Holm p<0.05)")
            bare = part[part.delta_ci_low.isna() | part.delta_ci_high.isna()]
            if len(bare):
                ax.plot(bare.delta_mean * 100, [y[n] + off for n in bare.label], "x", color=color, markersize=6,
                        label=f"{selection}: no interval (all differences equal, or n=1)")
            sig = bounded[bounded.significant.astype(bool)]
            ax.plot(sig.delta_mean * 100, [y[n] + off for n in sig.label], marker, color=color, markersize=5)
        ax.axvline(0, color="0.2", lw=1)
        ax.set_yticks(range(len(order)), order, fontsize=TICK_FONT)
        ax.invert_yaxis()
        ax.set_xlabel("Δ test accuracy vs paired scratch student, pp (95% CI)")
        ax.set_title(f"{dataset} ({preset}): paired difference from scratch")
        ax.legend(loc="best", fontsize="small")
        files.append(FigureFile(save(fig, folder, slug("forest", dataset, preset)), "forest",
                                f"Δ vs scratch on {dataset}", preset, dataset))
    return files


def cost_figures(res: Results, folder: Path) -> list[FigureFile]:
    s = res.summary
    s = main_rows(s[(s.selection == FINAL_SEL) & (s.metric == PRIMARY) & s.wall_time_s.gt(0)])
    files = []
    for preset, dataset, block in per_dataset(s):
        block = order_rows(block)
        fig, axes = new_figure(10.0, max(4.0, 1.0 + 0.3 * len(block)))
        ax = axes[0, 0]
        markers = "osD^v<>ph"
        for i, (color, r) in enumerate(zip(palette(len(block)), block.itertuples(), strict=True)):
            err = [[max(r.mean - r.ci_low, 0) * 100], [max(r.ci_high - r.mean, 0) * 100]]
            ax.errorbar([r.wall_time_s], [r.mean * 100], yerr=np.nan_to_num(err),
                        fmt=markers[i % len(markers)], color=color, capsize=2,
                        label=row_label(r.label, r.method, r.role, r.pairing))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.set_xlabel("wall time per run, s (mean over repetitions, log scale)")
        ax.set_ylabel("test accuracy, % (mean ± 95% CI)")
        ax.set_title(f"{dataset} ({preset}): accuracy against cost")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=TICK_FONT, frameon=False)
        files.append(FigureFile(save(fig, folder, slug("cost", dataset, preset)), "cost",
                                f"Accuracy against wall time on {dataset}", preset, dataset))
    return files


def step_time_figures(res: Results, folder: Path) -> list[FigureFile]:
    runs = main_rows(res.current[res.current.step_median_s.notna()].copy())
    files = []
    for preset, dataset, block in per_dataset(runs):
        block = order_rows(block.assign(role="")).assign(ms=block.step_median_s.astype(float) * 1e3)
        block["label"] = [row_label(res.labels.get((preset, dataset, m, v), config_label(m, v)), m)
                          for m, v in zip(block.method, block.variant, strict=True)]
        order = list(dict.fromkeys(block.label))
        fig, axes = new_figure(8.0, 1.2 + height(order))
        ax = axes[0, 0]
        means = block.groupby("label").ms.mean().reindex(order)
        ax.barh(range(len(order)), means.to_numpy(), color="C0", alpha=0.35)
        ax.plot(block.ms, [order.index(n) for n in block.label], "o", color="C0", markersize=3)
        ax.set_yticks(range(len(order)), order, fontsize=TICK_FONT)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("training step, ms (bars: mean over repetitions; points: each run's median step)")
        ax.set_title(f"{dataset} ({preset}): step time")
        files.append(FigureFile(save(fig, folder, slug("step_time", dataset, preset)), "step_time",
                                f"Step time on {dataset}", preset, dataset))
    return files


# ---- per-method figures ----------------------------------------------------------------------------------

def _runs_of(res: Results) -> pd.DataFrame:
    return main_rows(res.current)


def curve_figures(res: Results, folder: Path) -> list[FigureFile]:
    m = res.metrics
    curves = m[(m.epoch >= 0) & m.metric.isin(CURVE_METRICS)]
    if curves.empty:
        return []
    runs = _runs_of(res)
    curves = curves[curves.run_id.isin(runs.run_id)]
    pair = res.roles.dropna(subset=["pair_key"])
    files = []
    for (preset, dataset, method, variant), block in curves.groupby(KEY):
        if method == SCRATCH:
            continue  # drawn beside every method it is paired with
        # each role (solid) beside the scratch student it is paired with (dashed, same colour)
        same = (curves.dataset == dataset) & (curves.preset == preset) & (curves.method == SCRATCH)
        roles = sorted(block.role.unique(), key=natural_key)
        lines = []
        for role, color in zip(roles, palette(len(roles)), strict=True):
            lines.append((role, block[block.role == role], color, "-"))
            keys = set(pair[pair.run_id.isin(set(block.run_id)) & (pair.role == role)].pair_key)
            partner = set(pair[pair.pair_key.isin(keys)].run_id)
            scratch = curves[same & curves.run_id.isin(partner)]
            if len(scratch):
                lines.append((f"scratch for {role}", scratch, color, "--"))
        metrics = [c for c in CURVE_METRICS if c in set(block.metric)]
        fig, axes = new_figure(3.6 * len(metrics), 3.2, 1, len(metrics))
        for ax, metric in zip(axes[0], metrics, strict=True):
            for name, g, color, style in lines:
                b = band(g[g.metric == metric], "epoch")
                if b.empty:
                    continue
                k = scale(metric)
                ax.plot(b.epoch, b["mean"] * k, style, color=color, label=name, marker=".")
                ax.fill_between(b.epoch, b.lo * k, b.hi * k, color=color, alpha=0.12, lw=0)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(metric + (" (%)" if is_percent(metric) else ""))
        axes[0, 0].legend(fontsize="x-small")
        fig.suptitle(f"{label(method, variant)} on {dataset} ({preset}): learning curves (mean ± 95% CI)")
        path = save(fig, folder, slug("curves", method, _v(variant), dataset, preset))
        files.append(FigureFile(path, "curves", f"Learning curves of {label(method, variant)} on {dataset}",
                                preset, dataset, method))
    return files


def _v(variant: str) -> str | None:
    return None if variant == "default" else variant


SEVERAL = "several factors"  # the panel of variants that change more than one field (``ablate --grid``)
PANELS_PER_ROW = 3


def ablation_panels(block: pd.DataFrame) -> list[tuple[str, pd.DataFrame, list[str], str | None]]:
    """(factor, its variants' rows, the levels in order, the default level) per one-factor panel, then
    (SEVERAL, rows, their ``changed`` labels, None) for the variants that change several fields."""
    variants = block[block.variant != "default"]
    panels = []
    for factor, rows in variants[variants.n_factors == 1].groupby("factors", sort=True):
        default = rows.default_level.iloc[0]
        levels = sorted(set(rows[f"param.{factor}"].astype(str)) | {str(default)}, key=_number_first)
        panels.append((factor, rows, levels, str(default)))
    several = variants[variants.n_factors != 1]
    if len(several):
        names = several.changed.where(several.changed.astype(bool), several.variant)
        several = several.assign(changed=names)
        panels.append((SEVERAL, several, sorted(set(names), key=natural_key), None))
    return panels


def ablation_figures(res: Results, folder: Path) -> list[FigureFile]:
    """Per method, dataset and preset: each variant's paired Δ against the method's default run of the same
    repetition (each role's main metric: test accuracy, or e.g. a label-free layer's probe accuracy), with its 95%
    interval. A panel per factor: one row per level, the default level marked at 0; variants that change several
    factors share a last panel, labelled by all of them. A Δ without an interval is a cross with no bar."""
    import seaborn as sns

    a = res.ablations
    if a.empty:
        return []
    files = []
    mean, lo, hi = (VS_DEFAULT + k for k in ("delta_mean", "delta_ci_low", "delta_ci_high"))
    for (preset, dataset, method), block in a.groupby(["preset", "dataset", "method"], sort=True):
        block = main_metric(block)
        panels = ablation_panels(block)
        if not panels:
            continue
        roles = sorted(block.role.unique(), key=natural_key)
        colors = dict(zip(roles, palette(len(roles)), strict=True))
        offsets = dict(zip(roles, np.linspace(-0.25, 0.25, len(roles)) if len(roles) > 1 else [0.0], strict=True))
        ncols = min(PANELS_PER_ROW, len(panels))
        nrows = -(-len(panels) // ncols)
        tallest = max(len(levels) for _, _, levels, _ in panels)
        row_height = 1.3 + (0.28 + 0.08 * len(roles)) * tallest
        fig, axes = new_figure(4.0 * ncols + (1.5 if any(f == SEVERAL for f, *_ in panels) else 0),
                               row_height * nrows + 0.5, nrows, ncols)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (factor, rows, levels, default) in zip(axes.flat, panels, strict=False):
            column = "changed" if factor == SEVERAL else f"param.{factor}"
            y = {level: i for i, level in enumerate(levels)}
            rows = rows.assign(_y=[y[str(v)] + offsets[r] for v, r in zip(rows[column], rows.role, strict=True)],
                               _d=rows[mean].astype(float) * [scale(m) for m in rows.metric])
            bounded = rows[rows[lo].notna() & rows[hi].notna()]
            for role, part in bounded.groupby("role"):
                k = np.array([scale(m) for m in part.metric])
                err = np.vstack([part[mean] - part[lo], part[hi] - part[mean]]).astype(float) * k
                ax.errorbar(part._d, part._y, xerr=err, fmt="none", ecolor=colors[role], capsize=2, lw=1.2)
            if len(bounded):
                sns.scatterplot(data=bounded, x="_d", y="_y", hue="role", palette=colors, hue_order=roles, ax=ax,
                                s=30, legend=False, zorder=3)
            bare = rows[rows[lo].isna() | rows[hi].isna()]
            if len(bare):
                sns.scatterplot(data=bare, x="_d", y="_y", hue="role", palette=colors, hue_order=roles, ax=ax,
                                marker="X", s=45, legend=False, zorder=3)
            if default is not None:
                ax.plot([0.0], [y[default]], "D", color="0.15", markersize=6, zorder=4)
            ax.axvline(0, color="0.3", lw=1)
            names = [f"{level} (default)" if level == default else level for level in levels]
            ax.set_yticks(range(len(levels)), [textwrap.fill(n, 28) for n in names], fontsize=TICK_FONT)
            ax.set_ylim(len(levels) - 0.5, -0.5)
            ax.set_ylabel("")
            units = {" pp" if is_percent(m) else "" for m in rows.metric}
            ax.set_xlabel(f"Δ vs default{',' + units.pop() if len(units) == 1 else ''} (95% CI)")
            ax.set_title(factor)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", ls="", color=colors[r], label=r) for r in roles]
        handles += [Line2D([], [], marker="D", ls="", color="0.15", label="default level (Δ = 0)"),
                    Line2D([], [], marker="X", ls="", color="0.4", label="no interval (all differences equal)")]
        fig.legend(handles=handles, fontsize="x-small", loc="outside right upper")
        metrics = ", ".join(sorted(set(block.metric)))
        fig.suptitle(f"{method} on {dataset} ({preset}): paired Δ {metrics} vs the default, per factor")
        files.append(FigureFile(save(fig, folder, slug("ablation", method, dataset, preset)), "ablation",
                                f"{method}: each variant against the default", preset, dataset, method))
    return files


def _number_first(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _step_rows(res: Results, predicate: Callable[[pd.Series], pd.Series]) -> pd.DataFrame:
    m = res.metrics
    rows = m[(m.epoch >= 0) & predicate(m.metric)]
    return rows[rows.run_id.isin(_runs_of(res).run_id)]


def heatmap_figures(res: Results, folder: Path) -> list[FigureFile]:
    import seaborn as sns

    rows = _step_rows(res, lambda s: s.isin(list(HEATMAP_METRICS)))
    files = []
    for (preset, dataset, method, variant), block in rows.groupby(KEY):
        metrics = [k for k in HEATMAP_METRICS if k in set(block.metric)]
        fig, axes = new_figure(6.5, 1.2 + 2.4 * len(metrics), len(metrics), 1)
        for ax, metric in zip(axes[:, 0], metrics, strict=True):
            grid = block[block.metric == metric].pivot_table(index="role", columns="epoch", values="value",
                                                             aggfunc="mean")
            grid = grid.reindex(sorted(grid.index, key=natural_key))
            bounds = {"vmin": -1.0, "vmax": 1.0} if metric == "cos_theta" else {}
            sns.heatmap(grid, ax=ax, cmap=HEATMAP_METRICS[metric], cbar_kws={"label": metric}, **bounds)
            ax.set_xlabel("step")
            ax.set_ylabel("layer")
            ax.set_title(f"{metric} per layer and step (mean over {block.run_id.nunique()} runs)")
        fig.suptitle(f"{label(method, variant)} on {dataset} ({preset})")
        files.append(FigureFile(save(fig, folder, slug("heatmap", method, _v(variant), dataset, preset)),
                                "heatmap", f"{', '.join(metrics)} of {label(method, variant)} on {dataset}",
                                preset, dataset, method))
    return files


def output_figures(res: Results, folder: Path) -> list[FigureFile]:
    rows = _step_rows(res, lambda s: s.str.startswith(OUTPUT_PREFIX))
    files = []
    for (preset, dataset, method, variant), block in rows.groupby(KEY):
        fig, axes = new_figure(6.5, 3.6)
        ax = axes[0, 0]
        names = sorted(block.metric.unique(), key=natural_key)
        for name, color in zip(names, palette(len(names)), strict=True):
            b = band(block[block.metric == name], "epoch")
            ax.plot(b.epoch, b["mean"], color=color, label=name[len(OUTPUT_PREFIX):])
        ax.set_xlabel("step")
        ax.set_ylabel("mean output")
        roles = ", ".join(sorted(block.role.unique(), key=natural_key))
        ax.set_title(f"{label(method, variant)} on {dataset} ({preset}): output evolution ({roles})")
        ax.legend(fontsize="x-small", ncol=2, title="unit", title_fontsize="x-small")
        files.append(FigureFile(save(fig, folder, slug("outputs", method, _v(variant), dataset, preset)),
                                "outputs", f"Output evolution of {label(method, variant)} on {dataset}",
                                preset, dataset, method))
    return files


def schedule_figures(res: Results, folder: Path) -> list[FigureFile]:
    rows = _step_rows(res, lambda s: s.isin(SCHEDULE_METRICS))
    files = []
    for preset, dataset, block in per_dataset(rows):
        groups = list(block.groupby(["metric", "method", "variant", "role"], sort=True))
        fig, axes = new_figure(6.5, 3.6)
        ax = axes[0, 0]
        for ((metric, method, variant, role), g), color in zip(groups, palette(len(groups)), strict=True):
            b = band(g, "epoch")
            ax.plot(b.epoch, b["mean"], marker=".", color=color,
                    label=f"{metric}: {label(method, variant, role)}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("weight")
        ax.set_title(f"{dataset} ({preset}): loss-weight schedules")
        ax.legend(fontsize="x-small")
        files.append(FigureFile(save(fig, folder, slug("schedule", dataset, preset)), "schedule",
                                f"Weight schedules on {dataset}", preset, dataset))
    return files


DRAWERS = (accuracy_figures, forest_figures, cost_figures, step_time_figures, curve_figures, ablation_figures,
           heatmap_figures, output_figures, schedule_figures)

