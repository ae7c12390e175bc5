"""Paired statistics against their formulas, computed independently here: scipy's t, Wilcoxon and permutation
tests, a brute-force enumeration of sign flips in integers, power by integrating over the chi-square
distribution of s², a simulation of the t-test, and Holm's correction on hand-computed values."""

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize
from scipy import stats as sps

from benchmark.reporting import stats

TEST_SIZE = 360  # accuracy differences on a 360-image test set are multiples of 1/360


def accuracy_diffs(method_correct, scratch_correct):
    """d_r as the tables compute them: a difference of two accuracies, each a count over the test set."""
    return np.asarray(method_correct) / TEST_SIZE - np.asarray(scratch_correct) / TEST_SIZE


def brute_force_signflip(integer_diffs):
    """Every one of the 2^n sign assignments, zeros included, in exact integer arithmetic."""
    observed = abs(sum(integer_diffs))
    assignments = list(itertools.product((1, -1), repeat=len(integer_diffs)))
    hits = sum(abs(sum(s * d for s, d in zip(signs, integer_diffs))) >= observed for signs in assignments)
    return hits / len(assignments)


def convolved_signflip(integer_diffs):
    """The exact null distribution of Σ s_r d_r by convolution (for n too large to list the assignments)."""
    counts = Counter({0: 1})
    for d in integer_diffs:
        step = Counter()
        for total, count in counts.items():
            step[total + d] += count
            step[total - d] += count
        counts = step
    observed = abs(sum(integer_diffs))
    return sum(c for total, c in counts.items() if abs(total) >= observed) / 2 ** len(integer_diffs)


def integrated_power(delta, sd, n, alpha=0.05):
    """P(|T| > c) for T = (Z + nc) / √(V/df), V ~ χ²(df): the noncentral t written out and integrated over V."""
    df, nc = n - 1, delta * math.sqrt(n) / sd
    critical = sps.t.ppf(1 - alpha / 2, df)

    def rejection_given_v(v):
        w = critical * math.sqrt(v / df)
        return (sps.norm.cdf(nc - w) + sps.norm.cdf(-nc - w)) * sps.chi2.pdf(v, df)

    value, _ = integrate.quad(rejection_given_v, 0, np.inf, epsabs=1e-13, epsrel=1e-11, limit=200)
    return value


def root_found_mde(sd, n, target=0.8):
    high = sd
    while integrated_power(high, sd, n) < target:
        high *= 2
    return optimize.brentq(lambda delta: integrated_power(delta, sd, n) - target, high / 2, high, xtol=1e-10 * sd)


# ---- mean_ci ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [[0.81, 0.79, 0.84, 0.80, 0.83], [0.70, 0.74], np.linspace(0.6, 0.9, 30)])
def test_mean_ci_is_scipys_student_t_interval(values):
    values = np.asarray(values)
    mean, std, lo, hi = stats.mean_ci(values)
    expected = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
    assert mean == pytest.approx(values.mean()) and std == pytest.approx(values.std(ddof=1))
    assert (lo, hi) == pytest.approx(expected, rel=1e-12)


def test_mean_ci_below_two_values_and_at_zero_variance():
    one = stats.mean_ci([0.5])
    assert one[0] == 0.5 and all(math.isnan(v) for v in one[1:])
    assert all(math.isnan(v) for v in stats.mean_ci([]))
    # documented: a mean of identical runs keeps its zero-width interval (paired comparisons do not)
    mean, std, lo, hi = stats.mean_ci([0.8, 0.8, 0.8])
    assert std == pytest.approx(0, abs=1e-15) and (mean, lo, hi) == pytest.approx((0.8, 0.8, 0.8))


# ---- paired: t-test, interval, Wilcoxon ---------------------------------------------------------------

