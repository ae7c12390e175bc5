"""Tidy tables from the store: ``metrics.parquet``/``.csv`` (one row per run, role, epoch, metric),
``runs.csv`` (one row per run with its parameters), ``summary.csv``/``summary.md`` (per dataset, method,
variant and role, with paired differences against the scratch student) and ``ablations.csv`` (per method
variant and role, the paired difference against the method's default variant, with the changed parameters as
columns).

Every paired comparison is ``stats.paired`` of the per-repetition differences: its t-interval (none when the
differences have zero variance), its p-value (the t-test's, or the exact sign-flip test's at zero variance), the
uncorrected verdict and the minimum detectable difference. The one statistic computed here is Holm's correction of
those p-values across a family (``add_holm``, ``holm_within``).

Names a reader understands: a scratch student's row is labelled by what it is the control for
("scratch · js_entanglement A (CNN)", ``scratch_labels``); its raw variant (its config) stays in the CSVs.

``epoch == -1`` marks the final evaluation of the model a method ends with (the official numbers); other
epochs are learning curves. Non-finite values are never written. Everything is driven by the store's
contents: a new method's runs appear without any change here.

Two numbers per accuracy, labelled in the ``selection`` column:
- ``final``: the metric of the model the method ends with (the official number);
- ``val_selected``: test accuracy at the epoch of best validation accuracy in the run's learning curve
  (first such epoch), for roles that log per-epoch ``val_acc`` and ``test_acc``. The test set is only read,
  never used to choose.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmark.reporting import stats
from benchmark.reporting.failures import failed_runs_markdown
from benchmark.reporting.stats import mean_ci  # noqa: F401  (kept importable from here)
from benchmark.store import Store, atomic_write_bytes

METRIC_COLUMNS = ["run_id", "method", "variant", "dataset", "rep", "role", "epoch", "metric", "value"]
FINAL = -1
SCRATCH = "scratch_student"  # the control every role with a pair_key is compared with
PRIMARY = "test_acc"  # the official metric: sentences, figures and ablations lead with it
# Final metrics summarised for every role that has them; any other final metric whose name ends in "_acc" is
# added (e.g. a method's own accuracy), except validation/training ones.
SUMMARY_METRICS = ("test_acc", "test_auc", "test_nll", "test_ece", "test_agreement", "probe_acc",
                   "probe_acc_untrained")
LOWER_IS_BETTER = ("_nll", "_ece", "_loss")  # metric-name suffixes where a smaller value is better
# "<m>_untrained" is the same measurement on the untrained network: Δ = <m> - <m>_untrained, paired by run.
UNTRAINED = "_untrained"
FINAL_SEL, VAL_SEL = "final", "val_selected"
GROUP = ["preset", "dataset", "method", "kind", "variant", "role", "metric", "selection"]
UNIT = ["dataset", "base_seed", "data_key", "rep"]  # what makes two runs a pair (same seed, data, repetition)
# What ``stats.paired`` returns, kept per comparison (prefixed ``delta_`` where the name alone is ambiguous).
PAIRED_KEYS = ("delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "halfwidth", "p_ttest", "p_signflip",
               "p_wilcoxon", "p_value", "p_value_test", "verdict", "mde", "mde_note", "note")
SUMMARY_COLUMNS = GROUP + ["label", "n", "mean", "std", "ci_low", "ci_high", "delta_vs", "pairing", "pair_n",
                           "delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "delta_halfwidth", "p_ttest",
                           "p_signflip", "p_wilcoxon", "p_value", "p_value_test", "p_holm", "holm_m",
                           "significant", "verdict", "mde", "mde_note", "note", "wall_time_s"]
# A role's pairing with its scratch student, as its record says: INIT, the same initial weights and batch order;
# ORDER, the same batch order and data only. The tables mark ORDER rows with ORDER_ONLY.
INIT, ORDER = "init", "order"
ORDER_ONLY = "order-paired only"


def is_summarised(metric: str) -> bool:
    if metric in SUMMARY_METRICS:
        return True
    return metric.endswith("_acc") and not metric.startswith(("val_", "train_"))


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


# ---- reading the store ---------------------------------------------------------------------------

def metrics_frame(store: Store, records: list[dict] | None = None) -> pd.DataFrame:
    rows = []
    for rec in records if records is not None else store.iter_runs():
        if rec.get("status") != "ok":
            continue
        for role, epoch, metric, value in rec.get("metrics", []):
            if value is None or not math.isfinite(value):
                continue
            rows.append((rec["run_id"], rec["method"], rec["variant"], rec["dataset"], rec["rep"], role,
                         epoch, metric, float(value)))
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return frame.astype({"rep": "int64", "epoch": "int64", "value": "float64"})


def runs_frame(store: Store, records: list[dict] | None = None) -> pd.DataFrame:
    rows = []
    for rec in records if records is not None else store.iter_runs():
        timing = rec.get("timing") or {}
        row = {
            "run_id": rec["run_id"], "method": rec["method"], "kind": rec.get("kind"),
            "variant": rec["variant"], "dataset": rec["dataset"], "rep": rec["rep"], "seed": rec.get("seed"),
            "base_seed": rec.get("base_seed"), "preset": rec.get("preset"), "status": rec["status"],
            "error": rec.get("error"), "wall_time_s": rec.get("wall_time_s"),
            "step_median_s": timing.get("step_median_s"), "step_iqr_s": timing.get("step_iqr_s"),
            "samples_per_s": timing.get("samples_per_s"), "source_hash": rec.get("source_hash"),
            "git_commit": (rec.get("provenance") or {}).get("git_commit"),
        }
        row.update({f"cfg.{k}": _scalar(v) for k, v in (rec.get("config") or {}).items()})
        row.update({f"data.{k}": v for k, v in (rec.get("data") or {}).items()})
        for role, info in (rec.get("roles") or {}).items():
            row[f"role.{role}.arch"] = info.get("arch")
            row[f"role.{role}.view"] = info.get("view")
            row[f"role.{role}.pair_key"] = info.get("pair_key")
            row[f"role.{role}.pairing"] = info.get("pairing")
        rows.append(row)
    return pd.DataFrame(rows)


def _scalar(value):
    return "x".join(map(str, value)) if isinstance(value, list) else value


@dataclass
class Results:
    """The store read once: every record, and the current successful runs with their metrics and roles."""

    records: list[dict]
    current: pd.DataFrame  # one row per current ok run (identity, unit, timing, config)
    roles: pd.DataFrame  # run_id, role, arch, view, classifier, pair_key
    metrics: pd.DataFrame  # tidy rows of the current runs, with preset/kind/unit columns added
    superseded: int = 0  # ok runs replaced by a newer run of the same method, variant, dataset and repetition
    _cache: dict = field(default_factory=dict, repr=False)

    def _cached(self, name, build):
        if name not in self._cache:
            self._cache[name] = build(self)
        return self._cache[name]

    @property
    def values(self) -> pd.DataFrame:
        """Summarised values per run and role: final metrics and validation-selected test accuracy."""
        return self._cached("values", summary_values)

    @property
    def summary(self) -> pd.DataFrame:
        return self._cached("summary", summary_frame)

    @property
    def ablations(self) -> pd.DataFrame:
        return self._cached("ablations", lambda r: ablation_frame(r, r.summary))

    @property
    def labels(self) -> dict[tuple, str]:
        """(preset, dataset, method, variant) -> the readable name of that configuration (``model_labels``)."""
        return self._cached("labels", model_labels)


def load_results(out: Path | str) -> Results:
    records = list(Store(out).iter_runs())
    ok = [r for r in records if r.get("status") == "ok"]
    latest: dict[tuple, dict] = {}
    for rec in ok:
        key = (rec["method"], rec.get("kind"), rec["variant"], rec.get("preset"), *_unit(rec))
        if key not in latest or str(rec.get("finished_at", "")) >= str(latest[key].get("finished_at", "")):
            latest[key] = rec
    current_records = sorted(latest.values(), key=lambda r: r["run_id"])
    current = pd.DataFrame([_current_row(r) for r in current_records], columns=CURRENT_COLUMNS)
    roles = pd.DataFrame([{"run_id": r["run_id"], "role": role, "arch": info.get("arch"),
                           "view": info.get("view"), "classifier": bool(info.get("classifier", True)),
                           "pair_key": info.get("pair_key"), "pairing": info.get("pairing") or ""}
                          for r in current_records for role, info in (r.get("roles") or {}).items()],
                         columns=ROLE_COLUMNS)
    tidy = metrics_frame(Store(out), current_records)
    extra = current[["run_id", "kind", "preset", "base_seed", "data_key"]]
    metrics = tidy.merge(extra, on="run_id", how="left")
    return Results(records, current, roles, metrics, superseded=len(ok) - len(current_records))


ROLE_COLUMNS = ["run_id", "role", "arch", "view", "classifier", "pair_key", "pairing"]  # pairing "" if unrecorded
CURRENT_COLUMNS = ["run_id", "method", "kind", "variant", "preset", *UNIT, "wall_time_s", "step_median_s",
                   "step_iqr_s", "samples_per_s", "source_hash", "config"]


def _current_row(rec: dict) -> dict:
    timing = rec.get("timing") or {}
    return {"run_id": rec["run_id"], "method": rec["method"], "kind": rec.get("kind") or "method",
            "variant": rec["variant"], "preset": rec.get("preset") or "?",
            **dict(zip(UNIT, _unit(rec), strict=True)),
            "wall_time_s": rec.get("wall_time_s"), "step_median_s": timing.get("step_median_s"),
            "step_iqr_s": timing.get("step_iqr_s"), "samples_per_s": timing.get("samples_per_s"),
            "source_hash": rec.get("source_hash"), "config": rec.get("config") or {}}


def _unit(rec: dict) -> tuple:
    data = json.dumps(rec.get("data") or {}, sort_keys=True)
    return (rec["dataset"], rec.get("base_seed", 0), data, rec["rep"])


# ---- per-run values and the summary --------------------------------------------------------------

def val_selected(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (run, role): test_acc at the first epoch of best val_acc; columns run_id, role, epoch, value."""
    curves = metrics[(metrics.epoch >= 0) & metrics.metric.isin(["val_acc", "test_acc"])]
    if curves.empty:
        return pd.DataFrame(columns=["run_id", "role", "epoch", "value"])
    wide = curves.pivot_table(index=["run_id", "role", "epoch"], columns="metric", values="value",
                              aggfunc="first")
    if not {"val_acc", "test_acc"} <= set(wide.columns):
        return pd.DataFrame(columns=["run_id", "role", "epoch", "value"])
    wide = wide.dropna(subset=["val_acc", "test_acc"]).reset_index().sort_values(["run_id", "role", "epoch"])
    best = wide.loc[wide.groupby(["run_id", "role"], sort=False)["val_acc"].idxmax()]
    return best[["run_id", "role", "epoch", "test_acc"]].rename(columns={"test_acc": "value"})


