"""What the tables compute beyond ``stats.paired``, against independent computations: Holm's correction over each
comparison's p-value (written out by hand here), intervals and p-values of paired differences (scipy, brute-force
sign enumeration), and the edge cases a small benchmark meets: zero variance, n = 2, ties, all-zero differences,
a family of one. Also the readable scratch labels, the pairing marks, the Δ-vs-default of ablations and the
matching of notebook defects to their variants."""

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from benchmark.reporting import stats
from benchmark.reporting.ablations import defect_frame
from benchmark.reporting.columns import ABLATION_FAMILY, INIT, ORDER, VS_DEFAULT
from benchmark.reporting.frames import add_holm, load_results, pairing_of
from benchmark.reporting.stats import holm_within
from benchmark.reporting.tables import summary_markdown
from benchmark.reporting.text import (
    arch_text,
    comparison,
    fmt_delta,
    mde_sentence,
    mde_short,
    same_level,
    scratch_labels,
    verdict_text,
)
from benchmark.store import Store, run_id_of

TEST_SIZE = 360
DATA = {"max_train": 600, "max_test": 500}


class StoreBuilder:
    """Run records written straight into a store, with every field a table reads and the run id their identity
    fields hash to (test_report uses it too)."""

    def __init__(self, out):
        self.store = Store(out)
        self.count = 0

    def add(self, method, rep, *, roles, metrics, kind="method", variant="default", config=None, status="ok",
            finished="2025-01-01T00:00:00", error=None, step=1e-3, wall=2.0, pairing="init", arch="a",
            dataset="digits", source="abc"):
        """``roles``: {role: pair_key}; ``pairing`` and ``arch``: one value for every role, or {role: value}."""
        self.count += 1

        def per_role(value, name):
            return value.get(name) if isinstance(value, dict) else value

        record = {
            "method": method, "kind": kind, "variant": variant,
            "dataset": dataset, "rep": rep, "base_seed": 0, "preset": "smoke", "config": config or {},
            "data": DATA, "source_hash": source, "seed": rep, "status": status, "error": error,
            "roles": {name: {"arch": per_role(arch, name), "view": "flat", "classifier": key != "label_free",
                             "pair_key": key, "pairing": per_role(pairing, name)}
                      for name, key in roles.items()},
            "metrics": metrics, "timing": {"step_median_s": step * (1 + rep / 10), "step_iqr_s": step / 10},
            "wall_time_s": wall, "finished_at": finished, "provenance": {"git_commit": "0123456789abcdef"},
        }
        record["run_id"] = run_id_of(record)
        assert not self.store.run_path(record["run_id"]).exists(), "two records of one run"
        self.store.write_run(record)
        return record


def holm_by_hand(p):
    """Holm's step-down adjustment written out: sort, scale by (m - rank), running maximum, cap at 1."""
    p = np.asarray(p, dtype=float)
    finite = [i for i in range(len(p)) if np.isfinite(p[i])]
    order = sorted(finite, key=lambda i: p[i])
    out, running, m = np.full(len(p), np.nan), 0.0, len(finite)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out




def brute_force_signflip(integer_diffs):
    """Every one of the 2^n sign assignments of integer differences (test images), in exact arithmetic."""
    observed = abs(sum(integer_diffs))
    signs = list(itertools.product((1, -1), repeat=len(integer_diffs)))
    return sum(abs(sum(s * d for s, d in zip(sign, integer_diffs, strict=True))) >= observed
               for sign in signs) / len(signs)


# ---- Holm ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p, expected", [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),  # by hand: 4·0.005, 3·0.01, max(2·0.03, ·), 1·0.04→0.06
    ([0.02, 0.02, 0.04], [0.06, 0.06, 0.06]),  # ties: 3·0.02, then the running maximum
    ([0.03], [0.03]),  # a family of one is not corrected
    ([0.5, np.nan, 0.01], [0.5, np.nan, 0.02]),  # a missing p-value is not a comparison: m = 2
    ([0.6, 0.9], [1.0, 1.0]),  # capped at 1
])
def test_holm_within_one_family_on_hand_computed_values(p, expected):
    frame = pd.DataFrame({"g": "x", "p_value": p})
    adjusted, m = holm_within(frame, ["g"])
    assert adjusted.to_numpy() == pytest.approx(np.asarray(expected, dtype=float), nan_ok=True)
    assert (m == int(np.isfinite(p).sum())).all()


