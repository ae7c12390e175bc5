"""Nothing read is trusted, nothing written is lost or private, nothing bad reaches training, and a stored run can
be re-executed bit for bit (issue 13): each test is one of the issue's repros, made small."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.reporting.failures import failed_runs_markdown
from benchmark.store.store import Store
from tests.conftest import ROOT
from tests.projects import make_project

SMOKE = ("--preset", "smoke", "--no-progress")
DIGITS = ("--datasets", "digits")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store holding a smoke hinton_kd run, its teacher and its scratch student, written under umask 0o002."""
    out = tmp_path_factory.mktemp("stored") / "out"
    previous = os.umask(0o002)
    try:
        assert main(["run", "hinton_kd", "--seeds", "1", "--jobs", "2", "--out", str(out), *DIGITS, *SMOKE]) == 0
    finally:
        os.umask(previous)
    return out


def _copy(stored: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(stored, out)
    return out


def _ids(out: Path) -> dict[str, str]:
    return {json.loads(p.read_text())["method"]: p.stem for p in (out / "runs").glob("*.json")}


def _err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ---- 1, 2: every record validated before it counts -------------------------------------------------------------

def test_invalid_records_are_set_aside_and_redone_never_done_nor_tabled(stored, tmp_path, capsys):
    out = _copy(stored, tmp_path)
    ids = _ids(out)
    runs = out / "runs"
    bare = runs / f"{ids['scratch_student']}.json"
    bare.write_text(json.dumps({"run_id": ids["scratch_student"], "status": "ok"}))  # the repro
    teacher = json.loads((runs / f"{ids['teacher']}.json").read_text())
    edited = runs / f"{ids['teacher']}.json"  # valid, but says it is another configuration than its id
    edited.write_text(json.dumps({**teacher, "config": {**teacher["config"], "epochs": 3}}))
    stray = runs / "0123456789abcdef.json"
    stray.write_text(json.dumps({**teacher, "run_id": stray.stem, "metrics": [["teacher", "last", "acc", 0.9]]}))

    assert main(["run", "hinton_kd", "--seeds", "1", "--jobs", "1", "--out", str(out), *DIGITS, *SMOKE]) == 0
    captured = capsys.readouterr()
    assert "2 trained, 1 cached" in captured.out
    lines = [line for line in captured.err.splitlines() if "set aside" in line]
    assert len(lines) == 3, captured.err
    assert any(bare.name in line and "no 'method'" in line for line in lines)
    assert any(edited.name in line and "hash to another id" in line for line in lines)
    assert any(stray.name in line and "metrics[0]" in line for line in lines)
    assert {p.name for p in (out / "set-aside").iterdir()} == {bare.name, edited.name, stray.name}  # kept
    assert json.loads(bare.read_text())["metrics"] == json.loads((stored / "runs" / bare.name).read_text())["metrics"]

    late = runs / "fedcba9876543210.json"  # a malformed record arriving later: tables and report go on without it
    late.write_text(json.dumps({**teacher, "run_id": late.stem, "metrics": [[1, 2, 3]]}))
    assert main(["tables", "--out", str(out)]) == 0
    assert main(["report", "--out", str(out)]) == 0
    assert late.name in capsys.readouterr().err
    assert len(pd.read_csv(out / "tables" / "runs.csv")) == 3


@pytest.mark.parametrize("command", ["tables", "figures", "report"])
def test_tables_on_a_store_of_invalid_records_is_one_line_and_exit_2(tmp_path, capsys, command):
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    (runs / "aaaa.json").write_text('{"run_id": "aa')
    (runs / "bbbb.json").write_text(json.dumps({"run_id": "bbbb", "status": "ok"}))
    assert main([command, "--out", str(tmp_path / "out")]) == 2
    (line,) = _err_lines(capsys)
    assert "no valid run record" in line and "2 found were invalid" in line
    assert not (tmp_path / "out" / "tables").exists()
    assert sorted(p.name for p in (tmp_path / "out" / "set-aside").iterdir()) == ["aaaa.json", "bbbb.json"]


# ---- 3, 4: temporary files and modes ---------------------------------------------------------------------------

def test_temp_files_of_dead_writers_on_this_host_are_removed_at_open(tmp_path):
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys; from pathlib import Path; from benchmark.store import io as store\n"
        "os.replace = lambda *a: os._exit(9)  # dies between write and rename, as a kill would\n"
        "store.atomic_write_bytes(Path(sys.argv[1]) / 'runs' / 'r.json', b'{}')"), str(out)], cwd=ROOT)
    assert killed.returncode == 9
    (left,) = (out / "runs").iterdir()
    dead, host = int(left.name.split("-")[-2]), socket.gethostname()
    keep = {f".tmp-{host}-{os.getpid()}-0a1b", f".tmp-elsewhere-{dead}-0a1b", ".tmp-profile.csv"}
    (out / "cache").mkdir()
    for name in keep | {f".tmp-{host}-{dead}-0a1b"}:
        (out / "cache" / name).write_bytes(b"")
    Store(out).open()
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())
    assert {p.name for p in (out / "cache").iterdir()} == keep  # a live writer's, another host's, a foreign name