def test_paired_matches_scipy_t_and_wilcoxon():
    rng = np.random.default_rng(7)
    scratch = rng.uniform(0.7, 0.9, size=8)
    method = scratch + rng.normal(0.02, 0.01, size=8)
    diffs = method - scratch
    result = stats.paired(diffs)
    half = sps.t.ppf(0.975, 7) * diffs.std(ddof=1) / math.sqrt(8)
    assert result["n"] == 8
    assert result["delta_mean"] == pytest.approx(diffs.mean())
    assert result["delta_std"] == pytest.approx(diffs.std(ddof=1))
    assert result["delta_ci_low"] == pytest.approx(diffs.mean() - half)
    assert result["delta_ci_high"] == pytest.approx(diffs.mean() + half)
    assert result["halfwidth"] == pytest.approx(half)
    assert result["p_ttest"] == pytest.approx(sps.ttest_rel(method, scratch).pvalue)
    assert result["p_value"] == result["p_ttest"] and result["p_value_test"] == "t-test"
    assert result["p_wilcoxon"] == pytest.approx(sps.wilcoxon(method, scratch).pvalue)
    assert result["p_signflip"] == pytest.approx(sps.permutation_test(
        (method, scratch), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=np.inf).pvalue)
    assert result["verdict"] == ("higher" if diffs.mean() - half > 0 else "unclear at this n")
    assert result["mde"] == pytest.approx(stats.mde(diffs.std(ddof=1), 8))
    assert result["note"] == "" and result["mde_note"] == ""


def test_paired_keeps_the_old_keys_and_adds_the_new():
    assert set(stats.paired([0.01, 0.03, 0.02])) == {
        "n", "delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "p_ttest", "p_wilcoxon", "note",
        "p_signflip", "p_value", "p_value_test", "verdict", "mde", "mde_note", "halfwidth"}


def test_paired_at_n_two_has_a_one_degree_of_freedom_interval():
    diffs = np.array([0.01, 0.03])
    result = stats.paired(diffs)
    expected = sps.t.interval(0.95, 1, loc=0.02, scale=sps.sem(diffs))
    assert (result["delta_ci_low"], result["delta_ci_high"]) == pytest.approx(expected)
    assert result["p_ttest"] == pytest.approx(sps.ttest_1samp(diffs, 0).pvalue)
    assert result["p_signflip"] == 0.5  # |±0.01 ± 0.03| ≥ 0.04 for the all-+ and all-- assignments only
    assert result["verdict"] == "unclear at this n"
    assert result["mde"] == pytest.approx(root_found_mde(diffs.std(ddof=1), 2), rel=1e-6)


def test_wilcoxon_is_withheld_and_labelled_below_six_nonzero_differences():
    diffs = np.array([0.01, 0.02, 0.03, 0.0, 0.0, 0.0, 0.05])  # 7 pairs, 4 non-zero
    result = stats.paired(diffs)
    assert math.isnan(result["p_wilcoxon"])
    assert "Wilcoxon needs >=6 non-zero differences, has 4" in result["note"]
    assert result["p_ttest"] == pytest.approx(sps.ttest_1samp(diffs, 0).pvalue)
    # with six non-zero differences it is reported, zeros dropped as scipy does by default
    six = np.array([0.01, -0.02, 0.03, 0.04, 0.0, 0.05, 0.06])
    assert stats.paired(six)["p_wilcoxon"] == pytest.approx(sps.wilcoxon(six).pvalue)


# ---- the sign-flip test -------------------------------------------------------------------------------

@pytest.mark.parametrize("method, scratch", [
    ([301], [299]),                                          # n = 1: both assignments tie, p = 1
    ([300, 305], [299, 301]),
    ([301, 300, 302], [299, 301, 299]),                      # ties in |d|
    ([300, 300, 305, 298, 301], [300, 298, 301, 300, 300]),  # zeros: their sign cannot matter
    ([310, 290, 305, 300, 299, 301, 303], [300, 299, 300, 301, 300, 300, 300]),
    ([301, 301, 299, 299, 302, 298, 300, 300, 303, 297], [300] * 10),  # Σ d = 0: p = 1
])
def test_signflip_is_the_full_enumeration_in_integers(method, scratch):
    integer_diffs = [m - s for m, s in zip(method, scratch)]
    expected = brute_force_signflip(integer_diffs)
    assert stats.paired(accuracy_diffs(method, scratch))["p_signflip"] == pytest.approx(expected, abs=1e-15)
    assert stats.signflip_p(accuracy_diffs(method, scratch)) == (pytest.approx(expected, abs=1e-15), True)


