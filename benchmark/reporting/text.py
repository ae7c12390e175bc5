"""Words and numbers as a reader sees them: the readable name of every configuration (a scratch student named by
the role it is the control for: "scratch · js_entanglement A (CNN)"), numbers, intervals and p-values formatted
for a table cell, the verdict and minimum-detectable-difference phrases, and a config value as text.

Every paired comparison a table or sentence shows is read through :func:`comparison`: ``stats.paired``'s keys,
whether it comes from a summary row (``delta_*``) or an ablation row's comparison with the default
(``vs_default_*``).
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from benchmark.reporting import stats
from benchmark.reporting.columns import INIT, ORDER, ORDER_ONLY, SCRATCH, is_percent, lower_is_better

# ---- labels ----------------------------------------------------------------------------------------------

ARCH_WORDS = {"cnn": "CNN", "mlp": "MLP", "rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "vit": "ViT"}
MAX_PARTNERS = 12  # a scratch label names the roles it is the control for (this many at most, then "+ N more")


def config_label(method: str, variant: str) -> str:
    """``method`` or ``method [variant]``."""
    return method if variant == "default" else f"{method} [{variant}]"


def arch_text(arch: str | None, method: str, role: str) -> str:
    """A short name for a role's architecture: its words without the method's prefix or the role's name, the
    usual acronyms capitalised ("js_cnn" of js_entanglement's A: "CNN"; "hinton_student" of a student: "")."""
    if not isinstance(arch, str):
        return ""
    drop = {method.split("_")[0].lower(), role.lower()}
    words = [w for w in arch.split("_") if w and w.lower() not in drop]
    return " ".join(ARCH_WORDS.get(w.lower(), w) for w in words)


def scratch_labels(current: pd.DataFrame, roles: pd.DataFrame, names: dict[tuple, str] | None = None
                   ) -> dict[tuple, str]:
    """(preset, dataset, scratch variant) -> "scratch · M R (ARCH)": the scratch student named by the role(s) it
    is the control for (same pair_key), the default variants' roles when any pairs with it, else every variant's
    (named with its variant, or by ``names`` {(preset, dataset, method, variant): name} where given). A scratch
    student no role pairs with keeps its config name."""
    named = names or {}
    runs = current[["run_id", "method", "variant", "preset", "dataset"]].merge(roles, on="run_id")
    runs = runs.dropna(subset=["pair_key"])
    mine = runs[runs.method == SCRATCH]
    partners = runs[runs.method != SCRATCH]
    labels: dict[tuple, str] = {}
    for (preset, dataset, variant), block in mine.groupby(["preset", "dataset", "variant"], sort=True):
        found = partners[(partners.preset == preset) & (partners.dataset == dataset)
                         & partners.pair_key.isin(set(block.pair_key))]
        default = found[found.variant == "default"]
        found = default if len(default) else found
        names = list(dict.fromkeys(
            " ".join(filter(None, (named.get((preset, dataset, r.method, r.variant),
                                             config_label(r.method, r.variant)), r.role,
                                   f"({a})" if (a := arch_text(r.arch, r.method, r.role)) else "")))
            for r in found.sort_values(["method", "variant", "role"]).itertuples()))
        if not names:
            labels[(preset, dataset, variant)] = config_label(SCRATCH, variant)
            continue
        more = len(names) - MAX_PARTNERS
        text = "scratch · " + " / ".join(names[:MAX_PARTNERS]) + (f" + {more} more" if more > 0 else "")
        labels[(preset, dataset, variant)] = text
    # two scratch configurations with one name (e.g. one role trained under two recipes): the config tells them apart
    seen = Counter((k[0], k[1], v) for k, v in labels.items())
    return {k: (f"{v} [{k[2]}]" if seen[(k[0], k[1], v)] > 1 else v) for k, v in labels.items()}


def model_labels(current: pd.DataFrame, roles: pd.DataFrame, names: dict[tuple, str] | None = None
                 ) -> dict[tuple, str]:
    """(preset, dataset, method, variant) -> readable name: a scratch student's ``scratch_labels``, any other
    configuration its name in ``names`` (``families.config_names``), else its ``config_label``."""
    names = names or {}
    scratch = scratch_labels(current, roles, names)
    out = {}
    for r in current.drop_duplicates(["preset", "dataset", "method", "variant"]).itertuples():
        key = (r.preset, r.dataset, r.method, r.variant)
        own = names.get(key, config_label(r.method, r.variant))
        out[key] = scratch.get(key[:2] + (r.variant,), own) if r.method == SCRATCH else own
    return out


# ---- numbers, intervals, p-values ------------------------------------------------------------------------

def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def fmt_value(value: float, metric: str, signed: bool = False) -> str:
    if _missing(value):
        return "–"
    v = value * 100 if is_percent(metric) else value
    digits = 2 if is_percent(metric) else 4
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_mean_ci(r, metric: str) -> str:
    if math.isnan(r.ci_low):
        return f"{fmt_value(r.mean, metric)} (n<2)"
    half = (r.ci_high - r.ci_low) / 2
    return f"{fmt_value(r.mean, metric)} ± {fmt_value(half, metric)}"


def comparison(row, prefix: str = "delta_", n: str = "pair_n") -> dict:
    """One paired comparison of a table row, under ``stats.paired``'s names: a summary row (``delta_*``, n in
    ``pair_n``) or an ablation row's comparison with the default (``prefix="vs_default_"``, n in
    ``vs_default_n``)."""
    if isinstance(row, dict):
        d = row
    elif isinstance(row, pd.Series):
        d = row.to_dict()
    else:
        d = row._asdict() if hasattr(row, "_asdict") else dict(vars(row))

    def get(key, default=math.nan):
        value = d.get(key, default)
        return default if value is None or (isinstance(value, float) and math.isnan(value)) else value

    if prefix == "delta_":
        keys = {k: get(k) for k in ("delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "p_ttest",
                                    "p_signflip", "p_wilcoxon", "p_value", "mde", "mde_alpha")}
        keys["halfwidth"] = get("delta_halfwidth")
        text = {k: get(k, "") for k in ("p_value_test", "verdict", "mde_note", "note", "pairing", "delta_vs",
                                        "family")}
        text["verdict_nominal"] = get("verdict_nominal", text["verdict"])
        holm = {"p_holm": get("p_holm"), "holm_m": get("holm_m", 0)}
    else:
        names = ("delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "halfwidth", "p_ttest", "p_signflip",
                 "p_wilcoxon", "p_value", "mde", "mde_alpha")
        keys = {k: get(prefix + k) for k in names}
        text = {k: get(prefix + k, "") for k in ("p_value_test", "verdict", "mde_note", "note", "family")}
        text.update(pairing="", delta_vs="default", verdict_nominal=get(prefix + "verdict_nominal", text["verdict"]))
        holm = {"p_holm": get(prefix + "p_holm"), "holm_m": get(prefix + "holm_m", 0)}
    count = get(n, 0)
    return {"n": int(count) if not _missing(count) else 0, **keys, **text, **holm}


ANCHOR = "anchor: no distillation signal"  # the Δ cell of a role that is shown, not compared


def is_anchor(row) -> bool:
    """A row of a role with no distillation signal (``anchor`` true; missing or NaN: not an anchor)."""
    value = row.get("anchor") if isinstance(row, dict) else getattr(row, "anchor", False)
    return not _missing(value) and bool(value)


def has_interval(c: dict) -> bool:
    return not (_missing(c["delta_ci_low"]) or _missing(c["delta_ci_high"]))


def zero_variance(c: dict) -> bool:
    """n ≥ 2 paired differences, all equal: no t-interval exists (``stats.paired``)."""
    return c["n"] >= 2 and not has_interval(c) and c.get("delta_std") == 0


def no_interval_text(n: int) -> str:
    return f"no interval: all {n} differences equal"


def pairing_mark(c: dict) -> str:
    """"order-paired only" for a comparison with its scratch student that shares the batch order only; "pairing
    not recorded" when its records do not say; "" for an init-paired one (and for other references)."""
    if not str(c.get("delta_vs", "")).startswith(SCRATCH):
        return ""
    if c.get("pairing") == ORDER:
        return ORDER_ONLY
    return "" if c.get("pairing") == INIT else "pairing not recorded"


def has_pair(c: dict) -> bool:
    """Whether a comparison (:func:`comparison`) has paired differences: a Δ to show."""
    return c["n"] != 0 and not _missing(c["delta_mean"])


def fmt_delta(r, metric: str, c: dict | None = None) -> str:
    """The Δ cell: mean and 95% interval, or why there is no interval; the pairing mark if any."""
    c = c or comparison(r)
    if c["delta_vs"] == "" and c["n"] == 0:
        return "–"
    if not has_pair(c):
        return "no pair"
    text = fmt_value(c["delta_mean"], metric, signed=True)
    if has_interval(c):
        text += f" [{fmt_value(c['delta_ci_low'], metric, True)}, {fmt_value(c['delta_ci_high'], metric, True)}]"
    elif zero_variance(c):
        text += f", {no_interval_text(c['n'])}"
    elif c["n"] < 2:
        text += ", n=1: no interval"
    mark = pairing_mark(c)
    return text + (f" ({mark})" if mark else "")


def fmt_p(p: float) -> str:
    if _missing(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.0e}"


TEST_SHORT = {"t-test": "t", "sign-flip": "sign-flip"}


def fmt_p_test(c: dict) -> str:
    """The comparison's p-value with its test: "0.032 (t)", "0.25 (sign-flip)"."""
    if _missing(c["p_value"]):
        return "–"
    return f"{fmt_p(c['p_value'])} ({TEST_SHORT.get(c['p_value_test'], c['p_value_test'])})"


def fmt_holm(c: dict) -> str:
    p = c["p_holm"]
    if _missing(p):
        return "–"
    return fmt_p(p) + (" *" if p < stats.ALPHA else "")


def fmt_family(c: dict) -> str:
    """The comparison's Holm family and its size: "primary (m=6)"."""
    return f"{c['family']} (m={int(c['holm_m'])})" if c.get("family") and not _missing(c["p_holm"]) else "–"


UNCLEAR_CORRECTED = "unclear after correction"


def verdict_text(verdict: str, against: str, metric: str) -> str:
    """"beats X", "worse than X" or "unclear at this n" (for a metric where lower is better, a lower value
    beats)."""
    if verdict not in (stats.HIGHER, stats.LOWER):
        return stats.UNCLEAR
    better = (verdict == stats.HIGHER) != lower_is_better(metric)
    return f"beats {against}" if better else f"worse than {against}"


def verdict_words(c: dict, against: str, metric: str) -> str:
    """The verdict of a comparison after its family's correction: "beats X" / "worse than X" where p (Holm) <
    α; "unclear after correction (nominal p = 0.03)" where only the uncorrected test decided; else "unclear at
    this n"."""
    if c["verdict"] in (stats.HIGHER, stats.LOWER):
        return verdict_text(c["verdict"], against, metric)
    if c.get("verdict_nominal") in (stats.HIGHER, stats.LOWER):
        return f"{UNCLEAR_CORRECTED} (nominal p = {fmt_p(c['p_value'])})"
    return stats.UNCLEAR


def mde_short(c: dict, metric: str) -> str:
    """The MDE cell: the minimum detectable |Δ| (pp for accuracies), or in two words why there is none."""
    if not _missing(c["mde"]):
        return fmt_value(c["mde"], metric)
    if c["n"] == 0:
        return "–"
    if c["n"] < 2:
        return "none (n<2)"
    if zero_variance(c):
        return "none (no spread)"
    return "none"


MDE_HEAD = "MDE (α/m)"  # the MDE column: stated at Holm's first-step level over the row's family


def mde_level(c: dict) -> str:
    """"α = 0.05/8 = 0.00625 (Holm's first step over its family of 8)", or "α = 0.05" for a family of one or none."""
    m = int(c.get("holm_m") or 0)
    if m <= 1:
        return f"α = {stats.ALPHA}"
    return f"α = {stats.ALPHA}/{m} = {stats.holm_first_level(m):.3g}, Holm's first step over its family of {m}"


def mde_sentence(c: dict, metric: str) -> str:
    """What an unclear comparison could have seen: "it could have detected |Δ| ≥ X pp at 80% power", or why the
    smallest detectable difference cannot be stated."""
    unit = " pp" if is_percent(metric) else ""
    if not _missing(c["mde"]):
        return (f"it could have detected |Δ| ≥ {fmt_value(c['mde'], metric)}{unit} at {stats.POWER:.0%} power "
                f"({mde_level(c)}, n={c['n']}, from the observed SD of the differences)")
    return f"no minimum detectable difference can be stated ({c['mde_note'] or 'no spread to estimate it from'})"


# ---- config values ---------------------------------------------------------------------------------------

def param_text(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def same_level(a, b) -> bool:
    """Two settings of a parameter are the same level: equal as numbers (4 and 4.0), else as text."""
    a, b = param_text(a), param_text(b)
    if a == b:
        return True
    try:
        return float(a) == float(b) and a.lower() not in ("true", "false") and b.lower() not in ("true", "false")
    except ValueError:
        return False

