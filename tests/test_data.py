"""Tests of benchmark.data: readers against files written in torchvision's formats, splits, views, errors."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from benchmark import data, data_io
from benchmark.data import DatasetCorrupt, DatasetUnavailable, availability, load_dataset

try:  # `python -m pytest` from the repository root, or tests/ as a package
    from tests.dataset_files import CIFAR10_LABEL_NAMES, write_cifar10, write_idx_mnist
except ImportError:  # plain `pytest`: tests/ itself is on sys.path
    from dataset_files import CIFAR10_LABEL_NAMES, write_cifar10, write_idx_mnist

REAL_FASHION_DIRS = list(data.FASHION_MNIST_SYSTEM_DIRS)
IDX_FOLDERS = {"mnist": "MNIST", "kmnist": "KMNIST", "fashion_mnist": "FashionMNIST"}
N_TRAIN, N_TEST = 200, 50


@pytest.fixture(autouse=True)
def root(tmp_path, monkeypatch):
    """A fresh data root (also the default one), no system folders, an empty in-process cache."""
    r = tmp_path / "data"
    r.mkdir()
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(r))
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIRS", [tmp_path / "no-system-folder"])
    data.clear_cache()
    yield r
    data.clear_cache()


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[bytes]:
    """One byte string per example (its uint8 pixels and label), to compare splits as sets."""
    pixels = (x * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()
    return [p.tobytes() + bytes([int(label)]) for p, label in zip(pixels, y, strict=True)]


def _train_val_rows(ds) -> list[bytes]:
    return [row for split in ("train", "val") for row in _rows(ds.view("image", split), ds.labels(split))]


def _written_rows(x: np.ndarray, y: np.ndarray) -> list[bytes]:
    return [p.tobytes() + bytes([int(label)]) for p, label in zip(x.reshape(len(x), -1), y, strict=True)]


def _assert_one_line(exc: Exception, *fragments: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def _assert_stratified(part: torch.Tensor, whole: torch.Tensor, fraction: float) -> None:
    counts, total = torch.bincount(part, minlength=10), torch.bincount(whole, minlength=10)
    assert torch.all((counts - fraction * total).abs() <= 1), (counts, total)


# ------------------------------------------------------------------------------------------------ basics


def test_default_data_root(monkeypatch, root):
    assert data.default_data_root() == root
    monkeypatch.delenv("BENCHMARK_DATA_ROOT")
    assert data.default_data_root() == Path.home() / ".cache" / "distill-benchmark" / "data"


def test_unknown_names_and_bad_arguments():
    with pytest.raises(KeyError):
        availability("imagenet")
    with pytest.raises(KeyError):
        load_dataset("imagenet")
    for kwargs in ({"val_fraction": 1.0}, {"val_fraction": -0.1}, {"max_train": 0}, {"max_test": -5},
                   {"split_seed": -1}, {"split_seed": None}, {"max_train": 2.5}):
        with pytest.raises(ValueError):
            load_dataset("digits", **kwargs)
    ds = load_dataset("digits")
    with pytest.raises(ValueError, match="unknown split"):
        ds.labels("validation")
    for spec in ("pixels", "pca", "pca:x", "pca:3:seed=-1", "pca:3:rs=1"):
        with pytest.raises(ValueError, match="valid views") as e:
            ds.view(spec, "train")
        _assert_one_line(e.value)
    with pytest.raises(ValueError, match="1..64") as e:
        ds.view("pca:65", "train")
    _assert_one_line(e.value)
    with pytest.raises(ValueError):
        ds.view_shape("pca:0")


def test_digits():
    ds = load_dataset("digits")
    assert (ds.name, ds.num_classes, ds.input_shape) == ("digits", 10, (1, 8, 8))
    assert ds.class_names == [str(i) for i in range(10)]
    # 1797 images: 80/20 train/test, then 10% of train to val
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (1294, 144, 359)
    x = ds.view("image", "train")
    assert x.dtype == torch.float32 and x.is_contiguous() and x.shape == (1294, 1, 8, 8)
    assert x.min() == 0 and x.max() == 1 and torch.equal(x * 16, (x * 16).round())  # pixels 0..16, /16
    assert ds.view("flat", "val").shape == (144, 64) and ds.view_shape("flat") == (64,)
    assert ds.labels("train").dtype == torch.int64
    _assert_stratified(ds.labels("val"), torch.cat([ds.labels("train"), ds.labels("val")]), 0.1)
    assert load_dataset("digits") is ds and load_dataset("digits", root="/elsewhere") is ds  # root unused
    other = load_dataset("digits", split_seed=1)
    assert torch.equal(other.view("image", "test"), ds.view("image", "test"))  # digits' test split is fixed
    assert not torch.equal(other.labels("val"), ds.labels("val"))
    assert load_dataset("digits", val_fraction=0).size("val") == 0
    assert availability("digits")[0]


def test_mnist1d_is_generated_once_and_cached(root, monkeypatch):
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(123)
    before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = load_dataset("mnist1d")
    assert (np.random.random(), random.random()) == before  # the package's global reseeding was undone
    assert ds.input_shape == (1, 40) and ds.num_classes == 10
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (3600, 400, 1000)
    ref = make_dataset(get_dataset_args())
    assert torch.equal(ds.view("image", "test")[:, 0], torch.from_numpy(ref["x_test"].astype(np.float32)))
    assert torch.equal(ds.labels("test"), torch.from_numpy(ref["y_test"]))
    cache = root / "mnist1d" / "mnist1d_default.npz"
    assert cache.is_file() and ds.summary()["source"] == str(cache)
    assert availability("mnist1d") == (True, str(cache))
    assert not [p for p in cache.parent.iterdir() if p != cache]  # no temp file left behind

    data.clear_cache()
    monkeypatch.setattr(data_io, "_generate_mnist1d", lambda: pytest.fail("regenerated despite the cache"))
    again = load_dataset("mnist1d")
    for split in ("train", "val", "test"):
        assert torch.equal(again.view("image", split), ds.view("image", split))
        assert torch.equal(again.labels(split), ds.labels(split))
    assert again.view_shape("pca:5") == (5,) and again.view("pca:5", "val").shape == (400, 5)


# ------------------------------------------------------------------------------------------------ idx files


def _write_idx(root: Path, name: str, gz: bool = False, seed: int = 0) -> dict:
    return write_idx_mnist(root / IDX_FOLDERS[name] / "raw", N_TRAIN, N_TEST, seed=seed, gz=gz)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "kmnist", "fashion_mnist"])
def test_idx_round_trip(root, name, gz):
    written = _write_idx(root, name, gz=gz)
    assert availability(name) == (True, str(root / IDX_FOLDERS[name] / "raw"))
    ds = load_dataset(name)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and len(ds.class_names) == 10
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (180, 20, N_TEST)
    test = ds.view("image", "test")
    assert test.dtype == torch.float32 and test.is_contiguous() and 0 <= test.min() and test.max() <= 1
    assert torch.equal(test, torch.from_numpy(written["x_test"][:, None].astype(np.float32) / 255))
    assert torch.equal(ds.labels("test"), torch.from_numpy(written["y_test"].astype(np.int64)))
    train = _rows(ds.view("image", "train"), ds.labels("train"))
    val = _rows(ds.view("image", "val"), ds.labels("val"))
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(_written_rows(written["x_train"], written["y_train"]))
    _assert_stratified(ds.labels("val"), torch.from_numpy(written["y_train"].astype(np.int64)), 0.1)


def test_class_names():
    assert load_dataset("digits").class_names == [str(i) for i in range(10)]
    assert data._IDX["mnist"][1] == [str(i) for i in range(10)]
    fashion = data._IDX["fashion_mnist"][1]
    assert fashion[0] == "T-shirt/top" and fashion[9] == "Ankle boot"
    assert data._IDX["kmnist"][1] == ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


@pytest.mark.parametrize("name", ["mnist", "kmnist", "fashion_mnist"])
def test_idx_writer_matches_torchvision(root, name):
    import torchvision

    written = _write_idx(root, name)
    cls = getattr(torchvision.datasets, IDX_FOLDERS[name])
    for split, train in (("train", True), ("test", False)):
        tv = cls(str(root), train=train, download=False)
        assert np.array_equal(tv.data.numpy(), written[f"x_{split}"])
        assert np.array_equal(tv.targets.numpy(), written[f"y_{split}"])
    assert load_dataset(name).class_names == [c.split(" - ")[0] for c in cls.classes]


def test_fashion_mnist_from_system_folder(tmp_path, monkeypatch, root):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    written = write_idx_mnist(system, N_TRAIN, N_TEST, seed=5, gz=True)
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIRS", [tmp_path / "absent", system])
    assert availability("fashion_mnist") == (True, str(system))
    ds = load_dataset("fashion_mnist")
    assert ds.summary()["source"] == str(system)
    assert torch.equal(ds.labels("test"), torch.from_numpy(written["y_test"].astype(np.int64)))
    data.clear_cache()
    _write_idx(root, "fashion_mnist", seed=6)  # the data root comes first
    assert load_dataset("fashion_mnist").summary()["source"] == str(root / "FashionMNIST" / "raw")


@pytest.mark.skipif(not all(p.is_dir() for p in REAL_FASHION_DIRS),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package(monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIRS", REAL_FASHION_DIRS)
    ok, where = availability("fashion_mnist")
    assert ok and where == str(REAL_FASHION_DIRS[0])
    ds = load_dataset("fashion_mnist", max_train=2000, max_test=500)
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (1800, 200, 500)
    assert torch.equal(torch.bincount(ds.labels("test")), torch.full((10,), 50))
    assert torch.equal(torch.bincount(ds.labels("val")), torch.full((10,), 20))
    x = ds.view("image", "train")
    assert x.shape == (1800, 1, 28, 28) and x.min() == 0 and x.max() == 1
    assert ds.class_names[0] == "T-shirt/top"


# ------------------------------------------------------------------------------------------------ CIFAR-10


def test_cifar10_round_trip_and_torchvision(root, monkeypatch):
    import torchvision
    import torchvision.datasets.cifar as tv_cifar

    written = write_cifar10(root, n_per_batch=30, seed=3)
    assert availability("cifar10") == (True, str(root / "cifar-10-batches-py"))
    ds = load_dataset("cifar10")
    assert ds.input_shape == (3, 32, 32) and ds.class_names == CIFAR10_LABEL_NAMES
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (135, 15, 30)
    x_test = written["x_test"].reshape(-1, 3, 32, 32)
    assert torch.equal(ds.view("image", "test"), torch.from_numpy(x_test.astype(np.float32) / 255))
    assert torch.equal(ds.labels("test"), torch.from_numpy(written["y_test"]))
    assert sorted(_train_val_rows(ds)) == sorted(_written_rows(written["x_train"], written["y_train"]))
    assert ds.view("flat", "test").shape == (30, 3072)

    # torchvision reads the same files the same way (its md5 checks cannot pass on test files: bypass them)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    for split, train in (("train", True), ("test", False)):
        tv = torchvision.datasets.CIFAR10(str(root), train=train, download=False)
        assert np.array_equal(tv.data, written[f"x_{split}"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert tv.targets == written[f"y_{split}"].tolist()
        assert tv.classes == CIFAR10_LABEL_NAMES


# ------------------------------------------------------------------------------------------------ splits


def test_max_train_max_test_and_determinism(root):
    written = _write_idx(root, "mnist")
    ds = load_dataset("mnist", max_train=100, max_test=30, split_seed=4)
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (90, 10, 30)
    whole_train = torch.from_numpy(written["y_train"].astype(np.int64))
    _assert_stratified(torch.cat([ds.labels("train"), ds.labels("val")]), whole_train, 0.5)
    _assert_stratified(ds.labels("test"), torch.from_numpy(written["y_test"].astype(np.int64)), 0.6)
    _assert_stratified(ds.labels("val"), torch.cat([ds.labels("train"), ds.labels("val")]), 0.1)
    assert set(_train_val_rows(ds)) <= set(_written_rows(written["x_train"], written["y_train"]))
    assert set(_rows(ds.view("image", "test"), ds.labels("test"))) <= set(
        _written_rows(written["x_test"], written["y_test"]))
    assert load_dataset("mnist", max_train=100, max_test=30, split_seed=4) is ds

    data.clear_cache()
    again = load_dataset("mnist", max_train=100, max_test=30, split_seed=4)
    assert again is not ds and again.summary() == ds.summary()
    for spec in ("image", "flat", "pca:7", "pca:7:seed=2"):
        for split in ("train", "val", "test"):
            assert torch.equal(again.view(spec, split), ds.view(spec, split)), (spec, split)
            assert torch.equal(again.labels(split), ds.labels(split))
    other = load_dataset("mnist", max_train=100, max_test=30, split_seed=5)
    assert not torch.equal(other.labels("val"), ds.labels("val"))
    # max_test draws from its own stream: it does not move the validation split
    assert torch.equal(load_dataset("mnist", max_test=20).labels("val"), load_dataset("mnist").labels("val"))


def test_pca_views_are_fitted_on_train_only(root):
    _write_idx(root, "kmnist")
    ds = load_dataset("kmnist")
    train = ds.view("flat", "train").numpy()
    for spec, pca in (("pca:12", PCA(12, random_state=0)),
                      ("pca:12:seed=7", PCA(12, svd_solver="randomized", random_state=7))):
        z_train = pca.fit_transform(train)
        scaler = StandardScaler().fit(z_train)
        assert ds.view_shape(spec) == (12,)
        for split in ("train", "val", "test"):
            z = ds.view(spec, split)
            assert z.dtype == torch.float32 and z.is_contiguous() and z.shape == (ds.size(split), 12)
            expected = scaler.transform(pca.transform(ds.view("flat", split).numpy()))
            np.testing.assert_allclose(z.numpy(), expected, rtol=1e-5, atol=1e-5)
        assert np.allclose(ds.view(spec, "train").numpy().std(0), 1, atol=1e-3)  # standardised on train...
        assert not np.allclose(ds.view(spec, "test").numpy().mean(0), 0, atol=1e-3)  # ...not on test
    assert not torch.allclose(ds.view("pca:12:seed=7", "test").abs(), ds.view("pca:12:seed=8", "test").abs())
    assert ds.view("pca:12", "val") is ds.view("pca:012", "val")  # cached per parsed spec
    with pytest.raises(ValueError, match="K must be"):
        ds.view("pca:785", "train")


DIGEST = """
import hashlib
from benchmark.data import load_dataset

