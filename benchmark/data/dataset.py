"""A loaded dataset: its three splits in memory, labels as tensors, and cached float32 views (:mod:`.views`).

Tensors returned by ``labels`` and ``view`` are cached and shared: treat them as read-only. Asked for on a GPU
(``device=``), each is copied there once per process and the copy is cached too: a worker that trains many runs
on one dataset moves it to its GPU once.
"""

from __future__ import annotations

import hashlib
import math
import threading

import numpy as np
import torch

from benchmark.data import views
from benchmark.data.splits import SPLITS


class Dataset:
    """One dataset's train/val/test splits, with views ``image``, ``flat`` and ``pca:K[...]`` (see :mod:`.views`)."""

    def __init__(self, name, class_names, splits, source, params, pixel_max=None):
        self.name = name
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.input_shape = tuple(int(d) for d in splits["train"][0].shape[1:])
        self.source = source
        self._x = {s: x for s, (x, _) in splits.items()}  # raw: uint8 pixels, or a float signal
        self._y = {s: torch.from_numpy(np.ascontiguousarray(y, np.int64)) for s, (_, y) in splits.items()}
        self._params = params
        self._pixel_max = pixel_max
        self._views: dict[tuple, torch.Tensor] = {}
        self._device_views: dict[tuple, torch.Tensor] = {}  # (view key, split, device) -> the view's copy there
        self._device_labels: dict[tuple, torch.Tensor] = {}
        self._pca: dict[tuple, tuple] = {}
        self._ranks: dict[tuple | None, int] = {}
        self._lock = threading.RLock()
        self._fingerprint = None
        self._fine = None

    def __repr__(self):
        sizes = ", ".join(f"{s}={self.size(s)}" for s in SPLITS)
        return f"Dataset({self.name!r}, {sizes}, input_shape={self.input_shape})"

    def _split(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return split

    def size(self, split: str) -> int:
        return len(self._y[self._split(split)])

    def labels(self, split: str, device: torch.device | None = None) -> torch.Tensor:
        labels = self._y[self._split(split)]
        return labels if _on_cpu(device) else self._copy(self._device_labels, (split, str(device)), labels, device)

    def fine_labels(self, split: str) -> torch.Tensor:
        """The original labels behind a superclass task (``<name>:GxK``); the labels themselves otherwise."""
        return self._fine[self._split(split)] if self._fine is not None else self.labels(split)

    def superclasses(self, groups: int, size: int) -> Dataset:
        """This dataset with its labels collapsed into ``groups`` superclasses of ``size`` consecutive labels."""
        if groups * size != self.num_classes:
            raise ValueError(f"{self.name} has {self.num_classes} classes, not {groups}x{size}")
        splits = {s: (self._x[s], self._y[s].numpy() // size) for s in SPLITS}
        names = ["+".join(self.class_names[g * size:(g + 1) * size]) for g in range(groups)]
        coarse = Dataset(f"{self.name}:{groups}x{size}", names, splits, self.source, self._params, self._pixel_max)
        coarse._fine = dict(self._y)
        # same inputs: share the cached views (on every device), PCA fits and ranks
        coarse._views, coarse._pca, coarse._ranks = self._views, self._pca, self._ranks
        coarse._device_views = self._device_views
        return coarse

    def _parse(self, spec: str):
        key = views.parse(spec, self.input_shape, self.size("train"), self.name)
        if isinstance(key, views.PCAView):  # K above the rank would be noise components (see views)
            key = views.capped(key, self.pca_rank(key.part), spec)
        return key

    def pca_rank(self, part: tuple[int, int] | None = None) -> int:
        """The most components a PCA view of ``part`` (None: the whole example) has: the numerical rank of its
        centred training input (:func:`views.numerical_rank`). A ``pca:K`` view with a larger K gets this many."""
        with self._lock:
            if part not in self._ranks:
                self._ranks[part] = views.numerical_rank(views.select(self.view("image", "train").numpy(), part))
            return self._ranks[part]

    def view_shape(self, spec: str) -> tuple[int, ...]:
        """The shape of one example of view ``spec`` (a ``pca:K`` view's K capped at :meth:`pca_rank`)."""
        return views.shape(self._parse(spec), self.input_shape)

    def view(self, spec: str, split: str, device: torch.device | None = None) -> torch.Tensor:
        """Float32, contiguous, (N, *view_shape(spec)); computed once per (spec, split), on the CPU, and copied to
        ``device`` once when asked for there."""
        key, split = self._parse(spec), self._split(split)
        with self._lock:
            if (key, split) not in self._views:
                self._views[key, split] = self._compute(key, split)
            x = self._views[key, split]
        return x if _on_cpu(device) else self._copy(self._device_views, (key, split, str(device)), x, device)

    def _copy(self, cache: dict, key: tuple, tensor: torch.Tensor, device) -> torch.Tensor:
        with self._lock:
            if key not in cache:
                cache[key] = tensor.to(device)
            return cache[key]

    def _compute(self, key, split: str) -> torch.Tensor:
        if isinstance(key, views.PCAView):
            pca, scaler = self._fit_pca(key)
            x = views.select(self.view("image", split).numpy(), key.part)
            return torch.from_numpy(views.project(x, pca, scaler, key.split_scaler and split != "train"))
        if key[0] == "image":
            x = self._x[split].astype(np.float32)
            if self._pixel_max is not None:  # None: a float signal (mnist1d's, standardised by its package) as is
                x /= np.float32(self._pixel_max)
            return torch.from_numpy(np.ascontiguousarray(x))
        return self.view("image", split).reshape(self.size(split), math.prod(self.input_shape))  # "flat"

    def _fit_pca(self, key: views.PCAView):
        if key.fit not in self._pca:
            self._pca[key.fit] = views.fit_pca(views.select(self.view("image", "train").numpy(), key.part), key)
        return self._pca[key.fit]

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of every split's raw data and labels: equal iff the splits are identical."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for s in SPLITS:
                for a in (self._x[s], self._y[s].numpy()):
                    h.update(f"{s}{a.dtype}{a.shape}".encode())
                    h.update(np.ascontiguousarray(a).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def summary(self) -> dict:
        """JSON-ready provenance: name, source, sizes per split, shapes, split arguments, data fingerprint."""
        return {"name": self.name, "source": self.source, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), **{f"n_{s}": self.size(s) for s in SPLITS},
                **self._params, "fingerprint": self.fingerprint()}


def _on_cpu(device) -> bool:
    return device is None or torch.device(device).type == "cpu"