@pytest.mark.parametrize("seed, n", [(0, 4), (1, 6), (2, 9), (3, 12)])
def test_signflip_is_scipys_exact_permutation_test(seed, n):
    rng = np.random.default_rng(seed)
    scratch = rng.uniform(0.7, 0.9, n)
    method = scratch + rng.normal(0.01, 0.02, n)
    expected = sps.permutation_test((method - scratch,), lambda d, axis: np.mean(d, axis=axis),
                                    permutation_type="samples", vectorized=True, n_resamples=np.inf).pvalue
    assert stats.signflip_p(method - scratch)[0] == pytest.approx(expected, abs=1e-15)


def test_signflip_is_exact_at_twenty_nonzero_differences():
    integer_diffs = [3, -1, 2, 4, 1, 1, -2, 5, 2, 3, 1, -1, 2, 6, 1, 2, -3, 1, 4, 2]
    assert len(integer_diffs) == stats.SIGNFLIP_EXACT_MAX
    p, exact = stats.signflip_p(np.array(integer_diffs) / TEST_SIZE)
    assert exact and p == pytest.approx(convolved_signflip(integer_diffs), abs=1e-15)
    # zeros do not count towards the 20: still exact
    assert stats.signflip_p(np.array([*integer_diffs, 0, 0]) / TEST_SIZE) == (pytest.approx(p, abs=1e-15), True)


def test_signflip_beyond_twenty_is_seeded_monte_carlo_and_says_so():
    integer_diffs = [2, -1, 3, 1, 0, 2, -2, 1, 1, 3, -1, 2, 1, 1, -3, 2, 1, 2, -1, 1, 2, 1, -2, 1, 3, 1]
    nonzero = sum(d != 0 for d in integer_diffs)
    exact = convolved_signflip(integer_diffs)
    diffs = np.array(integer_diffs) / TEST_SIZE
    p, is_exact = stats.signflip_p(diffs)
    assert not is_exact and stats.signflip_p(diffs)[0] == p  # seeded: the same differences, the same p
    draws = stats.SIGNFLIP_DRAWS
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / draws) + 1 / draws
    result = stats.paired(diffs)
    assert result["p_signflip"] == p
    assert f"sign-flip p from {draws:,} seeded Monte-Carlo draws ({nonzero} non-zero differences > 20)" \
        in result["note"]
    # the observed assignment counts, so a Monte-Carlo p is never 0
    assert stats.signflip_p(np.full(30, 0.01))[0] == pytest.approx(1 / (draws + 1))


# ---- zero variance, n < 2 -----------------------------------------------------------------------------

@pytest.mark.parametrize("n, sign, expected_verdict", [(3, 1, "unclear at this n"), (6, 1, "higher"),
                                                        (7, -1, "lower"), (5, -1, "unclear at this n")])
def test_a_constant_difference_gets_no_interval_and_the_sign_flip_p(n, sign, expected_verdict):
    scratch = np.array([310, 309, 313, 287, 283, 314, 280][:n])
    diffs = accuracy_diffs(scratch + sign, scratch)  # one image each time, with float noise
    assert np.ptp(diffs) > 0, "the noise is what this test is about"
    result = stats.paired(diffs)
    assert result["delta_mean"] == pytest.approx(sign / TEST_SIZE) and result["delta_std"] == 0.0
    for key in ("delta_ci_low", "delta_ci_high", "halfwidth", "p_ttest", "mde"):
        assert math.isnan(result[key]), key
    assert result["p_signflip"] == pytest.approx(2 / 2**n) == brute_force_signflip([sign] * n)
    assert result["p_value"] == result["p_signflip"] and result["p_value_test"] == "sign-flip"
    assert result["verdict"] == expected_verdict
    assert result["note"].startswith("constant difference: no t-interval or t-test (zero variance)")
    assert "no spread to estimate a detectable effect from" in result["mde_note"]


def test_all_zero_differences():
    result = stats.paired(np.zeros(4))
    assert result["delta_mean"] == 0 and result["delta_std"] == 0
    assert math.isnan(result["delta_ci_low"]) and math.isnan(result["delta_ci_high"])
    assert math.isnan(result["p_ttest"]) and math.isnan(result["mde"])
    assert result["p_signflip"] == 1 and result["p_value"] == 1
    assert result["verdict"] == "unclear at this n" and "all differences zero" in result["note"]