def summary_values(results: Results) -> pd.DataFrame:
    m = results.metrics
    final = m[(m.epoch == FINAL) & m.metric.map(is_summarised).astype(bool)].assign(selection=FINAL_SEL)
    chosen = val_selected(m).assign(metric=PRIMARY, selection=VAL_SEL).drop(columns="epoch")
    ident = results.current[["run_id", "method", "kind", "variant", "preset", *UNIT]]
    chosen = chosen.merge(ident, on="run_id")
    cols = ["run_id", "method", "kind", "variant", "preset", *UNIT, "role", "metric", "selection", "value"]
    values = pd.concat([final.reindex(columns=cols), chosen.reindex(columns=cols)], ignore_index=True)
    values = values.merge(results.roles[["run_id", "role", "pair_key", "pairing"]], on=["run_id", "role"],
                          how="left")
    return values.astype({"value": "float64"})


def summary_frame(results: Results) -> pd.DataFrame:
    values = results.values
    if values.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    scratch = _scratch_reference(results, values)
    wall = results.current.set_index("run_id")["wall_time_s"].astype(float)
    labels = results.labels
    rows = []
    for key, group in values.groupby(GROUP, sort=True, dropna=False):
        row = dict(zip(GROUP, key, strict=True))
        mean, std, lo, hi = stats.mean_ci(group.value.to_numpy())
        row.update(label=labels.get((row["preset"], row["dataset"], row["method"], row["variant"]),
                                    config_label(row["method"], row["variant"])),
                   n=len(group), mean=mean, std=std, ci_low=lo, ci_high=hi,
                   wall_time_s=float(wall.reindex(group.run_id.unique()).mean()))
        row.update(_reference(row, group, values, scratch))
        rows.append(row)
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    return add_holm(summary)


