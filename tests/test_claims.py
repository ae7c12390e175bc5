"""One claim per run: two suites on one store never train the same run at the same time, and a claim whose owner
is gone is taken over."""

import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from benchmark.engine.execute import Settings
from benchmark.runner import runner as queue_loop
from benchmark.runner import schedule
from benchmark.runner.runner import Runner
from benchmark.store import Store
from benchmark.store.claims import STALE_AFTER_S, Claims, Owner, process_start
from tests.conftest import ROOT
from tests.test_runner import ScriptedBackend, _spec


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant(folder, run_id, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    claim = {"host": socket.gethostname(), "pid": 1, "started": None, "at": time.time(), **fields}
    (folder / f"{run_id}.claim").write_text(json.dumps(claim))


RUN = "0123456789abcdef"


def test_a_claim_is_exclusive_and_released(tmp_path):
    first, second = Claims(tmp_path), Claims(tmp_path)
    second.me = Owner(socket.gethostname(), 1, process_start(1), time.time())  # pid 1 lives: a live other suite
    assert first.claim(RUN) is None and first.claim(RUN) is None  # its own: claimed again at no cost
    held = second.claim(RUN)
    assert held is not None and held.pid == first.me.pid
    first.release(RUN)
    assert not (tmp_path / f"{RUN}.claim").exists()
    assert second.claim(RUN) is None


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path):
    _plant(tmp_path, RUN, pid=_dead_pid())
    claims = Claims(tmp_path)
    assert claims.claim(RUN) is None
    assert claims.owner(RUN).same_process(claims.me)


def test_a_reused_pid_is_not_its_owner(tmp_path):
    _plant(tmp_path, RUN, pid=1, started="not the start time of pid 1")  # pid 1 is alive, but another process
    assert Claims(tmp_path).claim(RUN) is None


def test_a_live_owner_keeps_its_claim(tmp_path):
    _plant(tmp_path, RUN, pid=1, started=process_start(1))
    owner = Claims(tmp_path).claim(RUN)
    assert owner is not None and owner.pid == 1 and not owner.gone()


@pytest.mark.parametrize("age, taken", [(60.0, False), (STALE_AFTER_S + 60, True)])
def test_another_hosts_claim_is_taken_over_only_when_old(tmp_path, age, taken):
    _plant(tmp_path, RUN, host="another-host", pid=1, at=time.time() - age)
    assert (Claims(tmp_path).claim(RUN) is None) == taken


def test_an_unreadable_claim_is_taken_over(tmp_path):
    tmp_path.joinpath(f"{RUN}.claim").write_text("{not json")
    assert Claims(tmp_path).claim(RUN) is None


def _held_elsewhere(tmp_path, monkeypatch, timeout_s, done_after=None):
    """A teacher whose claim a live other suite (pid 1) holds, and a student that requires it, through the loop;
    ``done_after`` seconds: the other suite stores the teacher and releases its claim. (backend, runner)."""
    monkeypatch.setattr(queue_loop, "POLL_S", 0.05)
    teacher = _spec("teacher", method="t")
    student = _spec("student", method="s", requires={"teacher": teacher.run_id})
    store = Store(tmp_path)
    _plant(store.claims_dir, teacher.run_id, pid=1, started=process_start(1))
    claim = store.claims_dir / f"{teacher.run_id}.claim"
    if done_after is not None:  # the other suite stores the teacher, then releases its claim
        threading.Timer(done_after, claim.unlink).start()

    def done(spec):
        return spec.run_id == teacher.run_id and not claim.exists()

    backend = ScriptedBackend({teacher.run_id: "teacher", student.run_id: "student"})
    runner = Runner(backend, Settings(store=store), timeout_s=timeout_s, done=done)
    queue = schedule.Queue(schedule.tasks([teacher, student], {}))
    runner.run(queue)
    return backend, runner


def test_a_run_another_suite_trains_is_waited_for_then_its_dependants_run(tmp_path, monkeypatch):
    backend, runner = _held_elsewhere(tmp_path, monkeypatch, timeout_s=30, done_after=0.3)
    assert backend.started == [["student"]]  # the teacher was never trained here
    assert not runner.held and [r["run_id"] for r in runner.by_others] == []  # no record stored in this test
    assert not list((tmp_path / "claims").glob("*.claim"))  # the student's claim released


def test_a_run_another_suite_holds_past_the_time_limit_is_left_with_its_dependants(tmp_path, monkeypatch):
    backend, runner = _held_elsewhere(tmp_path, monkeypatch, timeout_s=0.2)
    assert backend.started == []
    assert [spec.method for spec, _ in runner.held] == ["t", "s"]
    assert "pid 1" in runner.held[0][1] and "being trained by another suite" in runner.held[1][1]


def _trained(stdout: str) -> int:
    found = re.search(r"(\d+) trained,", stdout)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("method, seeds", [
    ("scratch_student", "3"),
    pytest.param("hinton_kd", "2", marks=pytest.mark.slow),  # teachers whose dependants wait (about a minute)
])
def test_two_suites_on_one_store_train_every_run_once(tmp_path, method, seeds):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmark", "run", method, "--datasets", "digits", "--preset", "smoke",
           "--seeds", seeds, "--out", str(out), "--jobs", "1", "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stdout + stderr
    records = [json.loads(f.read_text()) for f in (out / "runs").glob("*.json")]
    assert records and all(r["status"] == "ok" for r in records)
    assert sum(_trained(stdout) for stdout, _ in results) == len(records), [s for s, _ in results]
    assert not (out / "set-aside").exists()  # no run stored twice (a second record would replace the first)
    assert not list((out / "claims").glob("*.claim"))  # every claim released
