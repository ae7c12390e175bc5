"""Statistics for paired comparisons: t-intervals, paired t, sign-flip and Wilcoxon tests, power, Holm's correction.

A comparison pairs a method's run with the scratch student's run of the same dataset, repetition, base seed
and data budget (the same initialisation and batch order, see ``benchmark.spec``), so the unit of analysis is
the per-repetition difference d_r = method_r - scratch_r, r = 1..n:

    mean Δ = (1/n) Σ d_r,   95% CI = mean Δ ± t_{0.975, n-1} · s_d / √n,   t = mean Δ / (s_d / √n).

Zero variance. With n = 3 and a 360-image test set every repetition often moves by the same number of images.
Then s_d = 0, t is 0/0 or ±∞ and no t-interval exists: a zero-width "[2.8, 2.8]" would claim certainty that
three runs cannot give. Such comparisons get no interval and no t-test; their p-value is the sign-flip test's.

Sign-flip test (exact paired permutation test). Under H0 (no effect) each d_r is as likely to have come out as
-d_r, so the 2^n sign assignments are exchangeable. Statistic |Σ_r s_r d_r|; p = (number of assignments whose
statistic ≥ the observed one, the observed assignment included) / 2^n, ties within a relative 1e-9 of Σ|d_r|
counted as equal (accuracy differences are multiples of 1/test-size, so ties are the rule, and float sums of the
same multiples differ in the last bits). A zero difference has no sign to flip: it contributes 0 under every
assignment, so it is left out and the enumeration runs over the k non-zero differences (the standard treatment;
the p-value is the same as enumerating all 2^n). Exact up to k = ``SIGNFLIP_EXACT_MAX``; beyond,
``SIGNFLIP_DRAWS`` seeded Monte-Carlo assignments with p = (1 + hits) / (1 + draws), and the note says so.
Its smallest possible p is 2/2^k: with k = 3 it is 0.25, which is what three identical repetitions can show.

Minimum detectable effect. A "no detectable difference" means little without the effect the comparison could
have seen: ``mde`` is the |δ| that a two-sided paired t-test at α = 1 - level, with this n and the observed s_d
taken as the true SD, rejects with probability ``POWER``, from the noncentral t distribution:

    power(δ) = P(|T| > t_{1-α/2, n-1}),   T ~ nct(df = n - 1, nc = δ √n / s_d).

This is exact for the t-test the tables run. The normal approximation (z_{1-α/2} + z_{power}) · s_d / √n
understates it at small n: at n = 5, α = 0.05 and 80% power it gives 1.25 s_d where the t-test needs 1.68 s_d
(n = 3: 1.62 against 3.26; n = 20: 0.63 against 0.66).

A verdict is drawn after Holm's correction over the comparison's family of m tests, whose first (most lenient
possible) step rejects at p < α/m: a comparison can only be decided when it would be at α/m, so the MDE the
tables state is at that level (``holm_first_level``): at n = 5 and m = 8 it is about 1.67 times the one at α.
``reps_for_mde`` inverts it: the smallest n at which an observed SD gives a chosen MDE at a chosen level.

Wilcoxon's signed-rank test (scipy's defaults: zero differences dropped) is reported only with at least
``WILCOXON_MIN_NONZERO`` non-zero differences: with n ≤ 5 the smallest two-sided exact p-value is
2/2^n ≥ 0.0625, so the test could never reject at 0.05 and a number would only look like evidence.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats

LEVEL = 0.95  # coverage of every interval in the tables
ALPHA = 0.05  # family-wise error rate of the Holm-corrected tests
WILCOXON_MIN_NONZERO = 6  # smallest n whose exact two-sided signed-rank p-value can fall below 0.05 (2/64)
POWER = 0.80  # power at which the minimum detectable effect is stated
SIGNFLIP_EXACT_MAX = 20  # up to 2^20 sign assignments are enumerated (two 2^10 halves, ~8 MB)
SIGNFLIP_DRAWS = 100_000  # Monte-Carlo assignments beyond: the p-value's SE is at most 0.0016
SIGNFLIP_SEED = 0  # fixed, so the same differences always give the same p-value
TIE_RTOL = 1e-9  # statistics within this fraction of Σ|d_r| of the observed one count as ties

HIGHER, LOWER, UNCLEAR = "higher", "lower", "unclear at this n"


def mean_ci(values, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean, sample std, ci_low, ci_high) with a Student-t interval; std and interval are NaN for n < 2.

    This describes one configuration's runs, and no verdict is drawn from it. When all n values are equal the
    interval has zero width (std 0): that is kept, because it reports a fact about these runs (e.g. a
    deterministic baseline), printed next to its n; it is not a claim that the true mean is known. Paired
    comparisons, which do draw verdicts, get no interval in that case (``paired``).
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half = t_halfwidth(std, n, level)
    return mean, std, mean - half, mean + half


def t_halfwidth(sd: float, n: int, level: float = LEVEL) -> float:
    """t_{(1+level)/2, n-1} · sd / √n, the half-width of the Student-t interval; NaN for n < 2."""
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))


def _is_constant(diffs: np.ndarray) -> bool:
    return len(diffs) > 0 and float(np.ptp(diffs)) <= 1e-12 * max(1.0, float(np.abs(diffs).max()))


def _sign_matrix(k: int) -> np.ndarray:
    """All 2^k sign vectors as rows, row 0 all +1 (bit j of the row index flips sign j)."""
    bits = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
    return 1.0 - 2.0 * bits


def signflip_p(diffs) -> tuple[float, bool]:
    """(two-sided sign-flip p-value of Σ d_r, exact?); see the module docstring. NaN for no or non-finite input."""
    diffs = np.asarray(diffs, dtype=float).ravel()
    if len(diffs) == 0 or not np.isfinite(diffs).all():
        return math.nan, True
    nonzero = diffs[diffs != 0]
    k = len(nonzero)
    if k == 0:
        return 1.0, True
    tolerance = TIE_RTOL * float(np.abs(nonzero).sum())
    if k <= SIGNFLIP_EXACT_MAX:
        # Meet in the middle: every total is a sum of one half's sign-sum and the other's, so the 2^k totals
        # are an outer sum of two 2^(k/2) vectors instead of a 2^k × k matrix product.
        half = k // 2
        first = _sign_matrix(half) @ nonzero[:half]
        second = _sign_matrix(k - half) @ nonzero[half:]
        observed = abs(first[0] + second[0])
        totals = np.abs(first[:, None] + second[None, :])
        return float(np.count_nonzero(totals >= observed - tolerance) / 2**k), True
    observed = abs(float(nonzero.sum()))
    rng = np.random.default_rng(SIGNFLIP_SEED)
    hits, done, chunk = 0, 0, max(1, 2**21 // k)
    while done < SIGNFLIP_DRAWS:
        rows = min(chunk, SIGNFLIP_DRAWS - done)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(rows, k))
        hits += int(np.count_nonzero(np.abs(signs @ nonzero) >= observed - tolerance))
        done += rows
    return (1 + hits) / (1 + SIGNFLIP_DRAWS), False


def power(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at level α against a true mean difference δ with SD sd, n pairs.

    P(|T| > t_{1-α/2, n-1}) with T ~ nct(n - 1, δ√n/sd). The lower tail P(T < -c) is taken as P(T' > c) with
    T' ~ nct(n - 1, -δ√n/sd) (the same by symmetry): scipy's nct.cdf returns NaN far in that tail, sf does not.
    NaN for n < 2 or sd not a positive finite number.
    """
    if n < 2 or not (math.isfinite(sd) and sd > 0):
        return math.nan
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = delta * math.sqrt(n) / sd
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality))


