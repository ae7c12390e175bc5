"""Faults caused for real: a killed suite, a method that raises, a NaN loss, a corrupt record, two suites on one
store, a killed Dask worker; and the bad input that must be refused before anything is written."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, failed_record
from benchmark.engine.plan import plan
from benchmark.errors import BadInput
from benchmark.runner.runner import run_plan
from benchmark.store import Store
from tests.conftest import ROOT, run_cli, run_main
from tests.projects import FAULTY, make_project

SMOKE = ("--datasets", "digits", "--preset", "smoke", "--no-progress")


def _records(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_sigkill_mid_suite_then_rerun_keeps_finished_runs(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ}
    cmd = [sys.executable, "-m", "benchmark", "run", "scratch_student", "--seeds", "12", "--jobs", "1",
           "--out", str(out), *SMOKE]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "runs").glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "runs").glob("*.json")}
    assert 3 <= len(before) < 12, "the kill must land mid-suite"
    for _, data in before.values():  # every file under a result's name is complete
        assert json.loads(data)["status"] == "ok"
    again = run_main("run", "scratch_student", "--seeds", "12", "--out", str(out), *SMOKE)
    assert again.returncode == 0, again.stderr
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "runs").glob("*.json")}
    assert len(after) == 12
    assert all(after[name] == before[name] for name in before), "finished runs were retrained"
    assert f"{12 - len(before)} trained, {len(before)} cached" in again.stdout


def test_method_that_raises_is_stored_failed_and_others_complete(tmp_path):
    project = make_project(tmp_path, {"faulty": FAULTY})
    out = tmp_path / "out"
    res = run_main("all", "--set", "faulty.fail=true", "--seeds", "2", "--out", str(out), *SMOKE, "--jobs", "1",
                   env={"BENCHMARK_PROJECT_ROOT": str(project)})
    assert res.returncode == 1
    tail = res.stdout[res.stdout.index("failures:"):]
    assert tail.count("this method failed on purpose") == 2
    records = _records(out).values()
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 2 and all("Traceback" in r["traceback"] and "on purpose" in r["error"] for r in failed)
    completed = Counter(r["method"] for r in records if r["status"] == "ok")  # every baseline, both repetitions
    assert completed == {"teacher": 2, "scratch_student": 2, "label_smoothing": 2}


def test_nan_loss_stops_the_run_with_the_reason(tmp_path):
    project = make_project(tmp_path, {"faulty": FAULTY})
    out = tmp_path / "out"
    res = run_main("run", "faulty", "--set", "nan=true", "--seeds", "1", "--out", str(out), *SMOKE, "--jobs", "1",
                   env={"BENCHMARK_PROJECT_ROOT": str(project)})
    assert res.returncode == 1
    (record,) = [r for r in _records(out).values() if r["method"] == "faulty"]
    assert record["status"] == "failed" and "became nan" in record["error"]


def test_corrupt_record_is_reported_and_rerun(tmp_path):
    out = tmp_path / "out"
    assert run_main("run", "scratch_student", "--seeds", "2", "--out", str(out), *SMOKE).returncode == 0
    victim = sorted((out / "runs").glob("*.json"))[0]
    good = json.loads(victim.read_text())
    victim.write_text(victim.read_text()[: 40])  # truncated
    tables = run_main("tables", "--out", str(out))
    assert tables.returncode == 0
    assert victim.name in tables.stderr
    again = run_main("run", "scratch_student", "--seeds", "2", "--out", str(out), *SMOKE)
    assert again.returncode == 0 and "1 trained, 1 cached" in again.stdout
    redone = json.loads(victim.read_text())
    assert redone["status"] == "ok" and redone["metrics"] == good["metrics"]


@pytest.mark.slow
def test_two_suites_on_one_store_lose_nothing(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmark", "run", "scratch_student", "--seeds", "4", "--out", str(out), *SMOKE]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read()
    records = _records(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    assert not [p for p in (out / "runs").iterdir() if not p.name.endswith(".json")], "temp files left behind"
    assert run_cli("tables", "--out", str(out)).returncode == 0


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_dask_backend_equals_local_backend(tmp_path):
    local, dask = tmp_path / "local", tmp_path / "dask"
    common = ("run", "scratch_student", "--seeds", "2", "--jobs", "2", *SMOKE)
    assert run_main(*common, "--out", str(local)).returncode == 0
    res = run_main(*common, "--out", str(dask), "--backend", "dask")
    assert res.returncode == 0, res.stderr
    a, b = _records(local), _records(dask)
    assert a.keys() == b.keys() and len(a) == 2
    for run_id in a:
        assert a[run_id]["metrics"] == b[run_id]["metrics"]
        assert a[run_id]["provenance"]["deterministic_algorithms"] is True


@pytest.mark.slow
def test_killed_dask_worker_run_is_retried_and_suite_completes(tmp_path, monkeypatch):
    from benchmark.runner import dask_backend

    project = make_project(tmp_path, {"sleepy": FAULTY})
    monkeypatch.setenv("BENCHMARK_PROJECT_ROOT", str(project))
    methods = discover(project)
    info = methods["sleepy"]
    specs = plan([info], data=["digits"], reps=4, preset="smoke", base_seed=0,
                 overrides={"sleepy": {"sleep": "1.0"}}, methods=methods)
    client = dask_backend.connect(None, 2)
    try:
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        timer = threading.Timer(1.5, os.kill, args=(victim, signal.SIGKILL))
        timer.start()
        outcome = run_plan(specs, Settings(store=Store(tmp_path / "out")), jobs=2, backend="dask", client=client)
        timer.join()
        after = set(client.run(os.getpid).values())
    finally:
        dask_backend.close(client)
    assert victim not in after, "the worker was really killed (and replaced by its nanny)"
    assert len(outcome.records) == 4
    assert all(r["status"] in ("ok", "failed") for r in outcome.records)
    assert sum(r["status"] == "ok" for r in outcome.records) >= 3


def test_a_dask_retry_keeps_the_runs_its_earlier_try_ended(tmp_path):
    """The scheduler runs a task again when its worker died: what the first try finished, or timed out in this
    suite, is not run again; a run timed out in another suite is."""
    from benchmark.runner import dask_backend

    methods = discover()
    done, hung = plan([methods["scratch_student"]], data=["digits"], reps=2, preset="smoke", base_seed=0,
                      methods=methods)
    settings = Settings(store=Store(tmp_path), suite="this-suite")
    run_plan([done], settings, backend="inprocess")
    failed_record(hung, settings, "timed out after 9 s (--run-timeout)", timed_out=True)
    stored = settings.store.run_path(done.run_id).read_bytes()
    records = dask_backend._remote([s.to_dict() for s in (done, hung)], settings, 60.0)
    assert {r["run_id"]: r["status"] for r in records} == {done.run_id: "ok", hung.run_id: "failed"}
    assert settings.store.run_path(done.run_id).read_bytes() == stored  # not trained again
    later = Settings(store=Store(tmp_path), suite="next-suite")
    assert [r["status"] for r in dask_backend._remote([hung.to_dict()], later, 60.0)] == ["ok"]


@pytest.mark.parametrize("args,needle", [
    (["run", "scratch_student", "--backend", "spark"], "invalid choice"),
    (["run", "scratch_student", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach"),
    (["run", "scratch_student", "--scheduler", "tcp://127.0.0.1:9"], "--backend dask"),
])
def test_bad_backend_input(args, needle, tmp_path):
    out = tmp_path / "out"
    started = time.time()
    res = run_main(*args, "--out", str(out), *SMOKE)
    assert res.returncode == 2 and needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert time.time() - started < 30


def test_corrupt_dataset_file_is_bad_input(tmp_path):
    from tests.dataset_files import write_idx_mnist

    raw = tmp_path / "data" / "MNIST" / "raw"
    write_idx_mnist(raw, 50, 20, seed=0)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    out = tmp_path / "out"
    res = run_main("run", "scratch_student", "--datasets", "mnist", "--data-root", str(tmp_path / "data"),
                   "--out", str(out), "--preset", "smoke")
    assert res.returncode == 2 and "train-images-idx3-ubyte" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_overrides_are_parsed_by_type_never_evaluated():
    info = discover()["scratch_student"]
    with pytest.raises(BadInput):
        configuration.resolve(info.cls, "smoke", {"epochs": "__import__('os').system('true')"})


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_a_teacher_checkpoint_that_does_not_load_is_retrained(tmp_path):
    out = tmp_path / "out"
    assert run_main("run", "hinton_kd", "--seeds", "1", "--out", str(out), *SMOKE, "--jobs", "1").returncode == 0
    (checkpoint,) = (out / "cache").glob("teacher-*.pt")
    record = out / "runs" / f"{checkpoint.stem.removeprefix('teacher-')}.json"
    stored = record.read_bytes()
    good = checkpoint.read_bytes()
    checkpoint.write_bytes(b"not a checkpoint" + good[:100])
    # Every run that loads it is cached: its record answers, nothing is trained (a clone holds no checkpoints).
    cached = run_main("run", "hinton_kd", "--seeds", "1", "--out", str(out), *SMOKE, "--jobs", "1")
    assert cached.returncode == 0 and "all 4 runs were cached" in cached.stdout, cached.stdout + cached.stderr
    assert checkpoint.name not in cached.stderr and record.read_bytes() == stored
    # A student to be trained loads it: the teacher is trained again first, and says why.
    (student,) = [p for p in (out / "runs").glob("*.json") if json.loads(p.read_text())["method"] == "hinton_kd"]
    student.unlink()
    again = run_main("run", "hinton_kd", "--seeds", "1", "--out", str(out), *SMOKE, "--jobs", "1")
    assert again.returncode == 0, again.stderr
    lines = [line for line in again.stderr.splitlines() if checkpoint.name in line]
    assert len(lines) == 1 and "does not load" in lines[0] and "training it again" in lines[0]
    assert "2 trained, 2 cached" in again.stdout  # teacher, hinton_kd; its two partners kept
    assert checkpoint.read_bytes() == good  # retrained to the same weights (same seed, same code)
    assert record.read_bytes() == stored  # the same numbers: its stored record (a committed one, say) is untouched


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_a_teacher_retrained_for_its_checkpoint_with_other_numbers_replaces_its_record_and_says_so(tmp_path):
    out = tmp_path / "out"
    assert run_main("run", "hinton_kd", "--seeds", "1", "--out", str(out), *SMOKE).returncode == 0
    (checkpoint,) = (out / "cache").glob("teacher-*.pt")
    checkpoint.unlink()
    path = out / "runs" / f"{checkpoint.stem.removeprefix('teacher-')}.json"
    record = json.loads(path.read_text())
    record["metrics"] = [[role, epoch, metric, 0.5] for role, epoch, metric, _ in record["metrics"]]  # made elsewhere
    path.write_text(json.dumps(record))
    for student in [p for p in (out / "runs").glob("*.json") if json.loads(p.read_text())["method"] == "hinton_kd"]:
        student.unlink()  # so that a run to be trained loads the teacher
    again = run_main("run", "hinton_kd", "--seeds", "1", "--out", str(out), *SMOKE)
    assert again.returncode == 0, again.stderr
    assert "came out different" in again.stderr and "--out DIR" in again.stderr
    (said,) = [line for line in again.stderr.splitlines() if "came out different" in line]  # one line says why
    assert "final test accuracies differ by more than one test example" in said and "on the same CPU" in said
    assert json.loads((out / "set-aside" / path.name).read_text())["metrics"] == record["metrics"]
    assert json.loads(path.read_text())["metrics"] != record["metrics"] and checkpoint.is_file()
