"""The answer across datasets (Friedman's test and Nemenyi's critical difference, against Demšar 2006 and scipy),
and the per-row controls: Δ against label smoothing and the teacher's advantage, on a store whose numbers are known,
plus the Sensitivity section with and without positive controls."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from benchmark.reporting import across, controls, report_front, stats
from benchmark.reporting.families import Declarations
from benchmark.reporting.frames import load_results
from tests.test_tables import StoreBuilder


@pytest.mark.parametrize("k, published", [(4, 2.569), (5, 2.728), (6, 2.850), (7, 2.949), (8, 3.031),
                                          (9, 3.102), (10, 3.164)])
def test_nemenyi_q_is_demsars_table_5a(k, published):
    assert across.nemenyi_q(k) == pytest.approx(published, abs=1e-3)
    n = 4
    # the table gives q to 3 decimals (its k = 7 entry, 2.949, rounds scipy's 2.94832 up): the CD agrees to that
    factor = math.sqrt(k * (k + 1) / (6 * n))
    assert across.critical_difference(k, n) == pytest.approx(published * factor, abs=1e-3 * factor)


def friedman_by_hand(ranks):
    """Demšar's χ²_F from a datasets × methods rank matrix, divided by the tie correction
    1 - Σ(t³ - t) / (N k (k² - 1)) over each dataset's groups of tied ranks."""
    ranks = np.asarray(ranks, dtype=float)
    n, k = ranks.shape
    r = ranks.mean(axis=0)
    chi = 12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4)
    ties = sum(t**3 - t for row in ranks for t in np.unique(row, return_counts=True)[1])
    return chi / (1 - ties / (n * k * (k**2 - 1)))


@pytest.mark.parametrize("deltas, ranks", [
    # 4 datasets × 3 methods, no ties: ranks 1 = the largest Δ
    ([[3, 2, 1], [3, 1, 2], [2, 3, 1], [3, 2, 1]], [[1, 2, 3], [1, 3, 2], [2, 1, 3], [1, 2, 3]]),
    # ties share their average rank
    ([[2, 2, 1, 0], [5, 1, 1, 3], [1, 1, 1, 1], [4, 3, 2, 1]],
     [[1.5, 1.5, 3, 4], [1, 3.5, 3.5, 2], [2.5, 2.5, 2.5, 2.5], [1, 2, 3, 4]]),
])
def test_ranks_and_friedman_statistic_on_known_ranks_with_ties(deltas, ranks):
    deltas = np.asarray(deltas, dtype=float)
    assert across.rank_rows(deltas) == pytest.approx(np.asarray(ranks, dtype=float))
    statistic, p = across.friedman(deltas)
    assert statistic == pytest.approx(friedman_by_hand(ranks))
    k = deltas.shape[1]
    assert p == pytest.approx(sps.chi2.sf(friedman_by_hand(ranks), k - 1))


def test_friedman_needs_three_datasets_and_three_methods():
    assert across.friedman(np.ones((2, 5))) is None and across.friedman(np.ones((5, 2))) is None


# ---- a store with label smoothing, a teacher, and positive controls ---------------------------------------