def holm_within(frame: pd.DataFrame, by: list[str], p: str = "p_value") -> tuple[pd.Series, pd.Series]:
    """Holm-adjusted ``p`` within each group of ``by`` (NaN p-values stay NaN and do not count), and each group's
    number m of finite p-values (the family size the adjustment used)."""
    adjusted = pd.Series(np.nan, index=frame.index, dtype=float)
    family = pd.Series(0, index=frame.index, dtype="int64")
    if frame.empty:
        return adjusted, family
    for _, part in frame.groupby(by, dropna=False):
        idx = part.index
        values = part[p].astype(float).to_numpy()
        adjusted.loc[idx] = stats.holm(values)
        family.loc[idx] = int(np.isfinite(values).sum())
    return adjusted, family


def add_holm(summary: pd.DataFrame) -> pd.DataFrame:
    """Holm's correction of each comparison's p-value (``p_value``: the paired t-test's, or the sign-flip test's
    when the differences have zero variance) within each family: every comparison of one metric and selection in
    the table."""
    summary = summary.copy()
    summary["p_holm"], summary["holm_m"] = holm_within(summary, ["metric", "selection"])
    summary["significant"] = summary.p_holm < stats.ALPHA
    return summary


def _scratch_reference(results: Results, values: pd.DataFrame) -> pd.DataFrame:
    s = values[values.method == SCRATCH].dropna(subset=["pair_key"])
    s = s.set_index([*UNIT, "pair_key", "metric", "selection"])[["value", "variant", "role"]]
    return s[~s.index.duplicated(keep="last")]  # one partner per pair, even in an unusual store


