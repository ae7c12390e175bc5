"""Tables, figures and REPORT.md on a store whose answers are known: run records are written directly, with
values drawn here, and every expected number is recomputed here with scipy. Method names are invented, so the
tests also show that any method in the store appears with no code change."""

import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from benchmark import cli
from benchmark.results.report import write_report
from benchmark.results.store import Store
from tests.conftest import ROOT

DATA = {"max_train": 600, "max_test": 500}
PNG = b"\x89PNG\r\n\x1a\n"


class StoreBuilder:
    def __init__(self, out):
        self.store = Store(out)
        self.count = 0

    def add(self, method, rep, *, roles, metrics, kind="method", variant="default", config=None, status="ok",
            finished="2025-01-01T00:00:00", error=None, step=1e-3, wall=2.0):
        self.count += 1
        record = {
            "run_id": f"r{self.count:04d}", "method": method, "kind": kind, "variant": variant,
            "dataset": "digits", "rep": rep, "base_seed": 0, "preset": "smoke", "config": config or {},
            "data": DATA, "source_hash": "abc", "seed": rep, "status": status, "error": error,
            "roles": {name: {"arch": "a", "view": "flat", "classifier": key != "label_free", "pair_key": key}
                      for name, key in roles.items()},
            "metrics": metrics, "timing": {"step_median_s": step * (1 + rep / 10), "step_iqr_s": step / 10},
            "wall_time_s": wall, "finished_at": finished, "provenance": {"git_commit": "0123456789abcdef"},
        }
        self.store.write_run(record)
        return record


def curve_rows(role, val, test):
    rows = []
    for epoch, (v, t) in enumerate(zip(val, test, strict=True)):
        rows += [[role, epoch, "val_acc", v], [role, epoch, "test_acc", t],
                 [role, epoch, "train_loss", 1 / (1 + epoch)]]
    return rows


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
              metrics=good_metrics + curve_rows("student", *v["good_curves"][r].T))
        b.add("good_method", r, variant="temperature=8.0", roles={"student": "K1"},
              config={"temperature": 8.0, "loss": "fixed"},
              metrics=[["student", -1, "test_acc", v["good_t8"][r]]])
        b.add("good_method", r, variant="loss=as_published", roles={"student": "K1"},
              config={"temperature": 4.0, "loss": "as_published"},
              metrics=[["student", -1, "test_acc", v["good_pub"][r]]])
    # a superseded, older run of good_method rep 0 with a wild value: must be left out
    b.add("good_method", 0, roles={"student": "K1"}, config={"temperature": 4.0, "loss": "fixed"},
          finished="2024-01-01T00:00:00", metrics=[["student", -1, "test_acc", 0.01]])
    # a second scratch architecture (K2) with three repetitions, and a method paired with it
    v["scratch2"] = np.array([0.70, 0.72, 0.71])
    v["noisy"] = v["scratch2"] + np.array([0.010, -0.012, 0.004])
    for r in range(3):
        b.add("scratch_student", r, kind="baseline", variant="arch=other", roles={"student": "K2"},
              config={"arch": "other"}, metrics=[["student", -1, "test_acc", v["scratch2"][r]]])
        b.add("noisy_method", r, roles={"student": "K2"},
              metrics=[["student", -1, "test_acc", v["noisy"][r]]])
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
        b.add("scheduled", r, roles={"A": "K1"}, metrics=[["A", -1, "test_acc", 0.8]]
              + [["A", e, "lambda", e / 3] for e in range(4)])
        b.add("orphan", r, roles={"student": "K9"}, metrics=[["student", -1, "test_acc", 0.5]])
    b.add("broken_method", 0, roles={}, metrics=[], status="failed", error="ValueError: on purpose")
    b.add("skipping_method", 0, roles={}, metrics=[], status="skipped", error="does not apply to digits")
    report, figures = write_report(out)
    summary = pd.read_csv(out / "tables" / "summary.csv")
    return {"out": out, "v": v, "report": report.read_text(), "figures": figures, "summary": summary}


def row(summary, method, metric="test_acc", selection="final", variant="default", role="student"):
    match = summary[(summary.method == method) & (summary.metric == metric) & (summary.selection == selection)
                    & (summary.variant == variant) & (summary.role == role)]
    assert len(match) == 1, (method, metric, selection, variant, role)
    return match.iloc[0]


