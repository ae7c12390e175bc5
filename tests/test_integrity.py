"""A bad checkpoint, name or value cannot slip in, and a store stays readable by the code that reads it: each test
reproduces one way a wrong answer could be stored or published without a word, and checks it is now refused, retrained
or said in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.engine.context import checkpoint_mismatch
from benchmark.store import Store, UnstorableRecord, load_state
from benchmark.store.records import SCHEMA_VERSION, parse_record, record_problem
from tests.conftest import ROOT

SMOKE = ("--preset", "smoke", "--no-progress", "--datasets", "digits")


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def _err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ---- checkpoints know which run wrote them and what they hold --------------------------------------------------

def _inprocess(monkeypatch):
    """The suite's runs trained in this process (a patch made here reaches them; a worker process starts clean)."""
    from benchmark.suite import session

    real = session.run_plan
    monkeypatch.setattr(session, "run_plan", lambda todo, settings, **kw: real(todo, settings,
                                                                              **{**kw, "backend": "inprocess"}))


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A store with hinton_kd at its defaults (its teacher the shared cnn_teacher), two repetitions, trained in this
    process."""
    out = tmp_path_factory.mktemp("teachers") / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _inprocess(monkeypatch)
        assert main(["run", "hinton_kd", "--seeds", "2", "--out", str(out), *SMOKE]) == 0
    return out


def _only(out: Path, method: str) -> dict:
    (record,) = [r for r in _records(out) if r["method"] == method and r["rep"] == 0]
    return record


def test_a_checkpoint_names_its_run(distilled):
    teacher = _only(distilled, "teacher")
    state = load_state(Store(distilled).cache_path("teacher", teacher["run_id"]))
    assert state["run_id"] == teacher["run_id"]
    assert teacher["roles"]["teacher"]["arch"] == state["roles"]["teacher"]["arch"] == "cnn_teacher"
    assert checkpoint_mismatch(state, teacher["run_id"], teacher) is None


def _plant(out: Path, planted: str) -> Path:
    """Replace the teacher's checkpoint by ``planted``; its path."""
    from benchmark import nn as layers

    teacher = _only(out, "teacher")
    target = Store(out).cache_path("teacher", teacher["run_id"])
    state = load_state(target)
    if planted == "a teacher checkpoint of another run":  # what copying another teacher's file over it gives
        model = layers.build("hinton_student", (64,), 10, generator=torch.Generator().manual_seed(0))
        state = {"run_id": "0123456789abcdef", "roles": {"teacher": {"arch": "hinton_student", "view": "flat",
                                                                     "options": {}, "state_dict": model.state_dict()}}}
    elif planted == "a CNN in its place":  # its id even forged to match: the architecture still tells
        state["roles"]["teacher"] = {"arch": "kl_cnn", "view": "image", "options": {}, "state_dict": {}}
    else:  # written before checkpoints named their run
        del state["run_id"]
    torch.save(state, target)
    return target


PLANTED = ["a teacher checkpoint of another run", "a CNN in its place", "an old checkpoint"]


@pytest.mark.parametrize("planted", PLANTED)
def test_a_wrong_checkpoint_counts_as_missing_when_planning(planted, distilled, tmp_path):
    from benchmark.engine.discovery import discover
    from benchmark.engine.spec import RunSpec
    from benchmark.runner.status import partition

    out = tmp_path / "out"
    shutil.copytree(distilled, out)
    target = _plant(out, planted)
    teacher, kd = RunSpec.from_dict(_only(out, "teacher")), RunSpec.from_dict(_only(out, "hinton_kd"))
    Store(out).run_path(kd.run_id).unlink()  # the student is to be distilled again: it loads the teacher
    said = []
    cached, todo = partition([teacher, kd], Store(out), discover(), said.append)
    assert [s.run_id for s in todo] == [teacher.run_id, kd.run_id] and not cached
    (line,) = said
    assert target.name in line and "training it again" in line