def controlled_store(out, rng, with_controls=True, teacher_arch="big"):
    """kd's teacher is another architecture than its student ("a"), unless ``teacher_arch`` is "a"."""
    b = StoreBuilder(out)
    v = {k: rng.uniform(0.7, 0.8, 5) for k in ("scratch", "teacher")}
    v["teacher"] = v["scratch"] + rng.normal(0.0, 0.01, 5)  # no real advantage
    v["kd"] = v["scratch"] + 0.02 + rng.normal(0, 0.004, 5)
    v["ls"] = v["kd"] - rng.normal(0, 0.004, 5)  # label smoothing as good as the method
    v["omit_scratch"] = rng.uniform(0.0, 0.02, 5)
    v["omit_student"] = v["omit_scratch"] + 0.3 + rng.normal(0, 0.05, 5)
    for r in range(5):
        teacher = b.add("teacher", r, kind="baseline", roles={"teacher": None}, arch=teacher_arch,
                        metrics=[["teacher", -1, "test_acc", v["teacher"][r]]])
        b.add("scratch_student", r, kind="baseline", roles={"student": "K1"},
              metrics=[["student", -1, "test_acc", v["scratch"][r]]])
        b.add("label_smoothing", r, kind="baseline", roles={"student": "K1"}, config={"epsilon": 0.1},
              metrics=[["student", -1, "test_acc", v["ls"][r]]])
        b.add("kd", r, roles={"student": "K1"}, requires={"teacher": teacher["run_id"]},
              metrics=[["student", -1, "test_acc", v["kd"][r]]])
        if with_controls:
            b.add("scratch_student", r, kind="baseline", variant="transfer=omit:3", roles={"student": "K2"},
                  config={"transfer": "omit:3"},
                  metrics=[["student", -1, "test_omitted_acc", v["omit_scratch"][r]]])
            b.add("omitted_class", r, roles={"student": "K2"}, config={"transfer": "omit:3"},
                  requires={"teacher": teacher["run_id"]},
                  metrics=[["student", -1, "test_omitted_acc", v["omit_student"][r]]])
    return v


def test_label_smoothing_and_teacher_advantage_are_paired_by_repetition(tmp_path):
    v = controlled_store(tmp_path, np.random.default_rng(3))
    results = load_results(StoreBuilder(tmp_path).store, Declarations(family={"omitted_class": "sensitivity"}))
    row = controls.lookup(results)[("smoke", "digits", "kd", "default", "student")]
    ls, teacher = v["kd"] - v["ls"], v["teacher"] - v["scratch"]
    assert row["ls_n"] == 5 and row["ls_delta_mean"] == pytest.approx(ls.mean())
    assert row["ls_p_value"] == pytest.approx(sps.ttest_rel(v["kd"], v["ls"]).pvalue)
    assert row["teacher_n"] == 5 and row["teacher_delta_mean"] == pytest.approx(teacher.mean())
    lo, hi = sps.t.interval(0.95, 4, loc=teacher.mean(), scale=sps.sem(teacher))
    assert (row["teacher_delta_ci_low"], row["teacher_delta_ci_high"]) == pytest.approx((lo, hi))
    assert controls.teacher_significant(row) is bool(lo > 0)


def test_each_rows_label_smoothing_comparison_is_holm_corrected_with_its_power_at_that_level(tmp_path):
    """Two distilled methods, each paired with the label-smoothing student of its repetition: Holm over the two
    (scipy's paired t-tests by hand), and each MDE at Holm's first level α/2, where scipy's noncentral t gives it
    80% power."""
    from tests.test_stats import nct_power

    rng = np.random.default_rng(7)
    b = StoreBuilder(tmp_path)
    scratch = rng.uniform(0.7, 0.8, 5)
    ls = scratch + 0.01 + rng.normal(0, 0.003, 5)
    students = {"kd": ls + 0.01 + rng.normal(0, 0.004, 5), "kd2": ls + rng.normal(0, 0.006, 5)}
    for r in range(5):
        b.add("scratch_student", r, kind="baseline", roles={"student": "K1"},
              metrics=[["student", -1, "test_acc", scratch[r]]])
        b.add("label_smoothing", r, kind="baseline", roles={"student": "K1"}, config={"epsilon": 0.1},
              metrics=[["student", -1, "test_acc", ls[r]]])
        for method, values in students.items():
            b.add(method, r, roles={"student": "K1"}, metrics=[["student", -1, "test_acc", values[r]]])
    found = controls.lookup(load_results(b.store, Declarations()))
    p = {m: sps.ttest_rel(v, ls).pvalue for m, v in students.items()}
    first, second = sorted(p, key=p.get)
    holm = {first: min(1.0, 2 * p[first]), second: min(1.0, max(2 * p[first], p[second]))}
    for method, values in students.items():
        row = found[("smoke", "digits", method, "default", "student")]
        assert row["ls_holm_m"] == 2 and row["ls_p_holm"] == pytest.approx(holm[method])
        assert row["ls_mde_alpha"] == pytest.approx(0.025)
        sd = np.std(values - ls, ddof=1)
        assert nct_power(row["ls_mde"], sd, 5, 0.025) == pytest.approx(0.8, abs=1e-6)
        expected = stats.HIGHER if holm[method] < 0.05 and (values - ls).mean() > 0 else stats.UNCLEAR
        assert row["ls_verdict"] == expected


