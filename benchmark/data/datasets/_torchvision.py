"""What the MNIST family (MNIST, Fashion-MNIST, KMNIST) shares: torchvision's on-disk layout and its downloader.

torchvision keeps each one's four idx files in ``<root>/<Class>/raw/`` (``Class`` is the torchvision dataset class,
e.g. ``FashionMNIST``), uncompressed after a download; the ``.gz`` files alone are accepted too.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.data.contract import Arrays, Found, Missing
from benchmark.data.formats import find_idx_files, read_idx_dataset

DOWNLOAD_FIX = "run with --download (needs network)"


def locate_idx(name: str, tv_class: str, root: Path, extra_dirs=(), fix: str = "") -> Found | Missing:
    """The first of ``<root>/<tv_class>/raw`` and ``extra_dirs`` holding all four idx files, or the fix."""
    folders = [root / tv_class / "raw", *extra_dirs]
    for folder in folders:
        if not find_idx_files(folder)[1]:
            return Found(str(folder), folder)
    missing = find_idx_files(folders[0])[1][0]
    where = f"under {root} (no {tv_class}/raw/{missing}[.gz])"
    if extra_dirs:
        where += f" or in {', '.join(map(str, extra_dirs))}"
    fix = fix or f"{DOWNLOAD_FIX} or put torchvision's {tv_class}/raw files there"
    return Missing(f"dataset {name!r} not found {where}: {fix}")


def read_idx(found: Found, num_classes: int) -> Arrays:
    """28x28 uint8 images with a channel axis added, pixel values 0..255."""
    x_tr, y_tr, x_te, y_te = read_idx_dataset(find_idx_files(found.path)[0], (28, 28), num_classes)
    return Arrays(x_tr[:, None], y_tr, x_te[:, None], y_te, pixel_max=255, source=str(found.path))


def download(tv_class: str, root: Path) -> None:
    """torchvision's own download into ``root`` (fetches and checks both splits)."""
    import torchvision.datasets

    getattr(torchvision.datasets, tv_class)(str(root), train=True, download=True)
