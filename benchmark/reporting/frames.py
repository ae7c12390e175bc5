"""The store read into frames, once per command (:func:`load_results`): every record, the current successful runs
(the runs whose ids the current code plans, :mod:`benchmark.reporting.current`; runs of other code are left out
and listed as stale; of runs that cannot be judged here, the last to finish), their roles and tidy metrics, and
from them the per-run values, the summary with its paired comparisons, the ablations and the notebook defects.

Every paired comparison is ``stats.paired`` of the per-repetition differences: its t-interval (none when the
differences have zero variance), its p-value (the t-test's, or the exact sign-flip test's at zero variance), the
uncorrected verdict and the minimum detectable difference. Holm's correction of those p-values runs within a
family, and the verdict follows the corrected test (``benchmark.reporting.families``).

Two numbers per accuracy, labelled in the ``selection`` column:
- ``final``: the metric of the model the method ends with (the official number);
- ``val_selected``: test accuracy at the epoch of best validation accuracy in the run's learning curve
  (first such epoch), for roles that log per-epoch ``val_acc`` and ``test_acc``. The test set is only read,
  never used to choose.

Non-finite values never reach a frame. Everything is driven by the store's contents: a new method's runs appear
without any change here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmark.budgets import NOT_RAISED
from benchmark.contract import LABEL_SMOOTHING
from benchmark.reporting import audit, families, stats
from benchmark.reporting import current as standing
from benchmark.reporting.ablations import ablation_frame
from benchmark.reporting.audit import val_selected
from benchmark.reporting.columns import (
    FINAL,
    FINAL_SEL,
    GROUP,
    INIT,
    METRIC_COLUMNS,
    ORDER,
    PAIRED_KEYS,
    PRIMARY,
    SCRATCH,
    SUMMARY_COLUMNS,
    UNIT,
    UNTRAINED,
    VAL_SEL,
    is_summarised,
)
from benchmark.reporting.families import Declarations
from benchmark.reporting.text import config_label, model_labels
from benchmark.store import Store
from benchmark.store.records import gc_paused

# ---- reading the store ---------------------------------------------------------------------------

def metrics_frame(records: list[dict]) -> pd.DataFrame:
    """The tidy metrics of the ok runs among ``records``: one row per run, role, epoch and metric. Built column by
    column through Arrow: the committed records hold 4 million rows, and a frame made of row tuples took about 4x
    the CPU time (2 s against 8 s, the collector paused in both); the frame is the same, dtypes included."""
    runs, counts, role, epoch, metric, value = [], [], [], [], [], []
    with gc_paused():
        for rec in records:
            if rec.get("status") != "ok":
                continue
            kept = [row for row in rec.get("metrics", []) if row[3] is not None and math.isfinite(row[3])]
            if not kept:
                continue
            roles, epochs, metrics, values = zip(*kept, strict=True)
            role += roles
            epoch += epochs
            metric += metrics
            value += values
            runs.append(rec)
            counts.append(len(kept))
    if not runs:
        return pd.DataFrame([], columns=METRIC_COLUMNS).astype({"rep": "int64", "epoch": "int64", "value": "float64"})
    row_run = pa.array(np.repeat(np.arange(len(runs)), counts))  # each row's index into runs
    per_run = {column: pa.array([rec[column] for rec in runs]).take(row_run)
               for column in ("run_id", "method", "variant", "dataset", "rep")}
    table = pa.table({**per_run, "role": pa.array(role, pa.string()), "epoch": pa.array(epoch, pa.int64()),
                      "metric": pa.array(metric, pa.string()), "value": np.array(value, dtype=np.float64)})
    return table.select(METRIC_COLUMNS).to_pandas()


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run with its parameters, timing, roles and status."""
    rows = []
    for rec in records:
        timing = rec.get("timing") or {}
        row = {
            "run_id": rec["run_id"], "method": rec["method"], "kind": rec.get("kind"),
            "variant": rec["variant"], "dataset": rec["dataset"], "rep": rec["rep"], "seed": rec.get("seed"),
            "base_seed": rec.get("base_seed"), "preset": rec.get("preset"), "status": rec["status"],
            "error": rec.get("error"), "wall_time_s": rec.get("wall_time_s"),
            "step_median_s": timing.get("step_median_s"), "step_iqr_s": timing.get("step_iqr_s"),
            "samples_per_s": timing.get("samples_per_s"), "source_hash": rec.get("source_hash"),
            "git_commit": (rec.get("provenance") or {}).get("git_commit"), "device": rec.get("device") or "cpu",
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
    # The budget audit's longer runs (a run's configuration at audit.FACTOR times its budget): {audited run id: its
    # longer run's id}; kept out of ``current`` and ``metrics``, which every table reads
    longer: dict[str, str] = field(default_factory=dict)
    longer_current: pd.DataFrame | None = None  # their rows, as ``current``
    skipped: int = 0  # run files under runs/ that were not valid records (set aside, or left in place read-only)
    declared: Declarations = field(default_factory=Declarations)  # what the methods declare (publish's arguments)
    # Each record's standing against the current code (``standing.judge``): stale ones are in no frame but this
    judgement: standing.Judgement = field(default_factory=standing.Judgement)
    _cache: dict = field(default_factory=dict, repr=False)

    def memo(self, name, build):
        """``build(self)``, computed once per Results (the frames derived from the same records) under ``name``."""
        if name not in self._cache:
            self._cache[name] = build(self)
        return self._cache[name]

    @property
    def live_records(self) -> list[dict]:
        """Every record but those of other code (what a list of failed or skipped runs reads)."""
        return [r for r in self.records if self.judgement.of(r["run_id"]) != standing.STALE]

    @property
    def stale_section(self) -> str:
        """The "Stale: from other code" section of the summary and the report ("" when every run is current)."""
        return standing.stale_markdown(self.records, self.judgement)

    @property
    def values(self) -> pd.DataFrame:
        """Summarised values per run and role: final metrics and validation-selected test accuracy; a role whose
        runs repeat another configuration's exactly (``identical``) is left out."""
        return self.memo("values", summary_values)

    @property
    def kinds(self) -> dict[tuple, str]:
        """(preset, dataset, method, variant) -> what the configuration is (``families.config_kinds``)."""
        return self.memo("kinds", lambda r: families.config_kinds(r.current, r.declared))

    @property
    def identical(self) -> dict[tuple, str]:
        """(preset, dataset, method, variant, role) -> the variant it repeats exactly (``families.identical_roles``)."""
        return self.memo("identical", lambda r: families.identical_roles(r.metrics, r.current, r.kinds))

    @property
    def main(self) -> set[tuple]:
        """The configurations of the main table (``families.main_configs``)."""
        return self.memo("main", lambda r: families.main_configs(r.current, r.roles, r.kinds))

    @property
    def summary(self) -> pd.DataFrame:
        return self.memo("summary", summary_frame)

    @property
    def scratch_partners(self) -> dict[tuple, str]:
        """(preset, dataset, method, variant, role) -> its scratch student's variant (:func:`scratch_partners`)."""
        return self.memo("scratch_partners", lambda r: scratch_partners(r.values))

    @property
    def audit_inputs(self) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """(metrics, runs, audited run ids) of the budget audit: the main table's configurations and the controls
        (not the as-published ones) on every dataset, with the longer runs where the store holds them."""
        return self.memo("audit_inputs", _audit_inputs)

    @property
    def audit(self) -> pd.DataFrame:
        """The budget audit's rows (``audit.budget_audit`` of :attr:`audit_inputs`)."""
        return self.memo("audit", lambda r: audit.budget_audit(*r.audit_inputs, budget_fields=r.declared.budget_fields,
                                                                  left=NOT_RAISED))

    @property
    def smoothing_partners(self) -> dict[tuple, str]:
        """(preset, dataset, method, variant, role) -> its label-smoothing control's variant."""
        return self.memo("smoothing_partners", lambda r: scratch_partners(r.values, LABEL_SMOOTHING))

    @property
    def ablations(self) -> pd.DataFrame:
        return self.memo("ablations", lambda r: ablation_frame(r.current, r.values, r.summary, r.kinds,
                                                                  r.declared))

    @property
    def labels(self) -> dict[tuple, str]:
        """(preset, dataset, method, variant) -> the readable name of that configuration (``model_labels``)."""
        return self.memo("labels", lambda r: model_labels(
            r.current, r.roles, families.config_names(r.current, r.kinds, r.declared)))


def _audit_inputs(results: Results) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    both = pd.concat([results.current, results.longer_current], ignore_index=True)
    kinds = results.kinds
    main = families.main_configs(results.current, results.roles, kinds, controls=True)
    base = [r.run_id for r in results.current.itertuples()
            if (key := (r.preset, r.dataset, r.method, r.variant)) in main and kinds.get(key) != families.AS_PUBLISHED]
    metrics = metrics_frame([r for r in results.records if r["run_id"] in set(both.run_id)])
    return metrics, both, base


def load_results(store: Store, declared: Declarations | None = None) -> Results:
    """The store's runs read once (BadInput, one line, when it holds no valid record: ``Store.require_runs``);
    ``declared``: what the methods declare (their as-published overrides, named fields, notebook defects)."""
    found = store.require_runs()
    judgement = standing.judge(found.records)  # runs of other code never reach a table (kept on disk, as stale)
    # each run under the variant the current presets name (a preset changed since it was planned: the same run)
    records = [{**r, "variant": judgement.variant(r)} for r in found.records]
    ok = [r for r in records if r.get("status") == "ok" and judgement.of(r["run_id"]) != standing.STALE]
    latest: dict[tuple, dict] = {}
    for rec in sorted(ok, key=lambda r: (judgement.of(r["run_id"]) == standing.CURRENT,
                                         standing.instant(r.get("finished_at")))):
        # the current code's run of a slot, else (runs that cannot be judged here) the last to finish
        latest[(rec["method"], rec.get("kind"), rec["variant"], rec.get("preset"), *_unit(rec))] = rec
    current_records = sorted(latest.values(), key=lambda r: r["run_id"])
    current = pd.DataFrame([_current_row(r) for r in current_records], columns=CURRENT_COLUMNS)
    declared = declared or Declarations()
    # The audit's longer runs are kept out of every other table; a run the current defaults plan stays in them even
    # where it is 3x the budget of an older run of the store (and is audited itself, against its own 3x run).
    planned = planned_by_defaults(current_records)
    longer = audit.longer_runs(current, audit.unscaled_ids(current, _fields_of(declared), keep=planned),
                               _fields_of(declared))
    scaled = set(longer.values()) - planned
    longer_current = current[current.run_id.isin(scaled)].reset_index(drop=True)
    current = current[~current.run_id.isin(scaled)].reset_index(drop=True)
    current_records = [r for r in current_records if r["run_id"] not in scaled]
    roles = pd.DataFrame([{"run_id": r["run_id"], "role": role, "arch": info.get("arch"),
                           "view": info.get("view"), "classifier": bool(info.get("classifier", True)),
                           "pair_key": info.get("pair_key"), "pairing": info.get("pairing") or "",
                           "distilled": info.get("distilled") is not False}
                          for r in current_records for role, info in (r.get("roles") or {}).items()],
                         columns=ROLE_COLUMNS)
    tidy = metrics_frame(current_records)
    extra = current[["run_id", "kind", "preset", "base_seed", "data_key", "device"]]
    metrics = tidy.merge(extra, on="run_id", how="left")
    return Results(records, current, roles, metrics, superseded=len(ok) - len(current_records) - len(scaled),
                   longer=longer, longer_current=longer_current, skipped=found.skipped, declared=declared,
                   judgement=judgement)


def planned_by_defaults(records: Iterable[dict]) -> set[str]:
    """The run ids the current defaults plan: every run of a ``default`` variant, and each scratch or label-smoothing
    run that a role of one pairs with (its ``pair_key``, on the same dataset, preset and repetition). A budget raised
    threefold in the presets makes runs at 3x the old ones' budget: they are the defaults' own runs, not an audit's."""
    records = list(records)
    defaults = [r for r in records if r.get("variant") == "default"]
    keys = {(r["dataset"], r.get("preset"), r["rep"], info.get("pair_key")) for r in defaults
            for info in (r.get("roles") or {}).values() if info.get("pair_key")}
    partners = {r["run_id"] for r in records if r["method"] in (SCRATCH, LABEL_SMOOTHING)
                and any((r["dataset"], r.get("preset"), r["rep"], info.get("pair_key")) in keys
                        for info in (r.get("roles") or {}).values())}
    return {r["run_id"] for r in defaults} | partners


def _fields_of(declared: Declarations):
    return lambda method: declared.budget_fields.get(method, ())


# pairing "" if unrecorded; distilled True unless the record says false (older records do not say)
ROLE_COLUMNS = ["run_id", "role", "arch", "view", "classifier", "pair_key", "pairing", "distilled"]
CURRENT_COLUMNS = ["run_id", "method", "kind", "variant", "preset", *UNIT, "wall_time_s", "step_median_s",
                   "step_iqr_s", "samples_per_s", "source_hash", "config", "requires"]


def _current_row(rec: dict) -> dict:
    timing = rec.get("timing") or {}
    return {"run_id": rec["run_id"], "method": rec["method"], "kind": rec.get("kind") or "method",
            "variant": rec["variant"], "preset": rec.get("preset") or "?",
            **dict(zip(UNIT, _unit(rec), strict=True)),
            "wall_time_s": rec.get("wall_time_s"), "step_median_s": timing.get("step_median_s"),
            "step_iqr_s": timing.get("step_iqr_s"), "samples_per_s": timing.get("samples_per_s"),
            "source_hash": rec.get("source_hash"), "config": rec.get("config") or {},
            "requires": tuple(sorted((rec.get("requires") or {}).values()))}


def _unit(rec: dict) -> tuple:
    data = json.dumps(rec.get("data") or {}, sort_keys=True)
    return (rec["dataset"], rec.get("base_seed", 0), data, rec.get("device") or "cpu", rec["rep"])


# ---- per-run values and the summary --------------------------------------------------------------

def summary_values(results: Results) -> pd.DataFrame:
    m = results.metrics
    final = m[(m.epoch == FINAL) & m.metric.map(is_summarised).astype(bool)].assign(selection=FINAL_SEL)
    chosen = val_selected(m).assign(metric=PRIMARY, selection=VAL_SEL).drop(columns="epoch")
    ident = results.current[["run_id", "method", "kind", "variant", "preset", *UNIT]]
    chosen = chosen.merge(ident, on="run_id")
    cols = ["run_id", "method", "kind", "variant", "preset", *UNIT, "role", "metric", "selection", "value"]
    values = pd.concat([final.reindex(columns=cols), chosen.reindex(columns=cols)], ignore_index=True)
    values = values.merge(results.roles[["run_id", "role", "pair_key", "pairing", "distilled"]],
                          on=["run_id", "role"], how="left")
    values["distilled"] = values.distilled.ne(False)  # a metric row of no declared role counts as distilled
    same = results.identical
    keep = pd.Series([(p, d, m, v, r) not in same for p, d, m, v, r in zip(
        values.preset, values.dataset, values.method, values.variant, values.role, strict=True)], index=values.index,
        dtype=bool)
    return values[keep].astype({"value": "float64"}).reset_index(drop=True)


def summary_frame(results: Results) -> pd.DataFrame:
    values = results.values
    if values.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    scratch = _scratch_reference(results, values)
    wall = results.current.set_index("run_id")["wall_time_s"].astype(float)
    labels, kinds, main = results.labels, results.kinds, results.main
    both = values.device.nunique() > 1  # a store with CPU and GPU runs names the device in every row's label
    repeats: dict[tuple, list[str]] = {}
    for (preset, dataset, method, variant, role), kept in results.identical.items():
        repeats.setdefault((preset, dataset, method, kept, role), []).append(variant)
    rows = []
    for key, group in values.groupby(GROUP, sort=True, dropna=False):
        row = dict(zip(GROUP, key, strict=True))
        config = (row["preset"], row["dataset"], row["method"], row["variant"])
        mean, std, lo, hi = stats.mean_ci(group.value.to_numpy())
        label = labels.get(config, config_label(row["method"], row["variant"]))
        row.update(label=f"{label} ({row['device']})" if both else label,
                   config_kind=kinds.get(config, families.ABLATION), main=config in main,
                   anchor=row["kind"] != "baseline" and not group.distilled.all(),
                   identical_in="; ".join(sorted(repeats.get((*config, row["role"]), []))),
                   n=len(group), mean=mean, std=std, ci_low=lo, ci_high=hi,
                   wall_time_s=float(wall.reindex(group.run_id.unique()).mean()))
        row.update(_reference(row, group, values, scratch))
        against = _against(row.get("delta_vs"))
        if against:
            row["family"] = families.family_name(row["config_kind"], row["method"], row["metric"],
                                                 row["selection"], against)
        rows.append(row)
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    summary = families.correct(summary)
    summary["significant"] = summary.p_holm < stats.ALPHA
    return summary.reindex(columns=SUMMARY_COLUMNS)


def _against(delta_vs) -> str:
    """What a summary row is compared with: "scratch", "untrained" (the same run before training) or ""."""
    if not isinstance(delta_vs, str):
        return ""
    return "scratch" if delta_vs.startswith(SCRATCH) else "untrained"


@dataclass
class _ScratchRuns:
    """The scratch students' values, for the paired Δ of every other row: looked up per run, not reindexed."""

    values: dict[tuple, tuple[float, str]]  # (*UNIT, pair_key, metric, selection) -> (value, variant)
    units: set[tuple]  # (*UNIT, pair_key) of every scratch run that has a value


def _scratch_reference(results: Results, values: pd.DataFrame) -> _ScratchRuns:
    s = values[values.method == SCRATCH].dropna(subset=["pair_key"])
    keys = zip(*(s[c] for c in (*UNIT, "pair_key", "metric", "selection")), strict=True)
    found = dict(zip(keys, zip(s.value, s.variant, strict=True), strict=True))  # one per pair: the last, if more
    return _ScratchRuns(found, {key[:len(UNIT) + 1] for key in found})


def scratch_partners(values: pd.DataFrame, partner: str = SCRATCH) -> dict[tuple, str]:
    """(preset, dataset, method, variant, role) -> the variant of the scratch student it is paired with (the same
    pair_key), for every role that has one; ``partner``: another baseline paired the same way (label smoothing)."""
    v = values[values.selection == FINAL_SEL].dropna(subset=["pair_key"])
    scratch = v[v.method == partner].drop_duplicates(["preset", "dataset", "pair_key"]).set_index(
        ["preset", "dataset", "pair_key"]).variant.to_dict()
    roles = v[~v.method.isin([SCRATCH, partner])].drop_duplicates(["preset", "dataset", "method", "variant", "role"])
    return {(r.preset, r.dataset, r.method, r.variant, r.role): scratch[(r.preset, r.dataset, r.pair_key)]
            for r in roles.itertuples() if (r.preset, r.dataset, r.pair_key) in scratch}


def pairing_of(group: pd.DataFrame) -> str:
    """INIT when every run of the group records its role as init-paired; ORDER when any records "order"; "" when
    any run does not record it (an older record: nothing is claimed)."""
    kinds = set(group.pairing.fillna("")) if "pairing" in group else {""}
    if ORDER in kinds:
        return ORDER
    return INIT if kinds == {INIT} else ""


def _reference(row: dict, group: pd.DataFrame, values: pd.DataFrame, scratch: _ScratchRuns) -> dict:
    """Paired Δ of one summary row: against the scratch student, or the untrained control of the same run."""
    if row["anchor"]:
        return {}  # no distillation signal: nothing to compare
    keys = group.pair_key.dropna().unique()
    if row["method"] != SCRATCH and len(keys) == 1:
        units = [(*unit, keys[0]) for unit in zip(*(group[c] for c in UNIT), strict=True)]
        refs = [scratch.values.get((*unit, row["metric"], row["selection"])) for unit in units]
        found = np.array([ref is not None and not math.isnan(ref[0]) for ref in refs], dtype=bool)
        if found.any():
            matched = [ref for ref, ok in zip(refs, found, strict=True) if ok]  # (value, variant) per found pair
            variants = sorted({variant for _, variant in matched})
            label = SCRATCH + ("" if variants == ["default"] else f" [{', '.join(variants)}]")
            diffs = group.value.to_numpy()[found] - np.array([value for value, _ in matched], dtype=float)
            return {**_delta(label, diffs), "pairing": pairing_of(group)}
        if not any(unit in scratch.units for unit in units):
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
    p = stats.paired(diffs)  # its verdict is the nominal one until ``families.correct``
    out = {"delta_vs": label, "pair_n": p["n"], **{k: p[k] for k in PAIRED_KEYS}}
    out["delta_halfwidth"] = out.pop("halfwidth")
    return out


# ---- which rows a table or figure shows ---------------------------------------------------------

def order_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Baselines first (scratch students by label, then others), then methods by name; the default variant
    first."""
    rank = frame.kind.ne("baseline").astype(int) * 2 + frame.method.ne(SCRATCH).astype(int)
    names = frame["label"].where(frame.method.eq(SCRATCH), "") if "label" in frame else ""
    return frame.assign(_r=rank, _d=frame.variant.ne("default"), _l=names).sort_values(
        ["_r", "method", "_l", "_d", "variant", "role"]).drop(columns=["_r", "_d", "_l"])


def main_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the main table (a summary's ``main`` column), or for a frame without one (the runs): the
    default variant of each method, and every variant of baselines and of methods stored without one (other
    variants belong to the ablations)."""
    if frame.empty:
        return frame
    if "main" in frame:
        return frame[frame["main"].astype(bool)]
    has_default = frame.groupby(["preset", "dataset", "method"]).variant.transform(
        lambda v: v.eq("default").any())
    return frame[frame.kind.eq("baseline") | frame.variant.eq("default") | ~has_default.astype(bool)]

