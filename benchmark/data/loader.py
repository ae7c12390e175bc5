"""Loading a dataset by name: locate its files (or download them), read them, check the arrays, split, cache."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from benchmark.data import registry
from benchmark.data.contract import Arrays, Found, Missing
from benchmark.data.dataset import Dataset
from benchmark.data.splits import ALL, VALIDATIONS, make_splits, parse_transfer
from benchmark.errors import BadInput, DatasetCorrupt, DatasetUnavailable, one_line


def _root(root) -> Path:
    return Path(root).expanduser() if root is not None else registry.default_data_root()


def _locate(info: registry.DatasetInfo, root: Path) -> Found | Missing:
    if not info.ok:
        return Missing(f"dataset {info.name!r} cannot be loaded: its module {info.path} is broken ({info.error})")
    return info.module.locate(root)


def availability(name: str, root=None) -> tuple[bool, str]:
    """Cheap check (files exist; nothing parsed): (True, where it was found) or (False, the one-line fix)."""
    info = registry.check_name(name)
    found = _locate(info, _root(root))
    return (True, found.where) if isinstance(found, Found) else (False, found.fix)


def describe(name: str, root=None) -> dict:
    """name, classes, input_shape, citation, where (or the fix), available, and the module's file."""
    info = registry.check_name(name)
    ok, where = availability(name, root)
    base, superclass = registry.parse_name(name)
    classes = list(info.module.classes) if info.ok else []
    if superclass is not None and classes:
        size = superclass[1]
        classes = ["+".join(classes[g * size:(g + 1) * size]) for g in range(superclass[0])]
    return {"name": name, "classes": classes, "input_shape": list(info.module.input_shape) if info.ok else None,
            "citation": info.module.citation if info.ok else None, "where": where, "available": ok,
            "module": str(info.path)}


def _download(info: registry.DatasetInfo, root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        info.module.download(root)
    except Exception as e:
        raise DatasetUnavailable(f"dataset {info.name!r}: download into {root} failed ({one_line(e)}); "
                                 "check the network or put the files there by hand") from e


def _find(info: registry.DatasetInfo, root: Path, download: bool) -> Found:
    found = _locate(info, root)
    if isinstance(found, Missing) and download and info.ok and hasattr(info.module, "download"):
        _download(info, root)
        found = _locate(info, root)
    if isinstance(found, Missing):
        raise DatasetUnavailable(found.fix)
    return found


def _check_arrays(info: registry.DatasetInfo, arrays: Arrays) -> None:
    """What the harness relies on; a file reader that lets a bad file through is caught here, naming the source."""
    mod, shape = info.module, tuple(info.module.input_shape)
    for split in ("train", "test"):
        x, y = getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")
        if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)) or tuple(x.shape[1:]) != shape:
            raise DatasetCorrupt(f"{arrays.source}: {split} examples are {x.dtype} {tuple(x.shape[1:])}, "
                                 f"expected uint8 or float {shape} ({info.name})")
        if y.dtype != np.int64 or y.shape != (len(x),):
            raise DatasetCorrupt(f"{arrays.source}: {split} labels are {y.dtype} {y.shape}, expected int64 "
                                 f"({len(x)},) ({info.name})")
        if len(y) and not 0 <= y.min() <= y.max() < len(mod.classes):
            raise DatasetCorrupt(f"{arrays.source}: {split} labels outside 0..{len(mod.classes) - 1} ({info.name})")


_CACHE: dict[tuple, Dataset] = {}
_CACHE_LOCK = threading.Lock()
# The arrays read last, by (name, path): the same dataset loaded with other split arguments (another preset or
# validation mode) is split again without reading its files again. One entry, so memory stays bounded.
_LAST_READ: dict[tuple, Arrays] = {}


def clear_cache() -> None:
    """Forget every dataset loaded in this process (tests use it to check that loading is deterministic)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _LAST_READ.clear()


def _read(info: registry.DatasetInfo, found: Found, key: tuple) -> Arrays:
    if key not in _LAST_READ:
        arrays = info.module.read(found)
        _check_arrays(info, arrays)
        _LAST_READ.clear()
        _LAST_READ[key] = arrays
    return _LAST_READ[key]


def _check_arguments(val_fraction, split_seed, max_train, max_test, validation, transfer) -> None:
    if not 0 <= val_fraction < 1:
        raise BadInput(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not isinstance(split_seed, int | np.integer) or split_seed < 0:
        raise BadInput(f"split_seed must be an integer >= 0, got {split_seed!r}")
    for arg, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and (not isinstance(value, int | np.integer) or value < 1):
            raise BadInput(f"{arg} must be None or an integer >= 1, got {value!r}")
    if validation not in VALIDATIONS:
        raise BadInput(f"validation must be one of {', '.join(VALIDATIONS)}, got {validation!r}")
    try:
        parse_transfer(transfer)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def load_dataset(name: str, root=None, download: bool = False, *, val_fraction: float = 0.1, split_seed: int = 0,
                 max_train: int | None = None, max_test: int | None = None,
                 validation: str = "stratified", transfer: str = ALL) -> Dataset:
    """Load (and cache in-process) a dataset; see :mod:`benchmark.data.splits` for how the splits are drawn.

    Raises BadInput (a ValueError) for an unknown name, a superclass task that does not fit or bad split arguments;
    DatasetUnavailable (one line naming the fix) when its files are missing; DatasetCorrupt when a file cannot be
    parsed. ``download=True`` lets a dataset that can download (torchvision's) fetch missing files into ``root``
    (needs network); the others never download anything. ``transfer`` cuts the training split to a transfer set
    (:func:`benchmark.data.splits.parse_transfer`); a transfer set of a superclass task is BadInput (its class
    indices would be ambiguous).
    """
    info = registry.check_name(name)
    _check_arguments(val_fraction, split_seed, max_train, max_test, validation, transfer)
    root = _root(root)
    params = {"val_fraction": float(val_fraction), "split_seed": int(split_seed),
              "max_train": None if max_train is None else int(max_train),
              "max_test": None if max_test is None else int(max_test), "validation": validation}
    if transfer != ALL:  # only then: the summary (and fingerprint params) of every other load stay as they were
        params["transfer"] = transfer
    found = _find(info, root, download)
    # Keyed by what was found, not by the root: roots that fall back to the same system folder share one copy.
    where = (info.name, None if found.path is None else str(Path(found.path).resolve()))
    key = (*where, *params.values())
    _, superclass = registry.parse_name(name)
    if superclass is not None and transfer != ALL:
        raise BadInput(f"a transfer set ({transfer}) of the superclass task {name} is not supported")
    with _CACHE_LOCK:
        if key not in _CACHE:
            arrays = _read(info, found, where)
            splits = make_splits(arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test, **params)
            _CACHE[key] = Dataset(info.name, info.module.classes, splits, arrays.source, params, arrays.pixel_max)
        if superclass is None:
            return _CACHE[key]
        coarse_key = (name, *key)
        if coarse_key not in _CACHE:
            _CACHE[coarse_key] = _CACHE[key].superclasses(*superclass)
        return _CACHE[coarse_key]
