"""Two more paired comparisons for every distilled row (a method's role with a scratch partner, test accuracy of
the final model), made once from the store and read by the answer and the across-datasets table:

- ``ls_*``: the role against the ``label_smoothing`` baseline trained with the same architecture, view, recipe,
  data and repetition (it pairs with the role exactly as the scratch student does: the same ``pair_key``). Soft
  targets that carry no knowledge can help a student as a regulariser (Yuan et al., CVPR 2020; Müller et al.,
  NeurIPS 2019), so beating scratch alone does not credit a method with transfer. Holm-corrected per dataset and
  preset over these comparisons (family ``vs label smoothing``). Absent (n = 0) where no such runs exist. The
  positive controls get the same comparison on every metric they are judged by (:func:`sensitivity_frame`).
- ``teacher_*``: the teacher's advantage over the role's scratch student, teacher test accuracy minus the scratch
  student's, paired by repetition (the teacher is the run the distilled run ``requires``; its ``teacher`` role,
  or its only role). Where it is not significant (uncorrected, its 95% interval includes 0) there was nothing to
  transfer, and the row cannot show transfer whatever its verdict; except in self-distillation
  (``self_distilled``: the role is its teacher's architecture on its teacher's input, as born_again's generations
  are), where a teacher no better than the student trained alone is the premise, not a defect of the row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from benchmark.contract import LABEL_SMOOTHING, TEACHER
from benchmark.reporting import families, stats
from benchmark.reporting.columns import FINAL, FINAL_SEL, PAIRED_KEYS, PRIMARY, SCRATCH, UNIT

KEY = ["preset", "dataset", "method", "variant", "role"]
LS_FAMILY = "vs label smoothing"
SENSITIVITY_LS_FAMILY = "sensitivity vs label smoothing"
PREFIXES = ("ls_", "teacher_")


def control_frame(results) -> pd.DataFrame:
    """One row per distilled (preset, dataset, method, variant, role) with test accuracy: ``ls_<paired key>`` and
    ``teacher_<paired key>`` (``stats.paired``'s keys, n in ``<prefix>n``), ``ls_p_holm`` and ``ls_holm_m``, the
    label-smoothing verdict after Holm (``ls_verdict``; before it ``ls_verdict_nominal``) and its MDE at Holm's
    first level (``ls_mde``, at ``ls_mde_alpha``)."""
    return results.memo("controls", _build)


def _build(results) -> pd.DataFrame:
    values = results.values
    values = values[(values.selection == FINAL_SEL) & (values.metric == PRIMARY)]
    columns = KEY + [p + k for p in PREFIXES for k in ("n", *PAIRED_KEYS)] + ["ls_family", "ls_p_holm", "ls_holm_m",
                                                                                "self_distilled"]
    rows = values[(values.kind != "baseline") & values.distilled & values.pair_key.notna()]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    smoothing = _by_pair(values[values.method == LABEL_SMOOTHING])
    scratch = _by_pair(values[values.method == SCRATCH])
    teacher = _teacher_values(results)
    required = dict(zip(results.current.run_id, results.current.requires, strict=True))
    network = _networks(results.roles)
    out = []
    for key, group in rows.groupby(KEY, sort=True):
        row = dict(zip(KEY, key, strict=True))
        row.update(_paired("ls_", group.value.to_numpy() - _partner_values(smoothing, group)))
        teachers = np.array([_first(teacher, required.get(run, ())) for run in group.run_id])
        row.update(_paired("teacher_", teachers - _partner_values(scratch, group)))
        row["ls_family"] = LS_FAMILY if row["ls_n"] else None
        row["self_distilled"] = any(_self_distilled(network, run, key[-1], required.get(run, ()))
                                    for run in group.run_id)
        out.append(row)
    frame = pd.DataFrame(out).reindex(columns=columns)
    frame["ls_verdict"] = frame.ls_verdict.astype(object).fillna(stats.UNCLEAR)
    # Holm within preset, dataset and family, the verdicts after it, and the MDE at the level that decides them.
    return families.correct(frame, "ls_")


def sensitivity_frame(results, methods: Iterable[str], metrics: Sequence[str]) -> pd.DataFrame:
    """The positive controls ``methods`` against label smoothing: one row per (preset, dataset, method, variant,
    role, metric) for each of ``metrics`` a control logs (final model), ``ls_*`` the paired comparison with the
    ``label_smoothing`` student of the same transfer set, recipe and repetition (the same ``pair_key``, as its
    scratch student). A control that beats scratch but not label smoothing detects what soft targets without
    knowledge also give. Holm-corrected within preset, dataset and metric over the controls (family
    ``sensitivity vs label smoothing``, ``· metric`` after it for a metric other than test accuracy, as the
    controls' comparisons with scratch), its MDE at that family's first level."""
    columns = KEY + ["metric"] + ["ls_" + k for k in ("n", *PAIRED_KEYS, "family")]
    values = results.values
    values = values[(values.selection == FINAL_SEL) & values.metric.isin(list(metrics)) & values.pair_key.notna()]
    rows = values[values.method.isin(list(methods)) & values.distilled]
    smoothing = {m: _by_pair(g) for m, g in values[values.method == LABEL_SMOOTHING].groupby("metric")}
    out = []
    for key, group in rows.groupby(KEY + ["metric"], sort=True):
        ls = _partner_values(smoothing.get(key[-1], pd.Series(dtype=float)), group)
        row = dict(zip(KEY + ["metric"], key, strict=True))
        row.update(_paired("ls_", group.value.to_numpy() - ls))
        if row["ls_n"]:
            row["ls_family"] = SENSITIVITY_LS_FAMILY + ("" if key[-1] == PRIMARY else f" · {key[-1]}")
        out.append(row)
    return families.correct(pd.DataFrame(out).reindex(columns=columns), "ls_")


def _partner_values(partner: pd.Series, group: pd.DataFrame) -> np.ndarray:
    """``partner`` (:func:`_by_pair`) at each row of ``group``'s unit and pair key; NaN where it has none."""
    if partner.empty:
        return np.full(len(group), np.nan)
    return partner.reindex(pd.MultiIndex.from_frame(group[UNIT + ["pair_key"]])).to_numpy()


def _by_pair(frame: pd.DataFrame) -> pd.Series:
    """Values indexed by unit and pair_key; the default variant where a pair has several (one partner each)."""
    frame = frame.dropna(subset=["pair_key"]).assign(_d=lambda f: f.variant.ne("default"))
    frame = frame.sort_values("_d").drop_duplicates([*UNIT, "pair_key"], keep="first")
    return frame.set_index([*UNIT, "pair_key"]).value


def _teacher_role(roles) -> str | None:
    """The teacher among a run's roles: ``teacher``, else the run's only role; None when neither."""
    roles = list(roles)
    if TEACHER in roles:
        return TEACHER
    return roles[0] if len(roles) == 1 else None


def _teacher_values(results) -> dict[str, float]:
    """run_id -> the test accuracy of its teacher role (:func:`_teacher_role` of the roles with one)."""
    m = results.metrics
    final = m[(m.epoch == FINAL) & (m.metric == PRIMARY)]
    found: dict[str, float] = {}
    for run, g in final.groupby("run_id", sort=False):
        role = _teacher_role(g.role)
        if role is not None:
            found[run] = float(g.value[g.role == role].iloc[0])
    return found


def _networks(roles: pd.DataFrame) -> dict[str, dict[str, tuple]]:
    """run_id -> {role: (architecture, view)} of the store's current runs."""
    out: dict[str, dict[str, tuple]] = {}
    for r in roles.itertuples():
        out.setdefault(r.run_id, {})[r.role] = (r.arch, r.view)
    return out


def _teacher_network(network: dict[str, dict[str, tuple]], runs) -> tuple | None:
    """(architecture, view) of the teacher role (:func:`_teacher_role`) of the first required run that has one."""
    for run in runs:
        mine = network.get(run, {})
        role = _teacher_role(mine)
        if role is not None:
            return mine[role]
    return None


def _self_distilled(network: dict[str, dict[str, tuple]], run: str, role: str, requires) -> bool:
    """Whether ``role`` of ``run`` is its teacher's network: the same architecture on the same input."""
    mine = network.get(run, {}).get(role)
    return mine is not None and mine == _teacher_network(network, requires)


def _first(teacher: dict[str, float], runs) -> float:
    return next((teacher[r] for r in runs if r in teacher), math.nan)


def _paired(prefix: str, diffs: np.ndarray) -> dict:
    diffs = diffs[np.isfinite(diffs)]
    if not len(diffs):
        return {prefix + "n": 0}
    p = stats.paired(diffs)
    return {prefix + "n": p["n"], **{prefix + k: p[k] for k in PAIRED_KEYS}}


def lookup(results) -> dict[tuple, dict]:
    """(preset, dataset, method, variant, role) -> that row of ``control_frame`` as a dict (built once per
    store)."""
    return results.memo("controls_lookup", lambda r: {tuple(row[k] for k in KEY): row
                                                         for row in control_frame(r).to_dict("records")})


def teacher_significant(row: dict | None) -> bool | None:
    """Whether the teacher's advantage is significant (its 95% interval above 0, or at zero variance the sign-flip
    test below α with a positive Δ); None where no teacher was paired."""
    if not row or not row.get("teacher_n"):
        return None
    return row.get("teacher_verdict") == stats.HIGHER
