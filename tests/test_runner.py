"""The runner's queue loop against a scripted backend: the order tasks start in, a dependant of a failed run, a worker
that dies (retried once alone, then charged), a batched task that dies or times out (split), and time limits."""

import time

import pytest

from benchmark.engine.execute import Settings
from benchmark.engine.spec import RunSpec
from benchmark.runner import schedule
from benchmark.runner.backend import Event
from benchmark.runner.runner import Runner
from benchmark.store import Store


def _spec(name, method="m", rep=0, requires=None):
    """A spec whose config is ``name`` (every name has its own run id; repetitions of one name share a config)."""
    return RunSpec(method=method, kind="method", dataset="digits", rep=rep, base_seed=0, preset="smoke",
                   config={"name": name}, data={}, requires=requires or {})


def _reps(name, n):
    """``n`` repetitions of one configuration, named name0, name1, ..."""
    return {f"{name}{r}": _spec(name, rep=r) for r in range(n)}


class ScriptedBackend:
    """Executes each task when waited on, one run after another, as the script says: a run in ``dies`` kills its
    worker that many times (the runs before it in its task are recorded), one in ``hangs`` never ends, one in
    ``fails`` is recorded failed by its method; every other run is recorded ok."""

    def __init__(self, names, *, slots=1, dies=None, hangs=(), fails=()):
        self.names, self.slots = names, slots
        self.dies, self.hangs, self.fails = dict(dies or {}), set(hangs), set(fails)
        self.started: list[list[str]] = []  # names of each task's runs, in the order tasks were started
        self.limits: list[float | None] = []
        self.cancelled: list[int] = []
        self.running: dict[int, list[RunSpec]] = {}
        self.peak = 0  # most tasks held at once
        self.told: set[int] = set()  # tasks whose start was reported
        self.closed = False

    def start(self, task_id, specs, time_limit, priority=0.0):
        self.started.append([self.names[s.run_id] for s in specs])
        self.limits.append(time_limit)
        self.running[task_id] = specs
        self.peak = max(self.peak, len(self.running))

    def wait(self, timeout):
        events = []
        for task_id, specs in list(self.running.items()):
            if task_id not in self.told:
                self.told.add(task_id)
                events.append(Event("started", task_id))
            if any(self.names[s.run_id] in self.hangs for s in specs):
                continue
            del self.running[task_id]
            for spec in specs:
                name = self.names[spec.run_id]
                if self.dies.get(name, 0) > 0:
                    self.dies[name] -= 1
                    events.append(Event("died", task_id, "worker died (killed by signal 9) while running this run"))
                    break
                status = "failed" if name in self.fails else "ok"
                events.append(Event("record", task_id, {"run_id": spec.run_id, "status": status}))
            else:
                events.append(Event("done", task_id))
        if not events and timeout is not None:
            time.sleep(timeout)  # only hung tasks: their time runs on
        return events

    def cancel(self, task_id):
        self.cancelled.append(task_id)
        del self.running[task_id]

    def close(self):
        self.closed = True


def _run(tmp_path, named, backend_options=None, *, seconds=None, group=lambda spec: 1, timeout_s=None):
    """Run the specs of ``named`` ({name: spec}) through the loop; (backend, {name: record})."""
    names = {spec.run_id: name for name, spec in named.items()}
    specs = list(named.values())
    backend = ScriptedBackend(names, **(backend_options or {}))
    expected = {s.run_id: (seconds or {}).get(names[s.run_id], 1.0) for s in specs}
    queue = schedule.Queue(schedule.tasks(specs, expected, group))
    records, ended = {}, []

    def on_record(spec, record):
        records[names[spec.run_id]] = record
        ended.append(names[spec.run_id])

    Runner(backend, Settings(store=Store(tmp_path)), timeout_s=timeout_s, on_record=on_record).run(queue)
    assert backend.closed and not queue
    assert sorted(ended) == sorted(names.values()), "every run ends exactly once"
    return backend, records


def test_tasks_start_longest_chain_first_and_after_what_they_require(tmp_path):
    teacher = _spec("teacher", method="t")
    named = {"short": _spec("short"), "long": _spec("long"), "teacher": teacher,
             "student": _spec("student", method="s", requires={"t": teacher.run_id})}
    seconds = {"short": 1.0, "long": 50.0, "teacher": 10.0, "student": 45.0}
    backend, records = _run(tmp_path, named, seconds=seconds)
    # bottom levels: teacher 10 + 45 = 55 > long 50 > student 45 > short 1
    assert backend.started == [["teacher"], ["long"], ["student"], ["short"]]
    assert all(r["status"] == "ok" for r in records.values())


def test_no_more_tasks_run_at_once_than_the_backend_has_slots(tmp_path):
    named = {f"r{i}": _spec(f"r{i}") for i in range(5)}
    for slots in (1, 2):
        backend, _ = _run(tmp_path / str(slots), named, {"slots": slots})
        assert len(backend.started) == 5 and backend.peak == slots


def test_a_dependant_of_a_failed_run_fails_without_starting(tmp_path):
    teacher = _spec("teacher", method="t")
    student = _spec("student", method="s", requires={"t": teacher.run_id})
    grand = _spec("grand", method="g", requires={"s": student.run_id})
    named = {"teacher": teacher, "student": student, "grand": grand, "other": _spec("other")}
    backend, records = _run(tmp_path, named, {"fails": {"teacher"}})
    assert sorted(backend.started) == [["other"], ["teacher"]]
    assert records["student"]["status"] == "failed"
    assert records["student"]["error"] == f"required run {teacher.run_id} failed"
    assert records["grand"]["error"] == f"required run {student.run_id} failed"
    assert records["other"]["status"] == "ok"
    assert Store(tmp_path).read_run(student.run_id)["status"] == "failed"  # charged in the store too


