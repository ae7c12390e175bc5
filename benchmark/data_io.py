"""File-format readers for the benchmark's datasets (no torch, no splitting: plain numpy arrays).

- idx files (MNIST, Fashion-MNIST, KMNIST), plain or gzip-compressed, parsed and validated here;
- CIFAR-10's python pickles, read here rather than by torchvision (whose md5 checks small test files fail);
- the mnist1d package's generated arrays, cached as an .npz written atomically.

Every problem with a file that exists is raised as `DatasetCorrupt`, with one line naming the file.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import pickle
import random
import tempfile
import zlib
from pathlib import Path

import numpy as np


class DatasetUnavailable(Exception):
    """A dataset cannot be loaded; str(e) is one line that names the fix."""


class DatasetCorrupt(DatasetUnavailable):
    """A dataset file exists but cannot be parsed; str(e) is one line naming the file."""


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for embedding an exception in a one-line message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ------------------------------------------------------------------------------------------ idx files

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (n, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (n,)
IDX_FILES = {  # role -> file name without ".gz", as in torchvision's <Name>/raw/ folder
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The four idx files in `folder` (the uncompressed file preferred over `.gz`) and the names missing."""
    found, missing = {}, []
    for role, base in IDX_FILES.items():
        for candidate in (folder / base, folder / f"{base}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(base)
    return found, missing


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetCorrupt(f"{path}: cannot be read ({one_line(e)}); delete it and get it again") from e


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an idx file of unsigned bytes; check its magic number and that its size matches its header."""
    raw = _read_bytes(path)
    kind = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}[magic]
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else "none"
        raise DatasetCorrupt(f"{path}: magic number {found}, expected {magic} (idx {kind} file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorrupt(f"{path}: truncated header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetCorrupt(f"{path}: {len(raw)} bytes but its header {dims} needs {expected} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_dataset(files: dict[str, Path], image_shape: tuple[int, int], num_classes: int):
    """(x_train, y_train, x_test, y_test) from the four idx files: images (n, rows, cols) uint8, labels
    int64, each checked for shape, count and label range."""
    out = []
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], IDX_IMAGES_MAGIC)
        labels = read_idx(files[f"{split}_labels"], IDX_LABELS_MAGIC).astype(np.int64)
        if images.shape[1:] != image_shape:
            path = files[f"{split}_images"]
            raise DatasetCorrupt(f"{path}: images are {images.shape[1:]}, expected {image_shape}")
        if len(images) != len(labels):
            raise DatasetCorrupt(
                f"{files[f'{split}_labels']}: {len(labels)} labels for {len(images)} images in "
                f"{files[f'{split}_images'].name}"
            )
        if len(labels) and labels.max() >= num_classes:
            raise DatasetCorrupt(f"{files[f'{split}_labels']}: label {labels.max()} >= {num_classes} classes")
        out += [images, labels]
    return tuple(out)


# ------------------------------------------------------------------------------------------ CIFAR-10

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, "test_batch", "batches.meta")


def _load_pickle(path: Path) -> dict:
    # Unpickling can run arbitrary code. It is acceptable only because these are the official CIFAR-10 files
    # (python pickles are the format the dataset is distributed in) in the user's own data root; never point
    # this reader at files from an untrusted source.
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated or foreign files raise many different errors
        raise DatasetCorrupt(f"{path}: not a readable CIFAR-10 pickle ({one_line(e)})") from e
    if not isinstance(obj, dict):
        raise DatasetCorrupt(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def _entry(d: dict, key: str, path: Path):
    # The official files were pickled by Python 2: with encoding="bytes" their keys are bytes. Accept str too.
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetCorrupt(f"{path}: no {key!r} entry (keys: {sorted(map(str, d))})")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    data = np.asarray(_entry(d, "data", path))
    labels = np.asarray(_entry(d, "labels", path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetCorrupt(f"{path}: data is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
    if labels.shape != (len(data),) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
        raise DatasetCorrupt(f"{path}: labels are not {len(data)} integers in 0..9")
    return data.reshape(-1, 3, 32, 32), labels  # rows are channel-major: 1024 red, 1024 green, 1024 blue


def read_cifar10(folder: Path):
    """(x_train, y_train, x_test, y_test, label_names) from torchvision's `cifar-10-batches-py` folder."""
    batches = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    meta_path = folder / "batches.meta"
    names = _entry(_load_pickle(meta_path), "label_names", meta_path)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != 10:
        raise DatasetCorrupt(f"{meta_path}: {len(names)} label names, expected 10")
    x_train = np.concatenate([x for x, _ in batches])
    y_train = np.concatenate([y for _, y in batches])
    return x_train, y_train, x_test, y_test, names


# ------------------------------------------------------------------------------------------ mnist1d

MNIST1D_CACHE = Path("mnist1d") / "mnist1d_default.npz"  # relative to the data root


def _mnist1d_key() -> str:
    from mnist1d.data import get_dataset_args

    args = {k: v for k, v in get_dataset_args(as_dict=True).items() if k != "url"}
    return json.dumps({"args": args, "mnist1d": importlib.metadata.version("mnist1d")}, sort_keys=True)


def _generate_mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global `random` and `numpy.random` generators; put them back as they were.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())  # never get_dataset(): that one may download
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


def _write_npz_atomic(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_mnist1d(root: Path) -> tuple[dict[str, np.ndarray], str]:
    """The default MNIST-1D arrays and where they came from; generated once, then read from `<root>/mnist1d/`.

    A cache that is unreadable or was made with other arguments / another mnist1d version is regenerated.
    If the root cannot be written, the arrays are still returned (generated in memory).
    """
    path, key = root / MNIST1D_CACHE, _mnist1d_key()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return {k: z[k] for k in ("x", "y", "x_test", "y_test")}, str(path)
        except Exception:  # a damaged cache is just regenerated
            pass
    arrays = _generate_mnist1d()
    try:
        _write_npz_atomic(path, {**arrays, "key": np.array(key)})
        return arrays, str(path)
    except OSError:
        return arrays, "mnist1d.data.make_dataset (not cached: data root not writable)"
