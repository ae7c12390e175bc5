"""The budget audit (benchmark.reporting.audit) on synthetic stores with known curves: slopes against numpy's
polyfit and scipy's linregress, intervals against scipy's t, flags by their definitions, pairing of the longer
budget's runs by configuration."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from benchmark.budgets import NotRaised
from benchmark.reporting import audit

FIELDS = {"m": ("epochs",), "scratch_student": ("epochs",)}
REPS = range(4)


def run_row(run_id, rep, config, method="m", variant="default"):
    return {"run_id": run_id, "method": method, "kind": "method", "variant": variant, "preset": "quick",
            "dataset": "d", "rep": rep, "config": config, "status": "ok"}


def curve_rows(run_id, rep, role, values, method="m", variant="default"):
    return [(run_id, method, variant, "d", rep, role, e, "val_acc", float(v)) for e, v in enumerate(values)]


def final_row(run_id, rep, role, value, metric="test_acc", method="m", variant="default"):
    return (run_id, method, variant, "d", rep, role, -1, metric, float(value))


@pytest.fixture(scope="module")
def store():
    """Method m (20 epochs) with roles: "rising" (0.5 pp/epoch at the end, consistently, and 2 pp better at 3x),
    "flat" (noise about a plateau), "tiny" (a consistent 0.05 pp/epoch), "short" (flat, but 2 pp better at 3x),
    "probe" (no curve), and its 3x runs (epochs 60); a run at 60 epochs with another lr, which is not a scaled m;
    an early-stopped scratch student whose repetitions trained 12-20 epochs."""
    rng = np.random.default_rng(3)
    runs, rows, truth = [], [], {"curves": {}, "final": {}, "long": {}}
    for rep in REPS:
        base, longer, other = f"b{rep}", f"l{rep}", f"o{rep}"
        runs += [run_row(base, rep, {"epochs": 20, "lr": 0.1}), run_row(longer, rep, {"epochs": 60, "lr": 0.1},
                                                                         variant="epochs=60"),
                 run_row(other, rep, {"epochs": 60, "lr": 0.2}, variant="epochs=60,lr=0.2")]
        e = np.arange(20)
        curves = {"rising": 0.5 + 0.005 * e + rng.normal(0, 0.002, 20),
                  "flat": 0.9 + rng.normal(0, 0.01, 20),
                  "tiny": 0.9 + 0.0005 * e + rng.normal(0, 0.00005, 20),
                  "short": np.full(20, 0.8)}
        for role, values in curves.items():
            rows += curve_rows(base, rep, role, values)
            truth["curves"][role, rep] = values
        for role, acc, acc_long in (("rising", 0.6, 0.62), ("flat", 0.9, 0.9), ("tiny", 0.91, 0.912),
                                    ("short", 0.80 + 0.01 * rep, 0.82 + 0.01 * rep), ("probe", 0.7, 0.75)):
            metric = "probe_acc" if role == "probe" else "test_acc"
            rows += [final_row(base, rep, role, acc, metric), final_row(longer, rep, role, acc_long, metric,
                                                                        variant="epochs=60"),
                     final_row(other, rep, role, 0.0, metric, variant="epochs=60,lr=0.2")]
            truth["final"][role, rep], truth["long"][role, rep] = acc, acc_long
        # an early-stopped scratch student: its repetitions trained a different number of epochs
        s_cfg = {"arch": "x", "epochs": 50, "patience": 10}
        sid, slong = f"s{rep}", f"sl{rep}"
        runs += [run_row(sid, rep, s_cfg, "scratch_student", "arch=x"),
                 run_row(slong, rep, {**s_cfg, "epochs": 150}, "scratch_student", "arch=x,epochs=150")]
        length = 12 + 2 * rep
        values = 0.7 + 0.01 * np.arange(length) - 0.0004 * np.arange(length) ** 2 + rng.normal(0, 0.003, length)
        rows += curve_rows(sid, rep, "student", values, "scratch_student", "arch=x")
        rows += [final_row(sid, rep, "student", 0.75, method="scratch_student", variant="arch=x"),
                 final_row(slong, rep, "student", 0.75, method="scratch_student", variant="arch=x,epochs=150")]
        truth["curves"]["student", rep] = values
    metrics = pd.DataFrame(rows, columns=["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                          "value"])
    frame = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS)
    truth["other"] = frame[frame["variant"] == "epochs=60,lr=0.2"]
    return frame[frame["variant"] != "epochs=60,lr=0.2"].set_index("role"), truth


def expected_slopes(truth, role):
    """Per repetition: numpy's degree-1 polyfit over the last ceil(0.2 E) epochs (at least 2), in pp/epoch."""
    out = []
    for rep in REPS:
        values = truth["curves"][role, rep] * 100
        tail = max(2, math.ceil(0.2 * len(values)))
        out.append(np.polyfit(np.arange(len(values))[-tail:], values[-tail:], 1)[0])
    return np.array(out)


