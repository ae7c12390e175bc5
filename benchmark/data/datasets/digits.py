"""scikit-learn's digits: 1,797 8x8 grey-scale handwritten digits (pixel values 0..16), bundled with scikit-learn.

It has no official split: the test split is a stratified 20% drawn with the fixed seed 0 (never the run's split
seed), so every run and every split seed is tested on the same 359 images.
"""

from pathlib import Path

import numpy as np

from benchmark.data.contract import Arrays, Found
from benchmark.data.splits import fixed_test_split

name = Path(__file__).stem
order = 0
classes = [str(i) for i in range(10)]
input_shape = (1, 8, 8)
citation = ("Alpaydin & Kaynak (1998), Optical Recognition of Handwritten Digits, UCI Machine Learning Repository "
            "(the test set of its 32x32 bitmaps, downsampled to 8x8: sklearn.datasets.load_digits)")
TEST_FRACTION, SPLIT_SEED = 0.2, 0


def locate(root):
    return Found("sklearn.datasets.load_digits (bundled with scikit-learn)")


def read(found):
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.images.astype(np.uint8)[:, None], d.target.astype(np.int64)  # pixel values are 0..16
    train, test = fixed_test_split(y, TEST_FRACTION, SPLIT_SEED)
    return Arrays(x[train], y[train], x[test], y[test], pixel_max=16, source="sklearn.datasets.load_digits")
