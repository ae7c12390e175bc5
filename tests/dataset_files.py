"""Writers of small dataset files in the exact on-disk formats torchvision downloads (tests have no network).

- `write_idx_mnist`: the four idx files of MNIST, Fashion-MNIST, KMNIST (torchvision's `<root>/<Name>/raw/`).
- `write_cifar10`: `cifar-10-batches-py/` as in the official tarball. Those pickles were written by Python 2,
  so their strings (dict keys, batch labels, file names, label names, the array's raw data) are Python-2
  `str`: they load as `bytes` with `encoding="bytes"` and as `str` with torchvision's `encoding="latin1"`.
  Python 3's pickler cannot write such strings, so `_Py2StrPickler` writes `bytes` with Python 2's opcodes.
- `write_torchvision_root`: all of them under one data root.

Each writer returns the arrays it wrote, for comparison with what a reader gives back.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def _labels(rng: np.random.Generator, n: int, num_classes: int = 10) -> np.ndarray:
    """n labels covering every class (n >= num_classes), in random order."""
    if n < num_classes:
        raise ValueError(f"need at least {num_classes} examples to cover every class, got {n}")
    return rng.permutation(np.arange(n) % num_classes).astype(np.uint8)


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_mnist(dirpath, n_train: int, n_test: int, seed: int, gz: bool = False) -> dict[str, np.ndarray]:
    """Write train/t10k images (magic 2051, n x 28 x 28 uint8) and labels (magic 2049) into `dirpath`.

    Returns {"x_train", "y_train", "x_test", "y_test"} (uint8 arrays, images (n, 28, 28)).
    """
    dirpath = Path(dirpath)
    dirpath.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = _labels(rng, n)
        out[f"x_{split}"], out[f"y_{split}"] = x, y
        for kind, array, magic in (("images-idx3", x, 2051), ("labels-idx1", y, 2049)):
            name = f"{prefix}-{kind}-ubyte"
            data = _idx_bytes(array, magic)
            if gz:
                with gzip.open(dirpath / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (dirpath / name).write_bytes(data)
    return out


class _Py2StrPickler(pickle._Pickler):
    """Pickles `bytes` as Python 2 `str` (SHORT_BINSTRING / BINSTRING), as in the official CIFAR-10 files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as f:
        _Py2StrPickler(f, protocol=2).dump(obj)


CIFAR10_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root, n_per_batch: int, seed: int) -> dict:
    """Write `<root>/cifar-10-batches-py/`: data_batch_1..5 and test_batch (n_per_batch each), batches.meta.

    Returns {"x_train" (5n, 3072) uint8, "y_train", "x_test", "y_test", "label_names"}.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    batches = [(f"data_batch_{i}", f"training batch {i} of 5") for i in range(1, 6)]
    for file_name, batch_label in [*batches, ("test_batch", "testing batch 1 of 1")]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in _labels(rng, n_per_batch)]
        _dump({b"batch_label": batch_label.encode(), b"labels": labels, b"data": data,
               b"filenames": [f"img_{file_name}_{i:05d}.png".encode() for i in range(n_per_batch)]},
              folder / file_name)
        xs.append(data)
        ys.append(np.array(labels, dtype=np.int64))
    _dump({b"num_cases_per_batch": n_per_batch, b"label_names": [n.encode() for n in CIFAR10_LABEL_NAMES],
           b"num_vis": 3072}, folder / "batches.meta")
    return {"x_train": np.concatenate(xs[:5]), "y_train": np.concatenate(ys[:5]), "x_test": xs[5],
            "y_test": ys[5], "label_names": list(CIFAR10_LABEL_NAMES)}


TORCHVISION_IDX_FOLDERS = {"mnist": "MNIST", "kmnist": "KMNIST", "fashion_mnist": "FashionMNIST"}


def write_torchvision_root(root, n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict[str, dict]:
    """Every dataset torchvision downloads, small, in its layout under ``root``: ``<Name>/raw/`` idx files for
    mnist, kmnist and fashion_mnist (uncompressed, as torchvision leaves them), ``cifar-10-batches-py/`` for
    cifar10 (n_train / 5 per batch). Returns each dataset's written arrays."""
    written = {name: write_idx_mnist(Path(root) / folder / "raw", n_train, n_test, seed=seed + i)
               for i, (name, folder) in enumerate(TORCHVISION_IDX_FOLDERS.items())}
    written["cifar10"] = write_cifar10(root, n_per_batch=n_train // 5, seed=seed + len(written))
    return written