def test_holm_within_separate_families_matches_the_step_down_written_out():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"metric": rng.choice(["a", "b", "c"], 40), "selection": rng.choice(["f", "v"], 40),
                          "p_value": rng.uniform(0, 0.2, 40)})
    frame.loc[rng.choice(40, 5, replace=False), "p_value"] = np.nan
    adjusted, m = holm_within(frame, ["metric", "selection"])
    for _, idx in frame.groupby(["metric", "selection"]).groups.items():
        p = frame.loc[idx, "p_value"].to_numpy()
        assert adjusted.loc[idx].to_numpy() == pytest.approx(holm_by_hand(p), nan_ok=True)
        assert (m.loc[idx] == np.isfinite(p).sum()).all()


def test_add_holm_corrects_p_value_not_the_t_test():
    """A zero-variance comparison has no t-test: its sign-flip p-value is in the family all the same."""
    frame = pd.DataFrame({"metric": "test_acc", "selection": "final", "p_ttest": [0.01, np.nan, 0.04, np.nan],
                          "p_value": [0.01, 0.25, 0.04, np.nan]})
    out = add_holm(frame)
    assert list(out.holm_m) == [3, 3, 3, 3]
    assert out.p_holm.to_numpy() == pytest.approx(holm_by_hand([0.01, 0.25, 0.04, np.nan]), nan_ok=True)
    assert list(out.significant) == [True, False, False, False]


# ---- paired comparisons in the summary ---------------------------------------------------------------------

def store_of_diffs(tmp_path, cases: dict[str, list[int]]):
    """One scratch student and, per case, a method whose test accuracy differs from it by the given numbers of
    test images in each repetition; all paired on one key."""
    b = StoreBuilder(tmp_path)
    reps = max(len(d) for d in cases.values())
    scratch = [200 + 7 * r for r in range(reps)]
    for r in range(reps):
        b.add("scratch_student", r, kind="baseline", roles={"student": "K"},
              metrics=[["student", -1, "test_acc", scratch[r] / TEST_SIZE]])
    for method, diffs in cases.items():
        for r, d in enumerate(diffs):
            b.add(method, r, roles={"student": "K"}, arch="m_mlp",
                  metrics=[["student", -1, "test_acc", (scratch[r] + d) / TEST_SIZE]])
    return load_results(Store(tmp_path))


def summary_row(results, method):
    s = results.summary
    match = s[(s.method == method) & (s.metric == "test_acc") & (s.selection == "final")]
    assert len(match) == 1
    return match.iloc[0]


CASES = {"two": [3, 8], "two_equal": [5, 5], "zeros": [0, 0, 0], "ties": [1, 1, 2, -1, 1], "constant5": [2] * 5,
         "single": [4]}


@pytest.fixture(scope="module")
def diffs_results(tmp_path_factory):
    return store_of_diffs(tmp_path_factory.mktemp("diffs"), CASES)


def test_n_two_has_a_one_degree_of_freedom_t_interval(diffs_results):
    r = summary_row(diffs_results, "two")
    d = np.array(CASES["two"]) / TEST_SIZE
    lo, hi = sps.t.interval(0.95, 1, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(2))
    assert (r.delta_ci_low, r.delta_ci_high) == pytest.approx((lo, hi))
    assert r.p_value == pytest.approx(sps.ttest_1samp(d, 0).pvalue) and r.p_value_test == "t-test"
    assert r.p_signflip == pytest.approx(brute_force_signflip(CASES["two"]))
    assert math.isfinite(r.mde) and r.verdict == stats.UNCLEAR


