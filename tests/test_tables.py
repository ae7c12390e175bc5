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

from benchmark.reporting import families, stats
from benchmark.reporting.ablations import defect_frame
from benchmark.reporting.columns import ABLATION_FAMILY, INIT, ORDER, VS_DEFAULT
from benchmark.reporting.families import Declarations
from benchmark.reporting.frames import load_results, pairing_of, planned_by_defaults
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
    verdict_words,
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
            dataset="digits", source="abc", undistilled=(), requires=None):
        """``roles``: {role: pair_key}; ``pairing`` and ``arch``: one value for every role, or {role: value};
        ``undistilled``: roles recorded with ``distilled: false`` (the others' records do not say, as older
        records do not); ``requires``: {name: run_id} of the runs this one loads."""
        self.count += 1

        def per_role(value, name):
            return value.get(name) if isinstance(value, dict) else value

        record = {
            "method": method, "kind": kind, "variant": variant,
            "dataset": dataset, "rep": rep, "base_seed": 0, "preset": "smoke", "config": config or {},
            "data": DATA, "source_hash": source, "seed": rep, "status": status, "error": error,
            "roles": {name: {"arch": per_role(arch, name), "view": "flat", "classifier": key != "label_free",
                             "pair_key": key, "pairing": per_role(pairing, name),
                             **({"distilled": False} if name in undistilled else {})}
                      for name, key in roles.items()},
            "requires": requires or {},
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


def test_correct_is_holm_over_p_value_within_each_family_and_the_verdict_follows_it():
    """A zero-variance comparison has no t-test: its sign-flip p-value is in its family all the same. Families are
    per dataset and preset; the verdict is the nominal one only where p (Holm) < α."""
    frame = pd.DataFrame({
        "preset": "q", "dataset": ["d", "d", "d", "d", "e"], "family": ["primary"] * 4 + ["primary"],
        "p_ttest": [0.01, np.nan, 0.04, np.nan, 0.04], "p_value": [0.01, 0.25, 0.04, np.nan, 0.04],
        "verdict": [stats.HIGHER, stats.UNCLEAR, stats.LOWER, stats.UNCLEAR, stats.LOWER]})
    out = families.correct(frame)
    assert list(out.holm_m) == [3, 3, 3, 3, 1]  # dataset e is a family of its own
    assert out.p_holm[:4].to_numpy() == pytest.approx(holm_by_hand([0.01, 0.25, 0.04, np.nan]), nan_ok=True)
    assert out.p_holm[4] == pytest.approx(0.04)
    # 0.04 is nominally significant on d, but 0.04 · 2 = 0.08 after correction: not "lower" any more
    assert list(out.verdict) == [stats.HIGHER, stats.UNCLEAR, stats.UNCLEAR, stats.UNCLEAR, stats.LOWER]
    assert list(out.verdict_nominal) == list(frame.verdict)


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
    family = s[(s.metric == "test_acc") & (s.selection == "final") & (s.method != "scratch_student")]
    assert set(family.family) == {families.PRIMARY_FAMILY}  # every method's default, one role each
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
    outcome to the default (u=1: shown once), one that moves every repetition by the same amount (zero variance),
    two declared defects alone and together, and a defect at a numeric level stored as a float."""
    out = tmp_path_factory.mktemp("ablated")
    b = StoreBuilder(out)
    rng = np.random.default_rng(3)
    base = {"t": True, "w": "fixed", "k": 4.0, "u": 0}
    variants = {"default": {}, "t=False": {"t": False}, "w=as_published": {"w": "as_published"},
                "t=False,w=as_published": {"t": False, "w": "as_published"}, "k=2.0": {"k": 2.0},
                "u=1": {"u": 1}, "u=2": {"u": 2}, "t=False,u=1": {"t": False, "u": 1}}
    values = {}
    for dataset in ("digits", "mnist1d"):
        default = 0.8 + np.arange(4) / 100
        for name, change in variants.items():
            values[(dataset, name)] = {"default": default, "u=1": default, "u=2": default + 1 / 360}.get(
                name, default + rng.normal(0, 0.02) + rng.normal(0, 0.005, 4))
            for r in range(4):
                b.add("m", r, variant=name, dataset=dataset, roles={"student": None},
                      config={**base, **change}, metrics=[["student", -1, "test_acc", values[(dataset, name)][r]]])
    return load_results(Store(out)), values, out


def test_each_variant_against_the_default_of_its_dataset(ablated):
    results, values, _ = ablated
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
    same = a[(a.dataset == "digits") & (a.variant == "u=2")].iloc[0]
    assert math.isnan(same.vs_default_delta_ci_low) and same.vs_default_p_value_test == "sign-flip"
    assert same.vs_default_p_value == pytest.approx(2 / 2**4) and same.vs_default_verdict == stats.UNCLEAR
    c = comparison(same, prefix=VS_DEFAULT, n=VS_DEFAULT + "n")
    assert fmt_delta(None, "test_acc", c) == "+0.28, no interval: all 4 differences equal"


def test_a_role_identical_under_another_variant_is_shown_once(ablated):
    """u=1 changes nothing this role computes: every final metric of every repetition equals the default's."""
    results, _, _ = ablated
    assert results.identical == {("smoke", d, "m", "u=1", "student"): "default" for d in ("digits", "mnist1d")}
    s, a = results.summary, results.ablations
    assert "u=1" not in set(s.variant) and "u=1" not in set(a.variant)
    default = s[(s.variant == "default") & (s.dataset == "digits")].iloc[0]
    assert default.identical_in == "u=1"
    assert set(a.variant) >= {"u=2", "t=False,u=1"}  # a different outcome is never merged


def test_ablation_holm_families(ablated):
    """Without declarations every variant is an ablation: one family per method, dataset and metric, over
    every variant shown (u=1 is not: it repeats the default)."""
    a = ablated[0].ablations
    others = a[a.variant != "default"]
    assert set(others[VS_DEFAULT + "family"]) == {"ablations vs default · m"}
    for _, idx in others.groupby(ABLATION_FAMILY).groups.items():
        p = others.loc[idx, VS_DEFAULT + "p_value"].to_numpy()
        assert others.loc[idx, VS_DEFAULT + "p_holm"].to_numpy() == pytest.approx(holm_by_hand(p))
        assert (others.loc[idx, VS_DEFAULT + "holm_m"] == 6).all()


DECLARED = {"m": {"t": (False, "no T²"), "w": ("as_published", "notebook's w"), "k": (2, "k at the notebook's 2"),
                  "z": ("x", "never run")}}


def test_defects_match_the_variant_that_changes_only_them(ablated):
    results = load_results(Store(ablated[2]), Declarations.of(notebook_defects=DECLARED))
    frame = defect_frame(results.ablations, DECLARED)
    digits = frame[frame.dataset == "digits"].set_index("field")
    # t=False alone, not t=False,u=1 (more fields) nor t=False,w=as_published (another defect too)
    assert digits.loc["t", "variant"] == "t=False" and digits.loc["w", "variant"] == "w=as_published"
    assert digits.loc["k", "variant"] == "k=2.0"  # the level 2 is the stored 2.0
    assert pd.isna(digits.loc["z", "variant"])
    assert digits.loc["t", "description"] == "no T²"
    assert set(frame.dataset) == {"digits", "mnist1d"}


def test_defects_and_ablations_are_families_of_their_own(ablated):
    """With the defects declared, the three variants that run one defect alone are one family per method and
    dataset; the other variants another."""
    results = load_results(Store(ablated[2]), Declarations.of(notebook_defects=DECLARED))
    kinds = {k[3]: kind for k, kind in results.kinds.items() if k[1] == "digits"}
    assert kinds == {"default": families.DEFAULT, "t=False": families.DEFECT, "w=as_published": families.DEFECT,
                     "k=2.0": families.DEFECT, "t=False,w=as_published": families.ABLATION,
                     "u=1": families.ABLATION, "u=2": families.ABLATION, "t=False,u=1": families.ABLATION}
    a = results.ablations[(results.ablations.dataset == "digits") & (results.ablations.variant != "default")]
    sizes = a.groupby(VS_DEFAULT + "family")[VS_DEFAULT + "holm_m"].agg(set).to_dict()
    assert sizes == {"defects vs default · m": {3}, "ablations vs default · m": {3}}


# ---- families, verdicts, anchors ------------------------------------------------------------------------------

IMAGES = {  # per-repetition differences from the scratch student, in test images (of TEST_SIZE)
    ("digits", "kd"): [2, 3, 1, 4, 1],  # t-test p ≈ 0.02: nominally significant, not after Holm over 3
    ("mnist1d", "kd"): [4, 5, 4, 6, 5],  # survives the correction
    "B": [1, -1, 2, -2, 0], "C": [2, -1, 0, 1, -1], "kd_t": [-3, -1, -2, -4, -2], "kd_lr": [1, 0, -1, 2, 0],
    "B_views": [9, 8, 11, 10, 9], "C_views": [5, 7, 6, 6, 8], "B_pub": [0, 1, 1, -1, 2], "C_pub": [1, 1, 0, 2, 1]}
FAMILY_DECLARATIONS = {"mutual": {"as_published": {"views": "pub", "validation": "none"}, "named_fields": ("views",)},
                       "kd": {"as_published": {}}}
FAMILY_DEFECTS = {"kd": {"t": (False, "no T² on the soft targets")}, "mutual": {"views": ("pub", "one view twice")}}


def family_store(out):
    """Two datasets, 5 repetitions: kd (a student; a defect variant, an ablation; it requires a teacher as good
    as its scratch student) and mutual (A, with no distillation signal and near chance; B and C; a defect that
    leaves A unchanged; its as-published configuration with scratch students of its own)."""
    b = StoreBuilder(out)
    rng = np.random.default_rng(11)
    for dataset in ("digits", "mnist1d"):
        scratch = {k: rng.integers(250, 300, 5) for k in ("K", "KA", "KB", "KC", "KBv", "KCv", "KAp", "KBp", "KCp")}
        scratch["KA"] = np.array([40, 45, 38, 42, 44])  # about 11.7% of 360: near chance on 10 classes
        for r in range(5):
            def add(method, variant, keys, images, r=r, dataset=dataset, scratch=scratch, **kw):
                metrics = [[role, -1, "test_acc", (scratch[k][r] + images.get(role, [0] * 5)[r]) / TEST_SIZE]
                           for role, k in keys.items()]
                return b.add(method, r, variant=variant, dataset=dataset, roles=keys, metrics=metrics, **kw)

            for key, value in scratch.items():
                b.add("scratch_student", r, kind="baseline", variant=f"k={key}", dataset=dataset,
                      roles={"student": key}, config={"k": key},
                      metrics=[["student", -1, "test_acc", value[r] / TEST_SIZE]])
            teacher = b.add("teacher", r, kind="baseline", dataset=dataset, roles={"teacher": None}, arch="big",
                            metrics=[["teacher", -1, "test_acc", scratch["K"].mean() / TEST_SIZE]])
            needs = {"requires": {"teacher": teacher["run_id"]}}
            base = {"t": True, "lr": 1}
            add("kd", "default", {"student": "K"}, {"student": IMAGES[(dataset, "kd")]}, config=base, **needs)
            add("kd", "t=False", {"student": "K"}, {"student": IMAGES["kd_t"]}, config={**base, "t": False}, **needs)
            add("kd", "lr=2", {"student": "K"}, {"student": IMAGES["kd_lr"]}, config={**base, "lr": 2}, **needs)
            mine = {"views": "halves", "validation": "stratified"}
            add("mutual", "default", {"A": "KA", "B": "KB", "C": "KC"}, {"B": IMAGES["B"], "C": IMAGES["C"]},
                config=mine, undistilled=("A",))
            add("mutual", "views=pub", {"A": "KA", "B": "KBv", "C": "KCv"},
                {"B": IMAGES["B_views"], "C": IMAGES["C_views"]}, config={**mine, "views": "pub"},
                undistilled=("A",))
            add("mutual", "validation=none,views=pub", {"A": "KAp", "B": "KBp", "C": "KCp"},
                {"B": IMAGES["B_pub"], "C": IMAGES["C_pub"]}, config={"views": "pub", "validation": "none"},
                undistilled=("A",))
    return load_results(Store(out), Declarations.of(FAMILY_DECLARATIONS, FAMILY_DEFECTS))


@pytest.fixture(scope="module")
def families_results(tmp_path_factory):
    return family_store(tmp_path_factory.mktemp("families"))


def final_acc(results, method, variant="default", role="student", dataset="digits"):
    s = results.summary
    match = s[(s.method == method) & (s.variant == variant) & (s.role == role) & (s.dataset == dataset)
              & (s.metric == "test_acc") & (s.selection == "final")]
    assert len(match) == 1, (method, variant, role, dataset)
    return match.iloc[0]


def test_configurations_are_named_by_kind(families_results):
    kinds = {k[2:]: v for k, v in families_results.kinds.items() if k[1] == "digits" and k[2] != "scratch_student"}
    assert kinds == {("kd", "default"): families.DEFAULT, ("kd", "t=False"): families.DEFECT,
                     ("kd", "lr=2"): families.ABLATION, ("mutual", "default"): families.DEFAULT,
                     ("mutual", "views=pub"): families.DEFECT,
                     ("mutual", "validation=none,views=pub"): families.AS_PUBLISHED,
                     ("teacher", "default"): families.BASELINE}


@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_family_sizes_per_dataset(families_results, dataset):
    """The primary family is one comparison per distilled role of the default configurations on that dataset (kd
    student, mutual B and C: m = 3, not 6 over both datasets, and not counting A); every other kind of
    configuration is a family per method."""
    s = families_results.summary
    tested = s[(s.dataset == dataset) & (s.metric == "test_acc") & (s.selection == "final") & s.p_value.notna()]
    sizes = {f: set(g.holm_m) for f, g in tested.groupby("family")}
    assert sizes == {"primary": {3}, "defects · kd": {1}, "ablations · kd": {1}, "defects · mutual": {2},
                     "as published · mutual": {2}}
    for _, g in tested.groupby("family"):
        assert g.p_holm.to_numpy() == pytest.approx(holm_by_hand(g.p_value.to_numpy()))
    primary = tested[tested.family == "primary"]
    assert sorted(zip(primary.method, primary.role)) == [("kd", "student"), ("mutual", "B"), ("mutual", "C")]


def test_a_nominally_significant_comparison_that_fails_holm_is_not_beats(families_results):
    d = np.array(IMAGES[("digits", "kd")]) / TEST_SIZE
    p = sps.ttest_1samp(d, 0).pvalue
    assert 0.05 / 3 < p < 0.05  # the case under test: significant alone, not over the family of 3
    r = final_acc(families_results, "kd")
    assert r.p_value == pytest.approx(p) and r.p_holm >= 0.05 and not r.significant
    assert r.verdict_nominal == stats.HIGHER and r.verdict == stats.UNCLEAR
    c = comparison(r)
    assert verdict_words(c, "scratch", "test_acc") == f"unclear after correction (nominal p = {p:.2g})"
    md = summary_markdown(families_results.summary)
    row = next(line for line in md.split("## mnist1d")[0].splitlines() if line.startswith("| kd"))
    assert f"| primary (m=3) | unclear after correction (nominal p = {p:.2g}) |" in row
    elsewhere = final_acc(families_results, "kd", dataset="mnist1d")  # its own dataset's family survives
    assert elsewhere.verdict == stats.HIGHER and elsewhere.p_holm < 0.05
    assert verdict_words(comparison(elsewhere), "scratch", "test_acc") == "beats scratch"


def test_a_role_without_a_distillation_signal_is_an_anchor(families_results):
    for variant in ("default", "validation=none,views=pub"):
        a = final_acc(families_results, "mutual", variant, "A")
        assert a.anchor and pd.isna(a.delta_vs) and math.isnan(a.p_value) and pd.isna(a.family)
        assert math.isnan(a.delta_mean) and math.isnan(a.p_holm)
    assert not final_acc(families_results, "mutual", role="B").anchor  # a record without the flag: distilled
    md = summary_markdown(families_results.summary)
    assert re.search(r"\| mutual · views=halves( (\[\d+\])+)? \| A \| 5 \| [\d.]+ ± [\d.]+ \| anchor: no distillation "
                     r"signal \| – \|", md)
    a = families_results.ablations
    assert not a[a.role == "A"].vs_default_p_value.notna().any()  # nor compared with the default


def test_the_role_a_defect_leaves_unchanged_is_shown_once(families_results):
    same = {k: v for k, v in families_results.identical.items() if k[1] == "digits"}
    assert same == {("smoke", "digits", "mutual", "views=pub", "A"): "default"}
    assert final_acc(families_results, "mutual", role="A").identical_in == "views=pub"


def test_default_rows_name_their_fields_and_the_as_published_run_is_named(families_results):
    labels = families_results.labels
    assert labels[("smoke", "digits", "mutual", "default")] == "mutual · views=halves"
    assert labels[("smoke", "digits", "mutual", "validation=none,views=pub")] == "mutual · as published"
    assert labels[("smoke", "digits", "kd", "default")] == "kd"  # declares no named field
    assert labels[("smoke", "digits", "scratch_student", "k=KBp")] == "scratch · mutual · as published B (a)"
    main = {k[2:] for k in families_results.main if k[1] == "digits"}
    assert {("mutual", "default"), ("mutual", "validation=none,views=pub"), ("teacher", "default"),
            ("scratch_student", "k=KBp")} <= main
    assert not main & {("kd", "t=False"), ("mutual", "views=pub"), ("scratch_student", "k=KBv")}


def test_until_ci_does_not_add_repetitions_for_an_anchor(families_results):
    """--until-ci widens only comparisons the tables make: mutual's A (no distillation signal) is not one."""
    from benchmark.reporting import precision

    found = {(cell.method, cell.variant, role) for cell, role in precision.comparisons(families_results.records)}
    assert ("mutual", "default", "B") in found and ("kd", "default", "student") in found
    assert not any(role == "A" for _, _, role in found)


def test_an_as_published_run_that_changes_one_defect_is_also_that_defects_run(ablated):
    """A method whose notebook differs from its default in one declared defect: its as-published run is that
    defect run alone, shown beside the default and in the defect table."""
    results = load_results(Store(ablated[2]), Declarations.of({"m": {"as_published": {"w": "as_published"}}},
                                                                 DECLARED))
    assert results.kinds[("smoke", "digits", "m", "w=as_published")] == families.AS_PUBLISHED
    assert results.labels[("smoke", "digits", "m", "w=as_published")] == "m · as published"
    frame = defect_frame(results.ablations, DECLARED)
    assert frame[(frame.dataset == "digits") & (frame.field == "w")].variant.tolist() == ["w=as_published"]


def test_a_chains_earlier_generation_is_an_ablation_point_and_a_teacher_stage_is_required():
    """generation=2, which generation=3 distils from, changes the fields generation=3 changes: a point of the
    ablation grid. A teacher stage required by the default changes other fields: ``required``."""
    rows = []

    def add(method, variant, config, requires=()):
        run_id = f"{method}:{variant}"
        rows.append({"run_id": run_id, "preset": "quick", "dataset": "digits", "method": method, "kind": "method",
                     "variant": variant, "config": config, "requires": [f"{m}:{v}" for m, v in requires]})

    add("chain", "default", {"generation": 1, "alpha": 0.5})
    add("chain", "generation=2", {"generation": 2, "alpha": 0.5}, [("chain", "default")])
    add("chain", "generation=3", {"generation": 3, "alpha": 0.5}, [("chain", "generation=2")])
    add("chain", "alpha=0", {"generation": 1, "alpha": 0.0})
    add("staged", "default", {"stage": "student", "s": 2})
    add("staged", "stage=teacher", {"stage": "teacher", "s": 2}, [])
    rows[-2]["requires"] = ["staged:stage=teacher"]
    add("staged", "s=4", {"stage": "student", "s": 4}, [("staged", "s=4,stage=teacher")])
    add("staged", "s=4,stage=teacher", {"stage": "teacher", "s": 4})
    kinds = families.config_kinds(pd.DataFrame(rows), Declarations())
    assert {k[2:]: v for k, v in kinds.items()} == {
        ("chain", "default"): families.DEFAULT, ("chain", "generation=2"): families.ABLATION,
        ("chain", "generation=3"): families.ABLATION, ("chain", "alpha=0"): families.ABLATION,
        ("staged", "default"): families.DEFAULT, ("staged", "stage=teacher"): families.REQUIRED,
        ("staged", "s=4"): families.ABLATION, ("staged", "s=4,stage=teacher"): families.REQUIRED}


def test_a_budget_raised_threefold_keeps_the_new_partners_in_the_tables_and_audits_them(tmp_path):
    """A store that kept the scratch students of a 300-epoch budget when the presets raised it to 900: the 900-epoch
    runs are 3x the old ones, yet they are what the method's default pairs with (its pair_key), so they stay in the
    tables, and the 2,700-epoch run of repetition 0 is their audit's longer run. An older 300-epoch run is left as a
    variant of its own."""
    b = StoreBuilder(tmp_path)
    scratch = {300: [200, 205, 210], 900: [210, 214, 220], 2700: [212]}
    for epochs, values in scratch.items():
        for r, v in enumerate(values):
            b.add("scratch_student", r, kind="baseline", variant=f"epochs={epochs}", config={"epochs": epochs},
                  roles={"student": f"K{epochs}"}, metrics=[["student", -1, "test_acc", v / TEST_SIZE]])
    method = [230, 231, 236]
    for r, v in enumerate(method):
        b.add("m", r, roles={"student": "K900"}, arch="m_mlp", metrics=[["student", -1, "test_acc", v / TEST_SIZE]])
    records = b.store.read_runs().records
    ids = {(r["method"], r["variant"], r["rep"]): r["run_id"] for r in records}
    planned = planned_by_defaults(records)
    assert planned == {ids["m", "default", r] for r in range(3)} | {ids["scratch_student", "epochs=900", r]
                                                                     for r in range(3)}
    results = load_results(Store(tmp_path), Declarations(budget_fields={"scratch_student": ("epochs",)}))
    row = summary_row(results, "m")
    d = (np.array(method) - np.array(scratch[900])) / TEST_SIZE
    assert row.pair_n == 3 and row.delta_mean == pytest.approx(d.mean())  # paired with the 900-epoch runs
    assert set(results.longer_current.run_id) == {ids["scratch_student", "epochs=2700", 0]}
    assert results.longer[ids["scratch_student", "epochs=900", 0]] == ids["scratch_student", "epochs=2700", 0]
    assert set(results.current.variant) == {"default", "epochs=300", "epochs=900"}
