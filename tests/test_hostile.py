"""Input a hostile or careless user gives the command line: each ends in one line and its documented exit status,
nothing hangs, nothing outside --out is touched, and a bad dataset or method module takes down only itself."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmark.cli import main
from benchmark.engine.discovery import discover
from benchmark.suite.request import WORKER_MEMORY_GB, available_memory_gb, cores
from tests.conftest import ROOT, run_cli, run_main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("benchmark: error:")
    return err[0]


@pytest.mark.parametrize("argv, words", [
    (["run", "scratch_student", "--datasets", ""], "names no dataset"),
    (["run", "scratch_student", "--datasets", ","], "names no dataset"),
    (["run", "scratch_student", "--datasets", "digits", "--max-seeds", "9"], "--until-ci"),
    (["run", "scratch_student", "--datasets", "digits", "--threads", "100000"], "--threads"),
    (["run", "scratch_student", "--datasets", "digits", "--jobs", "1000"], "--jobs"),
    (["ablate", "hinton_kd", "--datasets", "digits", "--param", "lr=0.1", "--param", "lr=0.2"], "twice"),
    (["ablate", "hinton_kd", "--datasets", "digits", "--param", "lr="], "KEY=V1"),
    (["run", "scratch_student", "--datasets", "digits", "--base-seed", "-1"], "base-seed"),
])
def test_unbounded_or_silent_inputs_are_refused(argv, words, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    assert words in _one_error_line(capsys)
    assert not out.exists()


def test_jobs_bound_names_the_figures(tmp_path, capsys):
    assert main(["run", "scratch_student", "--datasets", "digits", "--jobs", "1000", "--out", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert f"{cores()} cores" in line or f"{WORKER_MEMORY_GB:g} GB" in line
    memory = available_memory_gb()
    assert memory is None or f"{memory:.1f} GB" in line or "cores" in line


def test_missing_data_root_is_reported(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert main(["run", "scratch_student", "--datasets", "digits", "--data-root", str(missing),
                 "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert not missing.exists()


@pytest.mark.parametrize("run_id", ["../../victim", "/etc/passwd", "0123456789abcdef0", "xyz", "abc/def", ""])
def test_reproduce_takes_ids_not_paths(run_id, tmp_path, capsys):
    victim = tmp_path / "victim.json"
    victim.write_text(json.dumps({"run_id": "victim"}))
    out = tmp_path / "a" / "b"
    assert main(["reproduce", run_id, "--out", str(out)]) == 2
    assert "run id" in _one_error_line(capsys)
    assert victim.exists() and not (out / "set-aside").exists()


def _project(tmp_path, methods: dict[str, str]):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "baselines", project / "baselines", ignore=shutil.ignore_patterns("__pycache__"))
    for name, body in methods.items():
        (project / "methods" / name).mkdir(parents=True)
        (project / "methods" / name / "method.py").write_text(body)
    return project


@pytest.mark.parametrize("body, words", [
    ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    ("raise SystemExit\n", "SystemExit"),
])
def test_a_module_that_exits_on_import_takes_only_itself_down(body, words, tmp_path):
    project = _project(tmp_path, {"exits": body})
    found = discover(project)
    assert found["exits"].error is not None and words in found["exits"].error
    assert found["scratch_student"].ok and found["teacher"].ok


def test_list_and_all_survive_a_module_calling_sys_exit(tmp_path):
    env = {"BENCHMARK_PROJECT_ROOT": str(_project(tmp_path, {"exits": "import sys\nsys.exit(3)\n"}))}
    listed = run_cli("list", env=env)
    assert listed.returncode == 0 and "exits" in listed.stdout and "BROKEN" in listed.stdout
    res = run_main("all", "--datasets", "digits", "--seeds", "1", "--preset", "smoke", "--out", str(tmp_path / "o"),
                   "--no-progress", "--jobs", "1", env=env)
    assert res.returncode == 1 and "exits" in res.stdout, res.stderr
    assert (tmp_path / "o" / "published" / "tables" / "summary.md").is_file()


@pytest.fixture
def planted_dataset(tmp_path, monkeypatch):
    """A dataset module in a folder added to the datasets package: ``plant(name, source)``."""
    import importlib

    from benchmark.data import loader, registry

    package = importlib.import_module(registry.DATASETS_PACKAGE)
    folder = tmp_path / "planted"
    folder.mkdir()
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])

    def plant(name: str, source: str) -> None:
        (folder / f"{name}.py").write_text(source)
        registry.refresh()

    yield plant
    registry.refresh()
    loader.clear_cache()


BROKEN_READER = (ROOT / "benchmark" / "data" / "datasets" / "digits.py").read_text().replace(
    "def read(", "def _original_read(") + "\n\ndef read(found):\n    raise RuntimeError('this reader is broken')\n"


def test_a_dataset_whose_read_raises_fails_alone(planted_dataset, tmp_path, capsys):
    planted_dataset("digits_broken", BROKEN_READER)
    out = tmp_path / "out"
    code = main(["run", "scratch_student", "--datasets", "digits,digits_broken", "--seeds", "1", "--preset",
                 "smoke", "--out", str(out), "--no-progress", "--jobs", "1"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "digits_broken" in captured.out and "this reader is broken" in captured.out
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert {r["dataset"] for r in records} == {"digits"} and all(r["status"] == "ok" for r in records)


@pytest.mark.parametrize("body", ["import sys\nsys.exit(4)\n", "raise KeyboardInterrupt\n"])
def test_a_dataset_module_that_exits_on_import_is_listed_broken(planted_dataset, body):
    from benchmark.data import registry

    planted_dataset("exits_on_import", body)
    info = registry.discover()["exits_on_import"]
    assert not info.ok and info.error
    assert registry.discover()["digits"].ok


# ---- ten more hostile cases, beyond the list -------------------------------------------------------------

class _Payload:
    """Unpickling this runs ``os.system`` (what a malicious pickle does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_cifar_file_that_is_a_malicious_pickle_is_refused_unexecuted(tmp_path):
    import pickle

    from benchmark.data import DatasetCorrupt, formats
    from tests.dataset_files import write_cifar10

    write_cifar10(tmp_path, n_per_batch=10, seed=0)
    marker = tmp_path / "executed"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}))
    with pytest.raises(DatasetCorrupt, match="refused"):
        formats.read_cifar10(tmp_path / "cifar-10-batches-py")
    assert not marker.exists()