@pytest.mark.parametrize("method", ["two_equal", "constant5", "zeros"])
def test_zero_variance_has_no_interval_and_the_sign_flip_p(diffs_results, method):
    r = summary_row(diffs_results, method)
    diffs = CASES[method]
    assert math.isnan(r.delta_ci_low) and math.isnan(r.delta_ci_high) and math.isnan(r.p_ttest)
    assert r.p_value_test == "sign-flip" and r.p_value == pytest.approx(brute_force_signflip(diffs))
    assert r.verdict == stats.UNCLEAR  # 2/2^5 = 0.0625 is still above 0.05
    cell = fmt_delta(r, "test_acc")
    assert f"no interval: all {len(diffs)} differences equal" in cell and "[" not in cell
    c = comparison(r)
    assert mde_short(c, "test_acc") == "none (no spread)"
    assert "no minimum detectable difference" in mde_sentence(c, "test_acc")


def test_ties_use_the_t_test_and_the_exact_sign_flip(diffs_results):
    r = summary_row(diffs_results, "ties")
    d = np.array(CASES["ties"]) / TEST_SIZE
    assert r.p_value == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    assert r.p_signflip == pytest.approx(brute_force_signflip(CASES["ties"]))
    assert math.isnan(r.p_wilcoxon)  # five non-zero differences: below the six it needs


def test_a_single_pair_has_no_interval_no_test_and_says_why(diffs_results):
    r = summary_row(diffs_results, "single")
    assert r.pair_n == 1 and math.isnan(r.p_value) and math.isnan(r.p_holm)
    assert fmt_delta(r, "test_acc") == "+1.11, n=1: no interval"
    assert mde_short(comparison(r), "test_acc") == "none (n<2)"


def test_the_summary_family_holm_is_over_p_value(diffs_results):
    s = diffs_results.summary
    family = s[(s.metric == "test_acc") & (s.selection == "final")]
    assert family.p_holm.to_numpy() == pytest.approx(holm_by_hand(family.p_value.to_numpy()), nan_ok=True)
    assert (family.holm_m == family.p_value.notna().sum()).all()


def test_no_zero_width_interval_in_the_markdown(diffs_results):
    md = summary_markdown(diffs_results.summary)
    assert not re.search(r"\[([+-]?[\d.]+), \1\]", md)
    assert len(re.findall(r"\| [+-][\d.]+, no interval: all \d differences equal \|", md)) == 3


def test_a_family_of_one_comparison_is_its_own_holm(tmp_path):
    results = store_of_diffs(tmp_path, {"only": [1, 4, 2]})
    r = summary_row(results, "only")
    assert r.holm_m == 1 and r.p_holm == pytest.approx(r.p_value)


# ---- words -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("verdict, metric, expected", [
    (stats.HIGHER, "test_acc", "beats scratch"), (stats.LOWER, "test_acc", "worse than scratch"),
    (stats.HIGHER, "test_nll", "worse than scratch"), (stats.LOWER, "test_ece", "beats scratch"),
    (stats.UNCLEAR, "test_acc", "unclear at this n"), ("", "test_acc", "unclear at this n")])
def test_verdict_words(verdict, metric, expected):
    assert verdict_text(verdict, "scratch", metric) == expected


def test_mde_sentence_in_pp():
    c = {"n": 5, "mde": 0.0123, "mde_note": ""}
    assert mde_sentence(c, "test_acc").startswith("it could have detected |Δ| ≥ 1.23 pp at 80% power")


@pytest.mark.parametrize("arch, method, role, expected", [
    ("js_cnn", "js_entanglement", "A", "CNN"), ("js_mlp_b", "js_entanglement", "B", "MLP"),
    ("hinton_student", "hinton_kd", "student", ""), ("subclass_mlp", "subclass_kd", "student", "MLP"),
    (None, "m", "r", "")])
def test_arch_text(arch, method, role, expected):
    assert arch_text(arch, method, role) == expected