def test_a_teacher_retrained_on_another_cpu_is_said_with_the_stored_runs_that_learned_from_it(distilled, tmp_path):
    """On another CPU a retrained teacher can come out different and its record is then replaced, while the runs
    that learned from the stored one keep their numbers: the planning line says so, with how many they are."""
    from benchmark.engine.discovery import discover
    from benchmark.engine.spec import RunSpec
    from benchmark.runner.status import partition, stored_learners

    out = tmp_path / "out"
    shutil.copytree(distilled, out)
    store = Store(out)
    teacher, kd = _only(out, "teacher"), _only(out, "hinton_kd")
    learners = stored_learners(store)
    assert learners[teacher["run_id"]] == 1  # rep 0's student (rep 1's has its own teacher)
    assert sum(learners.values()) == sum(r["status"] == "ok" and bool(r.get("requires")) for r in _records(out))
    store.cache_path("teacher", teacher["run_id"]).unlink()
    another = RunSpec.from_dict({**kd, "config": {**kd["config"], "temperature": 3.0}})  # loads the same teacher
    specs = [RunSpec.from_dict(teacher), another]
    assert another.requires == kd["requires"] and store.read_run(another.run_id) is None

    said = []
    partition(specs, store, discover(), said.append)
    assert len(said) == 1 and "training it again" in said[0] and "made on" not in said[0]  # the same CPU

    elsewhere = {**teacher, "provenance": {**teacher["provenance"], "cpu": "Another CPU", "cpu_capability": "AVX2"}}
    store.run_path(teacher["run_id"]).write_text(json.dumps(elsewhere))
    said = []
    partition(specs, store, discover(), said.append)
    (line,) = said
    assert "its record was made on Another CPU (AVX2), this machine is" in line
    assert "1 stored run that learned from it keeps the earlier model's numbers" in line


def test_a_copied_teacher_checkpoint_is_trained_again_not_distilled_from(distilled, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(distilled, out)
    target = _plant(out, PLANTED[0])
    teacher, kd = _only(out, "teacher"), _only(out, "hinton_kd")
    Store(out).run_path(kd["run_id"]).unlink()
    _inprocess(monkeypatch)
    assert main(["run", "hinton_kd", "--seeds", "2", "--out", str(out), *SMOKE]) == 0
    assert any("training it again" in line for line in _err_lines(capsys))
    state = load_state(target)
    assert state["run_id"] == teacher["run_id"] and state["roles"]["teacher"]["arch"] == "cnn_teacher"
    again = Store(out).read_run(kd["run_id"])
    assert again["status"] == "ok" and again["metrics"] == kd["metrics"]  # the very student of the real teacher


def test_a_wrong_checkpoint_met_at_run_time_is_refused_in_one_line(distilled, tmp_path):
    from benchmark.engine.context import RequiredRunMissing, RunContext
    from benchmark.engine.spec import RunSpec

    out = tmp_path / "out"
    shutil.copytree(distilled, out)
    _plant(out, PLANTED[0])
    run = RunContext(RunSpec.from_dict(_only(out, "hinton_kd")), None, None, Store(out), {})
    with pytest.raises(RequiredRunMissing) as caught:
        run.required("teacher")
    assert "\n" not in str(caught.value) and "was written by run 0123456789abcdef" in str(caught.value)


def test_checkpoint_mismatch_names_each_way_a_checkpoint_is_not_the_run():
    record = {"roles": {"teacher": {"arch": "hinton_student"}}}
    good = {"run_id": "0123456789abcdef", "roles": {"teacher": {"arch": "hinton_student", "state_dict": {}}}}
    assert checkpoint_mismatch(good, "0123456789abcdef", record) is None
    assert "does not say" in checkpoint_mismatch({"roles": good["roles"]}, "0123456789abcdef", record)
    assert "fedcba9876543210" in checkpoint_mismatch(good, "fedcba9876543210", record)
    other = {"roles": {"teacher": {"arch": "hinton_teacher"}}}
    assert "hinton_student" in checkpoint_mismatch(good, "0123456789abcdef", other)
    assert "not a checkpoint" in checkpoint_mismatch({"roles": []}, "0123456789abcdef", record)


# ---- values a record can hold ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["100000000000000000000", "-9223372036854775809"])
def test_an_integer_beyond_64_bits_is_refused_before_anything_trains(value, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "hinton_kd", "--set", f"hinton_kd.patience={value}", "--out", str(out), *SMOKE]) == 2
    (line,) = _err_lines(capsys)
    assert "patience" in line and "64 bits" in line
    assert not out.exists()


@pytest.mark.parametrize("value", ["1e400", "inf", "-inf", "nan"])
def test_a_float_that_json_cannot_hold_is_refused(value, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "hinton_kd", "--set", f"hinton_kd.temperature={value}", "--out", str(out), *SMOKE]) == 2
    (line,) = _err_lines(capsys)
    assert "temperature" in line
    assert not out.exists()