def pairing_of(group: pd.DataFrame) -> str:
    """INIT when every run of the group records its role as init-paired; ORDER when any records "order"; "" when
    any run does not record it (an older record: nothing is claimed)."""
    kinds = set(group.pairing.fillna("")) if "pairing" in group else {""}
    if ORDER in kinds:
        return ORDER
    return INIT if kinds == {INIT} else ""


def _reference(row: dict, group: pd.DataFrame, values: pd.DataFrame, scratch: pd.DataFrame) -> dict:
    """Paired Δ of one summary row: against the scratch student, or the untrained control of the same run."""
    keys = group.pair_key.dropna().unique()
    if row["method"] != SCRATCH and len(keys) == 1:
        index = pd.MultiIndex.from_frame(group[UNIT].assign(pair_key=keys[0], metric=row["metric"],
                                                            selection=row["selection"]))
        ref = scratch.reindex(index)
        found = ref.value.notna().to_numpy()
        if found.any():
            variants = sorted(set(ref.variant.dropna()))
            label = SCRATCH + ("" if variants == ["default"] else f" [{', '.join(variants)}]")
            diffs = group.value.to_numpy()[found] - ref.value.to_numpy()[found]
            return {**_delta(label, diffs), "pairing": pairing_of(group)}
        units = scratch.index.droplevel(["metric", "selection"])
        if not units.isin(index.droplevel(["metric", "selection"])).any():
            return {"delta_vs": SCRATCH, "pair_n": 0, "pairing": pairing_of(group),
                    "note": "no paired scratch_student run in the store"}
        return {}  # the scratch student has no such metric (e.g. agreement with a teacher it never had)
    control = row["metric"] + UNTRAINED
    if row["selection"] == FINAL_SEL and not row["metric"].endswith(UNTRAINED):
        other = values[(values.metric == control) & (values.role == row["role"])].set_index("run_id").value
        other = other.reindex(group.run_id)
        found = other.notna().to_numpy()
        if found.any():
            # the same network before training: the same initial weights by construction
            return {**_delta(f"{control} (same run)", group.value.to_numpy()[found] - other.to_numpy()[found]),
                    "pairing": INIT}
    return {}


def _delta(label: str, diffs: np.ndarray) -> dict:
    p = stats.paired(diffs)
    out = {"delta_vs": label, "pair_n": p["n"], **{k: p[k] for k in PAIRED_KEYS}}
    out["delta_halfwidth"] = out.pop("halfwidth")
    return out


# ---- labels ----------------------------------------------------------------------------------------------