def test_a_single_pair_and_no_pairs():
    single = stats.paired([0.03])
    assert single["n"] == 1 and single["delta_mean"] == 0.03 and "n<2" in single["note"]
    for key in ("delta_std", "delta_ci_low", "delta_ci_high", "halfwidth", "p_ttest", "p_value", "mde"):
        assert math.isnan(single[key]), key
    assert single["p_signflip"] == 1.0 and single["verdict"] == "unclear at this n"
    empty = stats.paired([])
    assert empty["n"] == 0 and math.isnan(empty["delta_mean"]) and math.isnan(empty["p_signflip"])


def test_a_non_finite_difference_gives_no_p_value_rather_than_zero():
    result = stats.paired([0.01, math.nan, 0.02, 0.03])
    assert math.isnan(result["p_signflip"]) and math.isnan(result["p_value"])
    assert result["verdict"] == "unclear at this n" and "non-finite" in result["note"]


# ---- verdicts -----------------------------------------------------------------------------------------

def test_paired_verdict_reads_the_interval_when_there_is_one():
    assert stats.paired_verdict(5, 0.01, 0.001, 0.02, 0.5) == "higher"  # the sign-flip p is not consulted
    assert stats.paired_verdict(5, -0.01, -0.02, -0.001, 0.5) == "lower"
    assert stats.paired_verdict(5, 0.01, -0.001, 0.02, 0.001) == "unclear at this n"
    assert stats.paired_verdict(6, 0.01, math.nan, math.nan, 0.03125) == "higher"
    assert stats.paired_verdict(6, -0.01, math.nan, math.nan, 0.03125) == "lower"
    assert stats.paired_verdict(5, 0.01, math.nan, math.nan, 0.0625) == "unclear at this n"
    assert stats.paired_verdict(1, 0.03, math.nan, math.nan, 0.0) == "unclear at this n"


def test_verdict_from_bounds_alone_is_unchanged():
    assert stats.verdict(0.001, 0.02) == "higher"
    assert stats.verdict(-0.02, -0.001) == "lower"
    assert stats.verdict(-0.01, 0.02) == "unclear"
    assert stats.verdict(math.nan, math.nan) == "unclear"


# ---- power, minimum detectable effect, planning -------------------------------------------------------

@pytest.mark.parametrize("delta, sd, n", [(0.0, 0.01, 3), (0.02, 0.01, 2), (0.01, 0.012, 3), (0.004, 0.01, 10),
                                          (-0.004, 0.01, 10), (0.3, 1.0, 40)])
def test_power_is_the_noncentral_t_integrated_out(delta, sd, n):
    assert stats.power(delta, sd, n) == pytest.approx(integrated_power(delta, sd, n), rel=1e-7, abs=1e-12)


def test_power_is_nan_without_spread_or_pairs():
    assert math.isnan(stats.power(0.01, 0.0, 5)) and math.isnan(stats.power(0.01, 0.01, 1))
    assert math.isnan(stats.mde(0.0, 5)) and math.isnan(stats.mde(0.01, 1)) and math.isnan(stats.mde(math.nan, 5))


@pytest.mark.parametrize("sd, n", [(0.02, 2), (0.013, 3), (0.01, 5), (0.05, 10), (1.0, 30)])
def test_mde_is_the_root_of_the_power_curve(sd, n):
    found = stats.mde(sd, n)
    assert found == pytest.approx(root_found_mde(sd, n), rel=1e-6)
    assert stats.power(found, sd, n) == pytest.approx(0.8, abs=1e-9)


def scipy_nct_power(d, n, alpha=0.05):
    """Power of the two-sided one-sample (paired) t-test at standardised effect d = δ/SD, straight from scipy's
    noncentral t: P(T > c) + P(T < -c), T ~ nct(n - 1, d√n), the lower tail as P(-T > c) (scipy's nct.cdf is NaN
    that far out at n = 2)."""
    df, nc = n - 1, d * math.sqrt(n)
    critical = sps.t.ppf(1 - alpha / 2, df)
    return sps.nct.sf(critical, df, nc) + sps.nct.sf(critical, df, -nc)


