"""Datasets of the benchmark: located on disk (or generated), split reproducibly, held in memory as tensors.

    ds = load_dataset("digits")                  # cached in-process: same arguments -> same object
    x, y = ds.view("image", "train"), ds.labels("train")
    z = ds.view("pca:30", "test")                # PCA + StandardScaler fitted on the train split only

Splits. `train`/`test` are the dataset's official ones (digits has none: it gets a stratified 80/20 split
with the fixed seed 0). With `max_train`, a seeded stratified subset of `max_train` official training examples
is taken first; then the validation split, a seeded stratified `val_fraction` of that training set (never of
the test set), is carved out of it. `max_test` takes a seeded stratified subset of the test set. Each draw has
its own random stream derived from `split_seed`, so e.g. `max_test` does not change the validation split.
Examples keep their original order.

Tensors returned by `labels` and `view` are cached and shared: treat them as read-only.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

import numpy as np
import torch

from benchmark.data_io import (
    CIFAR10_FILES,
    CIFAR10_FOLDER,
    MNIST1D_CACHE,
    DatasetCorrupt,
    DatasetUnavailable,
    find_idx_files,
    load_mnist1d,
    one_line,
    read_cifar10,
    read_idx_dataset,
)

__all__ = [
    "DATASET_NAMES", "FASHION_MNIST_SYSTEM_DIRS", "Dataset", "DatasetCorrupt", "DatasetUnavailable",
    "availability", "clear_cache", "default_data_root", "load_dataset",
]

DATASET_NAMES = ("digits", "mnist1d", "fashion_mnist", "mnist", "kmnist", "cifar10")

# Folders outside the data root searched for Fashion-MNIST's idx files (Debian: `dataset-fashion-mnist`).
FASHION_MNIST_SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist")]

DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED = 0.2, 0  # digits has no official split; fixed, not split_seed

_DIGITS = [str(i) for i in range(10)]
_IDX = {  # name -> (torchvision class and folder, class names)
    "mnist": ("MNIST", _DIGITS),
    "fashion_mnist": ("FashionMNIST", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
    "kmnist": ("KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
}
_STREAM = {"digits_test": 0, "train_subset": 1, "val": 2, "test_subset": 3}  # one random stream per draw
_VIEWS = "'image', 'flat', 'pca:K' or 'pca:K:seed=S'"
_PCA_SPEC = re.compile(r"pca:(\d+)(?::seed=(\d+))?")
_SPLITS = ("train", "val", "test")


def default_data_root() -> Path:
    """$BENCHMARK_DATA_ROOT if set, else ~/.cache/distill-benchmark/data."""
    env = os.environ.get("BENCHMARK_DATA_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "distill-benchmark" / "data"


def _root(root) -> Path:
    return Path(root).expanduser() if root is not None else default_data_root()


_SUPERCLASS = re.compile(r"(?P<base>[a-z0-9_]+):(?P<groups>\d+)x(?P<size>\d+)")


def parse_name(name: str) -> tuple[str, tuple[int, int] | None]:
    """``"fashion_mnist"`` -> ("fashion_mnist", None); ``"fashion_mnist:2x5"`` -> ("fashion_mnist", (2, 5)).

    ``<base>:GxK`` is the superclass task of subclass distillation: the base dataset's classes, in order, collapsed
    into G superclasses of K consecutive labels (2x5: labels 0-4 -> 0, 5-9 -> 1); the original labels stay
    available as :meth:`Dataset.fine_labels`.
    """
    m = _SUPERCLASS.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        return name, None
    return m["base"], (int(m["groups"]), int(m["size"]))


def is_known(name: str) -> bool:
    base, _ = parse_name(name)
    return base in DATASET_NAMES


def _check_name(name: str) -> None:
    if not is_known(name):
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)} "
                       f"(and <name>:GxK superclass tasks, e.g. digits:2x5)")


def _locate(name: str, root: Path) -> tuple[Path | None, str]:
    """(folder with the dataset's files, where) or (None, the one-line fix). Only checks that files exist."""
    if name == "cifar10":
        folder = root / CIFAR10_FOLDER
        missing = [f for f in CIFAR10_FILES if not (folder / f).is_file()]
        if not missing:
            return folder, str(folder)
        return None, (f"dataset 'cifar10' not found under {root} (no {CIFAR10_FOLDER}/{missing[0]}): "
                      f"run with --download (needs network) or put torchvision's {CIFAR10_FOLDER} there")
    tv_name = _IDX[name][0]
    folders = [root / tv_name / "raw"] + (list(FASHION_MNIST_SYSTEM_DIRS) if name == "fashion_mnist" else [])
    for folder in folders:
        if not find_idx_files(folder)[1]:
            return folder, str(folder)
    missing = find_idx_files(folders[0])[1][0]
    where = f"under {root} (no {tv_name}/raw/{missing}[.gz])"
    if name == "fashion_mnist":
        return None, (f"dataset 'fashion_mnist' not found {where} or in {', '.join(map(str, folders[1:]))}: "
                      "`apt-get install dataset-fashion-mnist` (Debian) or use --download (needs network)")
    return None, (f"dataset {name!r} not found {where}: run with --download (needs network) "
                  f"or put torchvision's {tv_name}/raw files there")


def availability(name: str, root=None) -> tuple[bool, str]:
    """Cheap check (files exist; nothing parsed): (True, where it was found) or (False, the one-line fix)."""
    _check_name(name)
    name, _ = parse_name(name)
    root = _root(root)
    if name == "digits":
        return True, "sklearn.datasets.load_digits (bundled with scikit-learn)"
    if name == "mnist1d":
        try:
            import mnist1d  # noqa: F401
        except ImportError:
            return False, "dataset 'mnist1d' needs the mnist1d package: `pip install mnist1d`"
        cache = root / MNIST1D_CACHE
        return True, str(cache) if cache.is_file() else "generated by the mnist1d package (no download)"
    folder, where = _locate(name, root)
    return folder is not None, where


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, "CIFAR10" if name == "cifar10" else _IDX[name][0])
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)  # fetches both splits
    except Exception as e:
        raise DatasetUnavailable(f"dataset {name!r}: download into {root} failed ({one_line(e)}); "
                                 "check the network or put the files there by hand") from e