ARCH_WORDS = {"cnn": "CNN", "mlp": "MLP", "rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "vit": "ViT"}
MAX_PARTNERS = 3  # a scratch label names at most this many of the roles it is the control for


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


def scratch_labels(current: pd.DataFrame, roles: pd.DataFrame) -> dict[tuple, str]:
    """(preset, dataset, scratch variant) -> "scratch · M R (ARCH)": the scratch student named by the role(s) it
    is the control for (same pair_key), the default variants' roles when any pairs with it, else every variant's
    (named with its variant). A scratch student no role pairs with keeps its config name."""
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
            " ".join(filter(None, (config_label(r.method, r.variant), r.role,
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


def model_labels(results: Results) -> dict[tuple, str]:
    """(preset, dataset, method, variant) -> readable name: a scratch student's ``scratch_labels``, any other
    configuration its ``config_label``."""
    scratch = scratch_labels(results.current, results.roles)
    out = {}
    for r in results.current.drop_duplicates(["preset", "dataset", "method", "variant"]).itertuples():
        key = (r.preset, r.dataset, r.method, r.variant)
        out[key] = scratch.get(key[:2] + (r.variant,), config_label(r.method, r.variant)) \
            if r.method == SCRATCH else config_label(r.method, r.variant)
    return out


# ---- markdown ------------------------------------------------------------------------------------

def order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Baselines first (scratch students by label, then others), then methods by name; the default variant
    first."""
    rank = frame.kind.ne("baseline").astype(int) * 2 + frame.method.ne(SCRATCH).astype(int)
    names = frame["label"].where(frame.method.eq(SCRATCH), "") if "label" in frame else ""
    return frame.assign(_r=rank, _d=frame.variant.ne("default"), _l=names).sort_values(
        ["_r", "method", "_l", "_d", "variant", "role"]).drop(columns=["_r", "_d", "_l"])


def main_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The default variant of each method, and every variant of baselines and of methods stored without one
    (other variants belong to the ablations)."""
    if frame.empty:
        return frame
    has_default = frame.groupby(["preset", "dataset", "method"]).variant.transform(
        lambda v: v.eq("default").any())
    return frame[frame.kind.eq("baseline") | frame.variant.eq("default") | ~has_default.astype(bool)]


def is_percent(metric: str) -> bool:
    return metric.endswith(("_acc", "_agreement", "_gain"))


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
                                    "p_signflip", "p_wilcoxon", "p_value", "mde")}
        keys["halfwidth"] = get("delta_halfwidth")
        text = {k: get(k, "") for k in ("p_value_test", "verdict", "mde_note", "note", "pairing", "delta_vs")}
        holm = {"p_holm": get("p_holm"), "holm_m": get("holm_m", 0)}
    else:
        names = ("delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "halfwidth", "p_ttest", "p_signflip",
                 "p_wilcoxon", "p_value", "mde")
        keys = {k: get(prefix + k) for k in names}
        text = {k: get(prefix + k, "") for k in ("p_value_test", "verdict", "mde_note", "note")}
        text.update(pairing="", delta_vs="default")
        holm = {"p_holm": get(prefix + "p_holm"), "holm_m": get(prefix + "holm_m", 0)}
    count = get(n, 0)
    return {"n": int(count) if not _missing(count) else 0, **keys, **text, **holm}


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


def fmt_delta(r, metric: str, c: dict | None = None) -> str:
    """The Δ cell: mean and 95% interval, or why there is no interval; the pairing mark if any."""
    c = c or comparison(r)
    if c["delta_vs"] == "" and c["n"] == 0:
        return "–"
    if c["n"] == 0 or _missing(c["delta_mean"]):
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


def verdict_text(verdict: str, against: str, metric: str) -> str:
    """"beats X", "worse than X" or "unclear at this n" (for a metric where lower is better, a lower value
    beats)."""
    if verdict not in (stats.HIGHER, stats.LOWER):
        return stats.UNCLEAR
    better = (verdict == stats.HIGHER) != lower_is_better(metric)
    return f"beats {against}" if better else f"worse than {against}"


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


def mde_sentence(c: dict, metric: str) -> str:
    """What an unclear comparison could have seen: "it could have detected |Δ| ≥ X pp at 80% power", or why the
    smallest detectable difference cannot be stated."""
    unit = " pp" if is_percent(metric) else ""
    if not _missing(c["mde"]):
        return (f"it could have detected |Δ| ≥ {fmt_value(c['mde'], metric)}{unit} at {stats.POWER:.0%} power "
                f"(α = {stats.ALPHA}, n={c['n']}, from the observed SD of the differences)")
    return f"no minimum detectable difference can be stated ({c['mde_note'] or 'no spread to estimate it from'})"


def _table(head: list[str], rows: list[list[str]], right: int) -> list[str]:
    align = ["---"] * (len(head) - right) + ["---:"] * right
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _cells(r, metric: str, against: str) -> list[str]:
    """Δ, pairs, p (test), p (Holm), verdict and MDE of one summary row."""
    c = comparison(r)
    if not isinstance(r.delta_vs, str):
        return ["–"] * 6
    if c["n"] == 0:
        return [fmt_delta(r, metric, c), "0", "–", "–", "–", "–"]
    return [fmt_delta(r, metric, c), str(c["n"]), fmt_p_test(c), fmt_holm(c),
            verdict_text(c["verdict"], against, metric), mde_short(c, metric)]


COMPARISON_HEAD = ["pairs", "p (test)", "p (Holm)", "verdict", "MDE"]


def accuracy_table(block: pd.DataFrame, selection: str) -> list[str]:
    part = order_rows(block[(block.metric == PRIMARY) & (block.selection == selection)])
    if part.empty:
        return []
    rows = []
    for r in part.itertuples():
        cells = ["reference", "–", "–", "–", "–", "–"] if r.method == SCRATCH else _cells(r, PRIMARY, "scratch")
        wall = f"{r.wall_time_s:.1f}" if not math.isnan(r.wall_time_s) else "–"
        rows.append([r.label, r.role, str(r.n), fmt_mean_ci(r, PRIMARY), *cells, wall])
    return _table(["model", "role", "n", "accuracy % ± 95% CI", "Δ vs scratch, pp [95% CI]", *COMPARISON_HEAD,
                   "wall s"], rows, 9)


def other_table(block: pd.DataFrame) -> list[str]:
    controls = set(block.metric[block.metric.str.endswith(UNTRAINED)].str[:-len(UNTRAINED)])
    part = block[(block.metric != PRIMARY) & (block.selection == FINAL_SEL) & ~block.metric.isin(controls)
                 & ~block.metric.str.endswith(UNTRAINED)]
    if part.empty:
        return []
    rows = [[r.label, r.role, r.metric, str(r.n), fmt_mean_ci(r, r.metric), *_cells(r, r.metric, "scratch")]
            for r in order_rows(part).itertuples()]
    return _table(["model", "role", "metric", "n", "mean ± 95% CI", "Δ vs scratch [95% CI]", *COMPARISON_HEAD],
                  rows, 8)


def control_tables(block: pd.DataFrame) -> list[str]:
    """Metrics that have an untrained control (e.g. linear probes of label-free layers), side by side."""
    lines: list[str] = []
    final = block[block.selection == FINAL_SEL]
    for control in sorted(set(final.metric[final.metric.str.endswith(UNTRAINED)])):
        metric = control[:-len(UNTRAINED)]
        trained = order_rows(final[final.metric == metric])
        base = final[final.metric == control].set_index(["method", "variant", "role"])
        rows = []
        for r in trained.itertuples():
            key = (r.method, r.variant, r.role)
            untrained = "–"
            if key in base.index:
                untrained = fmt_mean_ci(SimpleNamespace(**base.loc[key].to_dict()), metric)
            rows.append([r.label, r.role, str(r.n), fmt_mean_ci(r, metric), untrained,
                         *_cells(r, metric, "untrained")])
        if rows:
            lines += [f"#### {metric}: trained vs untrained (same runs)", ""]
            lines += _table(["model", "role", "n", f"{metric} ± 95% CI", f"{control} ± 95% CI", "Δ [95% CI]",
                             *COMPARISON_HEAD], rows, 9) + [""]
    return lines


def how_to_read_summary() -> str:
    return (
        "Mean over repetitions with a 95% Student-t interval. Δ is paired: each run minus its scratch student "
        "(the same architecture, input view and recipe trained alone, named by the role it is the control for) "
        "on the same dataset and repetition, with the same seed. Unmarked rows share the scratch student's "
        f"initial weights and batch order; rows marked \"{ORDER_ONLY}\" share its data and batch order but not "
        "its initial weights. The interval is a 95% t-interval of the per-repetition differences; when all "
        "differences are equal no t-interval exists and the cell says so (\"no interval: all n differences "
        "equal\"). pairs: n, the number of paired repetitions. p (test): the comparison's two-sided p-value and "
        "its test (t: paired t-test; sign-flip: the exact paired sign-flip test, used when the differences have "
        "zero variance). p (Holm): that p-value after Holm's correction across every comparison of the same "
        f"metric and selection in this table; `*` marks p (Holm) < {stats.ALPHA}. verdict: \"beats\" or "
        f"\"worse than\" when the uncorrected 95% interval excludes 0 (at zero variance: sign-flip p < "
        f"{stats.ALPHA}), else \"{stats.UNCLEAR}\". MDE: the smallest |Δ| the comparison could detect with "
        f"{stats.POWER:.0%} power at α = {stats.ALPHA}, given its n and the observed SD of the differences "
        "(none without spread). Wilcoxon signed-rank p-values (with at least "
        f"{stats.WILCOXON_MIN_NONZERO} non-zero differences) and every config are in `summary.csv`. "
        "Accuracies in %, their Δ and MDE in pp.")


def summary_markdown(summary: pd.DataFrame, superseded: int = 0, records: list[dict] | None = None) -> str:
    """``summary.md``; with ``records``, a "Failed runs" section at the end names the runs that failed."""
    lines = ["# Summary", "", how_to_read_summary(), ""]
    if superseded:
        lines += [f"{superseded} older run(s), replaced by newer runs of the same configuration, "
                  "are left out.", ""]
    for (dataset, preset), block in summary.groupby(["dataset", "preset"], sort=True):
        lines += [f"## {dataset} (preset {preset})", ""]
        official = accuracy_table(block, FINAL_SEL)
        if official:
            lines += ["### Test accuracy, official: the model each method ends with", ""] + official + [""]
        selected = accuracy_table(block, VAL_SEL)
        if selected:
            lines += ["### Test accuracy, validation-selected: at the epoch of best validation accuracy", ""]
            lines += selected + [""]
        other = other_table(block)
        if other:
            lines += ["### Other final metrics", ""] + other + [""]
        controls = control_tables(block)
        if controls:
            lines += ["### Against an untrained control", ""] + controls
    if summary.empty:
        lines += ["No successful runs in the store.", ""]
    failed = failed_runs_markdown(records) if records is not None else ""
    if failed:
        lines += [failed]
    return "\n".join(lines).rstrip() + "\n"


# ---- ablations -----------------------------------------------------------------------------------

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


# The vs-scratch comparison of the summary row, carried into each ablation row.
VS_SCRATCH = ["label", "n", "mean", "ci_low", "ci_high", "delta_vs", "pairing", "pair_n", "delta_mean",
              "delta_std", "delta_ci_low", "delta_ci_high", "delta_halfwidth", "p_value", "p_value_test",
              "p_holm", "holm_m", "verdict", "mde", "mde_note", "note"]
VS_DEFAULT = "vs_default_"  # prefix of the comparison with the method's default variant
ABLATION_FAMILY = ["preset", "dataset", "method", "metric"]  # Holm families of the Δ-vs-default comparisons


def changed_fields(settings: pd.Series, variant: str) -> list[str]:
    """The config fields where ``variant`` differs from the default variant's config, sorted."""
    if "default" not in settings.index:
        return []
    base, cfg = settings["default"], settings[variant]
    return sorted(k for k in set(base) | set(cfg) if base.get(k) != cfg.get(k))


def ablation_frame(results: Results, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, variant, role, metric) of every method stored in its default variant and at least
    one other, on one preset and dataset: the variant's summary numbers (and its Δ vs scratch), the config fields
    it changes from the default (``changed``, ``factors``, ``n_factors``; ``param.<name>`` for every field some
    variant changes; ``default_level`` for a one-factor variant) and ``vs_default_*``: ``stats.paired`` of its
    differences from the default run of the same repetition, with Holm's correction within each method, dataset,
    preset and metric (``vs_default_p_holm``). Only roles and metrics the default variant has are compared (a
    method's teacher stage is a requirement, not an ablation). Main metrics only (``is_main``)."""
    rows = []
    methods = results.current[results.current.kind != "baseline"]
    values = results.values[results.values.selection == FINAL_SEL]
    index = summary[summary.selection == FINAL_SEL].set_index(["preset", "dataset", "method", "variant", "role",
                                                                "metric"])
    index = index[~index.index.duplicated()]
    for (preset, dataset, method), runs in methods.groupby(["preset", "dataset", "method"], sort=True):
        if runs.variant.nunique() < 2 or not runs.variant.eq("default").any():
            continue
        settings = runs.drop_duplicates("variant").set_index("variant").config
        vals = values[values.run_id.isin(runs.run_id) & values.metric.map(is_main).astype(bool)]
        default = vals[vals.variant == "default"]
        compared = set(zip(default.role, default.metric, strict=True))
        vals = vals[[rm in compared for rm in zip(vals.role, vals.metric, strict=True)]]
        if vals.variant.nunique() < 2:
            continue
        changed = {v: changed_fields(settings, v) for v in settings.index}
        params = sorted({k for v in vals.variant.unique() for k in changed[v]})
        reference = default.set_index([*UNIT, "role", "metric"]).value
        reference = reference[~reference.index.duplicated(keep="last")]
        for (variant, role, metric), group in vals.groupby(["variant", "role", "metric"], sort=True):
            fields = changed[variant]
            cfg = settings[variant]
            row = {"preset": preset, "dataset": dataset, "method": method, "variant": variant, "role": role,
                   "metric": metric, "changed": ", ".join(f"{k}={param_text(cfg.get(k))}" for k in fields),
                   "factors": ",".join(fields), "n_factors": len(fields),
                   "default_level": param_text(settings["default"].get(fields[0])) if len(fields) == 1 else None}
            row.update({f"param.{p}": param_text(cfg.get(p)) for p in params})
            key = (preset, dataset, method, variant, role, metric)
            if key in index.index:
                row.update(index.loc[key].reindex(VS_SCRATCH).to_dict())
            if variant != "default":
                ref = reference.reindex(pd.MultiIndex.from_frame(group[UNIT].assign(role=role, metric=metric)))
                found = ref.notna().to_numpy()
                p = stats.paired(group.value.to_numpy()[found] - ref.to_numpy()[found])
                row.update({VS_DEFAULT + k: p[k] for k in ("n", *PAIRED_KEYS)})
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, *[VS_DEFAULT + k for k in
                                                                          ("n", *PAIRED_KEYS)]])))
    frame[VS_DEFAULT + "p_holm"], frame[VS_DEFAULT + "holm_m"] = holm_within(frame, ABLATION_FAMILY,
                                                                            VS_DEFAULT + "p_value")
    return frame