def test_a_self_distilled_row_is_not_told_it_cannot_show_transfer(tmp_path):
    """kd's teacher has no real advantage. With another architecture, the answer says the row cannot show transfer
    and the footnote says there is little to transfer; with the student's own architecture (self-distillation,
    as born_again's generations) both say that this is the premise instead."""
    from benchmark.reporting import answer, notes

    for arch, own in (("big", False), ("a", True)):
        out = tmp_path / arch
        controlled_store(out, np.random.default_rng(3), with_controls=False, teacher_arch=arch)
        results = load_results(StoreBuilder(out).store, Declarations())
        found = controls.lookup(results)
        key = ("smoke", "digits", "kd", "default", "student")
        assert bool(found[key]["self_distilled"]) is own
        assert controls.teacher_significant(found[key]) is False
        block = results.summary[results.summary.dataset.eq("digits")]
        said = answer.no_teacher_advantage(block, found)
        note = " ".join(notes.row_notes(results).get(key, []))
        if own:
            assert said.startswith("kd (student) (teacher ") and "distils from its own architecture" in said
            assert "cannot show transfer" not in said and "little for distillation to transfer" not in note
            assert "self-distillation: the teacher (" in note
        else:
            assert said.startswith("The teacher has no significant advantage") and "cannot show transfer" in said
            assert "little for distillation to transfer" in note and "self-distillation" not in note


def test_sensitivity_is_a_family_of_its_own_and_reported(tmp_path):
    v = controlled_store(tmp_path, np.random.default_rng(4))
    results = load_results(StoreBuilder(tmp_path).store, Declarations(family={"omitted_class": "sensitivity"}))
    s = results.summary
    control = s[(s.method == "omitted_class") & (s.metric == "test_omitted_acc")].iloc[0]
    assert control.family == "sensitivity · test_omitted_acc" and control.holm_m == 1
    assert control.delta_mean == pytest.approx((v["omit_student"] - v["omit_scratch"]).mean())
    assert not s[s.method == "omitted_class"].main.any()  # not in the main table: reported first, apart
    text = "\n".join(report_front.sensitivity_section(s))
    assert control.verdict == stats.HIGHER and "Every positive control beats its scratch student" in text
    assert "| digits | omitted_class |" in text


def omitted_with_smoothing(out, ls_gap, rng):
    """omitted_class (K2, transfer omit:3) with its scratch and label-smoothing students on two metrics: the
    student beats scratch on both; label smoothing is ``ls_gap`` below the student on test_omitted_acc, 0.05
    below on test_acc."""
    b = StoreBuilder(out)
    v = {"scratch": rng.uniform(0.0, 0.02, 5), "acc_scratch": rng.uniform(0.7, 0.72, 5)}
    v["student"] = v["scratch"] + 0.3 + rng.normal(0, 0.05, 5)
    v["acc_student"] = v["acc_scratch"] + 0.06 + rng.normal(0, 0.005, 5)
    v["ls"] = v["student"] - ls_gap - rng.normal(0, 0.05, 5)
    v["acc_ls"] = v["acc_student"] - 0.05 + rng.normal(0, 0.005, 5)
    for r in range(5):
        teacher = b.add("teacher", r, kind="baseline", roles={"teacher": None},
                        metrics=[["teacher", -1, "test_acc", 0.9]])
        for method, kind, key, extra in (("scratch_student", "baseline", "scratch", {}),
                                         ("label_smoothing", "baseline", "ls", {}),
                                         ("omitted_class", "method", "student",
                                          {"requires": {"teacher": teacher["run_id"]}})):
            b.add(method, r, kind=kind, variant="transfer=omit:3" if kind == "baseline" else "default",
                  roles={"student": "K2"}, config={"transfer": "omit:3"}, **extra,
                  metrics=[["student", -1, "test_omitted_acc", v[key][r]],
                           ["student", -1, "test_acc", v["acc_" + key][r]]])
    return v, load_results(b.store, Declarations(family={"omitted_class": "sensitivity"}))