def mde(sd: float, n: int, target_power: float = POWER, alpha: float = ALPHA) -> float:
    """Smallest |δ| with power(δ, sd, n, α) = target_power (the minimum detectable effect), by root-finding on the
    noncentral-t power (``power``), not the normal approximation (module docstring).

    Power rises from α at δ = 0 towards 1, so the root is bracketed by doubling. NaN for n < 2 or sd not a
    positive finite number (no spread to estimate a detectable effect from).
    """
    if n < 2 or not (math.isfinite(sd) and sd > 0):
        return math.nan
    high = sd
    while power(high, sd, n, alpha) < target_power:
        high *= 2
    return float(optimize.brentq(lambda d: power(d, sd, n, alpha) - target_power, 0.0, high,
                                 xtol=1e-12 * sd, rtol=1e-12))


def holm_first_level(m: int, alpha: float = ALPHA) -> float:
    """α/m, the level of Holm's first step over a family of m comparisons (a family of one, or none: α)."""
    return alpha / max(1, int(m))


def reps_for_mde(sd: float, target: float, alpha: float = ALPHA, target_power: float = POWER,
                 n_max: int = 10_000) -> int | None:
    """Smallest n ≥ 2 whose MDE (``mde``: noncentral t at ``alpha``) with this SD is at most ``target``.

    The MDE falls as n grows, so the first n found by doubling and then bisecting is the smallest. None when sd
    is not a positive finite number or n_max is not enough.
    """
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target must be a positive number, got {target!r}")
    if not (math.isfinite(sd) and sd > 0):
        return None

    def enough(n: int) -> bool:
        return power(target, sd, n, alpha) >= target_power

    low, high = 1, 2  # enough(low) is False by convention (n = 1 has no test)
    while not enough(high):
        if high >= n_max:
            return None
        low, high = high, min(2 * high, n_max)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def reps_for_halfwidth(sd: float, halfwidth: float, level: float = LEVEL, n_max: int = 10_000) -> int | None:
    """Smallest n ≥ 2 with t_{(1+level)/2, n-1} · sd / √n ≤ halfwidth: repetitions for a t-interval that narrow.

    Every n from 2 to n_max is checked (the t quantile, not a normal approximation: at n = 3 they differ by
    2.2×). None when sd is not a positive finite number (no spread to plan from) or n_max is not enough.
    """
    if not (math.isfinite(halfwidth) and halfwidth > 0):
        raise ValueError(f"halfwidth must be a positive number, got {halfwidth!r}")
    if not (math.isfinite(sd) and sd > 0):
        return None
    n = np.arange(2, n_max + 1)
    widths = stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)
    enough = np.flatnonzero(widths <= halfwidth)
    return int(n[enough[0]]) if len(enough) else None


