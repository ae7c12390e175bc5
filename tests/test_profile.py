"""The profiling machinery: the timers' protocol, and ``python -m benchmark profile`` end to end (tiny)."""

import json
import math
import threading

import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.timing import StepTimer, StopTraining, timed_batches, timed_iter
from benchmark.profiling.measure import run_with_timer, target_spec
from benchmark.profiling.reference import TEXTBOOK, TEXTBOOK_TORCHVISION
from benchmark.profiling.run import plan_targets
from benchmark.profiling.timer import ProfilingTimer, StepGate
from benchmark.store import Store


@pytest.fixture
def _one_thread():
    """One thread (restored after): on a busy shared machine, two threads that wait for each other make every
    step slow, and these tests check behaviour, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _matmul_loop(timer, steps=100, size=32):
    a = torch.randn(size, size, requires_grad=True)
    for epoch in range(steps):
        for _ in timed_batches(10, 5, generator=torch.Generator().manual_seed(epoch), shuffle=True,
                               drop_last=False, timer=timer):
            (a @ a).sum().backward()


def test_profiling_timer_times_counts_traces_then_stops():
    timer = ProfilingTimer(warmup=2, steps=3, trace_steps=2, top_ops=5)
    with pytest.raises(StopTraining):
        _matmul_loop(timer)
    assert len(timer.times) == 2 + 3  # the FLOP-counted and traced steps are never timed
    # forward a@a (2·32³) plus its backward, two products of the same size
    assert timer.flops == 3 * 2 * 32**3
    assert timer.operators and any(op["name"] == "aten::mm" for op in timer.operators)
    report = timer.report()
    assert report["timed_steps"] == 3 and report["complete"] and report["batch_size"] == 5
    assert len(report["step_times_s"]) == 3


def test_profile_complete_passes_through_except_exception():
    timer = ProfilingTimer(warmup=0, steps=1, trace_steps=0, count_flops=False)
    with pytest.raises(StopTraining):
        try:
            _matmul_loop(timer)
        except Exception:  # a method's own error handling must not end the profile silently
            pytest.fail("StopTraining was caught as an Exception")


def test_step_timer_keeps_its_api_and_instruments_leave_on_break():
    plain = StepTimer(warmup=1)
    for _ in timed_batches(10, 3, generator=None, shuffle=False, drop_last=False, timer=plain):
        pass
    assert len(plain.times) == 4 and plain.samples == [3, 3, 3, 1]
    assert plain.summary()["steps"] == 4
    timer = ProfilingTimer(warmup=0, steps=0, trace_steps=0)
    for _ in timed_batches(10, 3, generator=None, shuffle=False, drop_last=False, timer=timer):
        break  # the loop leaves during the FLOP-counted step: the counter mode must be popped
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    assert _get_current_dispatch_mode() is None
    seen = list(timed_iter([(torch.zeros(4), 0), (torch.zeros(2), 1)], StepTimer(warmup=0)))
    assert len(seen) == 2


def test_gated_loops_run_one_at_a_time_between_steps_too():
    """What makes interleaved timings fair: while one loop has its turn, every other loop is parked, and a
    turn lasts until the loop parks again (so its evaluation between epochs is inside its own turn)."""
    events, gates = [], {name: StepGate(timeout=30) for name in "ab"}

    def work(name):
        gate = gates[name]
        timer = ProfilingTimer(warmup=1, steps=4, trace_steps=0, count_flops=False, gate=gate)
        gate.begin()
        try:
            events.append((name, "setup"))
            for _epoch in range(10):
                for _ in timed_batches(3, 1, generator=None, shuffle=False, drop_last=False, timer=timer):
                    events.append((name, "step"))
                events.append((name, "evaluate"))
        except StopTraining:
            pass
        finally:
            gate.finish()

    threads = [threading.Thread(target=work, args=(name,)) for name in gates]
    for thread in threads:
        thread.start()
    active = list(gates)
    while active:
        for name in list(active):
            seen = len(events)
            if not gates[name].turn():
                active.remove(name)
            turn = events[seen:]
            assert {who for who, _ in turn} <= {name}, turn
            assert sum(what == "step" for _, what in turn) <= 1
    for thread in threads:
        thread.join(timeout=10)
    for name in gates:
        assert events.count((name, "step")) == 1 + 4  # warm-up and timed steps, then StopTraining
        assert (name, "evaluate") in events


def test_run_with_timer_reports_a_method_that_ends_first(tmp_path, _one_thread):
    methods = discover()
    spec = target_spec(methods["scratch_student"], dataset="digits", preset="smoke")
    timer = ProfilingTimer(warmup=0, steps=10_000, count_flops=False, trace_steps=0)
    stopped = run_with_timer(spec, Settings(store=Store(tmp_path)), methods, timer)
    assert not stopped and len(timer.times) == 2 * math.ceil(spec_train_size(spec) / 64)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing stored


def spec_train_size(spec):
    from benchmark.data import load_dataset

    return load_dataset(spec.dataset, **spec.data).size("train")


def test_plan_pairs_each_method_with_its_roles_scratch_students():
    methods = discover()
    selected = [(methods[n], {}) for n in ("hinton_kd", "teacher", "scratch_student") if n in methods]
    targets = plan_targets(selected, methods, dataset="digits", preset="smoke", reference=True)
    assert targets["hinton_kd"].scratch == ["scratch_student"]
    assert targets["scratch_student"].scratch == ["scratch_student"]
    assert targets["teacher"].scratch == ["scratch_student"]  # no pairing of its own: the default student
    assert targets[TEXTBOOK].spec is None and targets[TEXTBOOK].scratch == ["scratch_student"]
    assert TEXTBOOK_TORCHVISION in targets  # digits are images: the torchvision-style feeding applies
    signals = plan_targets(selected, methods, dataset="mnist1d", preset="smoke", reference=True)
    assert TEXTBOOK in signals and TEXTBOOK_TORCHVISION not in signals


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_profile_command_writes_finite_ratios(tmp_path, capsys, _one_thread):
    out = tmp_path / "results"
    code = main(["profile", "--datasets", "digits", "--preset", "smoke", "--out", str(out),
                 "--methods", "scratch_student,hinton_kd,teacher", "--variant", "teacher:batch_size=128",
                 "--warmup", "1", "--steps", "3", "--repeats", "2", "--threads", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    folder = out / "profiles"
    assert {p.name for p in folder.iterdir()} >= {"profile.csv", "profile.json", "profile.png"}
    table = pd.read_csv(folder / "profile.csv")
    assert set(table["target"]) == {"scratch_student", "hinton_kd", "teacher", "teacher[batch_size=128]",
                                    TEXTBOOK, TEXTBOOK_TORCHVISION}
    assert (table["status"] == "ok").all()
    assert (table["timed_steps"] == 2 * 3).all()
    for column in ("step_median_ms", "ratio_to_scratch", "samples_per_s", "gflops", "peak_fraction"):
        assert table[column].map(math.isfinite).all() and (table[column] > 0).all(), column
    assert table.set_index("target").loc["scratch_student", "ratio_to_scratch"] == 1.0
    assert set(table.set_index("target").loc["teacher[batch_size=128]", ["batch_size"]]) == {128}
    doc = json.loads((folder / "profile.json").read_text())
    assert len(doc["peak_gflops_per_repeat"]) == 2 and doc["settings"]["schedule"] == "interleaved"
    assert {t["target"].split(" ")[0] for t in doc["targets"]} >= {"hinton_kd", "epoch", "teacher"}
    assert all(row["operators"] for row in doc["rows"])
    assert "hinton_kd" in printed and "matmul peak" in printed


@pytest.mark.parametrize("args", [
    ["--methods", "no_such_method"],
    ["--variant", "teacher:no_such_field=1"],
    ["--variant", "teacher"],
    ["--steps", "0"],
    ["--datasets", "no_such_dataset"],
])
def test_profile_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args):
    out = tmp_path / "results"
    assert main(["profile", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("benchmark: error:") and "\n" not in err
    assert not out.exists()


def test_profile_with_several_torch_threads_runs_targets_in_turn(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        code = main(["profile", "--datasets", "digits", "--preset", "smoke", "--out", str(tmp_path),
                     "--methods", "scratch_student", "--no-reference", "--warmup", "1", "--steps", "2",
                     "--repeats", "2", "--threads", "2", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().out
    doc = json.loads((tmp_path / "profiles" / "profile.json").read_text())
    assert doc["settings"]["schedule"] == "in turn" and doc["machine"]["threads"] == 2
    assert [r["timed_steps"] for r in doc["rows"]] == [2 * 2]
