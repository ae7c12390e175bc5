"""Tables, figures and REPORT.md on a store whose answers are known: run records are written directly, with
values drawn here, and every expected number is recomputed here with scipy. Method names are invented, so the
tests also show that any method in the store appears with no code change."""

import json
import math
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy import stats as sps

from benchmark import cli
from benchmark.reporting.publish import publish
from benchmark.reporting.report import REFERENCE_FILES
from benchmark.reporting.text import fmt_p
from benchmark.store import Store
from tests.conftest import ROOT
from tests.test_stats import nct_power, root_found_mde
from tests.test_tables import FAMILY_DECLARATIONS, FAMILY_DEFECTS, StoreBuilder, family_store, holm_by_hand

PNG = b"\x89PNG\r\n\x1a\n"


def whole_report(report_path):
    """REPORT.md followed by the reference files beside it that it links (the whole report, as one text)."""
    parts = [report_path.read_text()]
    # their links are relative to reference/: made relative to REPORT.md, like the rest
    parts += [(report_path.parent / "reference" / name).read_text().replace("](../", "](")
              for name in REFERENCE_FILES]
    return "\n".join(parts)


def mde_at(sd, n, m):
    """The MDE at Holm's first step over m comparisons, α/m, root-found on scipy's noncentral-t power."""
    high = sd
    while nct_power(high, sd, n, 0.05 / m) < 0.8:
        high *= 2
    return optimize.brentq(lambda d: nct_power(d, sd, n, 0.05 / m) - 0.8, 0, high, xtol=1e-12 * sd)


def write_report(out, notebook_defects=None):
    """The report command's publish step: (REPORT.md's path, the figures drawn)."""
    published = publish(Store(out), notebook_defects=notebook_defects)
    return published.report, published.figures


def curve_rows(role, val, test):
    rows = []
    for epoch, (v, t) in enumerate(zip(val, test, strict=True)):
        rows += [[role, epoch, "val_acc", v], [role, epoch, "test_acc", t],
                 [role, epoch, "train_loss", 1 / (1 + epoch)]]
    return rows


DEFECTS = {"good_method": {"loss": ("as_published", "the notebook's loss | with a pipe"),
                           "clip": (True, "a defect never run")},
           "noisy_method": {"clip": (True, "the notebook clips")},
           "scheduled": {}}