def test_pairing_of_a_group():
    assert pairing_of(pd.DataFrame({"pairing": [INIT, INIT]})) == INIT
    assert pairing_of(pd.DataFrame({"pairing": [INIT, ORDER]})) == ORDER
    assert pairing_of(pd.DataFrame({"pairing": [INIT, None]})) == ""


def test_same_level():
    assert same_level(4, "4.0") and same_level(False, "False") and same_level(["a", 2], "ax2")
    assert not same_level(True, "1") and not same_level("as_published", "official")


# ---- scratch labels ---------------------------------------------------------------------------------------

def test_scratch_labels():
    current = pd.DataFrame([
        ("s1", "scratch_student", "arch=js_cnn", "quick", "digits"), ("s2", "scratch_student", "arch=v", "quick",
                                                                      "digits"),
        ("s3", "scratch_student", "lonely", "quick", "digits"), ("s4", "scratch_student", "twin", "quick", "digits"),
        ("m1", "js_entanglement", "default", "quick", "digits"),
        ("m2", "js_entanglement", "views=as_published", "quick", "digits"),
        ("m3", "js_entanglement", "phase2=none", "quick", "digits"),
        ("m4", "kd", "default", "quick", "digits"), ("m5", "kd", "default", "quick", "digits")],
        columns=["run_id", "method", "variant", "preset", "dataset"])
    roles = pd.DataFrame([
        ("s1", "student", "js_cnn", "KA"), ("s2", "student", "js_mlp_b", "KV"), ("s3", "student", "x", "KL"),
        ("s4", "student", "kd_mlp", "KT"),
        ("m1", "A", "js_cnn", "KA"), ("m2", "A", "js_cnn", "KA"), ("m2", "B", "js_mlp_b", "KV"),
        ("m3", "A", "js_cnn", "KA"), ("m4", "student", "kd_mlp", "KT2"), ("m5", "student", "kd_mlp", "KT")],
        columns=["run_id", "role", "arch", "pair_key"])
    labels = scratch_labels(current, roles)
    assert labels[("quick", "digits", "arch=js_cnn")] == "scratch · js_entanglement A (CNN)"  # default preferred
    assert labels[("quick", "digits", "arch=v")] == "scratch · js_entanglement [views=as_published] B (MLP)"
    assert labels[("quick", "digits", "lonely")] == "scratch_student [lonely]"
    assert labels[("quick", "digits", "twin")] == "scratch · kd student (MLP)"


def test_two_scratch_configurations_with_one_name_keep_their_config():
    current = pd.DataFrame([("s1", "scratch_student", "lr=1", "q", "d"), ("s2", "scratch_student", "lr=2", "q", "d"),
                            ("m1", "kd", "default", "q", "d")],
                           columns=["run_id", "method", "variant", "preset", "dataset"])
    roles = pd.DataFrame([("s1", "student", "kd_mlp", "K1"), ("s2", "student", "kd_mlp", "K2"),
                          ("m1", "student", "kd_mlp", "K1"), ("m1", "B", "kd_mlp", "K2")],
                         columns=["run_id", "role", "arch", "pair_key"])
    labels = scratch_labels(current, roles)
    assert labels[("q", "d", "lr=1")] == "scratch · kd student (MLP)"
    assert labels[("q", "d", "lr=2")] == "scratch · kd B (MLP)"
    roles.loc[3, "role"] = "student"  # the same role name under another recipe
    roles.loc[3, "run_id"] = "m1"
    current.loc[len(current)] = ("m2", "kd", "default", "q", "d")
    roles.loc[3, "run_id"] = "m2"
    labels = scratch_labels(current, roles)
    assert labels[("q", "d", "lr=1")] == "scratch · kd student (MLP) [lr=1]"
    assert labels[("q", "d", "lr=2")] == "scratch · kd student (MLP) [lr=2]"