def test_outputs_are_created_0666_minus_umask(stored):
    files = [p for p in stored.rglob("*") if p.is_file()]
    assert {p.parent.name for p in files} >= {"runs", "cache", "tables", "figures"}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o664)}


# ---- 5: unwritable output --------------------------------------------------------------------------------------

@contextlib.contextmanager
def _read_only(folder: Path):
    """Permissions, and for root (whom permissions do not stop) the immutable attribute."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    try:
        if immutable and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root, and chattr +i is not available here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("case", ["a file", "read-only runs", "under /proc"])
def test_unwritable_out_is_refused_before_anything_trains(case, tmp_path, capsys):
    out = tmp_path / "out"
    guard = contextlib.nullcontext()
    if case == "a file":
        out.write_text("not a folder")
    elif case == "under /proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc here")
        out = Path("/proc/benchmark-out")
    else:
        (out / "runs").mkdir(parents=True)
        guard = _read_only(out / "runs")
    with guard:
        code = main(["run", "scratch_student", "--seeds", "1", "--out", str(out), *DIGITS, *SMOKE])
    (line,) = _err_lines(capsys)
    assert code == 2 and "--out" in line, line
    assert not (out / "runs").is_dir() or not any((out / "runs").iterdir())


def test_a_write_that_fails_after_training_is_one_line_and_keeps_every_run(stored, tmp_path, capsys, monkeypatch):
    out = _copy(stored, tmp_path)
    before = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}

    def full(fd):  # the disk fills once the runs are trained (in their workers): the tables cannot be written
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "fsync", full)
    assert main(["run", "scratch_student", "--seeds", "2", "--jobs", "1", "--out", str(out), *DIGITS, *SMOKE]) == 2
    (line,) = _err_lines(capsys)
    assert "No space left on device" in line and "kept" in line
    after = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
    assert len(after) == len(before) + 1 and all(after[name] == data for name, data in before.items())
    assert not list((out / "tables").glob(".tmp-*"))


# ---- 6: bad values refused when planning -----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["run", "hinton_kd", "--set", "view=bogus"], ["run", "hinton_kd", "--set", "view=pca:500"],
    ["run", "hinton_kd", "--set", "arch=b=c"], ["run", "hinton_kd", "--set", "teacher_arch=b=c"],
    ["run", "hinton_kd", "--set", "lr=nan"], ["run", "hinton_kd", "--set", "lr=-1"],
    ["run", "hinton_kd", "--set", "batch_size=0"], ["run", "hinton_kd", "--set", "epochs=-5"],
    ["run", "hinton_kd", "--set", "epochs=0"], ["run", "hinton_kd", "--set", "patience=-1"],
    ["run", "scratch_student", "--seeds", "100000"], ["run", "scratch_student", "--datasets", "digits:3x3"],
], ids=lambda args: " ".join(args[1:]))
def test_bad_values_are_refused_before_anything_runs(args, tmp_path, capsys):
    out = tmp_path / "out"
    datasets = () if "--datasets" in args else DIGITS
    assert main([*args, "--out", str(out), *datasets, *SMOKE]) == 2
    assert len(_err_lines(capsys)) == 1
    assert not out.exists()


# ---- 7: failed runs named in summary.md ------------------------------------------------------------------------

def test_failed_runs_markdown_names_current_failures_only():
    def rec(method, rep, status, at, error=None):
        return {"run_id": f"{method}{rep}{at}", "method": method, "variant": "default", "preset": "smoke",
                "dataset": "digits", "rep": rep, "status": status, "finished_at": at, "error": error}

    records = [rec("kd", 0, "failed", "1", "ValueError: a | b\n  more"), rec("kd", 1, "ok", "1"),
               rec("ska", 0, "failed", "1", "old failure"), rec("ska", 0, "ok", "2")]
    text = failed_runs_markdown(records)
    assert text.startswith("## Failed runs") and "1 run failed" in text
    assert "| kd | default | digits | 0 | `kd01` | ValueError: a \\| b |" in text
    assert "more" not in text and "old failure" not in text  # first line only; a fixed failure is history
    assert failed_runs_markdown(records[1:]) == ""


# ---- 8: reproduce ----------------------------------------------------------------------------------------------

def test_reproduce_a_stored_run_bit_for_bit(stored, tmp_path, capsys):
    out = _copy(stored, tmp_path)
    ids = _ids(out)
    before = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
    assert main(["reproduce", ids["hinton_kd"], "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "identical, bit for bit" in said and "teacher reused from the cache" in said
    (checkpoint,) = (out / "cache").glob("teacher-*.pt")
    checkpoint.write_bytes(b"not a checkpoint")  # the teacher is then trained again, and compared too
    assert main(["reproduce", ids["hinton_kd"], "--out", str(out)]) == 0
    assert "identical, bit for bit" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")} == before  # never overwritten


def test_reproduce_lists_a_tampered_metric(stored, tmp_path, capsys):
    out = _copy(stored, tmp_path)
    path = out / "runs" / f"{_ids(out)['scratch_student']}.json"
    record = json.loads(path.read_text())
    index = next(i for i, row in enumerate(record["metrics"]) if row[1:3] == [-1, "test_acc"])
    record["metrics"][index][3] += 1e-12
    path.write_text(json.dumps(record))
    assert main(["reproduce", path.stem, "--out", str(out)]) == 1
    said = capsys.readouterr().out
    assert "1 of" in said and "student epoch -1 test_acc" in said


def test_reproduce_refuses_a_run_whose_code_changed(stored, tmp_path, capsys, monkeypatch):
    out = _copy(stored, tmp_path)
    project = make_project(tmp_path)
    with (project / "baselines" / "scratch_student" / "method.py").open("a") as fh:
        fh.write("# an edit\n")
    monkeypatch.setenv("BENCHMARK_PROJECT_ROOT", str(project))
    assert main(["reproduce", _ids(out)["scratch_student"], "--out", str(out)]) == 2
    (line,) = _err_lines(capsys)
    assert "code it executes changed" in line and "method" in line


def test_provenance_calls_a_checkout_dirty_for_code_not_for_the_results_it_writes(tmp_path):
    from benchmark.store import code_dirty

    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    (tmp_path / "results").mkdir()
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "results" / "summary.md").write_text("old\n")
    (tmp_path / "benchmark" / "code.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    assert code_dirty(tmp_path / "benchmark") is False
    (tmp_path / "results" / "summary.md").write_text("new\n")
    (tmp_path / "results" / "new.png").write_text("png\n")
    assert code_dirty(tmp_path / "benchmark") is False
    (tmp_path / "benchmark" / "code.py").write_text("x = 2\n")
    assert code_dirty(tmp_path / "benchmark") is True
    assert code_dirty(tmp_path.parent / "no-such-folder") is None
