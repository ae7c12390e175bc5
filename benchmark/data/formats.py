"""Readers of the file formats several datasets share: numpy arrays out, no splitting, no views.

- idx files (MNIST, Fashion-MNIST, KMNIST): an uncompressed file is read by torchvision's own reader
  (:func:`torchvision.datasets.mnist.read_image_file` / ``read_label_file``, which read a local file with no
  checksum); a ``.gz`` file by :func:`read_idx_gz` (see there why);
- CIFAR-10's python pickles: :func:`read_cifar10` (see there why not torchvision's);
- :func:`write_npz_atomic`, for arrays a dataset generates and caches in the data root.

Every problem with a file that exists is raised as :class:`DatasetCorrupt`, with one line naming the file.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tempfile
import zlib
from pathlib import Path

import numpy as np

from benchmark.errors import DatasetCorrupt, one_line

# ------------------------------------------------------------------------------------------ idx files

IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803: unsigned bytes in 3 dimensions; 0x0801: in 1
IDX_FILES = {  # role -> file name without ".gz", as in torchvision's <Name>/raw/ folder
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The four idx files in ``folder`` (the uncompressed file preferred over ``.gz``) and the names missing."""
    found, missing = {}, []
    for role, base in IDX_FILES.items():
        for candidate in (folder / base, folder / f"{base}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(base)
    return found, missing


def _idx_header_problem(raw: bytes, kind: str) -> str | None:
    """What is wrong with an idx file's header and size, or None: the message torchvision's reader cannot give
    (it fails with a bare assertion or a reshape error)."""
    magic = IDX_MAGIC[kind]
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else "none"
        return f"magic number {found}, expected {magic} (idx {kind} file)"
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        return f"truncated header ({len(raw)} bytes)"
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        return f"{len(raw)} bytes but its header {dims} needs {expected} (truncated?)"
    return None


# The most examples an idx file may hold (MNIST has 60,000; EMNIST's largest split about 700,000): with the item
# size the caller expects, this bounds what a .gz file may decompress to, so that a small file cannot fill the
# memory (a gzip "bomb" expands about 1,000-fold).
MAX_IDX_EXAMPLES = 1_000_000


def _idx_limit(kind: str, item_shape: tuple[int, ...] | None) -> int:
    """The most bytes an idx file of ``kind`` may hold: its header and MAX_IDX_EXAMPLES items of ``item_shape``
    (an image's rows and columns; a label is one byte; default a 28x28 image)."""
    ndim = IDX_MAGIC[kind] & 0xFF
    item = 1 if kind == "labels" else int(np.prod(item_shape or (28, 28)))
    return 4 + 4 * ndim + MAX_IDX_EXAMPLES * item


def read_idx_gz(path: Path, kind: str, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A gzip-compressed idx file, parsed here: torchvision's reader opens only the uncompressed files its
    dataset classes extract after downloading, and Debian's ``dataset-fashion-mnist`` ships only the ``.gz``
    files, in one folder that torchvision's classes do not look for. At most :func:`_idx_limit` bytes are
    decompressed: a file that holds more is refused, in one line, without being read further."""
    limit = _idx_limit(kind, item_shape)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetCorrupt(f"{path}: cannot be read ({one_line(e)}); delete it and get it again") from e
    if len(raw) > limit:
        raise DatasetCorrupt(f"{path}: decompresses to more than the {limit:,} bytes an idx {kind} file of at most "
                             f"{MAX_IDX_EXAMPLES:,} examples holds (refused unread)")
    problem = _idx_header_problem(raw, kind)
    if problem:
        raise DatasetCorrupt(f"{path}: {problem}")
    ndim = IDX_MAGIC[kind] & 0xFF
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_idx(path: Path, kind: str, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An idx file of ``kind`` "images" (n, rows, cols) uint8 or "labels" (n,), plain or ``.gz`` (``item_shape``:
    an image's (rows, cols), which bounds what a ``.gz`` file may decompress to)."""
    if path.suffix == ".gz":
        return read_idx_gz(path, kind, item_shape)
    from torchvision.datasets.mnist import read_image_file, read_label_file

    reader = read_image_file if kind == "images" else read_label_file
    try:
        return reader(str(path)).numpy()
    except Exception as e:  # a bare AssertionError, a reshape error, a TypeError: say which file and why
        try:
            problem = _idx_header_problem(path.read_bytes(), kind)
        except OSError as read_error:
            problem = f"cannot be read ({one_line(read_error)})"
        raise DatasetCorrupt(f"{path}: {problem or one_line(e)}") from e


def read_idx_dataset(files: dict[str, Path], image_shape: tuple[int, int], num_classes: int):
    """(x_train, y_train, x_test, y_test) from the four idx files: images (n, rows, cols) uint8, labels int64,
    each checked for shape, count and label range."""
    out = []
    for split in ("train", "test"):
        image_path, label_path = files[f"{split}_images"], files[f"{split}_labels"]
        images = read_idx(image_path, "images", image_shape)
        labels = read_idx(label_path, "labels").astype(np.int64)
        if images.shape[1:] != image_shape:
            raise DatasetCorrupt(f"{image_path}: images are {images.shape[1:]}, expected {image_shape}")
        if len(images) != len(labels):
            raise DatasetCorrupt(f"{label_path}: {len(labels)} labels for {len(images)} images in {image_path.name}")
        if len(labels) and labels.max() >= num_classes:
            raise DatasetCorrupt(f"{label_path}: label {labels.max()} >= {num_classes} classes")
        out += [images, labels]
    return tuple(out)


# ------------------------------------------------------------------------------------------ CIFAR-10

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, "test_batch", "batches.meta")


# What a CIFAR-10 pickle may name: a numpy array and its dtype (the official files, and numpy 1 or 2 writing the
# same format). Anything else (os.system, eval, a class of any module) is refused: unpickling a name runs it, and
# a file in the data root is data, never code.
PICKLE_NAMES = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in PICKLE_NAMES:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 file never does (refused)")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, encoding="bytes").load()
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
    """(x_train, y_train, x_test, y_test, label_names) from torchvision's ``cifar-10-batches-py`` folder.

    Read here, not by ``torchvision.datasets.CIFAR10``: that class checks every file's md5 sum against the
    official ones before reading, so it refuses any other copy of the format (the small files the tests write
    in the official layout), and it reports a damaged file as "not found or corrupted" without naming it.
    """
    batches = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    meta_path = folder / "batches.meta"
    names = _entry(_load_pickle(meta_path), "label_names", meta_path)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    x_train = np.concatenate([x for x, _ in batches])
    y_train = np.concatenate([y for _, y in batches])
    return x_train, y_train, x_test, y_test, names


# ------------------------------------------------------------------------------------------ caches


def write_npz_atomic(path: Path, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` under a temporary name first, so a killed process never leaves half a file
    where a reader (maybe another worker) would find it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
