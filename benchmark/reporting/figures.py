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
| ``cd_diagram_<preset>.png`` | average ranks across datasets with Nemenyi's critical difference |

Figures are drawn into memory (:func:`draw_figures`); ``benchmark.reporting.publish`` writes them. Only the
default variant of each method (every variant of a baseline, and every variant of a method stored
without a default) appears in the per-dataset overviews; other variants are in the ablation figures. A scratch
student is labelled by the role it is the control for (``text.scratch_labels``), a role that shares only the
batch order with its scratch student says "order-paired only", and a paired Δ without an interval (all
differences equal) is drawn as a cross with no bar, never as a zero-width interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from benchmark.reporting.figures_across import cd_figures
from benchmark.reporting.figures_dataset import (
    accuracy_figures,
    cost_figures,
    forest_figures,
    schedule_figures,
    step_time_figures,
)
from benchmark.reporting.figures_method import ablation_figures, curve_figures, heatmap_figures, output_figures
from benchmark.reporting.frames import Results
from benchmark.reporting.plot import FigureFile
from benchmark.store import Store

DRAWERS = (accuracy_figures, forest_figures, cost_figures, step_time_figures, curve_figures, ablation_figures,
           heatmap_figures, output_figures, schedule_figures, cd_figures)


@dataclass
class FigureSet:
    files: list[FigureFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per figure function that failed
    seconds: float = 0.0


def image(f: FigureFile, store: Store) -> str:
    """A figure as a markdown image line, linked relative to the report."""
    return f"![{f.title}]({store.relative(f.path)})\n"


def by_kind(figures: FigureSet, kind: str, **match) -> list[FigureFile]:
    return [f for f in figures.files if f.kind == kind and all(getattr(f, k) == v for k, v in match.items())]


def draw_figures(results: Results, store: Store) -> FigureSet:
    """Every figure the store has data for, drawn in memory as PNG files under ``store.figures_dir``."""
    import matplotlib
    import seaborn as sns

    started = time.perf_counter()
    result = FigureSet()
    with matplotlib.rc_context():  # seaborn's theme for these figures only, not for the caller's
        sns.set_theme(style="whitegrid", context="paper")
        for draw in DRAWERS:
            try:
                result.files += draw(results, store.figures_dir)
            except Exception as exc:  # one broken figure must not cost the others (or a suite's tables)
                result.errors.append(f"{draw.__name__}: {type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - started
    return result