def mde_by_hand(sd, n):
    """The |δ| at which the two-sided paired t-test rejects with 80% power, from test_stats' own computation (the
    noncentral t written out and integrated over the chi-square distribution of s², root-found)."""
    return root_found_mde(sd, n)


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """The constructed store, its report, and the values the expectations are computed from."""
    out = tmp_path_factory.mktemp("known")
    rng = np.random.default_rng(2024)
    b = StoreBuilder(out)
    v = {}
    n = 7
    v["scratch"] = rng.uniform(0.75, 0.85, n)
    v["good"] = v["scratch"] + 0.03 + rng.normal(0, 0.005, n)
    v["good_t8"] = v["good"] + 0.01 + rng.normal(0, 0.004, n)
    v["good_pub"] = v["good"] - 0.02 + rng.normal(0, 0.004, n)
    v["good_grid"] = v["good"] + rng.normal(0, 0.01, n)
    v["order"] = v["scratch"] + rng.normal(0, 0.01, n)
    v["scratch_curves"] = rng.uniform(0.5, 0.9, (n, 4, 2))  # rep, epoch, (val, test)
    v["good_curves"] = rng.uniform(0.5, 0.9, (n, 4, 2))
    for r in range(n):
        b.add("scratch_student", r, kind="baseline", roles={"student": "K1"}, config={"arch": "a"},
              metrics=[["student", -1, "test_acc", v["scratch"][r]], ["student", -1, "test_nll", 0.5]]
              + curve_rows("student", *v["scratch_curves"][r].T))
        b.add("teacher", r, kind="baseline", roles={"teacher": None},
              metrics=[["teacher", -1, "test_acc", 0.95]], wall=10.0)
        good_metrics = [["student", -1, "test_acc", v["good"][r]], ["student", -1, "test_nll", 0.4]]
        b.add("good_method", r, roles={"student": "K1"}, config={"temperature": 4.0, "loss": "fixed"},
              arch="good_cnn", metrics=good_metrics + curve_rows("student", *v["good_curves"][r].T))
        b.add("good_method", r, variant="temperature=8.0", roles={"student": "K1"}, arch="good_cnn",
              config={"temperature": 8.0, "loss": "fixed"},
              metrics=[["student", -1, "test_acc", v["good_t8"][r]]])
        b.add("good_method", r, variant="loss=as_published", roles={"student": "K1"}, arch="good_cnn",
              config={"temperature": 4.0, "loss": "as_published"},
              metrics=[["student", -1, "test_acc", v["good_pub"][r]]])
        b.add("good_method", r, variant="loss=as_published,temperature=8.0", roles={"student": "K1"},
              arch="good_cnn", config={"temperature": 8.0, "loss": "as_published"},
              metrics=[["student", -1, "test_acc", v["good_grid"][r]]])
        b.add("order_method", r, roles={"student": "K1"}, pairing="order", arch="order_mlp",
              metrics=[["student", -1, "test_acc", v["order"][r]]])
    # a superseded, older run of good_method rep 0 with a wild value: must be left out
    b.add("good_method", 0, roles={"student": "K1"}, config={"temperature": 4.0, "loss": "fixed"}, source="older",
          finished="2024-01-01T00:00:00", metrics=[["student", -1, "test_acc", 0.01]])
    # a second scratch architecture (K2) with three repetitions, a method paired with it, and one that moves by
    # the same number of test images in every repetition (zero variance: no interval)
    v["scratch2"] = np.array([0.70, 0.72, 0.71])
    v["noisy"] = v["scratch2"] + np.array([0.010, -0.012, 0.004])
    v["constant"] = v["scratch2"] + 1 / 360
    for r in range(3):
        b.add("scratch_student", r, kind="baseline", variant="arch=other", roles={"student": "K2"},
              config={"arch": "other"}, metrics=[["student", -1, "test_acc", v["scratch2"][r]]])
        b.add("noisy_method", r, roles={"student": "K2"}, arch="noisy_mlp",
              metrics=[["student", -1, "test_acc", v["noisy"][r]]])
        b.add("constant_method", r, roles={"student": "K2"}, arch="constant_mlp", pairing=None,
              metrics=[["student", -1, "test_acc", v["constant"][r]]])
    # a label-free method: probes per layer beside the untrained control, per-step diagnostics
    v["probe"] = rng.uniform(0.8, 0.9, (3, 2))
    v["probe_untrained"] = v["probe"] - np.array([0.05, 0.0]) + rng.normal(0, 0.003, (3, 2))
    for r in range(3):
        rows = []
        for layer in (1, 2):
            rows += [[f"layer{layer}", -1, "probe_acc", v["probe"][r, layer - 1]],
                     [f"layer{layer}", -1, "probe_acc_untrained", v["probe_untrained"][r, layer - 1]]]
            for step in range(1, 6):
                rows += [[f"layer{layer}", step, "entropy", -step * layer],
                         [f"layer{layer}", step, "cos_theta", 0.5]]
        rows += [["layer2", step, f"mean_output_{u}", 0.5 + u * step / 100]
                 for step in range(6) for u in range(3)]
        b.add("label_free", r, roles={"net": "label_free", "layer1": None, "layer2": None}, metrics=rows)
    # a method with a weight schedule, and one whose scratch partner is missing
    for r in range(3):
        b.add("scheduled", r, roles={"A": "K1"}, arch="scheduled_cnn", metrics=[["A", -1, "test_acc", 0.8]]
              + [["A", e, "lambda", e / 3] for e in range(4)])
        b.add("orphan", r, roles={"student": "K9"}, metrics=[["student", -1, "test_acc", 0.5]])
    b.add("broken_method", 0, roles={}, metrics=[], status="failed", error="ValueError: on purpose\n  line two")
    b.add("skipping_method", 0, roles={}, metrics=[], status="skipped", error="does not apply to digits")
    report, figures = write_report(out, DEFECTS)
    summary = pd.read_csv(out / "published" / "tables" / "summary.csv")
    return {"out": out, "v": v, "report": whole_report(report), "figures": figures, "summary": summary,
            "md": (out / "published" / "tables" / "summary.md").read_text()}


def row(summary, method, metric="test_acc", selection="final", variant="default", role="student"):
    match = summary[(summary.method == method) & (summary.metric == metric) & (summary.selection == selection)
                    & (summary.variant == variant) & (summary.role == role)]
    assert len(match) == 1, (method, metric, selection, variant, role)
    return match.iloc[0]


def table_row(text, label, role="student"):
    """The first table row of ``label`` (its note marks "[1]" aside) and ``role`` in ``text``, as its cells."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 2 and re.sub(r" (\[\d+\])+$", "", cells[0]) == label and cells[1] == role:
            return cells
    raise AssertionError(f"no row {label!r} / {role!r}")


def md_row(md, label, role="student"):
    """The first official-accuracy table row of ``label`` in ``summary.md``, as its cells."""
    return table_row(md, label, role)


def answer_row(text, label, role="student"):
    """The row of ``label`` in the report's opening table (the primary family and the anchors)."""
    return table_row(text.split("## The answer", 1)[1].split("\n## ", 1)[0], label, role)