def test_a_positive_control_is_compared_with_label_smoothing_on_each_metric(tmp_path):
    """The control's Δ against the label-smoothing student of its transfer set, per metric, is scipy's paired
    t-test; Holm within the metric (one control here: m = 1); where it beats scratch but not label smoothing on its
    deciding metric the section says so, naming the metric on which it does beat label smoothing."""
    rng = np.random.default_rng(11)
    v, results = omitted_with_smoothing(tmp_path / "same", 0.0, rng)
    frame = report_front.control_smoothing(results).set_index("metric")
    for metric, a, b in (("test_omitted_acc", "student", "ls"), ("test_acc", "acc_student", "acc_ls")):
        row = frame.loc[metric]
        assert row.ls_n == 5 and row.ls_delta_mean == pytest.approx((v[a] - v[b]).mean())
        assert row.ls_p_value == pytest.approx(sps.ttest_rel(v[a], v[b]).pvalue)
        assert row.ls_holm_m == 1 and row.ls_p_holm == pytest.approx(row.ls_p_value)
    assert frame.loc["test_acc", "ls_verdict"] == stats.HIGHER
    assert frame.loc["test_omitted_acc", "ls_verdict"] == stats.UNCLEAR
    text = "\n".join(report_front.sensitivity_section(results.summary, report_front.control_smoothing(results)))
    assert "Every positive control beats its scratch student" in text
    assert "**Not told apart from label smoothing on digits**" in text
    assert "- omitted_class (student, test_omitted_acc) on digits: " in text
    assert "It beats label smoothing on test_acc." in text
    assert "| verdict vs label smoothing |" in text and "| beats label smoothing |" in text

    _, results = omitted_with_smoothing(tmp_path / "below", 0.25, np.random.default_rng(11))
    text = "\n".join(report_front.sensitivity_section(results.summary, report_front.control_smoothing(results)))
    assert "Not told apart" not in text and "also beats the label-smoothing student" in text
    # without label-smoothing runs the section names the comparison it cannot make
    assert "No label-smoothing student" in "\n".join(report_front.sensitivity_section(
        results.summary, report_front.control_smoothing(results).iloc[0:0]))


def test_without_controls_the_sensitivity_section_says_how_to_run_them(tmp_path):
    controlled_store(tmp_path, np.random.default_rng(5), with_controls=False)
    results = load_results(StoreBuilder(tmp_path).store)
    text = "\n".join(report_front.sensitivity_section(results.summary))
    assert "have not been run" in text and report_front.CONTROLS_COMMAND in text