@pytest.mark.parametrize("folder", ["published", "runs"])
def test_a_store_folder_that_is_a_link_out_of_the_store_is_refused(folder, tmp_path, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / folder).symlink_to(elsewhere, target_is_directory=True)
    code = main(["run", "scratch_student", "--datasets", "digits", "--seeds", "1", "--preset", "smoke",
                 "--out", str(out), "--no-progress", "--jobs", "1"])
    assert code == 2 and "symbolic link" in _one_error_line(capsys)
    assert not any(elsewhere.iterdir())


@pytest.mark.timeout(60)
def test_a_fifo_in_a_method_folder_does_not_hang_discovery(tmp_path):
    import os

    project = _project(tmp_path, {"piped": "x = 1\n"})
    os.mkfifo(project / "methods" / "piped" / "helpers.py")
    found = discover(project)
    assert "not a regular source file" in found["piped"].error
    assert found["scratch_student"].ok


def test_a_set_value_with_a_newline_is_one_line(tmp_path, capsys):
    assert main(["run", "js_entanglement", "--datasets", "digits", "--set", "views=halves\nrm -rf /",
                 "--out", str(tmp_path / "o")]) == 2
    assert "views" in _one_error_line(capsys)


def test_a_method_whose_architecture_clashes_with_a_shared_one_takes_only_itself_down(tmp_path):
    project = _project(tmp_path, {"clash": "from dataclasses import dataclass\n"})
    (project / "methods" / "clash" / "models.py").write_text(
        "from benchmark.nn import architecture\n\n@architecture('hinton_student')\n"
        "def hinton_student(input_shape, num_classes):\n    raise RuntimeError\n")
    found = discover(project)
    assert "ArchitectureClash" in found["clash"].error and found["scratch_student"].ok


def test_a_dataset_named_twice_is_planned_once(tmp_path, capsys):
    assert main(["run", "scratch_student", "--datasets", "digits,digits", "--seeds", "1", "--preset", "smoke",
                 "--out", str(tmp_path), "--dry-run"]) == 0
    assert "1 runs planned" in capsys.readouterr().out


def test_a_dataset_whose_locate_raises_is_listed_missing_and_skipped(planted_dataset, tmp_path, capsys):
    source = (ROOT / "benchmark" / "data" / "datasets" / "digits.py").read_text().replace(
        "def locate(", "def _original_locate(") + "\n\ndef locate(root):\n    raise OSError('the disk is gone')\n"
    planted_dataset("digits_lost", source)
    assert main(["list"]) == 0
    assert "digits_lost" in capsys.readouterr().out
    assert main(["run", "scratch_student", "--preset", "smoke", "--seeds", "1", "--out", str(tmp_path),
                 "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "skipping dataset digits_lost" in captured.err and "the disk is gone" in captured.err


def test_a_broken_speed_file_takes_only_its_method_down(tmp_path):
    project = _project(tmp_path, {})
    shutil.copytree(ROOT / "methods" / "_template", project / "methods" / "fast",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (project / "methods" / "fast" / "speed.toml").write_text("[targets]\nmax_ratio_to_scratch = 'fast'\n")
    found = discover(project)
    assert "speed.toml" in found["fast"].error and found["teacher"].ok
