"""The per-dataset overviews: final accuracies, paired Δ against the scratch students (a forest plot), accuracy
against cost, step time, and loss-weight schedules; one figure of each per dataset and preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator

from benchmark.reporting.columns import FINAL_SEL, PRIMARY, SCRATCH, UNTRAINED, VAL_SEL
from benchmark.reporting.frames import Results, main_rows, order_rows
from benchmark.reporting.plot import (
    TICK_FONT,
    FigureFile,
    band,
    drawn,
    height,
    label,
    new_figure,
    palette,
    per_dataset,
    row_label,
    slug,
    step_rows,
    with_labels,
)
from benchmark.reporting.text import config_label

SCHEDULE_METRICS = ("lambda",)  # per-epoch weights of a loss term

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
        files.append(drawn(fig, folder, slug("accuracy", dataset, preset), "accuracy",
                           f"Final accuracy on {dataset}", preset, dataset))
    return files


def scratch_levels(res: Results, rows: pd.DataFrame) -> pd.DataFrame:
    """For each row (a method's role), the mean of the scratch student it is paired with (same pair_key)."""
    partners = res.scratch_partners
    s = res.summary
    s = s[(s.method == SCRATCH) & (s.metric == PRIMARY) & (s.selection == FINAL_SEL)].set_index(
        ["preset", "dataset", "variant"])["mean"]
    out = []
    for r in rows.itertuples():
        variant = partners.get((r.preset, r.dataset, r.method, r.variant, r.role))
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
        files.append(drawn(fig, folder, slug("forest", dataset, preset), "forest",
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
        files.append(drawn(fig, folder, slug("cost", dataset, preset), "cost",
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
        files.append(drawn(fig, folder, slug("step_time", dataset, preset), "step_time",
                           f"Step time on {dataset}", preset, dataset))
    return files



def schedule_figures(res: Results, folder: Path) -> list[FigureFile]:
    rows = step_rows(res, lambda s: s.isin(SCHEDULE_METRICS))
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
        files.append(drawn(fig, folder, slug("schedule", dataset, preset), "schedule",
                           f"Weight schedules on {dataset}", preset, dataset))
    return files

