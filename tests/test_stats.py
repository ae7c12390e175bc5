"""Paired statistics against scipy computed independently here, and Holm's correction on known p-values."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from benchmark import stats


def test_mean_ci_is_the_student_t_interval():
    values = np.array([0.81, 0.79, 0.84, 0.80, 0.83])
    mean, std, lo, hi = stats.mean_ci(values)
    half = sps.t.ppf(0.975, 4) * values.std(ddof=1) / math.sqrt(5)
    assert mean == pytest.approx(values.mean())
    assert std == pytest.approx(values.std(ddof=1))
    assert (lo, hi) == pytest.approx((values.mean() - half, values.mean() + half))
    one = stats.mean_ci([0.5])
    assert one[0] == 0.5 and all(math.isnan(v) for v in one[1:])


def test_paired_matches_scipy_t_and_wilcoxon():
    rng = np.random.default_rng(7)
    scratch = rng.uniform(0.7, 0.9, size=8)
    method = scratch + rng.normal(0.02, 0.01, size=8)
    result = stats.paired(method - scratch)
    diffs = method - scratch
    half = sps.t.ppf(0.975, 7) * diffs.std(ddof=1) / math.sqrt(8)
    assert result["n"] == 8
    assert result["delta_mean"] == pytest.approx(diffs.mean())
    assert result["delta_ci_low"] == pytest.approx(diffs.mean() - half)
    assert result["delta_ci_high"] == pytest.approx(diffs.mean() + half)
    assert result["p_ttest"] == pytest.approx(sps.ttest_rel(method, scratch).pvalue)
    assert result["p_wilcoxon"] == pytest.approx(sps.wilcoxon(method, scratch).pvalue)
    assert result["note"] == ""


def test_wilcoxon_is_withheld_and_labelled_below_six_nonzero_differences():
    diffs = np.array([0.01, 0.02, 0.03, 0.0, 0.0, 0.0, 0.05])  # 7 pairs, 4 non-zero
    result = stats.paired(diffs)
    assert math.isnan(result["p_wilcoxon"])
    assert "Wilcoxon needs >=6 non-zero differences, has 4" in result["note"]
    assert result["p_ttest"] == pytest.approx(sps.ttest_1samp(diffs, 0).pvalue)
    # with six non-zero differences it is reported, zeros dropped as scipy does by default
    six = np.array([0.01, -0.02, 0.03, 0.04, 0.0, 0.05, 0.06])
    assert stats.paired(six)["p_wilcoxon"] == pytest.approx(sps.wilcoxon(six).pvalue)


def test_degenerate_differences_are_labelled_not_tested():
    zero = stats.paired(np.zeros(4))
    assert zero["delta_mean"] == 0 and (zero["delta_ci_low"], zero["delta_ci_high"]) == (0, 0)
    assert math.isnan(zero["p_ttest"]) and "all differences zero" in zero["note"]
    constant = stats.paired(np.full(3, 0.002))
    assert math.isnan(constant["p_ttest"]) and "constant difference" in constant["note"]
    single = stats.paired([0.03])
    assert single["n"] == 1 and math.isnan(single["delta_ci_low"]) and "n<2" in single["note"]


def test_holm_on_known_p_values():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = stats.holm([0.2, math.nan, 0.01])  # NaN is not a test: m = 2
    assert with_nan[0] == pytest.approx(0.2) and with_nan[2] == pytest.approx(0.02)
    assert math.isnan(with_nan[1])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert len(stats.holm([])) == 0


def test_verdict_follows_the_interval():
    assert stats.verdict(0.001, 0.02) == "higher"
    assert stats.verdict(-0.02, -0.001) == "lower"
    assert stats.verdict(-0.01, 0.02) == "unclear"
    assert stats.verdict(math.nan, math.nan) == "unclear"
