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
from benchmark.errors import BadInput
from benchmark.reporting.failures import failed_runs_markdown
from benchmark.store import Store
from tests.conftest import ROOT
from tests.projects import make_project

SMOKE = ("--preset", "smoke", "--no-progress")
DIGITS = ("--datasets", "digits")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store holding a smoke hinton_kd run, its teacher, its scratch student and its label-smoothing partner,
    written under umask 0o002."""
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
    assert "2 trained, 2 cached" in captured.out  # teacher, scratch again; hinton_kd, label_smoothing kept
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
    assert len(pd.read_csv(out / "published" / "tables" / "runs.csv")) == 4


@pytest.mark.parametrize("command", ["tables", "figures", "report"])
def test_tables_on_a_store_of_invalid_records_is_one_line_and_exit_2(tmp_path, capsys, command):
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    (runs / "aaaa.json").write_text('{"run_id": "aa')
    (runs / "bbbb.json").write_text(json.dumps({"run_id": "bbbb", "status": "ok"}))
    assert main([command, "--out", str(tmp_path / "out")]) == 2
    (line,) = _err_lines(capsys)
    assert "no valid run record" in line and "2 found were invalid" in line
    assert not (tmp_path / "out" / "published").exists() and not list((tmp_path / "out").glob(".publish-*"))
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
    published = {p: p.read_bytes() for p in (out / "published").rglob("*") if p.is_file()}
    assert published

    def full(fd):  # the disk fills once the runs are trained (in their workers): the tables cannot be written
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "fsync", full)
    assert main(["run", "scratch_student", "--seeds", "2", "--jobs", "1", "--out", str(out), *DIGITS, *SMOKE]) == 1
    (line,) = _err_lines(capsys)
    assert "disk full while writing" in line and "No space left on device" in line and "kept" in line
    after = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
    assert len(after) == len(before) + 1 and all(after[name] == data for name, data in before.items())
    assert not list(out.glob(".publish-*"))  # the old outputs as they were, no staging folder left
    assert {p: p.read_bytes() for p in (out / "published").rglob("*") if p.is_file()} == published


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


# ---- issue 21: every reader checks identity; the reader takes only what a record can be ------------------------

def _record(out: Path, method: str = "m", rep: int = 0) -> dict:
    from tests.test_tables import StoreBuilder

    return StoreBuilder(out).add(method, rep, roles={"student": "K"}, metrics=[["student", -1, "test_acc", 0.5]])


def test_the_run_id_formula_is_unchanged_and_shared_with_the_engine(tmp_path):
    import hashlib

    from benchmark.engine.spec import RunSpec
    from benchmark.store import run_id_of

    record = _record(tmp_path)
    fields = {"method": "m", "kind": "method", "dataset": "digits", "rep": 0, "base_seed": 0,
              "config": record["config"], "data": record["data"], "source": "abc", "requires": {}}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))  # the formula, written out
    assert record["run_id"] == run_id_of(record) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert RunSpec.from_dict(record).run_id == record["run_id"]


def test_a_forged_record_is_set_aside_by_the_tables_and_counted(tmp_path, capsys):
    out = tmp_path / "out"
    real, other = _record(out), _record(out, rep=1)
    forged = {**other, "run_id": "0123456789abcdef"}  # a valid record copied under another run's name
    (out / "runs" / "0123456789abcdef.json").write_text(json.dumps(forged))
    assert main(["tables", "--out", str(out)]) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "set aside" in x]
    assert "0123456789abcdef.json" in line and "hash to another id" in line
    tables = out / "published" / "tables"
    assert sorted(pd.read_csv(tables / "runs.csv").run_id) == sorted([real["run_id"], other["run_id"]])
    assert "1 run file was not a valid run record and is left out" in (tables / "summary.md").read_text()
    assert main(["tables", "--out", str(out)]) == 0  # read again: nothing left to skip, nothing said
    assert "not a valid run record" not in (out / "published" / "tables" / "summary.md").read_text()


def _json_with(record: dict, path: tuple, raw: str) -> str:
    """The record as JSON text with the value at ``path`` replaced by the literal ``raw``."""
    node = record
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "@@RAW@@"
    return json.dumps(record).replace('"@@RAW@@"', raw)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = {  # what a run file holds -> what the one line says
    "metric 10**400": (("metrics", 0, 3), str(10**400), "does not fit in 64 bits"),
    "rep 10**400": (("rep",), str(10**400), "does not fit in 64 bits"),
    "epoch 10**400": (("metrics", 0, 1), str(10**400), "does not fit in 64 bits"),
    "metric 1e400": (("metrics", 0, 3), "1e400", "too large for a float"),
    "metric NaN": (("metrics", 0, 3), "NaN", "NaN is not a JSON number"),
    "rep -1": (("rep",), "-1", "'rep' is -1"),
    "rep true": (("rep",), "true", "'rep' is a bool"),
    "epoch -2": (("metrics", 0, 1), "-2", "metrics[0]"),
    "provenance a list": (("provenance",), '["x"]', "'provenance' is a list, not a dict"),
    "threads 0": (("provenance", "threads"), "0", "provenance threads is 0"),
    "threads text": (("provenance", "threads"), '"8"', "provenance['threads'] is a str"),
    "role entry a list": (("roles", "student"), '["x"]', "roles['student'] is a list"),
    "role classifier text": (("roles", "student", "classifier"), '"yes"', "roles['student']['classifier']"),
    "timing text": (("timing", "step_median_s"), '"fast"', "timing['step_median_s']"),
    "negative wall time": (("wall_time_s",), "-1.0", "negative time"),
    "config nested deep": (("config", "k"), _nested(40), "nested deeper than"),
    "nested past the recursion limit": ((), _nested(100_000), "nested deeper than"),
    "a number": ((), "5", "a JSON int, not a run record"),
    "null": ((), "null", "a JSON NoneType, not a run record"),
    "a string": ((), '"x"', "a JSON str, not a run record"),
    "metric row a number": (("metrics", 0), "7", "metrics[0] is 7"),
    "metric row a bool value": (("metrics", 0, 3), "true", "metrics[0]"),
    "metric row of five": (("metrics", 0), '["student", 0, "test_acc", 0.5, 1]', "metrics[0]"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_record_is_set_aside_and_the_tables_go_on(case, tmp_path, capsys):
    out = tmp_path / "out"
    good = _record(out)
    path, raw, said = HOSTILE[case]
    bad = _record(out, rep=1)
    text = raw if not path else _json_with(bad, path, raw)
    (out / "runs" / f"{bad['run_id']}.json").write_text(text)
    assert main(["tables", "--out", str(out)]) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "set aside" in x]
    assert said in line and bad["run_id"] in line
    assert [p.name for p in (out / "set-aside").iterdir()] == [f"{bad['run_id']}.json"]
    assert list(pd.read_csv(out / "published" / "tables" / "runs.csv").run_id) == [good["run_id"]]


@pytest.mark.timeout(60)  # a reader that opened the FIFO would wait for a writer forever
def test_a_fifo_or_a_link_to_a_device_is_set_aside_without_being_read(tmp_path, capsys):
    out = tmp_path / "out"
    good = _record(out)
    os.mkfifo(out / "runs" / "aaaaaaaaaaaaaaaa.json")
    (out / "runs" / "bbbbbbbbbbbbbbbb.json").symlink_to("/dev/zero")
    (out / "runs" / "cccccccccccccccc.json").mkdir()
    found = Store(out).read_runs()
    assert [r["run_id"] for r in found.records] == [good["run_id"]]
    err = capsys.readouterr().err
    assert "aaaaaaaaaaaaaaaa.json set aside" in err and "a FIFO, not a regular file" in err
    assert "bbbbbbbbbbbbbbbb.json set aside" in err and "a symbolic link, not a regular file" in err
    assert "cccccccccccccccc.json set aside" in err and "a folder, not a regular file" in err
    assert sorted(p.name for p in (out / "set-aside").iterdir()) == [
        "aaaaaaaaaaaaaaaa.json", "bbbbbbbbbbbbbbbb.json", "cccccccccccccccc.json"]


def test_a_run_file_above_the_size_bound_is_set_aside_unread(tmp_path, capsys, monkeypatch):
    import benchmark.store.store as store_module

    out = tmp_path / "out"
    good = _record(out)
    big = out / "runs" / "dddddddddddddddd.json"
    big.write_bytes(b" " * 5000)
    monkeypatch.setattr(store_module, "MAX_RECORD_BYTES", 4096)
    assert [r["run_id"] for r in Store(out).read_runs().records] == [good["run_id"]]
    assert "5,000 bytes, above the 4,096 a run file may have" in capsys.readouterr().err
    assert not big.exists()


def test_a_read_only_store_reports_invalid_files_once_and_moves_nothing(tmp_path):
    out = tmp_path / "out"
    good = _record(out)
    bad = out / "runs" / "eeeeeeeeeeeeeeee.json"
    bad.write_text('{"run_id": "ee')
    lines = []
    store = Store(out, warn=lines.append, read_only=True)
    first = store.read_runs()
    assert [r["run_id"] for r in first.records] == [good["run_id"]] and first.skipped == 1
    assert len(lines) == 1 and "left in place, the store is read-only" in lines[0]
    again = store.read_runs()
    assert again.skipped == 1 and again.invalid == [] and len(lines) == 1  # not read, nor said, twice
    assert store.read_run(bad.stem) is None and len(lines) == 1
    assert bad.exists() and not (out / "set-aside").exists()
    for write in (lambda: store.write_run(good), store.open, store.clean_temporary):
        with pytest.raises(RuntimeError, match="read-only"):
            write()
    bad.write_text("{}")  # changed since: read (and reported) again
    assert store.read_runs().invalid and len(lines) == 2
    only_bad = tmp_path / "only-bad"
    (only_bad / "runs").mkdir(parents=True)
    (only_bad / "runs" / "x.json").write_text("[")
    with pytest.raises(BadInput, match="the 1 found were invalid, left in place"):
        Store(only_bad, read_only=True).require_runs()
    assert (only_bad / "runs" / "x.json").exists()