@pytest.mark.parametrize("role", ["rising", "flat", "tiny", "student"])
def test_slopes_are_least_squares_over_the_last_fifth(store, role):
    frame, truth = store
    slopes = expected_slopes(truth, role)
    lo, hi = sps.t.interval(0.95, len(slopes) - 1, loc=slopes.mean(), scale=sps.sem(slopes))
    row = frame.loc[role]
    assert (row.slope, row.slope_low, row.slope_high) == pytest.approx((slopes.mean(), lo, hi), rel=1e-9)
    # the same slope from scipy's linregress on one repetition's window
    values = truth["curves"][role, 0] * 100
    tail = max(2, math.ceil(0.2 * len(values)))
    assert slopes[0] == pytest.approx(sps.linregress(np.arange(len(values))[-tail:], values[-tail:]).slope)
    lengths = np.array([len(truth["curves"][role, rep]) for rep in REPS])
    assert row.projected == pytest.approx(np.mean(slopes * 0.2 * lengths))
    assert row.epochs == pytest.approx(lengths.mean())


def test_flags_follow_their_definitions(store):
    frame, _ = store
    assert frame.loc["rising", ["rising", "short", "flagged"]].tolist() == [True, True, True]
    assert frame.loc["tiny", "slope_low"] > 0 and frame.loc["tiny", "projected"] < 0.5  # consistent but small
    assert not frame.loc["tiny", "flagged"] and not frame.loc["flat", "flagged"]
    assert frame.loc["short", ["rising", "short", "flagged"]].tolist() == [False, True, True]
    assert frame.loc["short", "delta_long"] == pytest.approx(2.0) and math.isnan(frame.loc["short", "delta_low"])
    assert frame.loc["rising", "delta_long"] == pytest.approx(2.0)
    probe = frame.loc["probe"]
    assert probe.metric == "probe_acc" and math.isnan(probe.slope) and probe.short
    assert "no validation curve" in probe.reason
    assert "rising" in frame.loc["rising", "reason"] and "short" in frame.loc["short", "reason"]


def test_accuracies_and_pairing(store):
    frame, truth = store
    for role in ("rising", "short", "probe"):
        base = np.array([truth["final"][role, r] for r in REPS]) * 100
        longer = np.array([truth["long"][role, r] for r in REPS]) * 100
        row = frame.loc[role]
        assert (row.acc, row.acc_sd, row.acc_long) == pytest.approx((base.mean(), base.std(ddof=1), longer.mean()))
        assert row.n == row.n_long == len(REPS)
        diff = longer - base
        if diff.std() > 0:
            lo, hi = sps.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=sps.sem(diff))
            assert (row.delta_low, row.delta_high) == pytest.approx((lo, hi))
    assert set(frame["variant"]) == {"default", "arch=x"}  # the 3x runs are not audited...
    other = truth["other"]  # ...a run at 60 epochs with another lr is a configuration of its own, without a 3x
    assert len(other) == 5 and (other["n_long"] == 0).all() and not other["flagged"].any()
    assert other["reason"].str.contains("no longer-budget runs").all()
    assert frame.loc["student", "n_long"] == len(REPS) and frame.loc["student", "delta_long"] == pytest.approx(0)