def _read(name: str, root: Path, download: bool):
    """(x_train, y_train, x_test, y_test, class_names, source, pixel_max): numpy arrays, images with a channel
    axis; pixel_max is what the "image" view divides by (None: a float signal, used as is)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.images.astype(np.uint8)[:, None], d.target.astype(np.int64)  # pixel values are 0..16
        n_test = round(DIGITS_TEST_FRACTION * len(y))
        test = _stratified_pick(y, n_test, _rng(DIGITS_SPLIT_SEED, "digits_test"))
        train = np.setdiff1d(np.arange(len(y)), test)
        return x[train], y[train], x[test], y[test], _DIGITS, "sklearn.datasets.load_digits", 16
    if name == "mnist1d":
        d, source = load_mnist1d(root)
        x_tr, y_tr, x_te, y_te = (d[k] for k in ("x", "y", "x_test", "y_test"))
        y_tr, y_te = y_tr.astype(np.int64), y_te.astype(np.int64)
        return x_tr[:, None], y_tr, x_te[:, None], y_te, _DIGITS, source, None
    folder, where = _locate(name, root)
    if folder is None and download:
        _download(name, root)
        folder, where = _locate(name, root)
    if folder is None:
        raise DatasetUnavailable(where)
    if name == "cifar10":
        return (*read_cifar10(folder), str(folder), 255)
    x_tr, y_tr, x_te, y_te = read_idx_dataset(find_idx_files(folder)[0], (28, 28), 10)
    return x_tr[:, None], y_tr, x_te[:, None], y_te, _IDX[name][1], str(folder), 255


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAM[stream]]))


def _stratified_pick(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of n examples, each class getting its proportional share (largest remainders first)."""
    classes, counts = np.unique(y, return_counts=True)
    take, rem = np.divmod(counts * n, len(y))  # exact integer arithmetic
    extra = n - int(take.sum())
    take[np.lexsort((classes, -rem))[:extra]] += 1  # ties go to the smaller class label
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked))