def test_a_run_whose_worker_dies_is_retried_once_alone_then_charged(tmp_path):
    named = {name: _spec(name) for name in ("once", "twice", "fine")}
    backend, records = _run(tmp_path, named, {"dies": {"once": 1, "twice": 2}})
    assert backend.started.count(["once"]) == 2 and backend.started.count(["twice"]) == 2
    assert backend.started.count(["fine"]) == 1
    assert records["once"]["status"] == "ok" and records["fine"]["status"] == "ok"
    assert records["twice"]["status"] == "failed"
    assert records["twice"]["error"] == "worker died (killed by signal 9) while running this run (also on its retry)"


def test_a_batched_task_that_dies_is_split_into_its_unfinished_runs(tmp_path):
    named = _reps("rep", 3)
    backend, records = _run(tmp_path, named, {"dies": {"rep1": 1}}, group=lambda spec: 3)
    # rep0 was recorded before the death; rep1 and rep2 go back alone, and the split is not rep1's retry
    assert backend.started == [["rep0", "rep1", "rep2"], ["rep1"], ["rep2"]]
    assert all(r["status"] == "ok" for r in records.values())
    backend, records = _run(tmp_path / "again", named, {"dies": {"rep1": 3}}, group=lambda spec: 3)
    assert backend.started == [["rep0", "rep1", "rep2"], ["rep1"], ["rep2"], ["rep1"]]
    assert records["rep1"]["status"] == "failed" and records["rep2"]["status"] == "ok"


def test_a_run_past_its_time_limit_is_stopped_and_charged_and_the_rest_goes_on(tmp_path):
    started = time.time()
    named = {"hung": _spec("hung"), "fine": _spec("fine")}
    backend, records = _run(tmp_path, named, {"hangs": {"hung"}}, timeout_s=0.05)
    assert time.time() - started < 5
    assert backend.started.count(["hung"]) == 1  # a timeout is not retried
    assert len(backend.cancelled) == 1 and backend.limits == [0.05, 0.05]
    assert records["hung"]["status"] == "failed" and records["hung"]["error"].startswith("timed out after ")
    assert records["fine"]["status"] == "ok"


def test_a_batched_task_past_its_limit_is_split_and_only_the_hung_run_is_charged(tmp_path):
    backend, records = _run(tmp_path, _reps("rep", 2), {"hangs": {"rep1"}}, group=lambda spec: 2, timeout_s=0.05)
    assert backend.limits[0] == pytest.approx(0.1)  # the task's limit is one run's times its runs
    assert backend.started == [["rep0", "rep1"], ["rep0"], ["rep1"]]
    assert records["rep0"]["status"] == "ok"
    assert records["rep1"]["status"] == "failed" and "timed out" in records["rep1"]["error"]


def test_a_task_that_ends_without_a_run_s_record_charges_that_run(tmp_path):
    class Forgetful(ScriptedBackend):
        def wait(self, timeout):
            return [e for e in super().wait(timeout) if e.kind != "record" or self.names[e.payload["run_id"]] != "lost"]

    spec = _spec("lost")
    backend = Forgetful({spec.run_id: "lost"})
    queue = schedule.Queue(schedule.tasks([spec], {}))
    seen = []
    Runner(backend, Settings(store=Store(tmp_path)), on_record=lambda s, r: seen.append(r)).run(queue)
    assert [r["status"] for r in seen] == ["failed"] and "without a record" in seen[0]["error"]


def test_a_deadline_starts_no_task_expected_to_end_after_it_and_a_shorter_one_still_starts(tmp_path, monkeypatch):
    """A clock that the scripted backend advances by each finished task's expected seconds; deadline at 30 s, one
    slot. The queue's order is long (50 s), teacher (10 s, its student 15 s after it), mid (20 s), short (5 s): long
    would end after the deadline and is passed over, teacher starts (0-10 s), then mid (10-30 s ends on it);
    student (30-45 s) and short (30-35 s) would end after it. The loop ends there, without waiting, and the runs not
    started are left for the next invocation."""
    from benchmark.runner import runner as queue_loop

    teacher = _spec("teacher", method="t")
    named = {"long": _spec("long"), "teacher": teacher, "mid": _spec("mid"), "short": _spec("short"),
             "student": _spec("student", method="s", requires={"t": teacher.run_id})}
    seconds = {"long": 50.0, "teacher": 10.0, "mid": 20.0, "short": 5.0, "student": 15.0}
    names = {spec.run_id: name for name, spec in named.items()}
    now = [0.0]

    class Timed(ScriptedBackend):
        def wait(self, timeout):
            events = super().wait(timeout)
            now[0] += sum(seconds[self.names[e.payload["run_id"]]] for e in events if e.kind == "record")
            return events

    monkeypatch.setattr(queue_loop, "clock", lambda: now[0])
    backend = Timed(names)
    queue = schedule.Queue(schedule.tasks(list(named.values()), {s.run_id: seconds[n] for n, s in named.items()}))
    runner = Runner(backend, Settings(store=Store(tmp_path)), stop_at=30.0)
    runner.run(queue)
    assert backend.started == [["teacher"], ["mid"]] and now[0] == 30.0
    assert sorted(names[s.run_id] for s in runner.left) == ["long", "short", "student"]
    assert backend.closed and not queue
    # Once the deadline has passed nothing starts, however short.
    now[0], backend = 31.0, Timed(names)
    runner = Runner(backend, Settings(store=Store(tmp_path / "late")), stop_at=30.0)
    runner.run(schedule.Queue(schedule.tasks([named["short"]], {named["short"].run_id: 0.0})))
    assert backend.started == [] and [names[s.run_id] for s in runner.left] == ["short"]