def test_a_longer_budget_is_the_same_configuration_scaled():
    assert audit.is_scaled({"epochs": 20, "lr": 0.1}, {"epochs": 60, "lr": 0.1}, ("epochs",)) == 1
    assert audit.is_scaled({"epochs": 20, "lr": 0.1}, {"epochs": 61, "lr": 0.1}, ("epochs",)) == 1  # within 2%
    assert audit.is_scaled({"epochs": 20, "lr": 0.1}, {"epochs": 62, "lr": 0.1}, ("epochs",)) == 0
    assert audit.is_scaled({"epochs": 20, "lr": 0.1}, {"epochs": 60, "lr": 0.2}, ("epochs",)) == 0
    assert audit.is_scaled({"epochs": 20, "lr": 0.1}, {"epochs": 60, "lr": 0.1}, ()) == 0  # not a budget field
    assert audit.is_scaled({"epochs": 20, "lr": 0.1}, {"epochs": 20, "lr": 0.1}, ("epochs",)) == 0
    two = ({"epochs": 60, "teacher_epochs": 100}, {"epochs": 180, "teacher_epochs": 300})
    assert audit.is_scaled(*two, ("epochs", "teacher_epochs")) == 2
    assert audit.is_scaled(two[0], {"epochs": 60, "teacher_epochs": 300}, ("epochs", "teacher_epochs")) == 1
    runs = pd.DataFrame([run_row("a", 0, two[0]), run_row("b", 0, two[1]), run_row("c", 0, {"epochs": 180,
                                                                                           "teacher_epochs": 100})])
    assert audit.longer_runs(runs, ["a"], lambda m: ("epochs", "teacher_epochs")) == {"a": "b"}  # the most scaled
    assert audit.unscaled_ids(runs, lambda m: ("epochs", "teacher_epochs")) == ["a"]


def test_the_audit_commands_cost_is_three_times_what_its_unaudited_runs_took():
    """Per dataset: 3 × the recorded wall time of the audited runs that have no 3x run yet and a budget field; a run
    already audited, one of another dataset, one without a budget field and a failed one add nothing."""
    rows = [run_row("a0", 0, {"epochs": 20}), run_row("a0x", 0, {"epochs": 60}),  # audited: adds nothing
            run_row("a1", 1, {"epochs": 20}), run_row("a2", 2, {"epochs": 20}),
            run_row("f", 3, {"epochs": 20}) | {"status": "failed"},
            run_row("n", 0, {"k": 1}, method="free"),  # no budget field: nothing to scale
            run_row("e", 0, {"epochs": 20}) | {"dataset": "e"}]
    walls = {"a0": 100.0, "a0x": 300.0, "a1": 1800.0, "a2": 3600.0, "f": 50.0, "n": 70.0, "e": 600.0}
    runs = pd.DataFrame(rows).assign(wall_time_s=lambda f: f.run_id.map(walls))
    base = ["a0", "a1", "a2", "f", "n", "e"]
    hours = audit.audit_hours(runs, base, FIELDS, ["d"])
    assert hours == pytest.approx({"d": 3 * (1800 + 3600) / 3600})
    both = audit.audit_hours(runs, base, FIELDS, ["d", "e"])
    assert both == pytest.approx({"d": 4.5, "e": 0.5})
    assert audit.cost_clause(hours) == (": up to about 4.5 h of run time, 3x the time the audited runs took where "
                                        "they were trained (a role its patience stops takes less; `--seeds` trains "
                                        "fewer repetitions)")
    assert audit.cost_clause(both).startswith(": up to about 5.0 h of run time (d 4.5 h, e 30 min), 3x")
    assert audit.cost_clause(audit.audit_hours(runs.drop(columns="wall_time_s"), base, FIELDS, ["d"])) == ""


def test_markdown_lists_every_role_and_its_flags(store):
    frame, _ = store
    text = audit.audit_markdown(frame.reset_index())
    assert text.startswith("Each row: a role of the audited configurations") and "**d**" in text
    table = [line for line in text.splitlines() if line.startswith("| m ") or line.startswith("| scratch")]
    assert len(table) == len(frame)
    rising = next(line for line in table if "| rising |" in line)
    assert "**rising, short**" in rising and f"{frame.loc['rising', 'acc']:.2f}" in rising
    assert "**short**" in next(line for line in table if "| short |" in line)
    flagged = audit.audit_markdown(frame.reset_index(), flagged_only=True)
    assert sum(line.startswith("| m ") for line in flagged.splitlines()) == int(frame["flagged"].sum())
    assert "No audited runs" in audit.audit_markdown(frame.iloc[:0].reset_index())