def _make_splits(x_tr, y_tr, x_te, y_te, val_fraction, split_seed, max_train, max_test):
    if max_train is not None and max_train < len(y_tr):
        keep = _stratified_pick(y_tr, max_train, _rng(split_seed, "train_subset"))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if max_test is not None and max_test < len(y_te):
        keep = _stratified_pick(y_te, max_test, _rng(split_seed, "test_subset"))
        x_te, y_te = x_te[keep], y_te[keep]
    n_val = max(1, round(val_fraction * len(y_tr))) if val_fraction > 0 else 0
    val = _stratified_pick(y_tr, n_val, _rng(split_seed, "val"))
    train = np.setdiff1d(np.arange(len(y_tr)), val)
    return {"train": (x_tr[train], y_tr[train]), "val": (x_tr[val], y_tr[val]), "test": (x_te, y_te)}


class Dataset:
    """One dataset's three splits in memory, with cached float32 views ("image", "flat", "pca:K[:seed=S]")."""

    def __init__(self, name, class_names, splits, source, params, pixel_max=None):
        self.name = name
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.input_shape = tuple(int(d) for d in splits["train"][0].shape[1:])
        self.source = source
        self._x = {s: x for s, (x, _) in splits.items()}  # raw: uint8 pixels, or mnist1d's float64 signal
        self._y = {s: torch.from_numpy(np.ascontiguousarray(y, np.int64)) for s, (_, y) in splits.items()}
        self._params = params
        self._pixel_max = pixel_max
        self._views: dict[tuple, torch.Tensor] = {}
        self._pca: dict[tuple, tuple] = {}
        self._lock = threading.RLock()
        self._fingerprint = None

    def __repr__(self):
        sizes = ", ".join(f"{s}={self.size(s)}" for s in _SPLITS)
        return f"Dataset({self.name!r}, {sizes}, input_shape={self.input_shape})"

    def _split(self, split: str) -> str:
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(_SPLITS)}")
        return split

    def size(self, split: str) -> int:
        return len(self._y[self._split(split)])

    def labels(self, split: str) -> torch.Tensor:
        return self._y[self._split(split)]

    def fine_labels(self, split: str) -> torch.Tensor:
        """The original labels behind a superclass task (``<name>:GxK``); the labels themselves otherwise."""
        fine = getattr(self, "_fine", None)
        return fine[self._split(split)] if fine is not None else self.labels(split)

    def superclasses(self, groups: int, size: int) -> Dataset:
        """This dataset with its labels collapsed into ``groups`` superclasses of ``size`` consecutive labels."""
        if groups * size != self.num_classes:
            raise ValueError(f"{self.name} has {self.num_classes} classes, not {groups}x{size}")
        splits = {s: (self._x[s], self._y[s].numpy() // size) for s in _SPLITS}
        names = ["+".join(self.class_names[g * size:(g + 1) * size]) for g in range(groups)]
        coarse = Dataset(f"{self.name}:{groups}x{size}", names, splits, self.source, self._params,
                         self._pixel_max)
        coarse._fine = dict(self._y)
        coarse._views, coarse._pca = self._views, self._pca  # same inputs: share the cached views and PCA fits
        return coarse

    def _parse(self, spec: str) -> tuple:
        if spec in ("image", "flat"):
            return (spec,)
        m = _PCA_SPEC.fullmatch(spec) if isinstance(spec, str) else None
        if m is None:
            raise ValueError(f"unknown view {spec!r}; valid views: {_VIEWS}")
        k, n_features, n_train = int(m[1]), int(np.prod(self.input_shape)), self.size("train")
        if not 1 <= k <= min(n_features, n_train):
            raise ValueError(f"view {spec!r}: K must be 1..{min(n_features, n_train)} for {self.name} "
                             f"({n_features} features, {n_train} training examples)")
        return ("pca", k, None if m[2] is None else int(m[2]))

    def view_shape(self, spec: str) -> tuple[int, ...]:
        key = self._parse(spec)
        return {"image": self.input_shape, "flat": (int(np.prod(self.input_shape)),)}.get(key[0], key[1:2])

    def view(self, spec: str, split: str) -> torch.Tensor:
        """Float32, contiguous, (N, *view_shape(spec)); computed once per (spec, split)."""
        key, split = self._parse(spec), self._split(split)
        with self._lock:
            if (key, split) not in self._views:
                self._views[key, split] = self._compute(key, split)
            return self._views[key, split]

    def _compute(self, key: tuple, split: str) -> torch.Tensor:
        if key[0] == "image":
            x = self._x[split].astype(np.float32)
            if self._pixel_max is not None:  # None: mnist1d, the package's standardised signal as is
                x /= np.float32(self._pixel_max)
            return torch.from_numpy(np.ascontiguousarray(x))
        flat = self.view("image", split).reshape(self.size(split), -1)
        if key[0] == "flat":
            return flat
        pca, scaler = self._fit_pca(*key[1:])
        z = scaler.transform(pca.transform(flat.numpy()))
        return torch.from_numpy(np.ascontiguousarray(z, np.float32))

    def _fit_pca(self, k: int, seed: int | None):
        """PCA(k) and a StandardScaler of its output, both fitted on the train split's flat view only."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        if (k, seed) not in self._pca:
            if seed is None:
                pca = PCA(n_components=k, random_state=0)
            else:  # randomized solver, so the seed actually changes the projection
                pca = PCA(n_components=k, svd_solver="randomized", random_state=seed)
            z = pca.fit_transform(self.view("flat", "train").numpy())
            self._pca[k, seed] = (pca, StandardScaler().fit(z))
        return self._pca[k, seed]

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of every split's raw data and labels: equal iff the splits are identical."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for s in _SPLITS:
                for a in (self._x[s], self._y[s].numpy()):
                    h.update(f"{s}{a.dtype}{a.shape}".encode())
                    h.update(np.ascontiguousarray(a).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def summary(self) -> dict:
        """JSON-ready provenance: name, source, sizes per split, shapes, split arguments, data fingerprint."""
        return {"name": self.name, "source": self.source, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), **{f"n_{s}": self.size(s) for s in _SPLITS},
                **self._params, "fingerprint": self.fingerprint()}


_CACHE: dict[tuple, Dataset] = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every dataset loaded in this process (tests use it to check that loading is deterministic)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_dataset(name: str, root=None, download: bool = False, *, val_fraction: float = 0.1,
                 split_seed: int = 0, max_train: int | None = None, max_test: int | None = None) -> Dataset:
    """Load (and cache in-process) a dataset; see the module docstring for how the splits are drawn.

    Raises KeyError for an unknown name, DatasetUnavailable (one line naming the fix) when its files are
    missing, DatasetCorrupt when a file cannot be parsed, ValueError for bad split arguments.
    `download=True` lets torchvision download a missing mnist/kmnist/fashion_mnist/cifar10 into `root`
    (needs network); it is ignored for digits and mnist1d, which never download anything.
    """
    _check_name(name)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not isinstance(split_seed, int | np.integer) or split_seed < 0:
        raise ValueError(f"split_seed must be an integer >= 0, got {split_seed!r}")
    for arg, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and (not isinstance(value, int | np.integer) or value < 1):
            raise ValueError(f"{arg} must be None or an integer >= 1, got {value!r}")
    root = _root(root)
    params = {"val_fraction": float(val_fraction), "split_seed": int(split_seed),
              "max_train": None if max_train is None else int(max_train),
              "max_test": None if max_test is None else int(max_test)}
    base, superclass = parse_name(name)
    if superclass is not None:
        with _CACHE_LOCK:
            key = ("superclass", name, str(root.resolve()), *params.values())
            if key in _CACHE:
                return _CACHE[key]
        coarse = load_dataset(base, root, download, **params).superclasses(*superclass)
        with _CACHE_LOCK:
            return _CACHE.setdefault(key, coarse)
    key = (name, None if name == "digits" else str(root.resolve()), *params.values())
    with _CACHE_LOCK:
        if key not in _CACHE:
            x_tr, y_tr, x_te, y_te, class_names, source, pixel_max = _read(name, root, download)
            splits = _make_splits(x_tr, y_tr, x_te, y_te, val_fraction, split_seed, max_train, max_test)
            _CACHE[key] = Dataset(name, class_names, splits, source, params, pixel_max)
        return _CACHE[key]