def is_main(metric: str) -> bool:
    """Metrics shown in ablations: accuracies, without the untrained controls."""
    return is_summarised(metric) and metric.endswith("_acc") and not metric.endswith(UNTRAINED)


def main_metric(frame: pd.DataFrame) -> pd.DataFrame:
    """Per role, its rows of the primary metric, or, for a role without it (e.g. a label-free layer), of its
    first main metric by name."""
    if frame.empty:
        return frame
    first = {role: (PRIMARY if PRIMARY in set(g.metric) else sorted(g.metric)[0])
             for role, g in frame.groupby("role")}
    return frame[[first[r] == m for r, m in zip(frame.role, frame.metric, strict=True)]]


# ---- notebook defects ------------------------------------------------------------------------------

DEFECT_COLUMNS = ["preset", "dataset", "method", "field", "notebook_value", "description", "variant", "role",
                  "metric"]


def defect_frame(ablations: pd.DataFrame, notebook_defects: dict[str, dict]) -> pd.DataFrame:
    """Per method, preset and dataset in ``ablations`` and each declared notebook defect ``{field:
    (notebook_value, description)}``: the variant that changes exactly that defect from the default (the one
    changing fewest fields where several do; one that also changes another declared defect does not count),
    its roles' main metric and its comparison with the default (``vs_default_*``). A defect with no such
    variant gets one row with ``variant`` empty. A method with no variant at all on a dataset has no rows there
    (the report says which command runs them)."""
    rows = []
    if ablations.empty:
        return pd.DataFrame(columns=DEFECT_COLUMNS)
    for (preset, dataset, method), block in ablations.groupby(["preset", "dataset", "method"], sort=True):
        declared = dict(notebook_defects.get(method) or {})
        block = main_metric(block[block.variant != "default"])
        for name, spec in declared.items():
            value, description = tuple(spec)[:2]
            base = {"preset": preset, "dataset": dataset, "method": method, "field": name,
                    "notebook_value": param_text(value), "description": description}
            column = f"param.{name}"
            candidates = []
            for variant, g in block.groupby("variant", sort=True):
                fields = str(g.factors.iloc[0]).split(",")
                if (name in fields and column in g and same_level(g[column].iloc[0], value)
                        and not (set(fields) - {name}) & set(declared)):
                    candidates.append((int(g.n_factors.iloc[0]), variant, g))
            if not candidates:
                rows.append({**base, "variant": None})
                continue
            _, variant, g = min(candidates, key=lambda c: (c[0], c[1]))
            for r in g.to_dict("records"):
                rows.append({**r, **base})
    return pd.DataFrame(rows).reindex(columns=list(dict.fromkeys(
        DEFECT_COLUMNS + [c for r in rows for c in r])))


# ---- writing -------------------------------------------------------------------------------------

def write_tables(out: Path | str, results: Results | None = None) -> dict[str, Path]:
    """Write every table under ``<out>/tables``; the tidy metrics keep every ok run, superseded ones too."""
    store = Store(out)
    folder = store.tables_dir
    results = results or load_results(out)
    metrics = metrics_frame(store, results.records)
    runs = runs_frame(store, results.records)
    paths = {name: folder / name for name in ("metrics.parquet", "metrics.csv", "runs.csv", "summary.csv",
                                               "summary.md", "ablations.csv")}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(paths["metrics.parquet"], metrics.to_parquet(index=False))
    atomic_write_bytes(paths["metrics.csv"], metrics.to_csv(index=False).encode())
    atomic_write_bytes(paths["runs.csv"], runs.to_csv(index=False).encode())
    atomic_write_bytes(paths["summary.csv"], results.summary.to_csv(index=False).encode())
    atomic_write_bytes(paths["summary.md"],
                       summary_markdown(results.summary, results.superseded, results.records).encode())
    atomic_write_bytes(paths["ablations.csv"], results.ablations.to_csv(index=False).encode())
    return paths
