"""Which source files a run executes that can change its result, and their hash (part of the run's id).

A run's code is: its method folder (``method.py``, ``models.py``, …), the file of every architecture its roles
build (a method's own ``models.py``, or :mod:`benchmark.archs` for the shared networks), the dataset's own module
and readers, and the harness modules on the training path (listed below: seeding, batching, the fit loop,
evaluation, the layer helpers, the data splits and views). The runs it requires are covered through their ids.
Editing any of these re-runs exactly the runs that execute it; the command line, the tables, the report and the
scheduler are not on the path and can change freely.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from benchmark import data
from benchmark import nn as layers
from benchmark.engine.discovery import MethodInfo, file_hash

PACKAGE = Path(__file__).resolve().parents[1]
# Relative to the package. Modules that decide what a run computes: a change here can change any run's numbers.
TRAINING_PATH = (
    "engine/context.py",  # the run context: builds, seeds, required models, evaluation
    "engine/fit.py",  # the fit loop: batching, updates, early stopping, curves
    "engine/timing.py",  # the batch iterator (batch order)
    "engine/spec.py",  # seeds derived from a run's identity
    "engine/execute.py",  # final evaluation and what is logged
    "engine/device.py",  # a GPU's numerical settings (deterministic kernels, TF32) and evaluation chunk
    "engine/stacked.py",  # repetitions as one model: the same numbers on a CPU, the kernels that decide them on a GPU
    "nn.py",  # initialisation and layer helpers
    "metrics.py",  # every logged metric
    "supervised.py",  # the baselines' recipe
    "losses.py",  # the losses methods share
    "omitted.py",  # the omitted-class metrics and their bias correction
)


# The data package's modules every dataset goes through; a dataset's own module and the file readers it uses are
# hashed per dataset (benchmark.data.source_files), so editing one reader re-runs only the datasets it reads.
DATA_PATH = ("data/__init__.py", "data/registry.py", "data/loader.py", "data/dataset.py", "data/splits.py",
             "data/views.py")


def _hash_files(paths: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(path.name.encode())
        digest.update(_content_hash(path, stat.st_mtime_ns, stat.st_size).encode())
    return digest.hexdigest()[:16]


@cache
def _content_hash(path: Path, mtime_ns: int, size: int) -> str:
    """A file's hash, re-read whenever it changes on disk (planning hashes the same files for every run)."""
    return file_hash(path)


def harness_hash() -> str:
    files = [PACKAGE / p for p in TRAINING_PATH + DATA_PATH]
    return _hash_files(tuple(sorted(set(files))))


def dataset_hash(name: str) -> str:
    base, _ = data.parse_name(name)
    return _hash_files(tuple(sorted(Path(p).resolve() for p in data.source_files(base))))


def architecture_files(archs: set[str]) -> dict[str, Path]:
    out = {}
    for arch in sorted(archs):
        if arch not in layers.ARCHITECTURES:
            raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(layers.ARCHITECTURES))}")
        out[arch] = layers.ARCHITECTURES[arch].source
    return out


def run_code(info: MethodInfo, archs: set[str], dataset: str) -> dict[str, str]:
    """The parts of a run's code, each a hash: method folder, each architecture's file, dataset, harness."""
    return {
        "method": info.source_hash,
        "architectures": {arch: file_hash(path) for arch, path in architecture_files(archs).items()},
        "dataset": dataset_hash(dataset),
        "harness": harness_hash(),
    }


def code_hash(parts: dict) -> str:
    from benchmark.engine.spec import stable_hash

    return stable_hash(parts)
