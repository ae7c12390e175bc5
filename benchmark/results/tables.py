"""Tidy tables from the store: ``metrics.parquet``/``.csv`` (one row per run, role, epoch, metric),
``runs.csv`` (one row per run with its parameters), ``summary.csv``/``summary.md`` (per dataset, method,
variant and role, with paired differences against the scratch student) and ``ablations.csv`` (per method
variant, with the ablated parameters as columns).

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
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmark.results import stats
from benchmark.results.stats import mean_ci  # noqa: F401  (kept importable from here)
from benchmark.results.store import Store, atomic_write_bytes

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
SUMMARY_COLUMNS = GROUP + ["n", "mean", "std", "ci_low", "ci_high", "delta_vs", "pair_n", "delta_mean",
                           "delta_std", "delta_ci_low", "delta_ci_high", "p_ttest", "p_wilcoxon", "p_holm",
                           "holm_m", "significant", "note", "wall_time_s"]


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
                           "pair_key": info.get("pair_key")}
                          for r in current_records for role, info in (r.get("roles") or {}).items()],
                         columns=["run_id", "role", "arch", "view", "classifier", "pair_key"])
    tidy = metrics_frame(Store(out), current_records)
    extra = current[["run_id", "kind", "preset", "base_seed", "data_key"]]
    metrics = tidy.merge(extra, on="run_id", how="left")
    return Results(records, current, roles, metrics, superseded=len(ok) - len(current_records))


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
    values = values.merge(results.roles[["run_id", "role", "pair_key"]], on=["run_id", "role"], how="left")
    return values.astype({"value": "float64"})


def summary_frame(results: Results) -> pd.DataFrame:
    values = results.values
    if values.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    scratch = _scratch_reference(results, values)
    wall = results.current.set_index("run_id")["wall_time_s"].astype(float)
    rows = []
    for key, group in values.groupby(GROUP, sort=True, dropna=False):
        row = dict(zip(GROUP, key, strict=True))
        mean, std, lo, hi = stats.mean_ci(group.value.to_numpy())
        row.update(n=len(group), mean=mean, std=std, ci_low=lo, ci_high=hi,
                   wall_time_s=float(wall.reindex(group.run_id.unique()).mean()))
        row.update(_reference(row, group, values, scratch))
        rows.append(row)
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    return add_holm(summary)


def add_holm(summary: pd.DataFrame) -> pd.DataFrame:
    """Holm's correction within each family: every comparison of one metric and selection in the table."""
    summary = summary.copy()
    summary["p_holm"] = np.nan
    summary["holm_m"] = 0
    for _, idx in summary.groupby(["metric", "selection"]).groups.items():
        p = summary.loc[idx, "p_ttest"].astype(float).to_numpy()
        summary.loc[idx, "p_holm"] = stats.holm(p)
        summary.loc[idx, "holm_m"] = int(np.isfinite(p).sum())
    summary["significant"] = summary.p_holm < stats.ALPHA
    return summary


def _scratch_reference(results: Results, values: pd.DataFrame) -> pd.DataFrame:
    s = values[values.method == SCRATCH].dropna(subset=["pair_key"])
    s = s.set_index([*UNIT, "pair_key", "metric", "selection"])[["value", "variant", "role"]]
    return s[~s.index.duplicated(keep="last")]  # one partner per pair, even in an unusual store


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
            return _delta(label, diffs)
        units = scratch.index.droplevel(["metric", "selection"])
        if not units.isin(index.droplevel(["metric", "selection"])).any():
            return {"delta_vs": SCRATCH, "pair_n": 0, "note": "no paired scratch_student run in the store"}
        return {}  # the scratch student has no such metric (e.g. agreement with a teacher it never had)
    control = row["metric"] + UNTRAINED
    if row["selection"] == FINAL_SEL and not row["metric"].endswith(UNTRAINED):
        other = values[(values.metric == control) & (values.role == row["role"])].set_index("run_id").value
        other = other.reindex(group.run_id)
        found = other.notna().to_numpy()
        if found.any():
            return _delta(f"{control} (same run)", group.value.to_numpy()[found] - other.to_numpy()[found])
    return {}


