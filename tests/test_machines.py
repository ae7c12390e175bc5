"""The report's provenance of machines, and the runs that learned from a model trained again after them."""

from __future__ import annotations

from benchmark.reporting import machines


def record(run_id, finished, requires=None, replaced=None, cpu="AMD EPYC", capability="AVX512", gpu=None,
           method="m", dataset="d", rep=0):
    provenance = {"cpu": cpu, "cpu_capability": capability}
    if gpu:
        provenance["gpu"] = gpu
    out = {"run_id": run_id, "method": method, "dataset": dataset, "rep": rep, "finished_at": finished,
           "requires": requires or {}, "provenance": provenance}
    if replaced:
        out["replaced"] = replaced
    return out


def test_machines_are_counted_most_runs_first_with_the_gpu_named_on_cuda():
    records = [record("a", "2026-01-01T00:00:00+0000"), record("b", "2026-01-01T00:00:00+0000", cpu="Intel Xeon"),
               record("c", "2026-01-01T00:00:00+0000", cpu="Intel Xeon"),
               record("d", "2026-01-01T00:00:00+0000", gpu="NVIDIA H100"),
               record("e", "2026-01-01T00:00:00+0000", cpu=None, capability=None)]
    assert machines.machines_sentence(records) == ("Trained on: Intel Xeon (AVX512) (2 runs), AMD EPYC (AVX512) "
                                                   "(1 run), NVIDIA H100 (1 run), unrecorded CPU (1 run).")
    assert machines.machines_sentence([]) == ""


def test_the_run_time_is_summed_per_dataset_and_per_machine():
    records = [record("a", "x", dataset="digits") | {"wall_time_s": 1800.0},
               record("b", "x", dataset="mnist1d") | {"wall_time_s": 5400.0},
               record("c", "x", dataset="digits", cpu="Intel Xeon") | {"wall_time_s": 3600.0},
               record("d", "x", dataset="digits") | {"wall_time_s": None},  # a failed run: no time
               record("e", "x", dataset="digits", gpu="NVIDIA H100") | {"wall_time_s": 0}]
    assert machines.compute_sentence(records) == (
        "Run time: 3.0 h, the sum of the 4 records' wall times (digits 1.5 h, mnist1d 1.5 h; AMD EPYC (AVX512) 2.0 h, "
        "Intel Xeon (AVX512) 1.0 h, NVIDIA H100 0.0 h; 1 record without one); runs that shared a machine's cores "
        "each count their own.")
    assert machines.compute_sentence(records[3:4]) == "" and machines.compute_sentence([]) == ""


def test_a_run_older_than_its_retrained_teacher_learned_from_the_earlier_model():
    teacher = record("t", "2026-12-06T23:10:00+0000", replaced="trained again for its missing checkpoint")
    before = record("s1", "2026-12-06T18:00:00+0000", requires={"teacher": "t"}, method="kd", rep=1)
    after = record("s2", "2026-12-06T23:20:00+0000", requires={"teacher": "t"}, method="kd", rep=2)
    plain_teacher = record("u", "2026-12-06T23:10:00+0000")  # trained once: nobody saw another model
    older = record("s3", "2026-12-06T18:00:00+0000", requires={"teacher": "u"})
    unreadable = record("s4", "yesterday", requires={"teacher": "t"})
    missing = record("s5", "2026-12-06T18:00:00+0000", requires={"teacher": "gone"})
    records = [teacher, before, after, plain_teacher, older, unreadable, missing]
    assert machines.learned_from_earlier_models(records) == [(before, teacher)]
    (line, blank) = machines.earlier_models_lines(records)
    assert line.startswith("**1 run(s) learned from a model that was trained again after them**")
    assert "kd d rep=1 (s1, from m t)" in line and blank == ""
    assert machines.earlier_models_lines([before, after, plain_teacher]) == []  # its teacher is not in the store
    # a stale run (not among the current ones) is in no table: its dependency is not reported
    assert machines.learned_from_earlier_models(records, judged={"s2", "s3", "t"}) == []
    assert machines.learned_from_earlier_models(records, judged={"s1"}) == [(before, teacher)]


def test_times_in_other_offsets_are_compared_as_instants():
    teacher = record("t", "2026-12-07T01:00:00+0200", replaced="again")  # 23:00 UTC on the 6th
    student = record("s", "2026-12-06T23:30:00+0000", requires={"teacher": "t"})
    assert machines.learned_from_earlier_models([teacher, student]) == []