def test_a_knowledge_free_teacher_is_a_control_family_shown_apart_never_a_method_row(tmp_path):
    rng = np.random.default_rng(6)
    v = controlled_store(tmp_path, rng, with_controls=False)
    b = StoreBuilder(tmp_path)
    free = v["scratch"] + 0.015 + rng.normal(0, 0.002, 5)  # regularisation alone beats scratch
    for r in range(5):
        teacher = b.add("teacher", r, kind="baseline", variant="knowledge=untrained", roles={"teacher": None},
                        config={"knowledge": "untrained"}, metrics=[["teacher", -1, "test_acc", 0.1]])
        b.add("knowledge_free_teacher", r, roles={"student": "K1"}, requires={"teacher": teacher["run_id"]},
              metrics=[["student", -1, "test_acc", free[r]]])
    results = load_results(b.store, Declarations(family={"knowledge_free_teacher": "control"}))
    s = results.summary
    row = s[(s.method == "knowledge_free_teacher") & (s.metric == "test_acc") & (s.selection == "final")].iloc[0]
    assert row.config_kind == "control" and row.family == "control" and row.holm_m == 1
    assert row.delta_mean == pytest.approx((free - v["scratch"]).mean())
    assert not s[s.method == "knowledge_free_teacher"].main.any()
    primary = s[(s.family == "primary")]
    assert set(primary.method) == {"kd"}  # the control does not enlarge the methods' Holm family
    text = "\n".join(report_front.sensitivity_section(s))
    assert "### What distillation is not" in text and "| digits | knowledge_free_teacher |" in text
    assert row.verdict == stats.HIGHER and "A knowledge-free teacher beats scratch on digits" in text


def test_the_across_table_lists_methods_by_average_rank_as_numbers(tmp_path):
    """Ten or more methods: rank 10 comes after rank 2 (ranks are sorted as numbers, not as text)."""
    from benchmark.reporting.figures import FigureSet

    b = StoreBuilder(tmp_path)
    rng = np.random.default_rng(7)
    scratch = rng.uniform(0.7, 0.8, 3)
    for r in range(3):
        b.add("scratch_student", r, kind="baseline", roles={"student": "K1"},
              metrics=[["student", -1, "test_acc", scratch[r]]])
        for m in range(11):  # method m is m pp better than scratch: rank 11 - m
            b.add(f"method{m:02d}", r, roles={"student": "K1"},
                  metrics=[["student", -1, "test_acc", scratch[r] + m / 100 + rng.normal(0, 1e-4)]])
    results = load_results(b.store)
    lines = report_front.across_section(results.summary, FigureSet(), b.store)
    listed = [line.split(" ")[1] for line in lines if line.startswith("| method") and line[8:10].isdigit()]
    assert listed == [f"method{m:02d}" for m in range(10, -1, -1)]


def test_a_dataset_without_any_scratch_pair_is_left_out_of_the_ranking_not_counted():
    """A dataset whose rows all lack a Δ (its scratch students have not run yet) is not a block of the ranking: the
    methods are ranked on the other datasets, and Friedman's and Nemenyi's n count those alone."""
    from benchmark.reporting import families
    from benchmark.reporting.columns import FINAL_SEL, PRIMARY

    deltas = {"a": [0.01, 0.02, 0.03], "b": [0.03, 0.01, 0.02], "c": [np.nan, np.nan, np.nan]}
    rows = [{"preset": "quick", "dataset": d, "method": f"m{i}", "label": f"m{i}", "role": "student",
             "selection": FINAL_SEL, "metric": PRIMARY, "family": families.PRIMARY_FAMILY, "delta_mean": x}
            for d, xs in deltas.items() for i, x in enumerate(xs) if not (d == "c" and i > 0)]
    (result,) = across.across(pd.DataFrame(rows))
    assert result.datasets == ["a", "b", "c"] and result.ranked_datasets == ["a", "b"]
    assert result.ranked == ["m0 (student)", "m1 (student)", "m2 (student)"]
    assert result.cd == pytest.approx(across.critical_difference(3, 2))
    assert result.friedman is None  # two datasets: too few blocks


