"""A run that ends its process, hangs or is interrupted takes only itself down: every other run completes and the
tables are written; the suite's own death or interruption leaves no worker behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_main
from tests.projects import FAULTY, make_project

SMOKE = ("--datasets", "digits", "--preset", "smoke", "--no-progress")
ONE_JOB = ("--jobs", "1")


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]


def _faulty(tmp_path):
    project = make_project(tmp_path, {"faulty": FAULTY})
    return {"BENCHMARK_PROJECT_ROOT": str(project)}


def test_sys_exit_in_a_method_fails_that_run_only(tmp_path):
    out = tmp_path / "out"
    res = run_main("all", "--set", "faulty.exit=true", "--seeds", "2", "--out", str(out), *SMOKE, *ONE_JOB,
                   env=_faulty(tmp_path))
    assert res.returncode == 1, res.stderr
    failed = [r for r in _records(out) if r["status"] == "failed"]
    assert len(failed) == 2 and all("sys.exit(0)" in r["error"] for r in failed)
    completed = sorted(r["method"] for r in _records(out) if r["status"] == "ok")  # every baseline, both repetitions
    assert completed == sorted(["label_smoothing", "scratch_student", "teacher"] * 2)
    assert (out / "published" / "tables" / "summary.md").is_file()


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_a_run_that_kills_its_worker_is_the_only_one_charged(jobs, tmp_path):
    """(The runner's retry-once-then-charge rule itself is unit-tested with a scripted backend, test_runner.py.)"""
    out = tmp_path / "out"
    res = run_main("run", "faulty", "--set", "kill_rep=1", "--seeds", "4", "--jobs", jobs, "--out", str(out),
                   *SMOKE, env=_faulty(tmp_path))
    assert res.returncode == 1, res.stderr
    records = _records(out)
    failed = [r for r in records if r["status"] == "failed"]
    assert [(r["method"], r["rep"]) for r in failed] == [("faulty", 1)]
    assert "worker died (killed by signal 9)" in failed[0]["error"] and "retry" in failed[0]["error"]
    assert sum(r["status"] == "ok" for r in records) == 3  # the three other repetitions
    assert (out / "published" / "tables" / "summary.md").is_file()


def test_a_hung_run_times_out_and_the_suite_goes_on(tmp_path):
    """The limit leaves the healthy repetition room on a loaded machine (a worker's start and a smoke run took more
    than 8 s beside two training processes on 2 cores); each second of it is a second of the default test run."""
    out = tmp_path / "out"
    started = time.time()
    res = run_main("run", "faulty", "--set", "hang_rep=0", "--seeds", "2", "--run-timeout", "12", "--out", str(out),
                   *SMOKE, env=_faulty(tmp_path))
    assert res.returncode == 1, res.stderr
    assert time.time() - started < 120
    failed = [r for r in _records(out) if r["status"] == "failed"]
    assert [(r["method"], r["rep"]) for r in failed] == [("faulty", 0)]
    assert failed[0]["error"].startswith("timed out after 12 s")
    assert sum(r["status"] == "ok" for r in _records(out)) == 1


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _start_slow_suite(tmp_path, out):
    env = {**os.environ, **_faulty(tmp_path)}
    cmd = [sys.executable, "-m", "benchmark", "run", "faulty", "--set", "sleep=1.5", "--set", "epochs=40",
           "--seeds", "8", "--jobs", "2", "--out", str(out), *SMOKE]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(_children(proc.pid)) < 2:
        time.sleep(0.2)
    time.sleep(4)  # the workers are training
    return proc


def test_killing_the_suite_leaves_no_worker_behind(tmp_path):
    out = tmp_path / "out"
    proc = _start_slow_suite(tmp_path, out)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 15
    while time.time() < deadline and _alive(workers):
        time.sleep(0.2)
    assert not _alive(workers), "workers outlived the suite"
    written = len(_records(out))
    time.sleep(4)
    assert len(_records(out)) == written, "runs were recorded after the suite died"


def test_ctrl_c_and_sigterm_stop_the_workers_with_one_line(tmp_path):
    for name, sig in (("int", signal.SIGINT), ("term", signal.SIGTERM)):
        out = tmp_path / name
        proc = _start_slow_suite(tmp_path / name, out)
        workers = _children(proc.pid)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the whole process group
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        lines = [line for line in err.strip().splitlines() if line]
        assert len(lines) == 1 and "interrupted" in lines[0], err
        deadline = time.time() + 15
        while time.time() < deadline and _alive(workers):
            time.sleep(0.2)
        assert not _alive(workers)
        assert all(r["status"] == "ok" for r in _records(out))