def paired(diffs, level: float = LEVEL) -> dict[str, float | int | str]:
    """Mean, t-interval, tests, verdict and minimum detectable effect of paired differences d_r.

    Keys:
      n              number of pairs
      delta_mean     mean of d_r (NaN for n = 0)
      delta_std      sample SD s_d (ddof 1); 0 for zero variance, NaN for n < 2
      delta_ci_low,  the t-interval at ``level``; NaN for n < 2 and for zero variance (no interval exists)
      delta_ci_high
      halfwidth      t_{(1+level)/2, n-1} · s_d / √n; NaN whenever there is no interval
      p_ttest        two-sided one-sample t-test of mean 0 (= paired t); NaN for n < 2 and zero variance
      p_signflip     two-sided sign-flip test (exact for ≤ SIGNFLIP_EXACT_MAX non-zero d_r); 1 if all are zero
      p_wilcoxon     Wilcoxon signed-rank; NaN below WILCOXON_MIN_NONZERO non-zero differences
      p_value        the comparison's p-value: p_ttest when it exists, else p_signflip (zero variance); NaN
                     for n < 2. This is the one to correct across a family (Holm).
      p_value_test   "t-test", "sign-flip" or "" (which test p_value is)
      verdict        HIGHER / LOWER / UNCLEAR, uncorrected at α = 1 - level (see ``paired_verdict``)
      mde            the minimum detectable |Δ| at POWER, α = 1 - level, this n, s_d; NaN for n < 2 or s_d = 0
      mde_note       why mde is NaN ("" when it is given)
      note           "; "-joined reasons a statistic is missing or how it was computed ("" when nothing to say)
    """
    diffs = np.asarray(diffs, dtype=float).ravel()
    n = len(diffs)
    alpha = round(1 - level, 12)  # 1 - 0.95 is 0.05000000000000004 in floats
    result: dict[str, float | int | str] = {
        "n": n, "delta_mean": math.nan, "delta_std": math.nan, "delta_ci_low": math.nan,
        "delta_ci_high": math.nan, "halfwidth": math.nan, "p_ttest": math.nan, "p_signflip": math.nan,
        "p_wilcoxon": math.nan, "p_value": math.nan, "p_value_test": "", "verdict": UNCLEAR,
        "mde": math.nan, "mde_note": "", "note": ""}
    if n == 0:
        result.update(mde_note="no paired differences", note="no paired differences")
        return result
    if not np.isfinite(diffs).all():
        # A NaN would compare False everywhere and turn the sign-flip count into p = 0.
        result.update(mde_note="non-finite differences", note="non-finite differences: no statistics")
        return result
    mean = float(diffs.mean())
    p_flip, exact = signflip_p(diffs)
    nonzero = int(np.count_nonzero(diffs))
    result.update(delta_mean=mean, p_signflip=p_flip)
    notes: list[str] = []
    if n < 2:
        notes.append("n<2: no interval or test")
        result["mde_note"] = "n<2: no spread to estimate a detectable effect from"
    elif _is_constant(diffs):
        # Every repetition moved by the same amount: s_d = 0, t is 0/0 or ±inf and no t-interval exists.
        no_spread = "no spread to estimate a detectable effect from"
        result.update(delta_std=0.0, p_value=p_flip, p_value_test="sign-flip", mde_note=no_spread)
        if nonzero == 0:
            notes.append("all differences zero")
        else:
            # All n signs agree, so only the all-+ and all-- assignments reach the observed |Σ d|: p = 2/2^n.
            floor = f", 2/2^{nonzero} = {2 / 2**nonzero:.3g}, the smallest it can be at this n" if exact else ""
            notes.append(f"constant difference: no t-interval or t-test (zero variance); "
                         f"p is the sign-flip test's{floor}; {no_spread}")
    else:
        _, std, low, high = mean_ci(diffs, level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_t = float(stats.ttest_1samp(diffs, 0.0).pvalue)
        result.update(delta_std=std, delta_ci_low=low, delta_ci_high=high, halfwidth=t_halfwidth(std, n, level),
                      p_ttest=p_t, p_value=p_t, p_value_test="t-test", mde=mde(std, n, POWER, alpha))
    if not exact:
        notes.append(f"sign-flip p from {SIGNFLIP_DRAWS:,} seeded Monte-Carlo draws "
                     f"({nonzero} non-zero differences > {SIGNFLIP_EXACT_MAX})")
    if nonzero >= WILCOXON_MIN_NONZERO:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result["p_wilcoxon"] = float(stats.wilcoxon(diffs).pvalue)
    elif n >= 2:
        notes.append(f"Wilcoxon needs >={WILCOXON_MIN_NONZERO} non-zero differences, has {nonzero}")
    result["verdict"] = paired_verdict(n, mean, result["delta_ci_low"], result["delta_ci_high"], p_flip, alpha)
    result["note"] = "; ".join(notes)
    return result


def paired_verdict(n: int, delta_mean: float, delta_ci_low: float, delta_ci_high: float, p_signflip: float,
                   alpha: float = ALPHA) -> str:
    """HIGHER, LOWER or UNCLEAR ("unclear at this n") for one paired comparison, before any multiplicity
    correction.

    With a t-interval: its side of 0 (the interval at level 1 - α excludes 0 exactly when the t-test's p < α).
    Without one because the differences have zero variance: the sign-flip p < α, in the direction of the mean.
    n < 2, or neither: UNCLEAR.
    """
    if n < 2:
        return UNCLEAR
    if math.isfinite(delta_ci_low) and math.isfinite(delta_ci_high):
        if delta_ci_low > 0:
            return HIGHER
        if delta_ci_high < 0:
            return LOWER
        return UNCLEAR
    if math.isfinite(p_signflip) and p_signflip < alpha and delta_mean != 0:
        return HIGHER if delta_mean > 0 else LOWER
    return UNCLEAR


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


def holm_within(frame: pd.DataFrame, by: list[str], p: str = "p_value") -> tuple[pd.Series, pd.Series]:
    """:func:`holm` of column ``p`` within each group of ``by`` (NaN p-values stay NaN and do not count), and each
    group's number m of finite p-values (the family size the adjustment used)."""
    adjusted = pd.Series(np.nan, index=frame.index, dtype=float)
    family = pd.Series(0, index=frame.index, dtype="int64")
    if frame.empty:
        return adjusted, family
    for _, part in frame.groupby(by, dropna=False):
        idx = part.index
        values = part[p].astype(float).to_numpy()
        adjusted.loc[idx] = holm(values)
        family.loc[idx] = int(np.isfinite(values).sum())
    return adjusted, family


def verdict(delta_lo: float, delta_hi: float) -> str:
    """'higher', 'lower' or 'unclear' from the interval of Δ alone (NaN bounds: unclear).

    Kept with its old 'unclear' for callers that hold only the bounds; it cannot see a zero-variance comparison's
    sign-flip test, so such a comparison is 'unclear' here. ``paired(...)["verdict"]`` is the full rule.
    """
    if math.isnan(delta_lo) or math.isnan(delta_hi):
        return "unclear"
    if delta_lo > 0:
        return "higher"
    if delta_hi < 0:
        return "lower"
    return "unclear"