# ---- ablations and notebook defects --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ablated(tmp_path_factory):
    """Method m, 4 repetitions, on two datasets: its default, one-factor variants, a variant identical in
    outcome to the default (zero variance), two declared defects alone and together, and a defect at a numeric
    level stored as a float."""
    out = tmp_path_factory.mktemp("ablated")
    b = StoreBuilder(out)
    rng = np.random.default_rng(3)
    base = {"t": True, "w": "fixed", "k": 4.0, "u": 0}
    variants = {"default": {}, "t=False": {"t": False}, "w=as_published": {"w": "as_published"},
                "t=False,w=as_published": {"t": False, "w": "as_published"}, "k=2.0": {"k": 2.0},
                "u=1": {"u": 1}, "t=False,u=1": {"t": False, "u": 1}}
    values = {}
    for dataset in ("digits", "mnist1d"):
        for name, change in variants.items():
            shift = {"default": 0, "u=1": 0}.get(name, rng.normal(0, 0.02))
            values[(dataset, name)] = 0.8 + np.arange(4) / 100 + shift + (
                0 if name in ("default", "u=1") else rng.normal(0, 0.005, 4))
            for r in range(4):
                b.add("m", r, variant=name, dataset=dataset, roles={"student": None},
                      config={**base, **change}, metrics=[["student", -1, "test_acc", values[(dataset, name)][r]]])
    return load_results(Store(out)), values


def test_each_variant_against_the_default_of_its_dataset(ablated):
    results, values = ablated
    a = results.ablations
    assert set(a.dataset) == {"digits", "mnist1d"}
    for dataset in ("digits", "mnist1d"):
        for variant in ("t=False", "k=2.0", "t=False,w=as_published"):
            r = a[(a.dataset == dataset) & (a.variant == variant)].iloc[0]
            d = values[(dataset, variant)] - values[(dataset, "default")]
            assert r.vs_default_delta_mean == pytest.approx(d.mean())
            lo, hi = sps.t.interval(0.95, 3, loc=d.mean(), scale=d.std(ddof=1) / 2)
            assert (r.vs_default_delta_ci_low, r.vs_default_delta_ci_high) == pytest.approx((lo, hi))
            assert r.vs_default_p_value == pytest.approx(sps.ttest_rel(values[(dataset, variant)],
                                                                       values[(dataset, "default")]).pvalue)
    same = a[(a.dataset == "digits") & (a.variant == "u=1")].iloc[0]
    assert math.isnan(same.vs_default_delta_ci_low) and same.vs_default_p_value_test == "sign-flip"
    assert same.vs_default_p_value == 1.0 and same.vs_default_verdict == stats.UNCLEAR
    c = comparison(same, prefix=VS_DEFAULT, n=VS_DEFAULT + "n")
    assert fmt_delta(None, "test_acc", c) == "+0.00, no interval: all 4 differences equal"


def test_ablation_holm_families(ablated):
    a = ablated[0].ablations
    others = a[a.variant != "default"]
    for _, idx in others.groupby(ABLATION_FAMILY).groups.items():
        p = others.loc[idx, VS_DEFAULT + "p_value"].to_numpy()
        assert others.loc[idx, VS_DEFAULT + "p_holm"].to_numpy() == pytest.approx(holm_by_hand(p))
        assert (others.loc[idx, VS_DEFAULT + "holm_m"] == 6).all()


def test_defects_match_the_variant_that_changes_only_them(ablated):
    a = ablated[0].ablations
    frame = defect_frame(a, {"m": {"t": (False, "no T²"), "w": ("as_published", "notebook's w"),
                                   "k": (2, "k at the notebook's 2"), "z": ("x", "never run")}})
    digits = frame[frame.dataset == "digits"].set_index("field")
    # t=False alone, not t=False,u=1 (more fields) nor t=False,w=as_published (another defect too)
    assert digits.loc["t", "variant"] == "t=False" and digits.loc["w", "variant"] == "w=as_published"
    assert digits.loc["k", "variant"] == "k=2.0"  # the level 2 is the stored 2.0
    assert pd.isna(digits.loc["z", "variant"])
    assert digits.loc["t", "description"] == "no T²"
    assert set(frame.dataset) == {"digits", "mnist1d"}