def test_the_largest_64_bit_integer_is_still_accepted():
    from benchmark.engine.config import parse_value

    assert parse_value(int, str(2**63 - 1)) == 2**63 - 1
    assert parse_value(int, str(-2**63)) == -2**63
    with pytest.raises(ValueError, match="64 bits"):
        parse_value(int, str(2**63))


def _depth(value) -> int:
    """The nesting depth by walking the parsed value (what ``nesting_depth`` reads off the text)."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _random_json(rng, depth):
    texts = ['"', "[", "]", "{", "}", "\\", '\\"', "\n", "a", "é", "\u005b"]  # brackets and escapes in strings
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([0, -1.5, True, None, "".join(rng.choices(texts, k=rng.randrange(6)))])
    if rng.random() < 0.5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {"".join(rng.choices(texts, k=rng.randrange(4))): _random_json(rng, depth - 1)
            for _ in range(rng.randrange(4))}


def test_the_nesting_depth_read_off_the_text_is_the_walked_depth():
    import random

    from benchmark.store.records import MAX_DEPTH, nesting_depth

    rng = random.Random(0)
    values = [_random_json(rng, rng.randrange(8)) for _ in range(2000)]
    values += [[], {}, "[[[", '"]"', [[[]]], {"a": [{"b": []}]}, ["\\", ["\\\"["]]]
    depths = [(nesting_depth(json.dumps(v, ensure_ascii=e).encode()), _depth(v)) for v in values for e in (True, False)]
    assert [pair for pair in depths if pair[0] != pair[1]] == []
    assert len({walked for _, walked in depths}) >= 6  # the draws reach several depths
    deep = "[" * 40 + "]" * 40
    assert nesting_depth(deep.encode()) > MAX_DEPTH and nesting_depth(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) == MAX_DEPTH
    with pytest.raises(ValueError, match="nested deeper"):
        parse_record(b'{"k": ' + deep.encode() + b"}")
    # UTF-16 would hide brackets and quotes in other characters' bytes ("\u225b" is 5b 22): not JSON here
    with pytest.raises(ValueError, match="utf-8"):
        parse_record(json.dumps({"k": "\u225b"}, ensure_ascii=False).encode("utf-16"))


def test_a_run_whose_record_cannot_be_written_fails_and_the_command_exits_1(tmp_path, capsys, monkeypatch):
    from benchmark.engine import execute

    real, calls = execute.provenance, []

    def provenance():  # the first run's record holds a number no reader takes
        calls.append(1)
        return {**real(), "cpu_count": 2**70 if len(calls) == 1 else 2}

    monkeypatch.setattr(execute, "provenance", provenance)
    _inprocess(monkeypatch)
    out = tmp_path / "out"
    assert main(["run", "scratch_student", "--seeds", "2", "--out", str(out), *SMOKE]) == 1
    text = capsys.readouterr().out
    assert "1 trained" in text and "1 failed" in text and "its record cannot be stored" in text
    assert len(list((out / "runs").glob("*.json"))) == 1 and not (out / "set-aside").exists()


def test_write_run_refuses_what_no_reader_would_take(tmp_path):
    from tests.test_tables import StoreBuilder

    record = StoreBuilder(tmp_path).add("m", 0, roles={"student": "K"}, metrics=[["student", -1, "test_acc", 0.5]])
    with pytest.raises(UnstorableRecord, match="64 bits"):
        Store(tmp_path).write_run({**record, "metrics": [["student", -1, "n", 2**64]]})
    assert json.loads(Store(tmp_path).run_path(record["run_id"]).read_text())["metrics"] == record["metrics"]


# ---- records carry a schema version ----------------------------------------------------------------------------

def _builder_record(out: Path, rep: int = 0) -> dict:
    from tests.test_tables import StoreBuilder

    return StoreBuilder(out).add("m", rep, roles={"student": "K"}, metrics=[["student", -1, "test_acc", 0.5]])


def test_written_records_carry_the_schema_version(tmp_path):
    record = _builder_record(tmp_path)
    assert json.loads(Store(tmp_path).run_path(record["run_id"]).read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("change, said", [
    ({"schema_version": SCHEMA_VERSION + 98}, f"schema version {SCHEMA_VERSION + 98}, newer than"),
    ({"comment": "x"}, "unknown field 'comment'"),
    ({"schema_version": SCHEMA_VERSION + 1, "comment": "x"}, "newer than"),
])
def test_a_newer_or_unknown_record_is_set_aside_with_a_line(change, said, tmp_path, capsys):
    out = tmp_path / "out"
    good, bad = _builder_record(out), _builder_record(out, rep=1)
    Store(out).run_path(bad["run_id"]).write_text(json.dumps({**bad, **change}))
    assert main(["tables", "--out", str(out)]) == 0
    (line,) = [x for x in _err_lines(capsys) if "set aside" in x]
    assert said in line and bad["run_id"] in line
    assert Store(out).read_run(good["run_id"]) is not None


def test_records_without_a_version_still_read():
    """Records written before ``schema_version`` existed (the committed ones of earlier commits) read as they are:
    each committed record, and the same record with its version removed."""
    runs = sorted((ROOT / "results" / "runs").glob("*.json"))
    assert runs
    for path in runs[:40]:
        record = parse_record(path.read_bytes())
        assert "schema_version" not in record or record["schema_version"] <= SCHEMA_VERSION
        assert record_problem(record, path.stem) is None
        unversioned = {k: v for k, v in record.items() if k != "schema_version"}
        assert record_problem(parse_record(json.dumps(unversioned).encode()), path.stem) is None


# ---- names: a method never replaces a baseline, and two methods never write one file ------------------------

def _project_with(tmp_path, names: list[str]) -> Path:
    from tests.test_hostile import _project

    body = (ROOT / "methods" / "_template" / "method.py").read_text()
    return _project(tmp_path, {name: body for name in names})


@pytest.mark.parametrize("name", ["teacher", "scratch_student", "Teacher"])
def test_a_method_named_as_a_baseline_is_refused_and_the_baseline_stays(name, tmp_path):
    from benchmark.engine.discovery import discover

    found = discover(_project_with(tmp_path, [name]))
    assert found["teacher"].kind == "baseline" and found["teacher"].ok
    assert found["scratch_student"].kind == "baseline" and found["scratch_student"].ok
    refused = found[f"methods/{name}"]
    assert not refused.ok and "baseline" in refused.error and "\n" not in refused.error


def test_list_shows_the_baseline_and_the_refused_method(tmp_path):
    from tests.conftest import run_main

    listed = run_main("list", env={"BENCHMARK_PROJECT_ROOT": str(_project_with(tmp_path, ["teacher"]))})
    lines = [line.split()[:3] for line in listed.stdout.splitlines()]
    assert ["baseline", "teacher", "ok"] in lines and ["baseline", "teacher", "BROKEN"] not in lines
    assert ["method", "teacher", "BROKEN"] in lines


def test_methods_whose_file_names_collide_are_refused_at_discovery(tmp_path):
    from benchmark.engine.discovery import discover
    from benchmark.naming import slug

    assert slug("curves", "my method") == slug("curves", "my-method")  # the collision itself
    found = discover(_project_with(tmp_path, ["my method", "my-method", "My-Method", "mine"]))
    kept = [info for key, info in found.items() if info.kind == "method" and info.ok]
    assert sorted(info.name for info in kept) == ["My-Method", "mine"]  # the first in sorted order stays
    for name in ("my method", "my-method"):
        error = found[f"methods/{name}"].error
        assert "same file names" in error and "'My-Method'" in error


# ---- a store with CPU and CUDA runs publishes ------------------------------------------------------------------

def _as_device(records: list[dict], device: str) -> list[dict]:
    """The records as if made on ``device``: the identity changed and every id hashed again (required runs too)."""
    from benchmark.store import run_id_of

    ids, out = {}, []
    for record in sorted(records, key=lambda r: bool(r.get("requires"))):  # required runs first
        copy = json.loads(json.dumps(record))
        copy["device"] = device
        copy["requires"] = {name: ids.get(run_id, run_id) for name, run_id in (copy.get("requires") or {}).items()}
        copy["run_id"] = ids[record["run_id"]] = run_id_of(copy)
        copy["provenance"] = {**(copy.get("provenance") or {}), "device": device}
        out.append(copy)
    return out


@pytest.mark.parametrize("command", ["report", "tables"])
def test_a_store_of_cpu_and_cuda_runs_publishes(command, distilled, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(distilled, out)
    store = Store(out)
    cpu = _records(out)
    for record in _as_device(cpu, "cuda"):
        store.write_run(record)
    unknown = _as_device(cpu[:1], "tpu")[0]  # a device kind this code does not know: set aside, the rest publish
    store.run_path(unknown["run_id"]).write_text(json.dumps(unknown))
    assert main([command, "--out", str(out)]) == 0
    assert any("set aside" in line and "'tpu'" in line for line in _err_lines(capsys))
    import pandas as pd

    runs = pd.read_csv(out / "published" / "tables" / "runs.csv")
    assert sorted(runs.device.unique()) == ["cpu", "cuda"] and len(runs) == 2 * len(cpu)
    if command == "report":
        report = (out / "published" / "REPORT.md").read_text()
        assert "(cuda)" in report and "(cpu)" in report


# ---- dataset files: a bomb is refused, a corrupt dataset nobody asked for is skipped ---------------------------

def _idx_gz(path: Path, n: int, rows: int = 28, cols: int = 28) -> Path:
    import gzip

    header = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + rows.to_bytes(4, "big") + cols.to_bytes(4, "big")
    path.write_bytes(gzip.compress(header + bytes(n * rows * cols)))
    return path


def test_a_gzip_bomb_is_refused_without_being_decompressed(tmp_path, monkeypatch):
    from benchmark.data import formats
    from benchmark.errors import DatasetCorrupt

    monkeypatch.setattr(formats, "MAX_IDX_EXAMPLES", 100)
    assert formats.read_idx(_idx_gz(tmp_path / "ok-idx3-ubyte.gz", 100), "images", (28, 28)).shape == (100, 28, 28)
    bomb = _idx_gz(tmp_path / "bomb-idx3-ubyte.gz", 5_000)  # 3.9 MB of zeros in a few KB
    assert bomb.stat().st_size < 20_000
    read = []
    real = formats.gzip.GzipFile.read
    monkeypatch.setattr(formats.gzip.GzipFile, "read", lambda self, size=-1: read.append(size) or real(self, size))
    with pytest.raises(DatasetCorrupt) as caught:
        formats.read_idx(bomb, "images", (28, 28))
    assert "more than the" in str(caught.value) and "\n" not in str(caught.value)
    assert read == [16 + 100 * 28 * 28 + 1]  # never more than the cap, plus one byte to tell


def test_a_corrupt_dataset_not_asked_for_is_skipped_with_a_line(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from benchmark import data
    from benchmark.errors import DatasetCorrupt
    from benchmark.suite import grid

    real = data.load_dataset

    def load(name, *args, **kw):
        if name == "mnist1d":
            raise DatasetCorrupt("mnist1d.pkl: truncated")
        return real(name, *args, **kw)

    monkeypatch.setattr(data, "dataset_names", lambda: ["digits", "mnist1d"])
    monkeypatch.setattr(data, "load_dataset", load)
    said = []
    request = SimpleNamespace(datasets=None, data_root=None, download=False, device="cpu", preset="smoke")
    chosen = grid.select_datasets(request, said.append)
    assert list(chosen.loaded) == ["digits"] and not chosen.unreadable
    assert said == ["skipping dataset mnist1d: mnist1d.pkl: truncated"]
    named = SimpleNamespace(**{**vars(request), "datasets": "digits,mnist1d"})
    with pytest.raises(Exception, match="truncated"):  # asked for by name: bad input, as before
        grid.select_datasets(named, said.append)


# ---- a dead scheduler is one line ------------------------------------------------------------------------------

def test_a_dead_dask_scheduler_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    from distributed.client import FuturesCancelledError

    from benchmark.engine.execute import Settings
    from benchmark.runner import dask_backend
    from benchmark.suite import session

    def cancelled(*args, **kw):  # what distributed.wait raises once the scheduler is killed
        raise FuturesCancelledError([])

    monkeypatch.setattr(distributed, "wait", cancelled)
    backend = dask_backend.DaskBackend(client=None, settings=Settings(store=Store(tmp_path)))
    backend.futures = {object(): 1}
    with pytest.raises(dask_backend.SchedulerLost) as caught:
        backend.wait(1.0)
    assert "\n" not in str(caught.value) and "scheduler was lost" in str(caught.value)

    def lost(*args, **kw):
        raise caught.value

    monkeypatch.setattr(session, "run_plan", lost)
    assert main(["run", "scratch_student", "--seeds", "1", "--out", str(tmp_path / "out"), *SMOKE]) == 2
    (line,) = _err_lines(capsys)
    assert "scheduler was lost" in line