@pytest.mark.parametrize("n", [2, 3, 5, 20])
@pytest.mark.parametrize("sd", [0.007, 0.025])
def test_mde_is_the_noncentral_t_effect_at_80_percent_power(n, sd):
    """Golden: the MDE is d·SD with d the root of scipy's noncentral-t power at 0.80 (df = n - 1, nc = d√n), found
    here by bisection; the power just below it is under 0.80, so it is the smallest such effect. (A one-off check
    against statsmodels' TTestPower.solve_power agreed to 1e-7 relative at these n.)"""
    d = optimize.bisect(lambda x: scipy_nct_power(x, n) - 0.8, 1e-6, 100.0, xtol=1e-13, rtol=1e-13)
    found = stats.mde(sd, n)
    assert found == pytest.approx(d * sd, rel=1e-8)
    assert scipy_nct_power(found / sd, n) == pytest.approx(0.8, abs=1e-9)
    assert scipy_nct_power(found / sd * (1 - 1e-6), n) < 0.8


@pytest.mark.parametrize("n", [2, 3, 5, 20])
def test_the_normal_approximation_understates_the_mde(n):
    """(z_{0.975} + z_{0.80})·SD/√n is smaller than the exact MDE at every n, by more at small n (at n = 5: the
    exact one is 1.68 SD, the approximation 1.25 SD)."""
    normal = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) / math.sqrt(n)
    exact = stats.mde(1.0, n)
    assert exact > normal
    if n <= 5:
        assert exact / normal > 1.3


def test_mde_edge_cases_are_nan_not_zero():
    """One pair, or no spread, gives no detectable effect to state (NaN), never 0 or infinity."""
    for sd, n in [(0.01, 1), (0.01, 0), (0.0, 5), (-0.01, 5), (math.inf, 5), (math.nan, 5)]:
        assert math.isnan(stats.mde(sd, n)) and math.isnan(stats.power(0.01, sd, n))
    one = stats.paired([0.02])
    constant = stats.paired([0.01, 0.01, 0.01])
    assert math.isnan(one["mde"]) and one["mde_note"].startswith("n<2")
    assert math.isnan(constant["mde"]) and "no spread" in constant["mde_note"]


@pytest.mark.parametrize("n", [3, 8])
def test_a_t_test_at_the_mde_rejects_four_times_in_five(n):
    sd = 0.012
    delta = stats.mde(sd, n)
    samples = np.random.default_rng(n).normal(delta, sd, size=(20_000, n))
    t = samples.mean(axis=1) / (samples.std(axis=1, ddof=1) / math.sqrt(n))
    rejected = np.mean(np.abs(t) > sps.t.ppf(0.975, n - 1))
    assert rejected == pytest.approx(0.8, abs=0.015)


@pytest.mark.parametrize("sd, halfwidth", [(0.01, 0.005), (0.02, 0.03), (0.013, 0.002), (0.01, 0.2)])
def test_reps_for_halfwidth_is_the_first_n_that_is_narrow_enough(sd, halfwidth):
    n = 2
    while sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > halfwidth:
        n += 1
    assert stats.reps_for_halfwidth(sd, halfwidth) == n


def test_reps_for_halfwidth_at_the_boundary_and_where_it_cannot_plan():
    at_seven = sps.t.ppf(0.975, 6) * 0.01 / math.sqrt(7)
    assert stats.reps_for_halfwidth(0.01, at_seven * (1 + 1e-12)) == 7
    assert stats.reps_for_halfwidth(0.01, at_seven * (1 - 1e-12)) == 8
    assert stats.reps_for_halfwidth(0.01, at_seven * (1 + 1e-12), level=0.99) > 7
    assert stats.reps_for_halfwidth(0.0, 0.01) is None and stats.reps_for_halfwidth(math.nan, 0.01) is None
    assert stats.reps_for_halfwidth(0.01, 1e-5, n_max=100) is None
    with pytest.raises(ValueError):
        stats.reps_for_halfwidth(0.01, 0.0)


# ---- Holm ---------------------------------------------------------------------------------------------

