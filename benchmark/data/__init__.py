"""Datasets of the benchmark: one module per dataset in ``datasets/``, discovered; split reproducibly; held in memory.

    ds = load_dataset("digits")                  # cached in-process: same arguments -> same object
    x, y = ds.view("image", "train"), ds.labels("train")
    z = ds.view("pca:30", "test")                # PCA + StandardScaler fitted on the train split only

A dataset is a file, ``datasets/<name>.py`` (what it provides: :mod:`.contract`; a template: ``datasets/_template.py``),
found by :mod:`.registry`. The harness's part: the budgets and validation split (:mod:`.splits`), the views
(:mod:`.views`), the shared file readers (:mod:`.formats`), loading and caching (:mod:`.loader`).
"""

from benchmark.data.dataset import Dataset
from benchmark.data.loader import availability, clear_cache, describe, load_dataset
from benchmark.data.registry import (
    check_name,
    dataset_names,
    default_data_root,
    discover,
    is_known,
    parse_name,
    source_files,
)
from benchmark.data.splits import VALIDATIONS
from benchmark.errors import DatasetCorrupt, DatasetUnavailable

__all__ = [
    "DATASET_NAMES", "FASHION_MNIST_SYSTEM_DIRS", "VALIDATIONS", "Dataset", "DatasetCorrupt", "DatasetUnavailable",
    "availability", "check_name", "clear_cache", "dataset_names", "default_data_root", "describe", "discover",
    "is_known", "load_dataset", "parse_name", "source_files",
]

DATASET_NAMES = tuple(dataset_names())  # as discovered at import; dataset_names() sees modules added since



def _fashion_mnist_system_dirs() -> list:
    info = discover().get("fashion_mnist")
    return info.module.SYSTEM_DIRS if info is not None and info.ok else []


# Folders outside the data root searched for Fashion-MNIST (Debian's `dataset-fashion-mnist`): the very list the
# fashion_mnist module reads, so changing it in place redirects the search (tests replace the module's attribute).
FASHION_MNIST_SYSTEM_DIRS = _fashion_mnist_system_dirs()
