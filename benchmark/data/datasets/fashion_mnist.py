"""Fashion-MNIST: 70,000 28x28 grey-scale photos of clothing (Zalando articles), 60,000 for training and 10,000
for testing, in MNIST's format.

Read from torchvision's layout under the data root (``FashionMNIST/raw/``), else from Debian's package
``dataset-fashion-mnist`` (the four ``.gz`` files in ``/usr/share/datasets/fashion-mnist``); ``--download`` lets
torchvision fetch it.
"""

from pathlib import Path

from benchmark.data.datasets import _torchvision

name = Path(__file__).stem
order = 30
classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
input_shape = (1, 28, 28)
citation = ("Xiao, Rasul & Vollgraf (2017), Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine "
            "Learning Algorithms, arXiv:1708.07747")

# Folders outside the data root searched after it, in order (Debian/Ubuntu: `apt-get install dataset-fashion-mnist`).
SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist")]


def locate(root):
    return _torchvision.locate_idx(name, "FashionMNIST", root, SYSTEM_DIRS,
                                   fix="`apt-get install dataset-fashion-mnist` (Debian) or use --download "
                                       "(needs network)")


def read(found):
    return _torchvision.read_idx(found, len(classes))


def download(root):
    _torchvision.download("FashionMNIST", root)
