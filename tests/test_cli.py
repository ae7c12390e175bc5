"""The command line: the documented flows, and bad input refused with one line, exit 2, nothing written."""

import json
import shutil

import pandas as pd
import pytest

from benchmark.cli import main
from tests.conftest import ROOT, run_cli, run_main


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    first = run_cli("run", "scratch_student", "--datasets", "digits", "--seeds", "2", "--preset", "smoke",
                    "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    return out, first


def test_list_shows_baselines_and_datasets():
    res = run_cli("list")
    assert res.returncode == 0, res.stderr
    for word in ("scratch_student", "teacher", "digits", "mnist1d", "fashion_mnist", "mnist", "kmnist", "cifar10"):
        assert word in res.stdout
    assert "available" in res.stdout
    methods = res.stdout.split("datasets:")[0].splitlines()[1:]
    assert len(methods) > 3 and len({line.index(" ok ") for line in methods if " ok " in line}) == 1  # one column


def test_run_writes_store_and_second_run_is_cached(smoke_store):
    out, first = smoke_store
    assert len(list((out / "runs").glob("*.json"))) == 2
    frame = pd.read_parquet(out / "published" / "tables" / "metrics.parquet")
    assert list(frame.columns) == ["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                   "value"]
    assert frame["value"].notna().all() and frame["value"].map(float).map(abs).lt(float("inf")).all()
    assert (out / "published" / "tables" / "summary.md").read_text().count("scratch_student") >= 1
    again = run_cli("run", "scratch_student", "--datasets", "digits", "--seeds", "2", "--preset", "smoke",
                    "--out", str(out), "--no-progress")
    assert again.returncode == 0
    assert "all 2 runs were cached" in again.stdout


def test_dry_run_lists_cached_and_todo(smoke_store):
    out, _ = smoke_store
    res = run_cli("run", "scratch_student", "--datasets", "digits", "--seeds", "3", "--preset", "smoke",
                  "--out", str(out), "--dry-run")
    assert res.returncode == 0
    assert "3 runs planned: 1 to train, 2 cached" in res.stdout
    assert "expected training time" in res.stdout
    assert len(list((out / "runs").glob("*.json"))) == 2


def test_no_probe_forecasts_without_measuring_steps(tmp_path):
    """At quick, a kind the store never timed is probed (a few steps measured) unless --no-probe, which falls back
    to the FLOP estimate; neither trains or writes anything."""
    args = ["run", "scratch_student", "--datasets", "digits", "--seeds", "1", "--out", str(tmp_path / "s"),
            "--dry-run"]
    probed, flops = run_cli(*args), run_cli(*args, "--no-probe")
    assert probed.returncode == flops.returncode == 0, probed.stderr + flops.stderr
    assert "1 from a few steps measured now" in probed.stdout and "FLOP" not in probed.stdout
    assert "1 from a FLOP estimate" in flops.stdout and "measured now" not in flops.stdout
    assert not (tmp_path / "s").exists()


def test_no_report_stores_the_runs_and_writes_no_tables_until_report_is_asked(tmp_path):
    out = tmp_path / "s"
    res = run_cli("run", "scratch_student", "--datasets", "digits", "--seeds", "1", "--preset", "smoke", "--out",
                  str(out), "--no-progress", "--no-report")
    assert res.returncode == 0, res.stderr
    assert len(list((out / "runs").glob("*.json"))) == 1 and not (out / "published").exists()
    assert "not written (--no-report)" in res.stdout and "report:" not in res.stdout
    assert run_cli("report", "--out", str(out)).returncode == 0
    assert (out / "published" / "REPORT.md").is_file() and (out / "published" / "tables" / "summary.md").is_file()


@pytest.mark.parametrize("args", [
    ["run", "no_such_method"],
    ["run", "scratch_student", "--datasets", "no_such_data"],
    ["run", "scratch_student", "--seeds", "0"],
    ["run", "scratch_student", "--seeds", "-1"],
    ["run", "scratch_student", "--jobs", "0"],
    ["run", "scratch_student", "--set", "epochs=abc"],
    ["run", "scratch_student", "--set", "no_such_key=1"],
    ["run", "scratch_student", "--set", "noequals"],
    ["run", "scratch_student", "--preset", "huge"],
    ["ablate", "scratch_student"],
    ["all", "--set", "no_such_key=1"],
    ["tables"],
])
def test_bad_input_one_line_exit_2_nothing_written(args, tmp_path, capsys):
    # In-process (the same main() as `python -m benchmark`), to keep the many refusals fast.
    out = tmp_path / "out"
    extra = ["--datasets", "digits"] if "--datasets" not in args and args[0] != "tables" else []
    assert main([*args, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("benchmark: error:")
    assert not out.exists()


def test_bad_input_from_the_real_command_line(tmp_path):
    out = tmp_path / "out"
    res = run_cli("run", "scratch_student", "--set", "epochs=abc", "--datasets", "digits", "--out", str(out))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "epochs" in res.stderr
    assert not out.exists()


def test_missing_dataset_names_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run_cli("run", "scratch_student", "--datasets", "cifar10", "--out", str(tmp_path / "o"),
                  "--data-root", str(tmp_path / "empty"))
    assert res.returncode == 2
    assert "cifar10" in res.stderr and "--download" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_same_seed_gives_identical_metrics(tmp_path):
    metrics = []
    for name in ("a", "b"):
        res = run_main("run", "scratch_student", "--datasets", "digits", "--seeds", "1", "--preset", "smoke",
                      "--out", str(tmp_path / name), "--no-progress")
        assert res.returncode == 0, res.stderr
        (record,) = [json.loads(p.read_text()) for p in (tmp_path / name / "runs").glob("*.json")]
        metrics.append(record["metrics"])
    assert metrics[0] == metrics[1]
    assert len(metrics[0]) > 5


@pytest.mark.slow  # tests/test_template.py runs the automatic tests on an unedited copy in the default run
def test_copied_template_is_listed_run_and_stored(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "baselines", project / "baselines", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "methods").mkdir()
    shutil.copytree(ROOT / "methods" / "_template", project / "methods" / "my_method",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"BENCHMARK_PROJECT_ROOT": str(project)}
    listed = run_cli("list", env=env)
    assert "my_method" in listed.stdout and "BROKEN" not in listed.stdout
    out = tmp_path / "out"
    res = run_cli("run", "my_method", "--datasets", "digits", "--seeds", "1", "--preset", "smoke", "--out", str(out),
                  "--no-progress", env=env)
    assert res.returncode == 0, res.stderr
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert {r["method"] for r in records} == {"my_method", "scratch_student", "label_smoothing"}
    assert all(r["status"] == "ok" for r in records)
    assert "my_method" in (out / "published" / "tables" / "summary.md").read_text()


def test_broken_method_is_named_and_others_still_run(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "baselines", project / "baselines", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "methods" / "broken").mkdir(parents=True)
    (project / "methods" / "broken" / "method.py").write_text("import not_a_module_anywhere\n")
    env = {"BENCHMARK_PROJECT_ROOT": str(project)}
    listed = run_main("list", env=env)
    assert listed.returncode == 0
    assert "broken" in listed.stdout and "ModuleNotFoundError" in listed.stdout
    named = run_main("run", "broken", "--datasets", "digits", "--out", str(tmp_path / "x"), env=env)
    assert named.returncode == 2 and "broken" in named.stderr
    out = tmp_path / "out"
    res = run_main("all", "--datasets", "digits", "--seeds", "1", "--preset", "smoke", "--out", str(out),
                  "--no-progress", env=env)
    assert res.returncode == 1
    assert "broken" in res.stdout and "ModuleNotFoundError" in res.stdout
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert {r["method"] for r in records} == {"label_smoothing", "scratch_student", "teacher"}
    assert all(r["status"] == "ok" for r in records)