def test_a_configuration_without_a_longer_run_is_not_audited_nor_listed_as_ok(store, monkeypatch):
    frame, truth = store
    both = pd.concat([frame.reset_index(), truth["other"]], ignore_index=True)
    assert (truth["other"]["n_long"] == 0).all() and len(truth["other"])
    lines = audit.audit_markdown(both).splitlines()
    other = [line for line in lines if "| epochs=60,lr=0.2 |" in line]
    assert len(other) == len(truth["other"]) and all(line.endswith("| not audited |") for line in other)
    assert all(f"| {len(REPS)} (0) |" in line for line in other)
    audited = [line for line in lines if line.startswith("| m | default |")]
    assert audited and all(f"| {len(REPS)} ({len(REPS)}) |" in line for line in audited)
    # The report's section lists only what ran at both budgets and counts the rest.
    monkeypatch.setattr(audit, "budget_audit", lambda *args, **kwargs: both)
    section = "\n".join(audit.audit_sections(pd.DataFrame(), pd.DataFrame(), [], {}))
    assert "| epochs=60,lr=0.2 |" in section and "| not audited |" in section  # listed, with their curves' flags
    assert (f"Not audited (at 3x in fewer than half their repetitions, so only their own curves speak): "
            f"{len(truth['other'])} roles") in section
    assert f"{int(both['flagged'].sum())} of {len(both)} roles are flagged" in section
    assert "`python -m benchmark audit --datasets d` adds them" in section
    # REPORT.md's section: the same sentence, the flagged roles only, and a link to every role's row.
    short = audit.audit_sections(pd.DataFrame(), pd.DataFrame(), [], {}, every_role=False, link="[all](x.md)")
    assert short[2] == section.splitlines()[2] and "Every role, with its curves' numbers: [all](x.md)." in short
    table = [line for line in "\n".join(short).splitlines() if line.startswith("| m ") or line.startswith("| scr")]
    assert len(table) == int(both["flagged"].sum()) and all(line.endswith("** |") for line in table)
    assert "| epochs=60,lr=0.2 |" not in "\n".join(short)


def nll_curve(best: int, epochs: int, rng) -> np.ndarray:
    """A validation NLL that falls to its minimum at epoch ``best`` and rises after it, with small noise that
    cannot move the minimum."""
    e = np.arange(epochs)
    return 1.0 + 0.01 * np.abs(e - best) + rng.uniform(0, 1e-4, epochs)


@pytest.mark.parametrize("epochs, best, patience, expected", [
    (50, 49, 10, True),  # still falling at the last epoch: the cap ended it
    (50, 45, 10, True),  # best at epoch 46 of 50 (1-based): inside the last 10%, patience had 4 epochs left
    (50, 44, 30, False),  # epoch 45 of 50: just outside
    (30, 19, 10, False),  # stopped by its patience (epochs 20..29 without a better NLL) well before a cap of 50
    (150, 139, 10, False),  # stopped by its patience although the best epoch is in the last 10% of what it trained
    (1, 0, 1, True),  # one epoch: the cap is all there was
    (50, 49, None, False),  # no early stopping: a fixed budget, the final weights kept; no rule for a cap to overrule
    (1, 0, None, False),
])
def test_ends_capped_follows_its_definition(epochs, best, patience, expected):
    curve = nll_curve(best, epochs, np.random.default_rng(epochs + best))
    assert int(np.argmin(curve)) == best
    at_cap = patience is not None and epochs - 1 - best < patience
    assert audit.ends_capped(curve, patience) is (at_cap and (best + 1) > 0.9 * epochs) is expected


def test_ends_capped_takes_the_first_minimum_and_ignores_an_empty_curve():
    assert not audit.ends_capped([], 10)
    assert not audit.ends_capped([0.5] * 20, 30)  # flat: the first minimum is epoch 0, as early stopping keeps it
    assert audit.ends_capped([1.0] * 19 + [0.5], 10)
    assert not audit.ends_capped([1.0] * 19 + [0.5], None)


