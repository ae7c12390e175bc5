"""Longest expected first, each run after the runs it requires; expected times from the store, else FLOPs x steps."""

import dataclasses

import pytest

from benchmark.engine.discovery import discover
from benchmark.engine.plan import plan
from benchmark.engine.spec import RunSpec
from benchmark.runner import schedule


def _spec(name, method="m", rep=0, requires=None):
    """A spec named ``name`` (in its config, so every name has its own run id)."""
    return RunSpec(method=method, kind="method", dataset="digits", rep=rep, base_seed=0, preset="smoke",
                   config={"name": name}, data={}, requires=requires or {})


def _drain(queue, names):
    order = []
    while queue:
        task = queue.pop_ready()
        assert task is not None, "a task was left waiting on nothing"
        order.append(names[task.ids[0]])
        for run_id in task.ids:
            queue.finish(run_id, True)
    return order


def test_longest_first_and_requirements_first():
    teacher = _spec("teacher", method="t", rep=2)
    specs = [_spec("short"), _spec("long", rep=1), teacher,
             _spec("student", method="s", rep=3, requires={"t": teacher.run_id})]
    names = {s.run_id: s.config["name"] for s in specs}
    seconds = {"short": 1.0, "long": 50.0, "teacher": 10.0, "student": 45.0}
    tasks = schedule.tasks(specs, {s.run_id: seconds[s.config["name"]] for s in specs})
    by_name = {names[t.ids[0]]: t for t in tasks}
    # bottom level: the teacher carries the student waiting on it (10 + 45 = 55 > 50)
    assert by_name["teacher"].priority == 55.0 and by_name["long"].priority == 50.0
    assert _drain(schedule.Queue(tasks), names) == ["teacher", "long", "student", "short"]


def test_queue_never_hands_out_a_run_before_what_it_requires():
    teacher = _spec("teacher", method="t")
    student = _spec("student", method="s", rep=1, requires={"t": teacher.run_id})
    queue = schedule.Queue(schedule.tasks([teacher, student], {teacher.run_id: 1.0, student.run_id: 100.0}))
    first = queue.pop_ready()
    assert first.ids == [teacher.run_id] and queue.pop_ready() is None  # the student waits
    queue.finish(teacher.run_id, True)
    assert queue.pop_ready().ids == [student.run_id]


def _two_workers(durations_in_queue_order):
    """Greedy list scheduling on 2 workers: each free worker takes the next task. Returns the idle tail."""
    free = [0.0, 0.0]
    for d in durations_in_queue_order:
        i = free.index(min(free))
        free[i] += d
    return max(free) - min(free)


def test_longest_first_leaves_no_long_idle_tail():
    durations = {f"r{i}": d for i, d in enumerate([3, 120, 5, 7, 118, 2, 60, 4, 61, 9])}
    specs = [_spec(k, rep=i) for i, k in enumerate(durations)]
    names = {s.run_id: s.config["name"] for s in specs}
    order = _drain(schedule.Queue(schedule.tasks(specs, {s.run_id: durations[names[s.run_id]] for s in specs})),
                   names)
    tail = _two_workers([durations[k] for k in order])
    assert tail <= min(durations.values()) * 2  # at most a short run's worth of one idle core
    assert _two_workers(list(durations.values())) > tail  # plan order would leave a core idle far longer


def test_expected_seconds_from_history_else_flops():
    methods = discover()
    specs = plan([methods["scratch_student"], methods["teacher"]], data=["digits"], reps=1, preset="smoke",
                 base_seed=0, methods=methods)
    seen = {schedule.kind(specs[0]): 123.0}
    expected = schedule.expected_seconds(specs, seen, methods)
    assert expected[specs[0].run_id] == 123.0
    estimated = [expected[s.run_id] for s in specs[1:]]
    assert all(0 < e != schedule.UNKNOWN_S for e in estimated)
    by_method = {s.method: expected[s.run_id] for s in specs[1:]}
    assert by_method["teacher"] > by_method.get("scratch_student", 0)  # 784-1200-1200 against 784-300
    broken = dataclasses.replace(specs[0], method="no_such_method")
    assert schedule.expected_seconds([broken], {}, methods)[broken.run_id] == schedule.UNKNOWN_S


def test_an_early_stopped_run_is_expected_at_the_fraction_of_its_cap_its_method_trained():
    """A teacher (patience 10) never timed here: at its whole cap when the store has no early-stopped teacher, at
    the median fraction of the cap its earlier runs trained otherwise (epochs with a curve / config epochs: 30, 45
    and 60 of 150: 0.3); a run without patience (every epoch) is not scaled."""
    def record(method, epochs, cap, patience, status="ok"):
        return {"status": status, "method": method, "config": {"epochs": cap, "patience": patience},
                "metrics": [["teacher", e, "val_nll", 1.0] for e in range(epochs)] + [["teacher", -1, "test_acc", .9]]}

    store = [record("teacher", 30, 150, 10), record("teacher", 45, 150, 10), record("teacher", 60, 150, 10),
             record("teacher", 150, 150, 10, status="failed"), record("scratch_student", 150, 150, None)]
    assert schedule.stopping_fractions(store) == {"teacher": pytest.approx(0.3)}  # not the failed one's 1.0
    more = [*store, record("teacher", 240, 300, 10), record("teacher", 135, 150, 10)]  # 0.8 and 0.9
    assert schedule.stopping_fractions(more) == {"teacher": pytest.approx(0.4)}
    methods = discover()
    specs = plan([methods["teacher"], methods["scratch_student"]], data=["digits"], reps=1, preset="quick",
                 base_seed=0, methods=methods)
    teacher = next(s for s in specs if s.method == "teacher")
    assert teacher.config["patience"] is not None
    at_cap = schedule.expected_seconds([teacher], {}, methods)
    assert at_cap.at_cap == {schedule.kind(teacher)}
    scaled = schedule.expected_seconds([teacher], {}, methods, fractions=schedule.stopping_fractions(store))
    assert not scaled.at_cap and scaled[teacher.run_id] == pytest.approx(0.3 * at_cap[teacher.run_id])
    every_epoch = dataclasses.replace(teacher, config={**teacher.config, "patience": None})
    assert not schedule.expected_seconds([every_epoch], {}, methods).at_cap
