"""Ablations and notebook defects as frames: each variant of a method against the method's default run of the
same repetition (``ablations.csv``), and each declared notebook defect matched to the variant that changes exactly
it (the report's "What each notebook defect did").

A comparison with the default is ``stats.paired`` of the per-repetition differences, with Holm's correction within
its family (:data:`ABLATION_FAMILY`: per dataset and preset, one family per method, kind of variant and metric,
``families.family_name``); its verdict follows the corrected test. A role with no distillation signal (an anchor)
is shown without a comparison.
"""

from __future__ import annotations

import pandas as pd

from benchmark.reporting import families, stats
from benchmark.reporting.columns import (
    FINAL_SEL,
    PAIRED_KEYS,
    PRIMARY,
    UNIT,
    VS_DEFAULT,
    VS_SCRATCH,
    is_main,
)
from benchmark.reporting.families import Declarations, changed_fields, defect_variant
from benchmark.reporting.text import param_text


def ablation_frame(current: pd.DataFrame, values: pd.DataFrame, summary: pd.DataFrame,
                   kinds: dict[tuple, str] | None = None, declared: Declarations | None = None) -> pd.DataFrame:
    """One row per (method, variant, role, metric) of every method stored in its default variant and at least
    one other, on one preset and dataset: the variant's summary numbers (and its Δ vs scratch), the config fields
    it changes from the default (``changed``, ``factors``, ``n_factors``; ``param.<name>`` for every field some
    variant changes; ``default_level`` for a one-factor variant) and ``vs_default_*``: ``stats.paired`` of its
    differences from the default run of the same repetition, with Holm's correction within its family
    (``vs_default_family``, ``vs_default_p_holm``; the verdict follows it). ``config_kind`` says what the variant
    is and ``defect`` the notebook defect it runs alone. Only roles and metrics the default variant has are
    compared (a method's teacher stage is a requirement, not an ablation). Main metrics only (``is_main``).
    ``current``, ``values``, ``summary``, ``kinds`` and ``declared`` are a ``Results``' of the same names."""
    kinds, declared = kinds or {}, declared or Declarations()
    rows = []
    methods = current[current.kind != "baseline"]
    values = values[values.selection == FINAL_SEL]
    index = summary[summary.selection == FINAL_SEL].set_index(["preset", "dataset", "method", "variant", "role",
                                                                "metric"])
    index = index[~index.index.duplicated()]
    for (preset, dataset, method), runs in methods.groupby(["preset", "dataset", "method"], sort=True):
        if runs.variant.nunique() < 2 or not runs.variant.eq("default").any():
            continue
        settings = runs.drop_duplicates("variant").set_index("variant").config.to_dict()
        defects = declared.defects(method)
        others = [v for v in settings if v != "default"]
        alone = {defect_variant(settings, name, tuple(spec)[0], defects, others): name
                 for name, spec in defects.items()}  # variant -> the one notebook defect it runs alone
        vals = values[values.run_id.isin(runs.run_id) & values.metric.map(is_main).astype(bool)]
        default = vals[vals.variant == "default"]
        compared = set(zip(default.role, default.metric, strict=True))
        vals = vals[[rm in compared for rm in zip(vals.role, vals.metric, strict=True)]]
        if vals.variant.nunique() < 2:
            continue
        changed = {v: changed_fields(settings, v) for v in settings}
        params = sorted({k for v in vals.variant.unique() for k in changed[v]})
        reference = default.set_index([*UNIT, "role", "metric"]).value
        reference = reference[~reference.index.duplicated(keep="last")]
        for (variant, role, metric), group in vals.groupby(["variant", "role", "metric"], sort=True):
            fields = changed[variant]
            cfg = settings[variant]
            kind = kinds.get((preset, dataset, method, variant), families.ABLATION)
            row = {"preset": preset, "dataset": dataset, "method": method, "variant": variant, "role": role,
                   "metric": metric, "config_kind": kind,
                   "defect": alone.get(variant),
                   "changed": ", ".join(f"{k}={param_text(cfg.get(k))}" for k in fields),
                   "factors": ",".join(fields), "n_factors": len(fields),
                   "default_level": param_text(settings["default"].get(fields[0])) if len(fields) == 1 else None}
            row.update({f"param.{p}": param_text(cfg.get(p)) for p in params})
            key = (preset, dataset, method, variant, role, metric)
            if key in index.index:
                row.update(index.loc[key].reindex(VS_SCRATCH).to_dict())
            if variant != "default" and group.distilled.all():
                ref = reference.reindex(pd.MultiIndex.from_frame(group[UNIT].assign(role=role, metric=metric)))
                found = ref.notna().to_numpy()
                p = stats.paired(group.value.to_numpy()[found] - ref.to_numpy()[found])
                row.update({VS_DEFAULT + k: p[k] for k in ("n", *PAIRED_KEYS)})
                row[VS_DEFAULT + "family"] = families.family_name(kind, method, metric, FINAL_SEL, "default")
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, *[VS_DEFAULT + k for k in
                                                                          ("n", *PAIRED_KEYS, "family")]])))
    return families.correct(frame, VS_DEFAULT)


def main_metric(frame: pd.DataFrame, by: tuple[str, ...] = ("role",)) -> pd.DataFrame:
    """Per role (per group of ``by``), its rows of the primary metric, or, for a role without it (e.g. a
    label-free layer), of its first main metric by name."""
    if frame.empty:
        return frame
    first = {key: (PRIMARY if PRIMARY in set(g.metric) else sorted(g.metric)[0])
             for key, g in frame.groupby(list(by))}  # keys are tuples, one value per column of ``by``
    keys = zip(*(frame[c] for c in by), strict=True)
    return frame[[first[k] == m for k, m in zip(keys, frame.metric, strict=True)]]


# ---- notebook defects ------------------------------------------------------------------------------

DEFECT_COLUMNS = ["preset", "dataset", "method", "field", "notebook_value", "description", "variant", "role",
                  "metric"]


def defect_frame(ablations: pd.DataFrame, notebook_defects: dict[str, dict]) -> pd.DataFrame:
    """Per method, preset and dataset in ``ablations`` and each declared notebook defect ``{field:
    (notebook_value, description)}``: the variant that runs exactly that defect (``ablations.defect``, matched by
    ``families.defect_variant``: it changes that field to the notebook's value and no other declared defect, and
    the fewest fields of those that do), its roles' main metric and its comparison with the default
    (``vs_default_*``). A defect with no such variant gets one row with ``variant`` empty. A method with no
    variant at all on a dataset has no rows there (the report says which command runs them)."""
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
            found = block[block.defect == name] if "defect" in block else block.iloc[:0]
            if found.empty:
                rows.append({**base, "variant": None})
                continue
            rows += [{**r, **base} for r in found.to_dict("records")]
    return pd.DataFrame(rows).reindex(columns=list(dict.fromkeys(
        DEFECT_COLUMNS + [c for r in rows for c in r])))