def test_paired_delta_ci_and_p_values_match_scipy(known):
    v, s = known["v"], known["summary"]
    r = row(s, "good_method")
    diffs = v["good"] - v["scratch"]
    half = sps.t.ppf(0.975, 6) * diffs.std(ddof=1) / math.sqrt(7)
    assert (r.n, r.pair_n) == (7, 7)  # the superseded run is not an eighth repetition
    assert r["mean"] == pytest.approx(v["good"].mean())
    assert r.delta_mean == pytest.approx(diffs.mean())
    assert (r.delta_ci_low, r.delta_ci_high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert r.p_ttest == pytest.approx(sps.ttest_rel(v["good"], v["scratch"]).pvalue)
    assert r.p_wilcoxon == pytest.approx(sps.wilcoxon(v["good"], v["scratch"]).pvalue)
    assert r.delta_vs == "scratch_student"


def test_pairing_follows_pair_key_not_the_default_scratch(known):
    v, s = known["v"], known["summary"]
    r = row(s, "noisy_method")
    assert r.pair_n == 3 and r.delta_vs == "scratch_student [arch=other]"
    assert r.p_ttest == pytest.approx(sps.ttest_rel(v["noisy"], v["scratch2"]).pvalue)
    assert math.isnan(r.p_wilcoxon) and "Wilcoxon needs" in r.note
    orphan = row(s, "orphan")
    assert orphan.pair_n == 0 and "no paired scratch_student run" in orphan.note
    assert pd.isna(row(s, "teacher", role="teacher").delta_vs)


def test_validation_selected_is_test_accuracy_at_best_validation_epoch(known):
    v, s = known["v"], known["summary"]

    def selected(curves):
        return np.array([c[np.argmax(c[:, 0]), 1] for c in curves])

    good, scratch = selected(v["good_curves"]), selected(v["scratch_curves"])
    r = row(s, "good_method", selection="val_selected")
    assert r["mean"] == pytest.approx(good.mean())
    assert r.delta_mean == pytest.approx((good - scratch).mean())
    assert r.p_ttest == pytest.approx(sps.ttest_rel(good, scratch).pvalue)


def test_holm_across_the_table_family(known):
    s = known["summary"]
    family = s[(s.metric == "test_acc") & (s.selection == "final") & s.p_ttest.notna()]
    p = family.p_ttest.to_numpy()
    m = len(p)
    order = np.argsort(p)
    expected = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        expected[i] = running
    assert m >= 4 and (family.holm_m == m).all()
    assert family.p_holm.to_numpy() == pytest.approx(expected)
    assert (family.significant == (family.p_holm < 0.05)).all()


def test_label_free_probes_against_their_untrained_control(known):
    v, s = known["v"], known["summary"]
    r = row(s, "label_free", metric="probe_acc", role="layer1")
    diffs = v["probe"][:, 0] - v["probe_untrained"][:, 0]
    assert r.delta_vs == "probe_acc_untrained (same run)" and r.pair_n == 3
    assert r.delta_mean == pytest.approx(diffs.mean())
    assert r.p_ttest == pytest.approx(sps.ttest_rel(v["probe"][:, 0], v["probe_untrained"][:, 0]).pvalue)
    md = (known["out"] / "tables" / "summary.md").read_text()
    assert "| probe_acc ± 95% CI | probe_acc_untrained ± 95% CI |" in md
    assert re.search(r"\| label_free \| default \| layer1 \| 3 \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \|", md)


def test_ablation_table_against_the_default_variant(known):
    v = known["v"]
    a = pd.read_csv(known["out"] / "tables" / "ablations.csv")
    good = a[a.method == "good_method"]
    assert {"param.temperature", "param.loss"} <= set(a.columns)
    t8 = good[good.variant == "temperature=8.0"].iloc[0]
    assert t8["param.temperature"] == 8.0 and t8.changed == "temperature=8.0"
    assert t8.vs_default_delta_mean == pytest.approx((v["good_t8"] - v["good"]).mean())
    assert t8.vs_default_p_ttest == pytest.approx(sps.ttest_rel(v["good_t8"], v["good"]).pvalue)
    assert set(a.method) == {"good_method"}  # baselines' variants are pairing partners, not ablations


def test_report_sentences_say_what_the_numbers_show(known):
    v, text = known["v"], known["report"]
    diffs = (v["good"] - v["scratch"]) * 100
    half = sps.t.ppf(0.975, 6) * diffs.std(ddof=1) / math.sqrt(7)
    assert (f"good_method (student) beats scratch on digits by {diffs.mean():+.1f} pp, 95% CI "
            f"[{diffs.mean() - half:.1f}, {diffs.mean() + half:.1f}], n=7") in text
    noisy = (v["noisy"] - v["scratch2"]) * 100
    lo, hi = sps.t.interval(0.95, 2, loc=noisy.mean(), scale=noisy.std(ddof=1) / math.sqrt(3))
    assert lo < 0 < hi
    assert "noisy_method (student) shows no detectable difference from scratch on digits" in text
    pub = (v["good_pub"] - v["good"]) * 100
    assert ("good_method with loss=as_published (student) falls behind the default on digits: "
            f"{pub.mean():+.1f} pp") in text
    assert "orphan (student) on digits: no paired scratch_student run in the store." in text
    assert "| failed | broken_method |" in text and "| skipped | skipping_method |" in text
    for name in ("good_method", "noisy_method", "label_free", "scheduled"):
        assert name in text


def test_every_figure_is_drawn_and_linked(known):
    out, text, figures = known["out"], known["report"], known["figures"]
    assert figures.errors == []
    kinds = {f.kind for f in figures.files}
    assert kinds == {"accuracy", "forest", "cost", "step_time", "curves", "ablation", "heatmap", "outputs",
                     "schedule"}
    names = {f.path.name for f in figures.files}
    assert {"curves_good_method_digits_smoke.png", "heatmap_label_free_digits_smoke.png",
            "outputs_label_free_digits_smoke.png", "ablation_good_method_temperature_digits_smoke.png",
            "ablation_good_method_loss_digits_smoke.png", "schedule_digits_smoke.png"} <= names
    assert_links_are_pngs(out, text, minimum=len(figures.files))


def assert_links_are_pngs(out, text, minimum=1):
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= minimum
    for link in links:
        path = out / link
        assert path.is_file() and path.stat().st_size > 1000, link
        assert path.read_bytes()[:8] == PNG, link


def test_figures_skip_cleanly_without_their_data(tmp_path):
    b = StoreBuilder(tmp_path)
    for r in range(2):
        b.add("scratch_student", r, kind="baseline", roles={"student": "K1"},
              metrics=[["student", -1, "test_acc", 0.8 + r / 100]])
    assert cli.main(["figures", "--out", str(tmp_path)]) == 0
    drawn = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert drawn == ["accuracy_digits_smoke.png", "cost_digits_smoke.png", "step_time_digits_smoke.png"]
    stale = tmp_path / "figures" / "heatmap_gone_digits_smoke.png"
    stale.write_bytes(PNG)
    report, _ = write_report(tmp_path)
    assert not stale.exists()  # a figure whose data left the store is not kept
    assert "No paired comparison" in report.read_text()


def test_store_with_only_failed_runs_still_reports(tmp_path):
    StoreBuilder(tmp_path).add("m", 0, roles={}, metrics=[], status="failed", error="boom")
    report, figures = write_report(tmp_path)
    text = report.read_text()
    assert "No successful runs" in text and "| failed | m |" in text and figures.files == []


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
    assert (out / "figures" / "accuracy_digits_smoke.png").is_file()  # `all` draws figures too
    assert cli.main(["ablate", "fresh_method", "--param", "label_smoothing=0.0,0.1", *common]) == 0
    assert cli.main(["report", "--out", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    assert "fresh_method (student)" in text and "fresh_method with label_smoothing=0.0 (student)" in text
    assert "fresh_method" in (out / "tables" / "summary.md").read_text()
    assert (out / "figures" / "curves_fresh_method_digits_smoke.png").is_file()
    assert (out / "figures" / "ablation_fresh_method_label_smoothing_digits_smoke.png").is_file()
    assert_links_are_pngs(out, text, minimum=6)
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow
def test_all_methods_smoke_then_report(tmp_path):
    """The issue's acceptance run on the real project: every method and baseline, digits, 3 seeds, smoke."""
    out = tmp_path / "results"
    status = cli.main(["all", "--datasets", "digits", "--seeds", "3", "--preset", "smoke", "--out", str(out),
                       "--no-progress", "--jobs", "1"])
    assert cli.main(["report", "--out", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    assert_links_are_pngs(out, text, minimum=4)
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    for method in {r["method"] for r in records if r["status"] == "ok"}:
        assert method in text
    # exit 1 means a method failed: the report must then list it (the failure itself is the method's test's job)
    assert status == 0 or "## Runs that did not finish" in text