def test_a_dataset_with_few_methods_so_far_is_left_out_rather_than_shrinking_the_ranking():
    """Three datasets with four methods each and a fourth with one method so far (its suite mid-round): ranking on
    all four would keep one method (4 cells); the three complete datasets keep 4 × 3 = 12, and the report names the
    fourth and how many methods it has."""
    from benchmark.reporting import families, report_front
    from benchmark.reporting.columns import FINAL_SEL, PRIMARY
    from benchmark.reporting.figures import FigureSet

    rng = np.random.default_rng(3)
    rows = [{"preset": "quick", "dataset": d, "method": f"m{i}", "label": f"m{i}", "role": "student",
             "selection": FINAL_SEL, "metric": PRIMARY, "family": families.PRIMARY_FAMILY,
             "delta_mean": rng.normal() if (d != "d" or i == 0) else np.nan}
            for d in "abcd" for i in range(4)]
    (result,) = across.across(pd.DataFrame(rows))
    assert result.ranked_datasets == ["a", "b", "c"]
    assert result.ranked == [f"m{i} (student)" for i in range(4)]
    assert result.with_delta == {"a": 4, "b": 4, "c": 4, "d": 1}
    assert result.friedman is not None and result.cd == pytest.approx(across.critical_difference(4, 3))
    lines = report_front.across_section(pd.DataFrame(rows).assign(verdict="unclear"), FigureSet(), None)
    assert any("left out: d (only 1 of the 4 methods has a Δ there so far" in line for line in lines)


@pytest.mark.parametrize(("cells", "datasets", "methods"), [
    # a complete matrix: every dataset, every method
    ({"a": "xyz", "b": "xyz", "c": "xyz"}, "abc", "xyz"),
    # 2 datasets × 3 methods (6) beat 3 datasets × 1 method (3)
    ({"a": "xyz", "b": "xyz", "c": "x"}, "ab", "xyz"),
    # 3 × 2 (6) against 2 × 3 (6): the tie goes to more datasets
    ({"a": "xyz", "b": "xyz", "c": "xy"}, "abc", "xy"),
    # no cell at all: nothing ranked
    ({"a": "", "b": ""}, "", ""),
])
def test_the_complete_block_keeps_the_most_cells(cells, datasets, methods):
    wide = pd.DataFrame({m: [1.0 if m in have else np.nan for have in cells.values()] for m in "xyz"},
                        index=list(cells))
    assert across.complete_block(wide) == (list(datasets), list(methods))


def test_a_method_with_several_distilled_roles_is_named_as_entering_once_per_role():
    from benchmark.reporting import families, report_front
    from benchmark.reporting.columns import FINAL_SEL, PRIMARY
    from benchmark.reporting.figures import FigureSet

    entries = [("solo", "student"), ("pair", "student1"), ("pair", "student2")]
    rows = [{"preset": "quick", "dataset": d, "method": m, "label": m, "role": r, "selection": FINAL_SEL,
             "metric": PRIMARY, "family": families.PRIMARY_FAMILY, "delta_mean": 0.01 * i + j, "verdict": "unclear"}
            for i, d in enumerate("abc") for j, (m, r) in enumerate(entries)]
    text = "\n".join(report_front.across_section(pd.DataFrame(rows), FigureSet(), None))
    assert "pair enters once per distilled role" in text and "solo enters" not in text
    single = [row for row in rows if row["role"] != "student2"]
    assert "once per distilled role" not in "\n".join(report_front.across_section(pd.DataFrame(single), FigureSet(),
                                                                                  None))


def test_the_complete_block_of_many_datasets_drops_the_emptiest_first():
    """Beyond MAX_SUBSETS_DATASETS datasets every set is not tried: the emptiest dataset goes first."""
    names = [f"d{i:02d}" for i in range(across.MAX_SUBSETS_DATASETS + 1)]
    wide = pd.DataFrame(1.0, index=names, columns=list("xyz"))
    wide.loc["d05", ["y", "z"]] = np.nan  # one dataset with one method so far
    assert across.complete_block(wide) == ([n for n in names if n != "d05"], ["x", "y", "z"])
    wide.loc[:, "z"] = np.nan  # z nowhere: not ranked, the others still on every dataset but d05
    assert across.complete_block(wide) == ([n for n in names if n != "d05"], ["x", "y"])
