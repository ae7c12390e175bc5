"""One paired comparison in words, as the report writes it (:func:`delta_sentence`).

"beats" or "is worse than" only when the comparison survives Holm's correction within its family (p (Holm) < α);
a comparison that only the uncorrected test decides is "unclear after correction", with its nominal p-value;
otherwise "unclear at this n", with the smallest difference the comparison could have detected at 80% power (or
why none can be stated). The p-value is named by its test. When the differences have zero variance there is no
interval and the exact sign-flip test gives the p-value.
"""

from __future__ import annotations

import math

from benchmark.reporting import columns, stats, text


def amount(value: float, metric: str) -> str:
    return f"{value * 100:+.1f} pp" if columns.is_percent(metric) else f"{value:+.3g}"


def interval(lo: float, hi: float, metric: str) -> str:
    if columns.is_percent(metric):
        return f"95% CI [{lo * 100:.1f}, {hi * 100:.1f}]"
    return f"95% CI [{lo:.3g}, {hi:.3g}]"


def holm_clause(c: dict) -> str:
    """"p (Holm) = 0.01 over the 6 comparisons of its family (primary)", or "" without a corrected p-value."""
    p_holm, m = c.get("p_holm", math.nan), int(c.get("holm_m") or 0)
    if p_holm is None or math.isnan(p_holm):
        return ""
    family = f" ({c['family']})" if c.get("family") else ""
    return f"p (Holm) = {text.fmt_p(p_holm)} over the {m} comparisons of its family{family}"


def _undecided(c: dict, metric: str) -> str:
    """Why a comparison decides nothing: after correction (with the corrected p), or at this n (with its MDE)."""
    found = text.verdict_words(c, "", metric)
    if found.startswith(text.UNCLEAR_CORRECTED):
        return f"{found}: {holm_clause(c)}; {text.mde_sentence(c, metric)}"
    return f"{stats.UNCLEAR}; {text.mde_sentence(c, metric)}"


def delta_sentence(subject: str, against: str, where: str, metric: str, c: dict) -> str:
    """One paired comparison in words; ``c`` is a ``text.comparison`` dict (``stats.paired``'s keys, n, the
    corrected and nominal verdicts, the Holm-adjusted p-value with its family and size)."""
    n, mean = int(c["n"]), c["delta_mean"]
    if n < 2:
        return (f"{subject} differs from {against} {where} by {amount(mean, metric)} in its only paired "
                f"repetition: too few for an interval or a test, so {stats.UNCLEAR}; {text.mde_sentence(c, metric)}.")
    found = text.verdict_words(c, against, metric)
    decided = c["verdict"] in (stats.HIGHER, stats.LOWER)
    if text.zero_variance(c):
        if mean == 0:
            head = f"{subject} matches {against} exactly {where} in all {n} repetitions"
        else:
            head = f"{subject} differs from {against} {where} by {amount(mean, metric)} in each of its {n} repetitions"
        floor = ", the smallest it can be at this n" if mean != 0 and math.isclose(c["p_signflip"], 2 / 2**n) else ""
        numbers = f"{text.no_interval_text(n)}; sign-flip p={text.fmt_p(c['p_signflip'])}{floor}"
        if not decided:
            return f"{head} ({numbers}): {_undecided(c, metric)}."
        return f"{head} ({numbers}): it {found}; {holm_clause(c)}."
    test = c["p_value_test"] or "test"
    numbers = (f"{amount(mean, metric)}, {interval(c['delta_ci_low'], c['delta_ci_high'], metric)}, n={n}, "
               f"{test} p={text.fmt_p(c['p_value'])}")
    if not decided:
        return f"{subject} against {against} {where}: {numbers}; {_undecided(c, metric)}."
    verb = found if found.startswith("beats") else f"is {found}"
    return f"{subject} {verb} {where}: {numbers}; {holm_clause(c)}."


def who(r) -> str:
    """A row's configuration and role: its label ("js_entanglement · views=halves") where it has one."""
    name = r.label if isinstance(getattr(r, "label", None), str) else text.config_label(r.method, r.variant)
    return f"{name} ({r.role})"