def test_capped_needs_half_the_repetitions_and_reads_each_runs_patience():
    """Role "capped" ends at its cap in 3 of 4 repetitions (patience 30, cap 50); role "half" in 2 of 4; role "one"
    in 1 of 4; the early-stopped scratch student's runs stop by their patience (10) though their best epochs are in
    the last 10% of the epochs they trained."""
    rng = np.random.default_rng(7)
    runs, rows = [], []
    bests = {"capped": [49, 48, 47, 10], "half": [49, 46, 20, 10], "one": [49, 20, 30, 10]}
    for rep in REPS:
        runs.append(run_row(f"b{rep}", rep, {"epochs": 50, "patience": 30}))
        for role, best in bests.items():
            rows += [(f"b{rep}", "m", "default", "d", rep, role, e, "val_nll", float(v))
                     for e, v in enumerate(nll_curve(best[rep], 50, rng))]
            rows.append(final_row(f"b{rep}", rep, role, 0.9))
        runs.append(run_row(f"s{rep}", rep, {"epochs": 150, "patience": 10}, "scratch_student", "arch=x"))
        trained = 120 + rep
        rows += [(f"s{rep}", "scratch_student", "arch=x", "d", rep, "student", e, "val_nll", float(v))
                 for e, v in enumerate(nll_curve(trained - 11, trained, rng))]
        rows.append(final_row(f"s{rep}", rep, "student", 0.9, method="scratch_student", variant="arch=x"))
    metrics = pd.DataFrame(rows, columns=["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                          "value"])
    frame = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS).set_index("role")
    expected = {"capped": (3, True), "half": (2, True), "one": (1, False), "student": (0, False)}
    for role, (reps, flag) in expected.items():
        assert (frame.loc[role, "capped_reps"], frame.loc[role, "capped"], frame.loc[role, "flagged"]) == \
            (reps, flag, flag), role
    assert "capped: best validation NLL in the last 10% of the cap in 3 of 4 repetitions" in frame.loc["capped",
                                                                                                          "reason"]
    text = audit.audit_markdown(frame.reset_index())
    assert "**capped**" in next(line for line in text.splitlines() if "| capped |" in line)
    section = "\n".join(audit.audit_sections(metrics, pd.DataFrame(runs), [r["run_id"] for r in runs], FIELDS))
    # no run at 3x anywhere: every role is listed with its own curves' flags, counted, and the command named
    assert "2 of 4 roles are flagged" in section and "4 roles (4 on d)" in section
    assert "`python -m benchmark audit --datasets d`" in section


@pytest.mark.parametrize("epochs, best, patience, expected", [
    (30, 19, 10, True),  # 10 epochs after its best without a better NLL: its patience ended it
    (30, 20, 10, False),  # 9: the cap (30 epochs) ended it
    (30, 19, None, False),  # a fixed budget: no patience to end it
    (1, 0, 1, False),
])
def test_stopped_by_patience_follows_its_definition(epochs, best, patience, expected):
    curve = nll_curve(best, epochs, np.random.default_rng(epochs + best))
    assert audit.stopped_by_patience(curve, patience) is expected
    assert not audit.stopped_by_patience([], patience)


def test_a_role_its_patience_stopped_is_not_rising_whatever_its_slope():
    """Roles with the same validation accuracy, rising 0.5 pp per epoch to the end of their curves (30 epochs):
    "patient" was stopped by its patience (best NLL at epoch 19, patience 10) in 3 of 4 repetitions, "fixed" trained
    a fixed budget (no patience), "half" was stopped by its patience in 1 of 4 (the cap ended the others)."""
    rng = np.random.default_rng(11)
    runs, rows = [], []
    setups = {"patient": ([19, 19, 19, 22], 10), "fixed": ([19] * 4, None), "half": ([19, 25, 25, 25], 10)}
    for role, (bests, patience) in setups.items():
        for rep in REPS:
            run_id = f"{role}{rep}"
            runs.append(run_row(run_id, rep, {"epochs": 30, "patience": patience}, variant=role))
            rows += [(run_id, "m", role, "d", rep, "student", e, "val_nll", float(v))
                     for e, v in enumerate(nll_curve(bests[rep], 30, rng))]
            rows += curve_rows(run_id, rep, "student", 0.5 + 0.005 * np.arange(30) + rng.normal(0, 0.001, 30),
                               variant=role)
            rows.append(final_row(run_id, rep, "student", 0.6, variant=role))
    metrics = pd.DataFrame(rows, columns=["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                          "value"])
    frame = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS).set_index("variant")
    assert (frame["slope_low"] > 0).all() and (frame["projected"] > audit.RISE_PP).all()
    assert frame["patience_reps"].to_dict() == {"patient": 3, "fixed": 0, "half": 1}
    assert frame["rising"].to_dict() == {"patient": False, "fixed": True, "half": True}
    assert "stopped by its patience in 3 of 4 repetitions: not rising" in frame.loc["patient", "reason"]
    assert "stopped by its patience" not in frame.loc["fixed", "reason"]


@pytest.mark.parametrize("gains, paired, rising, short", [
    ([0.3, -0.2, 0.1, 0.4], 4, False, False),  # measured at 3x in every repetition: +0.15 pp, the rise gained nothing
    ([0.3, -0.2], 2, False, False),  # in half the repetitions: enough to measure it
    ([0.3], 1, True, False),  # in one of four: the slope still speaks
    ([3.0], 1, True, False),  # one of four gains 3 pp: too few pairs to judge short; the slope still speaks
    ([1.5, 2.5, 1.0, 2.0], 4, True, True),  # measured, and short: rising and short
    ([2.0, 2.0], 2, True, True),  # in half the repetitions, every pair 2 pp better: short
    ([1.5, 2.5], 2, True, False),  # +2 pp, but two pairs do not show it (interval [-4.35, +8.35]): not short, and
    # not a measured end to the rise either
    ([], 0, True, False),  # not audited
])
def test_a_rise_that_the_longer_budget_measured_and_found_small_is_not_rising(gains, paired, rising, short,
                                                                              monkeypatch):
    """A fixed-budget role rising 0.5 pp per epoch to the end of its 30 epochs (4 repetitions), whose 3x runs (90
    epochs) exist for ``paired`` repetitions and gain ``gains`` pp over them: the longer budget, where it ran in at
    least half the repetitions, decides; a rise it did not confirm (mean gain <= 1 pp) is not flagged."""
    rng = np.random.default_rng(5)
    runs, rows = [], []
    for rep in REPS:
        run_id = f"r{rep}"
        runs.append(run_row(run_id, rep, {"epochs": 30, "patience": None}))
        rows += curve_rows(run_id, rep, "student", 0.5 + 0.005 * np.arange(30) + rng.normal(0, 0.001, 30))
        rows.append(final_row(run_id, rep, "student", 0.6))
    for rep, gain in zip(REPS, gains):
        runs.append(run_row(f"l{rep}", rep, {"epochs": 90, "patience": None}, variant="epochs=90"))
        rows.append(final_row(f"l{rep}", rep, "student", 0.6 + gain / 100, variant="epochs=90"))
    metrics = pd.DataFrame(rows, columns=["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                          "value"])
    row = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS).set_index("variant").loc["default"]
    assert row.slope_low > 0 and row.projected > audit.RISE_PP  # the slope alone would flag it
    assert row.n_long == paired and (row.delta_long == pytest.approx(np.mean(gains)) if gains else True)
    assert (row.rising, row.short, row.flagged) == (rising, short, rising or short)
    measured = "but" in row.reason and "at 3x in" in row.reason and "not rising" in row.reason
    assert measured is (not rising)
    if not rising:
        assert f"{np.mean(gains):+.2f} pp at 3x in {paired} of 4 repetitions" in row.reason
    unshown = bool(paired >= 2 and np.mean(gains) > 1 and not short)
    assert ("do not show (not short)" in row.reason) is unshown
    if unshown:  # the interval as scipy computes it
        low, high = sps.t.interval(0.95, paired - 1, loc=np.mean(gains), scale=sps.sem(gains))
        assert f"{np.mean(gains):+.2f} pp at 3x [{low:+.2f}, {high:+.2f}]" in row.reason
    assert ("too few to judge" in row.reason) is (0 < paired < 2)
    if 0 < paired < 2:
        assert f"3x in {paired} of 4 repetitions ({np.mean(gains):+.2f} pp): too few to judge" in row.reason
    one = pd.DataFrame([row.to_dict() | {"variant": "default"}])
    flag = audit.audit_markdown(one).splitlines()[-1]
    assert flag.endswith("| **rising, short** |" if short else "| **rising** |" if rising else "| ok |")
    monkeypatch.setattr(audit, "budget_audit", lambda *args, **kwargs: one)
    section = "\n".join(audit.audit_sections(pd.DataFrame(), pd.DataFrame(), [], {}))
    # a role partly audited is counted with the roles not audited
    assert ("Not audited (at 3x in fewer than half their repetitions" in section) is (paired < 2)


def test_past_peak_compares_the_best_validation_epoch_with_the_final_weights_on_the_test_split():
    """Role "overfit": validation and test accuracy peak early and fall (final weights ~2-3 pp worse than at the
    best validation epoch, in every repetition); role "noisy": a plateau whose noise makes the maximum of the
    validation curve higher than its end without the test accuracy there being better. The drop is the test
    accuracy at the first epoch of best validation accuracy minus the final, paired per repetition."""
    rng = np.random.default_rng(7)
    runs, rows, drops = [], [], {"overfit": [], "noisy": []}
    e = np.arange(40)
    for rep in range(5):
        run_id = f"r{rep}"
        runs.append(run_row(run_id, rep, {"epochs": 40, "patience": None}))
        for role in ("overfit", "noisy"):
            if role == "overfit":
                shape = 0.9 - 0.0008 * np.abs(e - 8) - 0.0002 * rep * (e > 8)
                val, test = shape + rng.normal(0, 1e-4, 40), shape + rng.normal(0, 1e-4, 40)
            else:
                val, test = 0.9 + rng.normal(0, 0.01, 40), 0.9 + rng.normal(0, 0.01, 40)
            final = test[-1]
            rows += curve_rows(run_id, rep, role, val)
            rows += [(run_id, "m", "default", "d", rep, role, int(k), "test_acc", float(v)) for k, v in enumerate(test)]
            rows.append(final_row(run_id, rep, role, final))
            drops[role].append((test[int(np.argmax(val))] - final) * 100)
    metrics = pd.DataFrame(rows, columns=["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                          "value"])
    frame = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS).set_index("role")
    for role, expected in drops.items():
        expected = np.array(expected)
        lo, hi = sps.t.interval(0.95, len(expected) - 1, loc=expected.mean(), scale=sps.sem(expected))
        row = frame.loc[role]
        assert (row.peak_drop, row.peak_low, row.peak_high) == pytest.approx((expected.mean(), lo, hi), rel=1e-9)
    assert frame.loc["overfit", "peak_drop"] > 2 and frame.loc["overfit", ["peaked", "flagged"]].tolist() == [True,
                                                                                                            True]
    assert "past peak" in frame.loc["overfit", "reason"]
    assert not frame.loc["noisy", "peaked"] and not frame.loc["noisy", "flagged"]
    text = audit.audit_markdown(frame.reset_index())
    assert "**past peak**" in next(line for line in text.splitlines() if "| overfit |" in line)


def test_a_window_of_one_repeated_epoch_has_no_slope_and_two_runs_of_one_repetition_keep_their_own():
    assert math.isnan(audit.curve_slopes(pd.DataFrame({"epoch": [3, 3], "value": [0.5, 0.6]}))[0])
    runs = [run_row("a", 0, {"epochs": 10}), {**run_row("b", 0, {"epochs": 10}), "dataset": "d"}]
    rows = (curve_rows("a", 0, "r", 0.5 + 0.01 * np.arange(10)) + curve_rows("b", 0, "r", 0.5 + 0.03 * np.arange(10))
            + [final_row("a", 0, "r", 0.6), final_row("b", 0, "r", 0.8)])
    metrics = pd.DataFrame(rows, columns=["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                          "value"])
    row = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS).iloc[0]
    assert row.slope == pytest.approx(2.0)  # the mean of each run's own slope (1 and 3 pp/epoch)


def test_the_answer_names_the_comparisons_whose_role_or_scratch_student_the_audit_flags():
    from benchmark.reporting.answer import budget_flags, budget_sentence

    def audit_row(method, variant, role, **flags):
        base = {"dataset": "d", "method": method, "variant": variant, "role": role, "rising": False, "peaked": False,
                "capped": False, "short": False, "projected": 0.8, "peak_drop": 1.5, "peak_low": 1.1,
                "peak_high": 1.9, "delta_long": 2.0}
        return {**base, **flags, "flagged": any(flags.values())}

    frame = pd.DataFrame([audit_row("kd", "default", "student", peaked=True),
                          audit_row("scratch_student", "epochs=300", "student", rising=True),
                          audit_row("other", "default", "student"),
                          audit_row("label_smoothing", "epochs=300", "student", peaked=True)])
    partners = {("quick", "d", "kd", "default", "student"): "epochs=300",
                ("quick", "d", "other", "default", "student"): "epochs=300",
                ("quick", "d", "fine", "default", "student"): "patience=None"}
    smoothing = {("quick", "d", "kd", "default", "student"): "epochs=300"}
    flags = budget_flags(frame, partners, smoothing)
    assert flags[("d", "kd", "default", "student")] == [
        "past its peak (+1.50 pp [+1.10, +1.90] at its best validation epoch)",
        "its scratch student still rising (+0.80 pp projected over another 20% of its budget)",
        "its label-smoothing control past its peak (+1.50 pp [+1.10, +1.90] at its best validation epoch)"]
    assert flags[("d", "other", "default", "student")] == [
        "its scratch student still rising (+0.80 pp projected over another 20% of its budget)"]
    assert ("d", "fine", "default", "student") not in flags and ("d", "scratch_student", "epochs=300",
                                                                 "student") in flags
    primary = pd.DataFrame([{"dataset": "d", "method": m, "variant": "default", "role": "student", "kind": "method"}
                            for m in ("other", "fine", "kd")])
    sentence = budget_sentence(primary, flags)
    assert sentence.startswith("The budget audit flags these comparisons")
    assert sentence.index("kd (student): past its peak") < sentence.index("other (student): its scratch student")
    assert "fine" not in sentence and budget_sentence(primary[primary.method == "fine"], flags) == ""


def test_a_role_not_raised_further_keeps_its_flag_and_the_report_says_why():
    runs, rows = [], []
    for rep in range(3):
        runs += [run_row(f"b{rep}", rep, {"epochs": 20}), run_row(f"l{rep}", rep, {"epochs": 60}, variant="epochs=60")]
        for role, acc, gain in (("short", 0.80 + 0.01 * rep, 0.02), ("flat", 0.9, 0.0)):
            rows += curve_rows(f"b{rep}", rep, role, np.full(20, acc))
            rows += [final_row(f"b{rep}", rep, role, acc), final_row(f"l{rep}", rep, role, acc + gain,
                                                                     variant="epochs=60")]
    metrics = pd.DataFrame(rows, columns=["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric",
                                          "value"])
    left = [NotRaised("d", "m", "default", "short", "12x its notebook's budget"),
            NotRaised("d", "m", "default", "flat", "not flagged anyway"),
            NotRaised("d", "m", "epochs=40", "short", "another budget: another configuration")]
    frame = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS, left=left).set_index("role")
    plain = audit.budget_audit(metrics, pd.DataFrame(runs), budget_fields=FIELDS).set_index("role")
    assert frame.loc["short", "short"] and frame.loc["short", "flagged"]  # the flag stays
    assert frame.drop(columns="left").equals(plain.drop(columns="left")) and (plain["left"] == "").all()
    assert frame.loc["short", "left"] == "12x its notebook's budget" and not frame.loc["flat", "flagged"]
    row = next(frame.reset_index().query("role == 'short'").itertuples())
    assert audit.flag_words(row) == ["short (+2.00 pp at 3x its budget), not raised further (12x its notebook's "
                                     "budget)"]
    assert "**short, not raised further**" in audit.audit_markdown(frame.reset_index())
    assert "| flat |" in audit.audit_markdown(frame.reset_index()) and "ok, left" not in audit.audit_markdown(
        frame.reset_index())
    lines = audit.audit_sections(metrics, pd.DataFrame(runs), ["b0", "b1", "b2"], FIELDS, frame=frame.reset_index())
    assert ("1 of 2 roles are flagged (listed first). 1 of them is not raised further (a budget goes up to 10x the "
            "notebook's; a role at that bound, or still rising near it in its longer runs, keeps its flag): m default "
            "short on d (12x its notebook's budget).") in lines[2]
    unmarked = audit.audit_sections(metrics, pd.DataFrame(runs), ["b0", "b1", "b2"], FIELDS, frame=plain.reset_index())
    assert "not raised further" not in unmarked[2]
