"""MNIST: 70,000 28x28 grey-scale handwritten digits, 60,000 for training and 10,000 for testing.

Read from torchvision's layout under the data root (``MNIST/raw/``); ``--download`` lets torchvision fetch it.
"""

from pathlib import Path

from benchmark.data.datasets import _torchvision

name = Path(__file__).stem
order = 40
classes = [str(i) for i in range(10)]
input_shape = (1, 28, 28)
citation = ("LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied to document recognition, "
            "Proceedings of the IEEE 86(11):2278-2324")


def locate(root):
    return _torchvision.locate_idx(name, "MNIST", root)


def read(found):
    return _torchvision.read_idx(found, len(classes))


def download(root):
    _torchvision.download("MNIST", root)
