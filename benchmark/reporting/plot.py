"""What every figure module shares: a figure on its own Agg canvas, rendered to PNG bytes as a :class:`FigureFile`
(written later, with the others, by ``benchmark.reporting.publish``), file names, wrapped labels, colours, the
t-interval band of a curve, and which runs the overviews and per-method figures show."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchmark.naming import slug  # noqa: F401 (the figure modules name their files with it)
from benchmark.reporting import stats
from benchmark.reporting.columns import ORDER, ORDER_ONLY, SCRATCH, is_percent
from benchmark.reporting.frames import Results, main_rows
from benchmark.reporting.text import config_label

DPI = 100
LABEL_WIDTH = 56  # characters per line of a method/variant/role label
TICK_FONT = 7.5  # points, for those labels on the y axis
KEY = ["preset", "dataset", "method", "variant"]


@dataclass
class FigureFile:
    """A drawn figure: where it goes, what it shows, and its PNG bytes."""

    path: Path
    kind: str
    title: str
    preset: str | None = None
    dataset: str | None = None
    method: str | None = None
    png: bytes = field(default=b"", repr=False)


def drawn(fig, folder: Path, name: str, kind: str, title: str, preset: str | None = None,
          dataset: str | None = None, method: str | None = None) -> FigureFile:
    """``fig`` as the file ``<folder>/<name>.png``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return FigureFile(folder / f"{name}.png", kind, title, preset, dataset, method, png=buffer.getvalue())

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



def scale(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def band(values_by_x: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean and t-interval of ``value`` per ``x`` (over repetitions): :func:`stats.mean_ci` of each group, computed
    for all groups at once (a curve has an x per epoch); a group holding a NaN gives NaN, as ``mean_ci`` does."""
    value = values_by_x["value"].astype(float)
    groups = value.groupby(values_by_x[x], sort=True)
    n = groups.size()
    has_nan = value.isna().groupby(values_by_x[x], sort=True).any()
    mean = groups.mean().where(~has_nan)
    std = groups.std(ddof=1).where(~has_nan & (n >= 2))
    df = (n - 1).where(n >= 2).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        half = sps.t.ppf(0.5 + stats.LEVEL / 2, df) * std.to_numpy() / np.sqrt(n.to_numpy(dtype=float))
    return pd.DataFrame({x: n.index.to_numpy(), "mean": mean.to_numpy(), "std": std.to_numpy(),
                         "lo": mean.to_numpy() - half, "hi": mean.to_numpy() + half})


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



def runs_shown(res: Results) -> pd.DataFrame:
    """The runs the per-method figures show: the default variant of each method (the others are ablations)."""
    return main_rows(res.current)


def step_rows(res: Results, predicate: Callable[[pd.Series], pd.Series]) -> pd.DataFrame:
    """Per-epoch (or per-step) metric rows whose name ``predicate`` selects, of the runs shown."""
    m = res.metrics
    rows = m[(m.epoch >= 0) & predicate(m.metric)]
    return rows[rows.run_id.isin(runs_shown(res).run_id)]


def variant_part(variant: str) -> str | None:
    """A variant's part of a file name: none for the default."""
    return None if variant == "default" else variant