def _delta(label: str, diffs: np.ndarray) -> dict:
    p = stats.paired(diffs)
    keys = ("delta_mean", "delta_std", "delta_ci_low", "delta_ci_high", "p_ttest", "p_wilcoxon", "note")
    return {"delta_vs": label, "pair_n": p["n"], **{k: p[k] for k in keys}}


# ---- markdown ------------------------------------------------------------------------------------

def order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Baselines first (scratch student, then others), then methods by name; the default variant first."""
    rank = frame.kind.ne("baseline").astype(int) * 2 + frame.method.ne(SCRATCH).astype(int)
    return frame.assign(_r=rank, _d=frame.variant.ne("default")).sort_values(
        ["_r", "method", "_d", "variant", "role"]).drop(columns=["_r", "_d"])


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


def fmt_value(value: float, metric: str, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = value * 100 if is_percent(metric) else value
    digits = 2 if is_percent(metric) else 4
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_mean_ci(r, metric: str) -> str:
    if math.isnan(r.ci_low):
        return f"{fmt_value(r.mean, metric)} (n<2)"
    half = (r.ci_high - r.ci_low) / 2
    return f"{fmt_value(r.mean, metric)} ± {fmt_value(half, metric)}"


def fmt_delta(r, metric: str) -> str:
    if not isinstance(r.delta_vs, str):
        return "–"
    if r.pair_n == 0 or math.isnan(r.delta_mean):
        return "no pair"
    text = fmt_value(r.delta_mean, metric, signed=True)
    if not math.isnan(r.delta_ci_low):
        text += f" [{fmt_value(r.delta_ci_low, metric, True)}, {fmt_value(r.delta_ci_high, metric, True)}]"
    return text + (" *" if r.significant else "")


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.0e}"


def _table(head: list[str], rows: list[list[str]], right: int) -> list[str]:
    align = ["---"] * (len(head) - right) + ["---:"] * right
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def accuracy_table(block: pd.DataFrame, selection: str) -> list[str]:
    part = order_rows(block[(block.metric == PRIMARY) & (block.selection == selection)])
    if part.empty:
        return []
    rows = []
    for r in part.itertuples():
        delta = "reference" if r.method == SCRATCH else fmt_delta(r, PRIMARY)
        pairs = str(int(r.pair_n)) if isinstance(r.delta_vs, str) else "–"
        wall = f"{r.wall_time_s:.1f}" if not math.isnan(r.wall_time_s) else "–"
        rows.append([r.method, r.variant, r.role, str(r.n), fmt_mean_ci(r, PRIMARY), delta, pairs,
                     fmt_p(r.p_ttest), fmt_p(r.p_wilcoxon), fmt_p(r.p_holm), wall])
    return _table(["method", "variant", "role", "n", "accuracy % ± 95% CI", "Δ vs scratch, pp [95% CI]",
                   "pairs", "p (t)", "p (Wilcoxon)", "p (Holm)", "wall s"], rows, 8)


def other_table(block: pd.DataFrame) -> list[str]:
    controls = set(block.metric[block.metric.str.endswith(UNTRAINED)].str[:-len(UNTRAINED)])
    part = block[(block.metric != PRIMARY) & (block.selection == FINAL_SEL) & ~block.metric.isin(controls)
                 & ~block.metric.str.endswith(UNTRAINED)]
    if part.empty:
        return []
    rows = [[r.method, r.variant, r.role, r.metric, str(r.n), fmt_mean_ci(r, r.metric),
             fmt_delta(r, r.metric), fmt_p(r.p_holm)] for r in order_rows(part).itertuples()]
    return _table(["method", "variant", "role", "metric", "n", "mean ± 95% CI", "Δ vs scratch [95% CI]",
                   "p (Holm)"], rows, 4)


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
            rows.append([r.method, r.variant, r.role, str(r.n), fmt_mean_ci(r, metric), untrained,
                         fmt_delta(r, metric), fmt_p(r.p_holm)])
        if rows:
            lines += [f"#### {metric}: trained vs untrained (same runs)", ""]
            lines += _table(["method", "variant", "role", "n", f"{metric} ± 95% CI", f"{control} ± 95% CI",
                             "Δ [95% CI]", "p (Holm)"], rows, 4) + [""]
    return lines


def summary_markdown(summary: pd.DataFrame, superseded: int = 0) -> str:
    lines = ["# Summary", "",
             "Mean over repetitions with a 95% Student-t interval. Δ is paired: each run minus the "
             "scratch student of the same architecture, input view and recipe for the same dataset and "
             "repetition (same seed, same initialisation and batch order); its interval is a t-interval of "
             "the per-repetition differences. "
             "p (t): paired t-test; p (Wilcoxon): signed-rank test, shown only with at least "
             f"{stats.WILCOXON_MIN_NONZERO} non-zero differences; p (Holm): the t-test p-value after Holm's "
             "correction across every comparison of the same metric and selection in this table. "
             f"`*` marks p (Holm) < {stats.ALPHA}. Accuracies in %.", ""]
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
        lines += ["No successful runs in the store."]
    return "\n".join(lines).rstrip() + "\n"


# ---- ablations -----------------------------------------------------------------------------------

def ablated_parameters(runs: pd.DataFrame) -> list[str]:
    """Config fields whose value differs between the given runs (one method, preset and dataset)."""
    keys = sorted({k for cfg in runs.config for k in cfg})
    return [k for k in keys if len({json.dumps(cfg.get(k), sort_keys=True) for cfg in runs.config}) > 1]


def param_text(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, list) else str(value)


def ablation_frame(results: Results, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, variant, role, metric) of every method stored in more than one variant, with the
    ablated parameters as ``param.<name>`` columns and the paired Δ against the method's default variant."""
    frames = []
    methods = results.current[results.current.kind != "baseline"]
    values = results.values[results.values.selection == FINAL_SEL]
    for (preset, dataset, method), runs in methods.groupby(["preset", "dataset", "method"], sort=True):
        if runs.variant.nunique() < 2:
            continue
        params = ablated_parameters(runs)
        settings = runs.drop_duplicates("variant").set_index("variant").config
        vals = values[values.run_id.isin(runs.run_id) & values.metric.map(is_main).astype(bool)]
        default = vals[vals.variant == "default"].set_index([*UNIT, "role", "metric"]).value
        for (variant, role, metric), group in vals.groupby(["variant", "role", "metric"], sort=True):
            row = {"preset": preset, "dataset": dataset, "method": method, "variant": variant, "role": role,
                   "metric": metric, "changed": changed_from_default(settings, variant)}
            row.update({f"param.{p}": param_text(settings[variant].get(p)) for p in params})
            s = summary[(summary.preset == preset) & (summary.dataset == dataset) & (summary.method == method)
                        & (summary.variant == variant) & (summary.role == role) & (summary.metric == metric)
                        & (summary.selection == FINAL_SEL)]
            if len(s):
                row.update(s.iloc[0][["n", "mean", "ci_low", "ci_high", "delta_vs", "delta_mean",
                                      "delta_ci_low", "delta_ci_high", "p_holm"]].to_dict())
            if variant != "default" and len(default):
                ref = default.reindex(pd.MultiIndex.from_frame(group[UNIT].assign(role=role, metric=metric)))
                found = ref.notna().to_numpy()
                if found.any():
                    p = stats.paired(group.value.to_numpy()[found] - ref.to_numpy()[found])
                    row.update({f"vs_default_{k}": p[k] for k in ("n", "delta_mean", "delta_ci_low",
                                                                  "delta_ci_high", "p_ttest", "note")})
            frames.append(row)
    return pd.DataFrame(frames)


def changed_from_default(settings: pd.Series, variant: str) -> str:
    """``k=v, ...`` for the config fields where ``variant`` differs from the default variant's config."""
    if "default" not in settings.index:
        return variant
    base, cfg = settings["default"], settings[variant]
    keys = sorted(k for k in set(base) | set(cfg) if base.get(k) != cfg.get(k))
    return ", ".join(f"{k}={param_text(cfg.get(k))}" for k in keys)


def is_main(metric: str) -> bool:
    """Metrics shown in ablations: accuracies, without the untrained controls."""
    return is_summarised(metric) and metric.endswith("_acc") and not metric.endswith(UNTRAINED)


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
    atomic_write_bytes(paths["summary.md"], summary_markdown(results.summary, results.superseded).encode())
    atomic_write_bytes(paths["ablations.csv"], results.ablations.to_csv(index=False).encode())
    return paths