def digest(name):
    ds, h = load_dataset(name, max_train=150), hashlib.sha256()
    for spec in ("image", "pca:6", "pca:6:seed=1"):
        for split in ("train", "val", "test"):
            h.update(ds.view(spec, split).numpy().tobytes() + ds.labels(split).numpy().tobytes())
    return h.hexdigest()
"""


def test_bit_identical_in_another_process(root):
    _write_idx(root, "mnist", gz=True)
    names = ("digits", "mnist")
    scope = {}
    exec(DIGEST, scope)
    here = [scope["digest"](name) for name in names]
    code = DIGEST + f"\nprint(*[digest(n) for n in {names!r}])"
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == here


def test_summary_is_json_ready(root):
    _write_idx(root, "mnist")
    s = load_dataset("mnist", max_train=120).summary()
    assert json.loads(json.dumps(s)) == s
    expected = {"name": "mnist", "n_train": 108, "n_val": 12, "n_test": N_TEST, "input_shape": [1, 28, 28],
                "num_classes": 10, "max_train": 120, "split_seed": 0, "val_fraction": 0.1}
    assert {k: s[k] for k in expected} == expected
    assert s["source"] == str(root / "MNIST" / "raw") and len(s["fingerprint"]) == 16


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name", ["mnist", "kmnist", "cifar10"])
def test_missing_dataset_names_the_fix(root, name):
    ok, msg = availability(name)
    assert not ok
    _assert_one_line(Exception(msg), f"'{name}' not found under {root}", "--download")
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset(name)
    assert str(e.value) == msg and not isinstance(e.value, DatasetCorrupt)


def test_missing_fashion_mnist_names_the_debian_package():
    ok, msg = availability("fashion_mnist")
    assert not ok
    _assert_one_line(Exception(msg), "apt-get install dataset-fashion-mnist", "--download")
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist")


def test_incomplete_folder_is_unavailable(root):
    _write_idx(root, "mnist")
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    ok, msg = availability("mnist")
    assert not ok and "t10k-labels-idx1-ubyte" in msg


def _corrupt(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: len(raw) - 100])
    elif how == "magic":
        path.write_bytes((2052).to_bytes(4, "big") + raw[4:])
    elif how == "extra":
        path.write_bytes(raw + b"\0")


@pytest.mark.parametrize("how", ["truncate", "magic", "extra"])
def test_corrupt_idx_file(root, how):
    _write_idx(root, "mnist")
    bad = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    _corrupt(bad, how)
    assert availability("mnist")[0]  # cheap: does not parse
    with pytest.raises(DatasetCorrupt) as e:
        load_dataset("mnist")
    _assert_one_line(e.value, str(bad))


def test_corrupt_gz_and_mismatched_counts(root):
    _write_idx(root, "kmnist", gz=True)
    bad = root / "KMNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-50])
    with pytest.raises(DatasetCorrupt) as e:
        load_dataset("kmnist")
    _assert_one_line(e.value, str(bad))
    labels = root / "KMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    _write_idx(root, "kmnist", gz=True)
    with gzip.open(labels, "wb") as f:  # a valid idx file, but one label short
        f.write((2049).to_bytes(4, "big") + (N_TEST - 1).to_bytes(4, "big") + bytes(N_TEST - 1))
    with pytest.raises(DatasetCorrupt, match="labels for"):
        load_dataset("kmnist")


def test_corrupt_cifar_pickle(root):
    write_cifar10(root, n_per_batch=10, seed=0)
    bad = root / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:500])
    with pytest.raises(DatasetCorrupt) as e:
        load_dataset("cifar10")
    _assert_one_line(e.value, str(bad))


def test_download_is_wired_to_torchvision(root, monkeypatch):
    import torchvision

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://…: URLError")

    class Fake:
        def __init__(self, root, train=True, download=False):
            assert download
            write_idx_mnist(Path(root) / "MNIST" / "raw", N_TRAIN, N_TEST, seed=1)

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("mnist", download=True)
    _assert_one_line(e.value, "download into", "RuntimeError: Error downloading")
    monkeypatch.setattr(torchvision.datasets, "MNIST", Fake)
    assert load_dataset("mnist", download=True).size("test") == N_TEST


def test_superclass_task_collapses_labels_and_keeps_the_fine_ones():
    from benchmark.data import load_dataset, parse_name

    assert parse_name("digits:2x5") == ("digits", (2, 5))
    fine = load_dataset("digits")
    coarse = load_dataset("digits:2x5")
    assert coarse.num_classes == 2 and coarse.name == "digits:2x5"
    for split in ("train", "val", "test"):
        assert torch.equal(coarse.fine_labels(split), fine.labels(split))
        assert torch.equal(coarse.labels(split), fine.labels(split) // 5)
        assert torch.equal(coarse.view("flat", split), fine.view("flat", split))
    assert set(coarse.labels("train").tolist()) == {0, 1}
    with pytest.raises(ValueError):
        load_dataset("digits:3x3")
