"""Statistics for paired comparisons: t-intervals, paired t and Wilcoxon signed-rank tests, Holm's correction.

A comparison pairs a method's run with the scratch student's run of the same dataset, repetition, base seed
and data budget (the same initialisation and batch order, see ``benchmark.spec``), so the unit of analysis is
the per-repetition difference d_r = method_r - scratch_r:

    mean Δ = (1/n) Σ d_r,   95% CI = mean Δ ± t_{0.975, n-1} · s_d / √n,   t = mean Δ / (s_d / √n).

Wilcoxon's signed-rank test (scipy's defaults: zero differences dropped) is reported only with at least
``WILCOXON_MIN_NONZERO`` non-zero differences: with n ≤ 5 the smallest two-sided exact p-value is
2/2^n ≥ 0.0625, so the test could never reject at 0.05 and a number would only look like evidence.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

LEVEL = 0.95  # coverage of every interval in the tables
ALPHA = 0.05  # family-wise error rate of the Holm-corrected tests
WILCOXON_MIN_NONZERO = 6  # smallest n whose exact two-sided signed-rank p-value can fall below 0.05 (2/64)


def mean_ci(values, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean, sample std, ci_low, ci_high) with a Student-t interval; std and interval are NaN for n < 2."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return mean, std, mean - half, mean + half


def _is_constant(diffs: np.ndarray) -> bool:
    return len(diffs) > 0 and float(np.ptp(diffs)) <= 1e-12 * max(1.0, float(np.abs(diffs).max()))


def paired(diffs, level: float = LEVEL) -> dict[str, float | int | str]:
    """Mean, t-interval and tests of paired differences; ``note`` says why a p-value is missing.

    Keys: n, delta_mean, delta_std, delta_ci_low, delta_ci_high, p_ttest, p_wilcoxon, note.
    """
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    mean, std, lo, hi = mean_ci(diffs, level)
    notes: list[str] = []
    p_t = math.nan
    if n < 2:
        notes.append("n<2: no interval or test")
    elif _is_constant(diffs):
        # Every repetition moved by the same amount: s_d = 0 and the t statistic is undefined (0/0 or ±inf).
        lo = hi = mean
        zero = abs(mean) <= 1e-12
        notes.append("all differences zero" if zero else "constant difference: t-test undefined")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_t = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    nonzero = int(np.count_nonzero(np.abs(diffs) > 1e-12))
    p_w = math.nan
    if nonzero >= WILCOXON_MIN_NONZERO:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_w = float(stats.wilcoxon(diffs).pvalue)
    elif n >= 2:
        notes.append(f"Wilcoxon needs >={WILCOXON_MIN_NONZERO} non-zero differences, has {nonzero}")
    return {"n": n, "delta_mean": mean, "delta_std": std, "delta_ci_low": lo, "delta_ci_high": hi,
            "p_ttest": p_t, "p_wilcoxon": p_w, "note": "; ".join(notes)}


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (same order as given); NaN entries stay NaN and do not count in m.

    With the m finite p-values sorted ascending, p_adj(i) = max_{j<=i} min(1, (m - j + 1) p(j)); rejecting
    where p_adj < α controls the family-wise error rate at α.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def verdict(delta_lo: float, delta_hi: float) -> str:
    """'higher', 'lower' or 'unclear' from the interval of Δ (NaN bounds: unclear)."""
    if math.isnan(delta_lo) or math.isnan(delta_hi):
        return "unclear"
    if delta_lo > 0:
        return "higher"
    if delta_hi < 0:
        return "lower"
    return "unclear"