def test_holm_on_known_p_values():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.01*5, 0.02*4, 0.03*3, 0.04*2, 0.05*1 = 0.05, 0.08, 0.09, 0.08, 0.05 -> 0.05, 0.08, 0.09, 0.09, 0.09
    assert stats.holm([0.05, 0.04, 0.03, 0.02, 0.01]) == pytest.approx([0.09, 0.09, 0.09, 0.08, 0.05])
    with_nan = stats.holm([0.2, math.nan, 0.01])  # NaN is not a test: m = 2
    assert with_nan[0] == pytest.approx(0.2) and with_nan[2] == pytest.approx(0.02)
    assert math.isnan(with_nan[1])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert len(stats.holm([])) == 0 and math.isnan(stats.holm([math.nan])[0])


# ---- MDE at Holm's first-step level ------------------------------------------------------------------------

def nct_power(delta, sd, n, alpha):
    """Two-sided paired t-test power from scipy's nct: P(T > c) + P(T < -c), the lower tail written as the upper
    tail of nct(df, -nc) (scipy's nct.cdf is NaN that far out)."""
    df, nc = n - 1, delta * math.sqrt(n) / sd
    critical = sps.t.ppf(1 - alpha / 2, df)
    return sps.nct.sf(critical, df, nc) + sps.nct.sf(critical, df, -nc)


@pytest.mark.parametrize("n", [2, 3, 5, 20])
@pytest.mark.parametrize("m", [1, 8])
def test_mde_at_holms_first_step_is_the_nct_effect_at_80_percent_power(n, m):
    sd, alpha = 0.01, 0.05 / m
    found = stats.mde(sd, n, 0.8, stats.holm_first_level(m))
    assert stats.holm_first_level(m) == pytest.approx(alpha)
    assert nct_power(found, sd, n, alpha) == pytest.approx(0.8, abs=1e-7)
    # and it is the smallest such effect: a hair less falls short
    assert nct_power(found * (1 - 1e-4), sd, n, alpha) < 0.8
    if m > 1:
        assert found > stats.mde(sd, n, 0.8, 0.05)  # a stricter level needs a larger effect


@pytest.mark.parametrize("sd, target, m", [(0.01, 0.01, 8), (0.02, 0.01, 8), (0.005, 0.01, 1), (0.03, 0.005, 4)])
def test_reps_for_mde_is_the_smallest_n_whose_mde_reaches_the_target(sd, target, m):
    alpha = 0.05 / m
    n = stats.reps_for_mde(sd, target, alpha)
    assert nct_power(target, sd, n, alpha) >= 0.8
    assert n == 2 or nct_power(target, sd, n - 1, alpha) < 0.8


def test_reps_for_mde_without_spread_is_none_and_a_bad_target_is_an_error():
    assert stats.reps_for_mde(0.0, 0.01) is None and stats.reps_for_mde(math.nan, 0.01) is None
    with pytest.raises(ValueError):
        stats.reps_for_mde(0.01, 0.0)


def test_a_curve_band_is_each_epochs_mean_ci_computed_at_once():
    """plot.band gives, per x, what stats.mean_ci gives on that x's values: n = 1 (mean, no spread), n = 2,
    zero variance (a zero-width interval), a NaN (NaN throughout), and t-intervals from scipy's t."""
    from benchmark.reporting import plot

    rng = np.random.default_rng(0)
    groups = {0: [0.5], 1: [0.2, 0.4], 2: [0.3, 0.3, 0.3], 3: [0.1, np.nan, 0.2], 4: list(rng.normal(size=7))}
    frame = pd.DataFrame([{"epoch": k, "value": v} for k, vs in groups.items() for v in vs]).sample(frac=1,
                                                                                                 random_state=1)
    got = plot.band(frame, "epoch").set_index("epoch")
    assert list(got.index) == sorted(groups)
    for k, vs in groups.items():
        expected = stats.mean_ci(vs)
        np.testing.assert_allclose(got.loc[k, ["mean", "std", "lo", "hi"]].to_numpy(dtype=float), expected,
                                   rtol=1e-12, atol=1e-15, equal_nan=True)
    values = np.array(groups[4])
    half = sps.t.ppf(0.975, 6) * values.std(ddof=1) / np.sqrt(7)
    assert got.loc[4, "hi"] - got.loc[4, "mean"] == pytest.approx(half, rel=1e-12)
    assert got.loc[2, "lo"] == got.loc[2, "hi"] == pytest.approx(0.3)
