"""Kuzushiji-MNIST: 70,000 28x28 grey-scale cursive Japanese characters (one per row of the hiragana table),
60,000 for training and 10,000 for testing, in MNIST's format.

Read from torchvision's layout under the data root (``KMNIST/raw/``); ``--download`` lets torchvision fetch it.
"""

from pathlib import Path

from benchmark.data.datasets import _torchvision

name = Path(__file__).stem
order = 50
classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
input_shape = (1, 28, 28)
citation = ("Clanuwat, Bober-Irizar, Kitamoto, Lamb, Yamamoto & Ha (2018), Deep Learning for Classical Japanese "
            "Literature, NeurIPS Workshop on Machine Learning for Creativity and Design (arXiv:1812.01718)")


def locate(root):
    return _torchvision.locate_idx(name, "KMNIST", root)


def read(found):
    return _torchvision.read_idx(found, len(classes))


def download(root):
    _torchvision.download("KMNIST", root)
