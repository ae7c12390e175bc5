"""The per-method figures: learning curves beside the paired scratch students, each ablation variant against the
default (a panel per factor), per-step per-layer heatmaps and output evolution."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from benchmark.reporting.ablations import main_metric
from benchmark.reporting.columns import SCRATCH, VS_DEFAULT, is_percent
from benchmark.reporting.frames import Results
from benchmark.reporting.plot import (
    KEY,
    TICK_FONT,
    FigureFile,
    band,
    drawn,
    label,
    natural_key,
    new_figure,
    palette,
    runs_shown,
    scale,
    slug,
    step_rows,
    variant_part,
)

CURVE_METRICS = ("train_loss", "val_acc", "test_acc")  # per-epoch rows drawn as learning curves
HEATMAP_METRICS = {"entropy": "Blues_r", "cos_theta": "coolwarm_r"}  # per-step, per-layer rows -> colour map
OUTPUT_PREFIX = "mean_output_"  # per-step rows "mean_output_<unit>" are drawn as output evolution

def curve_figures(res: Results, folder: Path) -> list[FigureFile]:
    m = res.metrics
    curves = m[(m.epoch >= 0) & m.metric.isin(CURVE_METRICS)]
    if curves.empty:
        return []
    runs = runs_shown(res)
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
        files.append(drawn(fig, folder, slug("curves", method, variant_part(variant), dataset, preset), "curves",
                           f"Learning curves of {label(method, variant)} on {dataset}", preset, dataset, method))
    return files



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
        handles = [Line2D([], [], marker="o", ls="", color=colors[r], label=r) for r in roles]
        handles += [Line2D([], [], marker="D", ls="", color="0.15", label="default level (Δ = 0)"),
                    Line2D([], [], marker="X", ls="", color="0.4", label="no interval (all differences equal)")]
        fig.legend(handles=handles, fontsize="x-small", loc="outside right upper")
        metrics = ", ".join(sorted(set(block.metric)))
        fig.suptitle(f"{method} on {dataset} ({preset}): paired Δ {metrics} vs the default, per factor")
        files.append(drawn(fig, folder, slug("ablation", method, dataset, preset), "ablation",
                           f"{method}: each variant against the default", preset, dataset, method))
    return files


def _number_first(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)



def heatmap_figures(res: Results, folder: Path) -> list[FigureFile]:
    import seaborn as sns

    rows = step_rows(res, lambda s: s.isin(list(HEATMAP_METRICS)))
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
        files.append(drawn(fig, folder, slug("heatmap", method, variant_part(variant), dataset, preset), "heatmap",
                           f"{', '.join(metrics)} of {label(method, variant)} on {dataset}", preset, dataset, method))
    return files


def output_figures(res: Results, folder: Path) -> list[FigureFile]:
    rows = step_rows(res, lambda s: s.str.startswith(OUTPUT_PREFIX))
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
        files.append(drawn(fig, folder, slug("outputs", method, variant_part(variant), dataset, preset), "outputs",
                           f"Output evolution of {label(method, variant)} on {dataset}", preset, dataset, method))
    return files
