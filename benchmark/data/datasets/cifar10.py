"""CIFAR-10: 60,000 32x32 colour images in 10 classes, 50,000 for training (five batches) and 10,000 for testing.

Read from torchvision's ``cifar-10-batches-py`` folder under the data root (the official tarball, extracted) by
:func:`benchmark.data.formats.read_cifar10` (why not torchvision's class: see there); ``--download`` lets
torchvision fetch it.
"""

from pathlib import Path

from benchmark.data.contract import Arrays, Found, Missing
from benchmark.data.formats import CIFAR10_FILES, CIFAR10_FOLDER, read_cifar10
from benchmark.errors import DatasetCorrupt

name = Path(__file__).stem
order = 60
classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
input_shape = (3, 32, 32)
citation = ("Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images, technical report, "
            "University of Toronto")


def locate(root):
    folder = root / CIFAR10_FOLDER
    missing = [f for f in CIFAR10_FILES if not (folder / f).is_file()]
    if not missing:
        return Found(str(folder), folder)
    return Missing(f"dataset 'cifar10' not found under {root} (no {CIFAR10_FOLDER}/{missing[0]}): "
                   f"run with --download (needs network) or put torchvision's {CIFAR10_FOLDER} there")


def read(found):
    x_tr, y_tr, x_te, y_te, label_names = read_cifar10(found.path)
    if label_names != classes:  # the labels would mean other classes
        raise DatasetCorrupt(f"{found.path / 'batches.meta'}: label names {label_names}, expected {classes}")
    return Arrays(x_tr, y_tr, x_te, y_te, pixel_max=255, source=str(found.path))


def download(root):
    import torchvision.datasets

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)
