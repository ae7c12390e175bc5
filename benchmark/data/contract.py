"""What a dataset module (``benchmark/data/datasets/<name>.py``) provides, and the values it hands to the harness.

A dataset module defines, at module level:

- ``name``: the file's stem (``name = Path(__file__).stem``), the name used on the command line;
- ``order``: an int, its place in listings and in the default grid (smaller first);
- ``classes``: the class names, label ``i`` being ``classes[i]``;
- ``input_shape``: one example's shape with its channel axis, e.g. ``(1, 28, 28)`` or ``(1, 40)``;
- ``citation``: a string naming the paper or source of the data;
- ``locate(root) -> Found | Missing``: cheap (files exist, nothing parsed), under the data root ``root``;
- ``read(found) -> Arrays``: the official train and test splits as numpy arrays; every problem with a file that
  exists raises :class:`benchmark.errors.DatasetCorrupt` with one line naming the file;
- optionally ``download(root)``: fetch the files into ``root`` (only ever called with ``--download``).

Splits, views and budgets are the harness's (:mod:`benchmark.data.splits`, :mod:`benchmark.data.views`), never a
dataset module's; a dataset without an official test split draws a fixed one with
:func:`benchmark.data.splits.fixed_test_split`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Found:
    """Where a dataset was found: ``where`` is shown by ``list``; ``path`` is what ``read`` reads (a folder or a
    file; None when nothing is read from the data root) and identifies the data in the in-process cache."""

    where: str
    path: Path | None = None


@dataclass(frozen=True)
class Missing:
    """A dataset that is not here; ``fix`` is one line saying how to get it."""

    fix: str


@dataclass(frozen=True)
class Arrays:
    """A dataset's official splits. ``x_*``: uint8 pixels or a float signal, shape (n, *input_shape); ``y_*``:
    int64 labels in 0..len(classes)-1. ``pixel_max``: what the ``image`` view divides by (255, 16; None for a
    float signal, used as is). ``source``: where the arrays came from (recorded in the dataset's summary)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pixel_max: float | None
    source: str
