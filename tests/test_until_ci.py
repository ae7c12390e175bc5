"""More repetitions where an interval cannot decide (``--until-ci``), one-factor ablations, the defect runs."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.cli import main
from benchmark.reporting import precision
from benchmark.suite.grid import ablation_points


def _method(rep, value, key="k", variant="default"):
    return {"status": "ok", "kind": "method", "method": "m", "variant": variant, "dataset": "d", "preset": "quick",
            "rep": rep, "roles": {"A": {"classifier": True, "pair_key": key}},
            "metrics": [["A", 3, "test_acc", 0.0], ["A", -1, "test_acc", value]]}


def _scratch(rep, value, key="k"):
    return {"status": "ok", "kind": "baseline", "method": "scratch_student", "variant": "x", "dataset": "d",
            "preset": "quick", "rep": rep, "roles": {"student": {"classifier": True, "pair_key": key}},
            "metrics": [["student", -1, "test_acc", value]]}


def test_halfwidth_is_the_paired_t_interval():
    method, scratch = [0.91, 0.93, 0.90, 0.95], [0.90, 0.90, 0.91, 0.92]
    records = [_method(r, v) for r, v in enumerate(method)] + [_scratch(r, v) for r, v in enumerate(scratch)]
    d = 100 * (np.array(method) - np.array(scratch))
    expected = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    (key, c), = precision.comparisons(records).items()
    assert key == (precision.Cell("m", "default", "d", "quick"), "A")
    assert c["n"] == 4 and c["halfwidth"] == pytest.approx(expected, rel=1e-12)
    assert precision.is_open(c, expected - 1e-9) and not precision.is_open(c, expected + 1e-9)


def test_unpaired_and_other_keys_do_not_count():
    records = [_method(0, 0.9), _method(1, 0.8), _scratch(0, 0.7), _scratch(1, 0.7, key="other"),
               {**_scratch(2, 0.1), "status": "failed"}, _method(2, 0.5)]
    (_, c), = precision.comparisons(records).items()
    assert c["n"] == 1  # only rep 0 has a scratch run of the same pair key


def test_zero_variance_is_open_and_asks_for_two_more():
    records = [_method(r, 0.9) for r in range(3)] + [_scratch(r, 0.8) for r in range(3)]
    (_, c), = precision.comparisons(records).items()
    assert c["delta_std"] == 0 and math.isnan(c["halfwidth"])
    assert precision.next_reps(records, 5.0, 20) == {precision.Cell("m", "default", "d", "quick"): 5}


def test_next_reps_from_the_observed_sd_capped():
    rng = np.random.default_rng(0)
    scratch = rng.uniform(0.8, 0.9, 5)
    method = scratch + rng.normal(0.0, 0.02, 5)
    records = [_method(r, v) for r, v in enumerate(method)] + [_scratch(r, v) for r, v in enumerate(scratch)]
    sd = np.std(100 * (method - scratch), ddof=1)
    n = next(n for n in range(2, 1000) if sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= 1.0)
    cell = precision.Cell("m", "default", "d", "quick")
    assert precision.next_reps(records, 1.0, 1000) == {cell: max(n, 7)}
    assert precision.next_reps(records, 1.0, 6) == {cell: 6}
    assert precision.next_reps(records, 1.0, 5) == {}  # at the cap: left out, and reported as still open
    assert precision.open_at_max(records, 1.0, 5) == [cell]
    assert precision.next_reps(records, 100.0, 20) == {}  # narrow enough already


def test_one_factor_at_a_time_and_grid():
    axes = {"t": [1, 2], "a": ["x", "y", "z"]}
    assert ablation_points(axes) == [{}, {"t": 1}, {"t": 2}, {"a": "x"}, {"a": "y"}, {"a": "z"}]
    assert len(ablation_points(axes, grid=True)) == 6 and {"t": 2, "a": "z"} in ablation_points(axes, grid=True)


def _runs(out):
    return [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_until_ci_adds_paired_repetitions_up_to_max(tmp_path):
    out = tmp_path / "store"
    args = ["run", "hinton_kd", "--datasets", "digits", "--preset", "smoke", "--out", str(out), "--no-progress",
            "--seeds", "2"]
    assert main(args) == 0
    assert sorted(r["rep"] for r in _runs(out) if r["method"] == "hinton_kd") == [0, 1]
    # No width is reachable at 3 repetitions: every configuration goes to 3, the scratch students and teachers too.
    assert main(args + ["--until-ci", "0.001", "--max-seeds", "3"]) == 0
    runs = _runs(out)
    for method in ("hinton_kd", "scratch_student", "teacher"):
        assert sorted(r["rep"] for r in runs if r["method"] == method) == [0, 1, 2], method
    assert all(r["status"] == "ok" for r in runs)


def test_until_ci_bad_values_are_refused(capsys):
    assert main(["run", "hinton_kd", "--until-ci", "0"]) == 2
    assert main(["run", "hinton_kd", "--seeds", "5", "--until-ci", "1", "--max-seeds", "3"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def _planned(capsys, *argv):
    assert main([*argv, "--datasets", "digits", "--preset", "smoke", "--seeds", "1", "--dry-run"]) == 0
    # "to run  <id> <method> <dataset> rep=<r> <variant>" (the store is new: nothing is cached)
    return [line.split(None, 6) for line in capsys.readouterr().out.splitlines() if line.startswith("to run")]


def test_defects_plans_each_declared_defect_alone_next_to_the_default(capsys, tmp_path):
    from benchmark.engine.discovery import discover

    declared = discover()["hinton_kd"].cls.notebook_defects
    rows = _planned(capsys, "defects", "hinton_kd", "--out", str(tmp_path))
    variants = {row[6] for row in rows if row[3] == "hinton_kd"}
    assert variants == {"default"} | {f"{field}={value}" for field, (value, _) in declared.items()}


def test_defects_refuses_a_method_without_any(capsys):
    assert main(["defects", "kl_entanglement", "--datasets", "digits"]) == 2
    assert "no notebook defects" in capsys.readouterr().err


def test_as_published_applies_every_notebook_override(capsys, tmp_path):
    from benchmark.engine.discovery import discover

    overrides = discover()["ska"].cls.as_published
    rows = _planned(capsys, "run", "ska", "--as-published", "--out", str(tmp_path))
    (variant,) = {row[6] for row in rows if row[3] == "ska"}
    assert set(variant.split(",")) == {f"{k}={v}" for k, v in overrides.items()}


def test_audit_plans_each_default_beside_the_same_at_three_times_its_budget(capsys, tmp_path):
    from benchmark.engine import budget
    from benchmark.engine import config as configuration
    from benchmark.engine.discovery import discover

    rows = _planned(capsys, "audit", "--out", str(tmp_path))
    for name, info in discover().items():
        variants = {row[6] for row in rows if row[3] == name}
        longer = budget.scaled(info, configuration.resolve(info.cls, "smoke"), 3)
        expected = {"default", ",".join(f"{k}={v}" for k, v in sorted(longer.items()))} if longer else {"default"}
        if name != "scratch_student":  # the scratch students also train every role's recipe
            assert expected <= variants, name  # (subclass_kd also plans the teacher stages it requires)
