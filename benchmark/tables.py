"""Tidy tables from the store: ``metrics.parquet``/``.csv`` (one row per run, role, epoch, metric), ``runs.csv``
(one row per run with its parameters) and ``summary.csv``/``summary.md`` (per dataset, method, variant and role).

``epoch == -1`` marks the final evaluation of the model a method ends with (the official numbers); other epochs are
learning curves. Non-finite values are never written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.store import Store, atomic_write_bytes

METRIC_COLUMNS = ["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric", "value"]


def metrics_frame(store: Store) -> pd.DataFrame:
    rows = []
    for rec in store.iter_runs():
        if rec.get("status") != "ok":
            continue
        for role, epoch, metric, value in rec.get("metrics", []):
            if value is None or not math.isfinite(value):
                continue
            rows.append((rec["run_id"], rec["method"], rec["variant"], rec["dataset"], rec["rep"], role, epoch,
                         metric, float(value)))
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return frame.astype({"rep": "int64", "epoch": "int64", "value": "float64"})


def runs_frame(store: Store) -> pd.DataFrame:
    rows = []
    for rec in store.iter_runs():
        timing = rec.get("timing") or {}
        row = {
            "run_id": rec["run_id"], "method": rec["method"], "kind": rec.get("kind"), "variant": rec["variant"],
            "dataset": rec["dataset"], "rep": rec["rep"], "seed": rec.get("seed"), "preset": rec.get("preset"),
            "status": rec["status"], "error": rec.get("error"), "wall_time_s": rec.get("wall_time_s"),
            "step_median_s": timing.get("step_median_s"), "step_iqr_s": timing.get("step_iqr_s"),
            "samples_per_s": timing.get("samples_per_s"), "source_hash": rec.get("source_hash"),
            "git_commit": (rec.get("provenance") or {}).get("git_commit"),
        }
        row.update({f"cfg.{k}": _scalar(v) for k, v in (rec.get("config") or {}).items()})
        row.update({f"data.{k}": v for k, v in (rec.get("data") or {}).items()})
        for role, info in (rec.get("roles") or {}).items():
            row[f"role.{role}.arch"] = info.get("arch")
            row[f"role.{role}.view"] = info.get("view")
            row[f"role.{role}.pair_key"] = info.get("pair_key")
        rows.append(row)
    return pd.DataFrame(rows)


def _scalar(value):
    return "x".join(map(str, value)) if isinstance(value, list) else value


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, ci_low, ci_high) with a Student-t interval; the interval is NaN for n < 2."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return mean, std, mean - half, mean + half


def summary_frame(metrics: pd.DataFrame, runs: pd.DataFrame, metric_names=("test_acc", "test_auc", "test_nll",
                                                                             "test_ece")) -> pd.DataFrame:
    final = metrics[(metrics.epoch == -1) & metrics.metric.isin(metric_names)]
    wall = runs.set_index("run_id")["wall_time_s"] if len(runs) else pd.Series(dtype=float)
    rows = []
    for (dataset, method, variant, role, metric), group in final.groupby(
            ["dataset", "method", "variant", "role", "metric"], sort=True):
        mean, std, lo, hi = mean_ci(group.value.to_numpy())
        rows.append({"dataset": dataset, "method": method, "variant": variant, "role": role, "metric": metric,
                     "n": len(group), "mean": mean, "std": std, "ci_low": lo, "ci_high": hi,
                     "wall_time_s": float(wall.reindex(group.run_id.unique()).mean())})
    return pd.DataFrame(rows, columns=["dataset", "method", "variant", "role", "metric", "n", "mean", "std",
                                       "ci_low", "ci_high", "wall_time_s"])


def summary_markdown(summary: pd.DataFrame) -> str:
    lines = ["# Summary", "", "Final test metrics (the model each method ends with): mean over repetitions, "
             "sample std and 95% t-interval.", ""]
    for dataset, block in summary.groupby("dataset", sort=True):
        lines += [f"## {dataset}", "", "| method | variant | role | metric | n | mean | std | 95% CI | wall s |",
                  "|---|---|---|---|---:|---:|---:|---|---:|"]
        for r in block.itertuples():
            ci = f"[{r.ci_low:.4f}, {r.ci_high:.4f}]" if not math.isnan(r.ci_low) else "n<2"
            std = f"{r.std:.4f}" if not math.isnan(r.std) else "–"
            lines.append(f"| {r.method} | {r.variant} | {r.role} | {r.metric} | {r.n} | {r.mean:.4f} | {std} | {ci} "
                         f"| {r.wall_time_s:.1f} |")
        lines.append("")
    return "\n".join(lines)


def write_tables(out: Path | str) -> dict[str, Path]:
    store = Store(out)
    folder = store.tables_dir
    metrics = metrics_frame(store)
    runs = runs_frame(store)
    summary = summary_frame(metrics, runs)
    paths = {name: folder / name for name in ("metrics.parquet", "metrics.csv", "runs.csv", "summary.csv",
                                               "summary.md")}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(paths["metrics.parquet"], metrics.to_parquet(index=False))
    atomic_write_bytes(paths["metrics.csv"], metrics.to_csv(index=False).encode())
    atomic_write_bytes(paths["runs.csv"], runs.to_csv(index=False).encode())
    atomic_write_bytes(paths["summary.csv"], summary.to_csv(index=False).encode())
    atomic_write_bytes(paths["summary.md"], summary_markdown(summary).encode())
    return paths