def test_paired_delta_ci_and_p_values_match_scipy(known):
    v, s = known["v"], known["summary"]
    r = row(s, "good_method")
    diffs = v["good"] - v["scratch"]
    half = sps.t.ppf(0.975, 6) * diffs.std(ddof=1) / math.sqrt(7)
    assert (r.n, r.pair_n) == (7, 7)  # the superseded run is not an eighth repetition
    assert r["mean"] == pytest.approx(v["good"].mean())
    assert r.delta_mean == pytest.approx(diffs.mean())
    assert (r.delta_ci_low, r.delta_ci_high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert r.delta_halfwidth == pytest.approx(half)
    assert r.p_ttest == pytest.approx(sps.ttest_rel(v["good"], v["scratch"]).pvalue)
    assert r.p_value == r.p_ttest and r.p_value_test == "t-test"
    assert r.p_wilcoxon == pytest.approx(sps.wilcoxon(v["good"], v["scratch"]).pvalue)
    assert r.verdict == "higher" and r.delta_vs == "scratch_student" and r.pairing == "init"


def test_pairing_follows_pair_key_not_the_default_scratch(known):
    v, s = known["v"], known["summary"]
    r = row(s, "noisy_method")
    assert r.pair_n == 3 and r.delta_vs == "scratch_student [arch=other]"
    assert r.p_ttest == pytest.approx(sps.ttest_rel(v["noisy"], v["scratch2"]).pvalue)
    assert math.isnan(r.p_wilcoxon) and "Wilcoxon needs" in r.note
    orphan = row(s, "orphan")
    assert orphan.pair_n == 0 and "no paired scratch_student run" in orphan.note
    assert pd.isna(row(s, "teacher", role="teacher").delta_vs)


def test_a_constant_difference_has_no_interval_and_the_sign_flip_p(known):
    s, md, text = known["summary"], known["md"], known["report"]
    r = row(s, "constant_method")
    assert r.delta_mean == pytest.approx(1 / 360)
    assert math.isnan(r.delta_ci_low) and math.isnan(r.delta_ci_high) and math.isnan(r.p_ttest)
    assert r.p_value_test == "sign-flip" and r.p_value == r.p_signflip == pytest.approx(2 / 2**3)
    assert r.verdict == "unclear at this n" and math.isnan(r.mde)
    cells = md_row(md, "constant_method")
    assert cells[4].startswith("+0.28, no interval: all 3 differences equal")
    assert cells[6] == "0.25 (sign-flip)" and cells[8].startswith("primary (m=")
    assert cells[9] == "unclear at this n" and cells[10] == "none (no spread)"
    # nowhere a zero-width interval such as "[+2.78, +2.78]"
    for where in (md, text):
        assert not re.search(r"\[([+-]?[\d.]+), \1\]", where)
    answer = answer_row(text, "constant_method")
    assert answer[5].startswith("+0.28, no interval: all 3 differences equal") and answer[8] == "unclear at this n"


def test_validation_selected_is_test_accuracy_at_best_validation_epoch(known):
    v, s = known["v"], known["summary"]

    def selected(curves):
        return np.array([c[np.argmax(c[:, 0]), 1] for c in curves])

    good, scratch = selected(v["good_curves"]), selected(v["scratch_curves"])
    r = row(s, "good_method", selection="val_selected")
    assert r["mean"] == pytest.approx(good.mean())
    assert r.delta_mean == pytest.approx((good - scratch).mean())
    assert r.p_ttest == pytest.approx(sps.ttest_rel(good, scratch).pvalue)


def test_holm_is_over_each_comparisons_p_value_within_its_family(known):
    """The primary family: every default configuration's distilled role with a test (the orphan has none); the
    good_method variants are families of their own (its declared defect, its ablations)."""
    s = known["summary"]
    tested = s[(s.metric == "test_acc") & (s.selection == "final") & s.p_value.notna()]
    family = tested[tested.family == "primary"]
    assert sorted(family.method) == ["constant_method", "good_method", "noisy_method", "order_method", "scheduled"]
    assert (family.holm_m == 5).all() and (family.variant == "default").all()
    assert "sign-flip" in set(family.p_value_test)  # the zero-variance comparison counts in the family
    assert family.p_holm.to_numpy() == pytest.approx(holm_by_hand(family.p_value.to_numpy()))
    assert (family.significant == (family.p_holm < 0.05)).all()
    sizes = {f: set(g.holm_m) for f, g in tested.groupby("family")}
    assert sizes == {"primary": {5}, "defects · good_method": {1}, "ablations · good_method": {2}}
    untested = s[(s.metric == "test_acc") & (s.selection == "final") & s.p_value.isna()]
    assert untested.p_holm.isna().all()


def test_label_free_probes_against_their_untrained_control(known):
    v, s, md = known["v"], known["summary"], known["md"]
    r = row(s, "label_free", metric="probe_acc", role="layer1")
    diffs = v["probe"][:, 0] - v["probe_untrained"][:, 0]
    assert r.delta_vs == "probe_acc_untrained (same run)" and r.pair_n == 3
    assert r.delta_mean == pytest.approx(diffs.mean())
    assert r.p_ttest == pytest.approx(sps.ttest_rel(v["probe"][:, 0], v["probe_untrained"][:, 0]).pvalue)
    assert "| probe_acc ± 95% CI | probe_acc_untrained ± 95% CI |" in md
    assert re.search(r"\| label_free \| layer1 \| 3 \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \|", md)


def test_scratch_students_are_named_by_what_they_are_the_control_for(known):
    s, md, text = known["summary"], known["md"], known["report"]
    k1 = row(s, "scratch_student")
    assert k1.label == "scratch · good_method student (CNN) / order_method student (MLP) / scheduled A (CNN)"
    assert row(s, "scratch_student", variant="arch=other").label == \
        "scratch · constant_method student (MLP) / noisy_method student (MLP)"
    assert md_row(md, k1.label)[4] == "reference"
    assert "arch=other" not in md  # the raw variant stays in the CSV only
    assert set(s[s.method == "scratch_student"].variant) == {"default", "arch=other"}
    assert "scratch · good_method student (CNN)" in text


def test_rows_that_do_not_share_the_initialisation_are_marked(known):
    s, md, text = known["summary"], known["md"], known["report"]
    assert row(s, "order_method").pairing == "order" and row(s, "good_method").pairing == "init"
    assert pd.isna(row(s, "constant_method").pairing)  # its records do not say
    assert md_row(md, "order_method")[4].endswith("(order-paired only)")
    assert "order-paired" not in md_row(md, "good_method")[4]
    assert md_row(md, "constant_method")[4].endswith("(pairing not recorded)")
    assert "same seed, same initialisation and batch order" not in md + text
    assert 'rows marked "order-paired only" share its data and batch order but not its initial weights' in md
    assert answer_row(text, "order_method")[5].endswith("(order-paired only)")


def answer_paragraph(text, dataset):
    """The sentences the report opens with on ``dataset``."""
    section = text.split("## The answer", 1)[1].split(f"### {dataset} (", 1)[1]
    return section.split("\n\n")[1]


def test_the_report_opens_with_the_answer_and_what_the_rest_could_have_detected(known):
    v, s, md, text = known["v"], known["summary"], known["md"], known["report"]
    # the answer across datasets first, then Sensitivity, then the answer per dataset
    assert [part.split("\n")[0] for part in text.split("\n## ")[1:4]] == [
        "Across datasets", "Sensitivity: can the harness see a known effect?", "The answer"]
    diffs = (v["good"] - v["scratch"]) * 100
    half = sps.t.ppf(0.975, 6) * diffs.std(ddof=1) / math.sqrt(7)
    good = row(s, "good_method")
    assert good.verdict == "higher" and good.p_holm < 0.05
    opening = answer_paragraph(text, "digits")
    assert opening.startswith(
        f"**On digits, good_method (student) ({diffs.mean():+.1f} pp [{diffs.mean() - half:.1f}, "
        f"{diffs.mean() + half:.1f}], p (Holm) = {fmt_p(good.p_holm)}) beats its scratch student after Holm's "
        "correction over the 5 distillation comparisons of the default configurations (the primary family).**")
    assert md_row(md, "good_method")[9] == "beats scratch"
    noisy = (v["noisy"] - v["scratch2"]) * 100
    lo, hi = sps.t.interval(0.95, 2, loc=noisy.mean(), scale=noisy.std(ddof=1) / math.sqrt(3))
    assert lo < 0 < hi
    mde = mde_at(noisy.std(ddof=1), 3, 5)  # at α/5: Holm's first step over the primary family of 5
    assert row(s, "noisy_method").holm_m == 5 and row(s, "noisy_method").mde_alpha == pytest.approx(0.01)
    assert row(s, "noisy_method").mde * 100 == pytest.approx(mde, rel=1e-6)
    cells = md_row(md, "noisy_method")
    assert cells[9] == "unclear at this n" and cells[10] == f"{mde:.2f}"
    answer = answer_row(text, "noisy_method")
    assert answer[8] == "unclear at this n" and answer[9] == f"{mde:.2f}"
    undecided = s[(s.family == "primary") & s.p_value.notna() & (s.verdict == "unclear at this n")]
    mdes = undecided.mde.dropna() * 100
    assert (f"The {len(undecided)} undecided comparisons could have detected differences of about "
            f"{mdes.min():.1f}-{mdes.max():.1f} pp (median {np.median(mdes):.1f} pp) at 80% power") in opening
    assert "orphan (student): no test (no paired scratch_student run in the store)." in opening
    # every unclear sentence says what it could have detected, or why it cannot
    unclear = [line for line in text.splitlines() if line.startswith("- ") and "unclear" in line]
    assert len(unclear) >= 1
    for line in unclear:
        said = line.count("could have detected") + line.count("no minimum detectable difference")
        assert said == 1, line
    assert "| failed | broken_method |" in text and "| skipped | skipping_method |" in text
    for name in ("good_method", "noisy_method", "label_free", "scheduled"):
        assert name in text


def test_no_decided_verdict_without_the_corrected_test(known):
    """Wherever a table says "beats" or "worse than", its p (Holm) cell is marked below α."""
    for where in (known["md"], known["report"]):
        assert_verdicts_follow_holm(where)


def assert_verdicts_follow_holm(markdown):
    checked = 0
    head = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| model") or line.startswith("| variant") or line.startswith("| method"):
            head = cells
            continue
        if not line.startswith("|") or "verdict" not in head or len(cells) != len(head):
            continue
        verdict = cells[head.index("verdict")]
        if verdict.startswith(("beats", "worse than")):
            assert cells[head.index("p (Holm)")].endswith(" *"), line
            checked += 1
        else:
            assert "*" not in cells[head.index("p (Holm)")], line
    return checked


def test_ablation_table_against_the_default_variant(known):
    v = known["v"]
    a = pd.read_csv(known["out"] / "published" / "tables" / "ablations.csv")
    good = a[a.method == "good_method"]
    assert {"param.temperature", "param.loss"} <= set(a.columns)
    t8 = good[good.variant == "temperature=8.0"].iloc[0]
    assert t8["param.temperature"] == 8.0 and t8.changed == "temperature=8.0" and t8.n_factors == 1
    assert t8.default_level == "4.0"
    diffs = v["good_t8"] - v["good"]
    half = sps.t.ppf(0.975, 6) * diffs.std(ddof=1) / math.sqrt(7)
    assert t8.vs_default_n == 7 and t8.vs_default_delta_mean == pytest.approx(diffs.mean())
    assert (t8.vs_default_delta_ci_low, t8.vs_default_delta_ci_high) == pytest.approx(
        (diffs.mean() - half, diffs.mean() + half))
    assert t8.vs_default_p_value == pytest.approx(sps.ttest_rel(v["good_t8"], v["good"]).pvalue)
    assert t8.vs_default_verdict == "higher"
    assert t8.vs_default_mde == pytest.approx(mde_at(diffs.std(ddof=1), 7, t8.vs_default_holm_m), rel=1e-6)
    grid = good[good.n_factors == 2].iloc[0]
    assert grid.changed == "loss=as_published, temperature=8.0" and pd.isna(grid.default_level)
    assert grid.vs_default_delta_mean == pytest.approx((v["good_grid"] - v["good"]).mean())
    others = good[good.variant != "default"]
    assert len(others) == 3
    for family, m in (("ablations vs default · good_method", 2), ("defects vs default · good_method", 1)):
        part = others[others.vs_default_family == family]
        assert len(part) == m and (part.vs_default_holm_m == m).all()
        assert part.vs_default_p_holm.to_numpy() == pytest.approx(holm_by_hand(part.vs_default_p_value))
    assert set(a.method) == {"good_method"}  # baselines' variants are pairing partners, not ablations
    text = known["report"]
    pub = (v["good_pub"] - v["good"]) * 100
    assert f"good_method with loss=as_published (student) is worse than the default on digits: {pub.mean():+.1f} pp" \
        in text
    assert "good_method with loss=as_published, temperature=8.0 (student)" in text


def test_notebook_defect_table(known):
    v, text = known["v"], known["report"]
    section = text.split("## What each notebook defect did", 1)[1].split("\n## ", 1)[0]
    pub = (v["good_pub"] - v["good"]) * 100
    line = next(x for x in section.splitlines() if x.startswith("| good_method | loss=as_published |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "the notebook's loss \\" or "the notebook's loss \\| with a pipe" in line
    assert f"{pub.mean():+.2f} [" in line and "| 7 | " in line and "worse than the default" in line
    assert "good_method clip=True" in section and "noisy_method clip=True" in section
    assert "`python -m benchmark defects good_method noisy_method --datasets digits --preset smoke`" in section
    assert "scheduled declares no notebook defects." in section


def test_notebook_defects_not_run_or_not_given(tmp_path):
    small_store(tmp_path)
    report, _ = write_report(tmp_path, {"kd": {"t_squared": (False, "no T²")}})
    assert ("No notebook-defect runs in the store: `python -m benchmark defects` runs each notebook defect alone"
            in whole_report(report))
    report, _ = write_report(tmp_path)
    assert "notebook defects were not given to this report" in whole_report(report)


def test_failed_runs_are_named_in_summary_md(known):
    md = known["md"]
    assert "## Failed runs" in md
    assert "| broken_method | default | digits | 0 |" in md and "ValueError: on purpose |" in md
    assert "line two" not in md


def test_every_figure_is_drawn_and_linked(known):
    out, text, figures = known["out"], known["report"], known["figures"]
    assert figures.errors == []
    kinds = {f.kind for f in figures.files}
    assert kinds == {"accuracy", "forest", "cost", "step_time", "curves", "ablation", "heatmap", "outputs",
                     "schedule"}
    names = {f.path.name for f in figures.files}
    assert {"curves_good_method_digits_smoke.png", "heatmap_label_free_digits_smoke.png",
            "outputs_label_free_digits_smoke.png", "ablation_good_method_digits_smoke.png",
            "schedule_digits_smoke.png"} <= names
    assert_links_are_pngs(out, text, minimum=len(figures.files))


def test_ablation_figure_has_a_panel_per_factor(known):
    from benchmark.reporting.ablations import main_metric
    from benchmark.reporting.figures_method import SEVERAL, ablation_panels
    from benchmark.reporting.frames import load_results

    a = load_results(Store(known["out"])).ablations
    panels = ablation_panels(main_metric(a[a.method == "good_method"]))
    assert [(factor, levels, default) for factor, _, levels, default in panels] == [
        ("loss", ["as_published", "fixed"], "fixed"), ("temperature", ["4.0", "8.0"], "4.0"),
        (SEVERAL, ["loss=as_published, temperature=8.0"], None)]


def assert_links_are_pngs(out, text, minimum=1):
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= minimum
    for link in links:
        path = out / Store.PUBLISHED / link  # relative to the report's folder
        assert path.is_file() and path.stat().st_size > 1000, link
        assert path.read_bytes()[:8] == PNG, link


def test_figures_skip_cleanly_without_their_data_and_never_delete_a_file(tmp_path, capsys):
    b = StoreBuilder(tmp_path)
    for r in range(2):
        b.add("scratch_student", r, kind="baseline", roles={"student": "K1"},
              metrics=[["student", -1, "test_acc", 0.8 + r / 100]])
    assert cli.main(["figures", "--out", str(tmp_path)]) == 0
    drawn = sorted(p.name for p in (tmp_path / "published" / "figures").glob("*.png"))
    assert drawn == ["accuracy_digits_smoke.png", "cost_digits_smoke.png", "step_time_digits_smoke.png"]
    assert "warning" not in capsys.readouterr().err
    committed = tmp_path / "published" / "figures" / "heatmap_gone_digits_smoke.png"  # e.g. a committed figure
    committed.write_bytes(PNG)
    assert cli.main(["report", "--out", str(tmp_path)]) == 0
    assert committed.read_bytes() == PNG  # not drawn from this store: left as it was, never deleted
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert "1 figure file(s)" in line and committed.name in line and "left as they were" in line
    text = (tmp_path / "published" / "REPORT.md").read_text()
    assert "heatmap_gone" not in text
    assert "no default configuration has a distillation comparison with a paired scratch student" in text


def test_store_with_only_failed_runs_still_reports(tmp_path):
    StoreBuilder(tmp_path).add("m", 0, roles={}, metrics=[], status="failed", error="boom")
    report, figures = write_report(tmp_path)
    text = report.read_text()
    assert "No successful runs" in text and "| failed | m |" in text and figures.files == []


def small_store(out, reps=2):
    b = StoreBuilder(out)
    for r in range(reps):
        b.add("scratch_student", r, kind="baseline", roles={"student": "K1"},
              metrics=[["student", -1, "test_acc", 0.8 + r / 100]])
        b.add("kd", r, roles={"student": "K1"}, metrics=[["student", -1, "test_acc", 0.81 + r / 50]])
    return b


def test_each_command_publishes_only_its_part(tmp_path):
    small_store(tmp_path)
    tables = publish(Store(tmp_path), ("tables",))
    assert [p.name for p in tables.written] == ["metrics.parquet", "metrics.csv", "runs.csv", "summary.csv",
                                                "summary.md", "ablations.csv"]
    assert tables.figures is None and tables.report is None and not (tmp_path / "published" / "figures").exists()
    figures = publish(Store(tmp_path), ("figures",))
    assert {p.parent.name for p in figures.written} == {"figures"}
    assert not (tmp_path / "published" / "REPORT.md").exists()
    report = publish(Store(tmp_path), ("report",))  # the report brings the tables and figures it links
    assert report.report == tmp_path / "published" / "REPORT.md" and report.written[-1] == report.report
    assert len(report.written) == 6 + len(report.figures.files) + len(REFERENCE_FILES) + 1


def test_a_full_disk_leaves_every_table_as_it_was(tmp_path, capsys, monkeypatch):
    b = small_store(tmp_path)
    assert cli.main(["tables", "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "published" / "tables").iterdir()}
    b.add("kd", 2, roles={"student": "K1"}, metrics=[["student", -1, "test_acc", 0.9]])  # a new run: new tables
    calls = []
    real_fsync = os.fsync

    def fills_up(fd):  # two table files fit on the disk, the third does not
        calls.append(fd)
        if len(calls) > 2:
            raise OSError(28, os.strerror(28))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fills_up)
    assert cli.main(["tables", "--out", str(tmp_path)]) == 1
    assert "disk full while writing" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "published" / "tables").iterdir()} == before
    assert not list(tmp_path.glob(".publish-*"))  # no staging folder either
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert cli.main(["tables", "--out", str(tmp_path)]) == 0
    assert all((tmp_path / "published" / "tables" / name).read_bytes() != data for name, data in before.items()
               if name != "ablations.csv")  # every table now holds the new run (there is no ablation)


def test_every_figure_failing_is_a_failure_of_the_command(tmp_path, capsys, monkeypatch):
    from benchmark.reporting import figures

    def broken(res, folder):
        raise ValueError("cannot draw")

    small_store(tmp_path)
    monkeypatch.setattr(figures, "DRAWERS", (broken, broken))
    assert cli.main(["figures", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("benchmark: error: no figure could be drawn") and "cannot draw" in err[-1]
    assert not (tmp_path / "published" / "figures").exists()
    assert cli.main(["report", "--out", str(tmp_path)]) == 1  # what could be written was
    assert "## Figures that could not be drawn" in (tmp_path / "published" / "REPORT.md").read_text()
    assert (tmp_path / "published" / "tables" / "summary.md").is_file()


@pytest.mark.parametrize("command", ["tables", "figures", "report"])
def test_missing_or_empty_results_folder_is_one_line_exit_2(tmp_path, capsys, command):
    missing = tmp_path / "missing"
    assert cli.main([command, "--out", str(missing)]) == 2
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    assert cli.main([command, "--out", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("benchmark: error:") for line in err)
    assert not missing.exists() and sorted(p.name for p in empty.iterdir()) == ["runs"]


def test_all_then_report_end_to_end_with_a_new_method_folder(tmp_path, monkeypatch, capsys):
    """A copied template is a new method: it runs, and shows up in tables, figures and the report. The project
    holds only the scratch-student baseline (the teacher is the slow part, and the template does not use it);
    the slow test below runs the real project."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "baselines" / "scratch_student", project / "baselines" / "scratch_student",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "methods" / "_template", project / "methods" / "fresh_method",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("BENCHMARK_PROJECT_ROOT", str(project))
    out = tmp_path / "results"
    common = ["--datasets", "digits", "--seeds", "3", "--preset", "smoke", "--out", str(out), "--no-progress",
              "--jobs", "1"]
    assert cli.main(["all", *common]) == 0
    assert (out / "published" / "figures" / "accuracy_digits_smoke.png").is_file()  # `all` draws figures too
    assert answer_row((out / "published" / "REPORT.md").read_text(), "fresh_method")  # and the report of those runs
    assert cli.main(["ablate", "fresh_method", "--param", "label_smoothing=0.0,0.1", *common]) == 0
    assert cli.main(["report", "--out", str(out)]) == 0
    text = whole_report(out / "published" / "REPORT.md")
    assert answer_row(text, "fresh_method") and "fresh_method with label_smoothing=0.0 (student)" in text
    assert "scratch · fresh_method student" in (out / "published" / "tables" / "summary.md").read_text()
    assert "fresh_method" in (out / "published" / "tables" / "summary.md").read_text()
    assert (out / "published" / "figures" / "curves_fresh_method_digits_smoke.png").is_file()
    assert (out / "published" / "figures" / "ablation_fresh_method_digits_smoke.png").is_file()
    assert_links_are_pngs(out, text, minimum=6)
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow
def test_all_methods_smoke_then_report(tmp_path):
    """The issue's acceptance run on the real project: every method and baseline, digits, 3 seeds, smoke."""
    out = tmp_path / "results"
    status = cli.main(["all", "--datasets", "digits", "--seeds", "3", "--preset", "smoke", "--out", str(out),
                       "--no-progress", "--jobs", "1"])
    assert cli.main(["report", "--out", str(out)]) == 0
    text = (out / "published" / "REPORT.md").read_text()
    assert_links_are_pngs(out, text, minimum=4)
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    for method in {r["method"] for r in records if r["status"] == "ok"}:
        assert method in text
    # exit 1 means a method failed: the report must then list it (the failure itself is the method's test's job)
    assert status == 0 or "## Runs that did not finish" in text


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    """test_tables' family store (kd with a teacher as good as its scratch student; mutual with an anchor near
    chance, a named field and its as-published run), published with what its methods declare."""
    out = tmp_path_factory.mktemp("declared")
    results = family_store(out)
    published = publish(Store(out), notebook_defects=FAMILY_DEFECTS, declarations=FAMILY_DECLARATIONS)
    return {"results": results, "report": whole_report(published.report),
            "md": (out / "published" / "tables" / "summary.md").read_text(),
            "summary": pd.read_csv(out / "published" / "tables" / "summary.csv")}


def test_the_answer_says_when_nothing_clearly_beats_its_scratch_student(declared):
    text, s = declared["report"], declared["summary"]
    kd = s[(s.method == "kd") & (s.variant == "default") & (s.dataset == "digits") & (s.metric == "test_acc")
           & (s.selection == "final")].iloc[0]
    opening = answer_paragraph(text, "digits")
    assert opening.startswith("**On digits, nothing clearly beats its scratch student:** no comparison is significant "
                              "after Holm's correction over the 3 distillation comparisons")
    assert (f"kd (student) is nominally better ({kd.delta_mean * 100:+.1f} pp, nominal p = {fmt_p(kd.p_value)}) but "
            f"unclear after correction (p (Holm) = {fmt_p(kd.p_holm)}).") in opening
    assert "mutual · views=halves (A) receives no distillation signal: it is shown as the method's anchor" in opening
    assert answer_paragraph(text, "mnist1d").startswith("**On mnist1d, kd (student) (")
    assert "beats its scratch student after Holm's correction over the 3 distillation comparisons" in text
    anchor = answer_row(text, "mutual · views=halves", "A")
    assert anchor[5] == "anchor: no distillation signal" and anchor[6:] == ["–"] * 6
    for where in (declared["md"], text):
        assert assert_verdicts_follow_holm(where) >= 2  # the mnist1d kd row, the views defect's rows


def test_rows_that_look_broken_say_why(declared):
    text, md, s = declared["report"], declared["md"], declared["summary"]
    final = s[(s.dataset == "digits") & (s.metric == "test_acc") & (s.selection == "final")]
    scratch = final[(final.method == "scratch_student") & (final.variant == "k=K")].iloc[0]
    teacher = final[final.method == "teacher"].iloc[0]
    assert teacher["mean"] == pytest.approx(scratch["mean"])
    note = (f"The teacher ({teacher['mean'] * 100:.1f}%) is no better than its student trained alone "
            f"({scratch['mean'] * 100:.1f}%): there is little for distillation to transfer.")
    anchor = final[(final.method == "mutual") & (final.variant == "default") & (final.role == "A")].iloc[0]
    chance = (f"{anchor['mean'] * 100:.1f}% is within 10 pp of chance (10.0%, 10 classes): it learned little or "
              "nothing here; `methods/mutual/README.md` says whether that is what the method is published to do.")
    for where in (text.split("## The answer", 1)[1].split("### mnist1d", 1)[0], md.split("## mnist1d")[0]):
        numbered = dict(re.findall(r"^\[(\d+)\] (.+)$", where.split("\n\n### Other variants")[0], re.M))
        by_text = {v: k for k, v in numbered.items()}
        assert note in by_text and chance in by_text
        assert f"[{by_text[note]}]" in table_row(where, "kd")[0]
        assert f"[{by_text[chance]}]" in table_row(where, "mutual · views=halves", "A")[0]
        assert any(t.startswith("Its runs are identical under views=pub") for t in by_text)
    main = md.split("## mnist1d")[0].split("\n\n### Other variants")[0]
    number = {v: k for k, v in re.findall(r"^\[(\d+)\] (.+)$", main, re.M)}[note]
    assert f"[{number}]" in table_row(main, "teacher", "teacher")[0]  # the teacher's row says it too


def test_the_as_published_run_sits_beside_the_named_default_in_the_main_table(declared):
    md = declared["md"]
    main = md.split("## digits (preset smoke)", 1)[1].split("### Other variants", 1)[0]
    labels = [re.sub(r" (\[\d+\])+$", "", line.strip("|").split("|")[0].strip()) for line in main.splitlines()
              if line.startswith("| mutual")]
    assert labels == ["mutual · views=halves"] * 3 + ["mutual · as published"] * 3
    published = table_row(main, "mutual · as published", "B")
    assert published[8] == "as published · mutual (m=2)"
    assert "mutual [views=pub]" not in main  # the defect run alone is not a main-table row
    assert table_row(md.split("### Other variants", 1)[1], "mutual [views=pub]", "B")[8] == "defects · mutual (m=2)"


def test_the_ablation_table_says_which_variants_repeat_the_default(declared):
    section = declared["report"].split("### mutual on digits", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "| A |" in line]
    assert len(rows) == 2  # the default, and the as-published run (another training split): never views=pub
    assert "anchor: no distillation signal (the same runs under views=pub)" in rows[0]


def test_the_answer_on_a_dataset_with_no_scratch_pair_yet_says_nothing_was_tested():
    """A suite still running: the default rows are there, their scratch students not yet. The answer says nothing
    was tested, not that "no comparison is significant after Holm's correction over the 0 comparisons"."""
    from benchmark.reporting import answer, families
    from benchmark.reporting.columns import FINAL_SEL, PRIMARY

    columns = pd.read_csv(ROOT / "results" / "published" / "tables" / "summary.csv", nrows=1).columns
    row = dict.fromkeys(columns, np.nan)
    block = pd.DataFrame([{**row, "preset": "quick", "dataset": "mnist_5k", "method": "js", "variant": "default",
                           "label": "js", "role": role, "selection": FINAL_SEL, "metric": PRIMARY,
                           "family": families.PRIMARY_FAMILY, "kind": "method", "config_kind": "default",
                           "anchor": False, "verdict": "", "verdict_nominal": "", "mean": 0.9, "n": 5,
                           "note": "no paired scratch_student run in the store"} for role in ("B", "C")])
    (first, *_) = answer.answer_sentences(block, "mnist_5k")
    assert first.startswith("**On mnist_5k, nothing is decided yet:** none of its 2 default distillation row(s)")
    assert "0 distillation comparisons" not in " ".join(answer.answer_sentences(block, "mnist_5k"))


def test_a_dataset_with_part_of_the_primary_family_says_its_verdicts_are_provisional():
    """Fashion-MNIST mid-suite: 2 of the 4 primary comparisons the other dataset made. Holm over 2 is less strict
    than over 4, so the answer says so with the complete family's first-step level; a complete dataset says
    nothing of it."""
    from benchmark.reporting import answer, families
    from benchmark.reporting.columns import FINAL_SEL, PRIMARY

    columns = pd.read_csv(ROOT / "results" / "published" / "tables" / "summary.csv", nrows=1).columns
    row = dict.fromkeys(columns, np.nan)

    def rows(dataset, methods):
        return [{**row, "preset": "quick", "dataset": dataset, "method": m, "variant": "default", "label": m,
                 "role": "student", "selection": FINAL_SEL, "metric": PRIMARY, "family": families.PRIMARY_FAMILY,
                 "kind": "method", "config_kind": "default", "anchor": False, "verdict": "unclear at this n",
                 "verdict_nominal": "unclear at this n", "mean": 0.9, "n": 5, "delta_mean": 0.001,
                 "p_value": 0.5, "p_holm": 1.0, "holm_m": len(methods)} for m in methods]

    summary = pd.DataFrame(rows("full", ["a", "b", "c", "d"]) + rows("part", ["a", "b"]))
    everywhere = answer.primary_comparisons(summary)
    assert everywhere == {"quick": {(m, "student") for m in "abcd"}}
    said = " ".join(answer.answer_sentences(summary[summary.dataset == "part"], "part", everywhere=everywhere["quick"]))
    assert ("Only 2 of the 4 primary comparisons made on the other datasets have run here so far" in said
            and "over 4, its first step is α = 0.05/4 = 0.0125" in said)
    full = " ".join(answer.answer_sentences(summary[summary.dataset == "full"], "full", everywhere=everywhere["quick"]))
    assert "provisional" not in full


def test_the_header_names_each_commit_whose_runs_came_from_a_tree_with_uncommitted_changes():
    from benchmark.reporting.report import dirty_clause
    clean = {"git_commit": "a" * 40, "git_dirty": False}
    provenance = [clean, clean, {"git_commit": "b" * 40, "git_dirty": True}, {"git_commit": "b" * 40,
                                                                             "git_dirty": False},
                  {"git_commit": "c" * 40, "git_dirty": True}, {}]
    assert dirty_clause(provenance) == (f" (at {'b' * 12}, 1 of its 2 runs; at {'c' * 12}, 1 of its 1 runs "
                                        "from a tree with uncommitted changes)")
    assert dirty_clause([clean, {}]) == ""
