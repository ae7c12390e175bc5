"""The profile's outputs: ``profile.json``, ``profile.csv`` and the figure ``profile.png``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.store import atomic_write_json


def write_outputs(result: dict[str, Any], folder: Path) -> dict[str, Path]:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "profile.json", "csv": folder / "profile.csv", "figure": folder / "profile.png"}
    atomic_write_json(paths["json"], result)
    flat = [{k: ";".join(f"{x:.4g}" for x in v) if k == "step_median_ms_per_repeat" else v
             for k, v in r.items() if k not in ("operators", "kernels")} for r in result["rows"]]
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
