"""What each configuration in the store is, and which comparisons are corrected together.

A method's configurations on one dataset and preset are of one kind each (:func:`config_kinds`): its ``default``;
the one run ``as published`` (its config holds every value of the method's ``as_published`` overrides); a
notebook ``defect`` run alone (the variant that changes exactly that declared defect to the notebook's value, as
``ablations.defect_frame`` matches it); a configuration other runs ``required`` (e.g. a method's own teacher
stage; a chain's earlier generation, which changes the same fields as the one that requires it, is an ablation
point, :func:`chain_points`); or an ``ablation``. Baselines are ``baseline``.

Holm's correction runs within a family (:func:`family_name`), per dataset and preset:
- ``primary``: the default configurations' test-accuracy comparisons with their scratch students, one per role
  that receives a distillation signal, across methods;
- the default configurations' other metrics, their validation-selected accuracy and their comparisons with an
  untrained control: one family each (e.g. ``default · test_nll``);
- positive controls (methods whose ``family`` is ``sensitivity``): every control's comparisons with its
  scratch student together, per metric (``sensitivity · test_omitted_acc``), reported first;
- controls for what distillation is not (``family`` ``control``: a teacher that knows nothing): likewise, as
  ``control``, shown beside the positive controls;
- every other kind, per method (e.g. ``as published · js_entanglement``, ``defects · hinton_kd``), and per metric
  likewise; comparisons with the method's default variant (ablation rows) form families of their own
  (``ablations vs default · ska · probe_acc``).

Verdicts follow the corrected test: "beats" or "worse than" only where p (Holm) < α; the uncorrected verdict is
kept beside it (``verdict_nominal``). A role that receives no distillation signal (``distilled`` false in its
record; a record without the flag counts as distilled) is the method's anchor: shown, never compared. A role whose
runs are identical across configurations (every final metric of every repetition equal) is shown once
(:func:`identical_roles`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.contract import CONTROL as CONTROL_FAMILY
from benchmark.contract import SENSITIVITY as SENSITIVITY_FAMILY
from benchmark.reporting import stats
from benchmark.reporting.columns import FINAL, FINAL_SEL, PRIMARY, SCRATCH, UNIT, VAL_SEL
from benchmark.reporting.text import config_label, param_text, same_level

DEFAULT, AS_PUBLISHED, REQUIRED, DEFECT, ABLATION, BASELINE = (
    "default", "as published", "required", "defect", "ablation", "baseline")
SENSITIVITY = SENSITIVITY_FAMILY  # every configuration of a positive control (``MethodBase.family``)
CONTROL = CONTROL_FAMILY  # every configuration of a control for what distillation is not (``MethodBase.family``)
# which identical copy is kept
KIND_ORDER = (DEFAULT, AS_PUBLISHED, REQUIRED, DEFECT, ABLATION, BASELINE, SENSITIVITY, CONTROL)
FAMILY_WORDS = {AS_PUBLISHED: "as published", REQUIRED: "required", DEFECT: "defects", ABLATION: "ablations",
                BASELINE: "baselines"}
PRIMARY_FAMILY = "primary"


# {method: {config field: (the notebook's value, one line on what the notebook did)}}, as methods declare it
NotebookDefects = Mapping[str, Mapping[str, Any]]
# {method: {"as_published": {field: value}, "named_fields": (field, ...), "budget_fields": (field, ...)}}
MethodDeclarations = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Declarations:
    """What the methods declare that the records do not say, given to ``publish``:
    ``as_published`` {method: the config overrides that make a run notebook-faithful}, ``named_fields`` {method:
    fields whose default differs from the notebook in a way that changes the number: its rows name them} and
    ``notebook_defects`` {method: {field: (the notebook's value, what it did)}}; None when not given."""

    as_published: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    named_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notebook_defects: Mapping[str, Mapping[str, Any]] | None = None
    # {method: its training-budget fields (benchmark.engine.budget)}: runs that are another run's configuration at
    # audit.FACTOR times those fields are the budget audit's, kept out of every other table
    budget_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # {method: its ``MethodBase.family``} where one is set: positive controls ("sensitivity")
    family: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, declarations: MethodDeclarations | None = None,
           notebook_defects: NotebookDefects | None = None) -> Declarations:
        """From ``publish``'s arguments: ``declarations`` {method: {"as_published": {...}, "named_fields":
        (...)}} (either key may be missing) and ``notebook_defects`` {method: {field: (value, description)}}."""
        declarations = declarations or {}
        return cls(as_published={m: dict(d.get("as_published") or {}) for m, d in declarations.items()},
                   named_fields={m: tuple(d.get("named_fields") or ()) for m, d in declarations.items()},
                   budget_fields={m: tuple(d.get("budget_fields") or ()) for m, d in declarations.items()},
                   family={m: d["family"] for m, d in declarations.items() if d.get("family")},
                   notebook_defects=None if notebook_defects is None else {
                       m: dict(d or {}) for m, d in notebook_defects.items()})

    def defects(self, method: str) -> dict[str, Any]:
        return dict((self.notebook_defects or {}).get(method) or {})


def changed_fields(settings: Mapping[str, dict], variant: str) -> list[str]:
    """The config fields where ``variant`` differs from the default variant's config, sorted."""
    if "default" not in settings:
        return []
    base, cfg = settings["default"], settings[variant]
    return sorted(k for k in set(base) | set(cfg) if base.get(k) != cfg.get(k))


def defect_variant(settings: Mapping[str, dict], name: str, value, declared: Mapping[str, Any],
                   among=None) -> str | None:
    """The variant that runs the notebook defect ``name`` (its field at the notebook's ``value``) alone: it changes
    that field, no other declared defect, and the fewest fields of those that do (another field may change with
    it, e.g. one the method adapts to the notebook's view). None when no variant does."""
    candidates = []
    for variant in among if among is not None else settings:
        fields = changed_fields(settings, variant)
        if (name in fields and same_level(settings[variant].get(name), value)
                and not (set(fields) - {name}) & set(declared)):
            candidates.append((len(fields), variant))
    return min(candidates)[1] if candidates else None


def chain_points(runs: pd.DataFrame, settings: Mapping[str, dict], variant_of_run: Mapping[str, str]) -> set[str]:
    """The variants of one method that another of its variants requires and that change the very fields it
    changes: points of one grid, such as a chain's generation 2 that generation 3 distils from
    (``generation=2`` required by ``generation=3``). They are results of their own (ablations), not a stage
    another run needs (a teacher stage changes other fields than the student that requires it)."""
    points = set()
    for variant, needs in zip(runs.variant, runs.requires, strict=True):
        for rid in needs:
            other = variant_of_run.get(rid)
            if other in settings and other not in (variant, "default") and \
                    changed_fields(settings, other) == changed_fields(settings, variant):
                points.add(other)
    return points


def config_kinds(current: pd.DataFrame, declared: Declarations) -> dict[tuple, str]:
    """(preset, dataset, method, variant) -> its kind (see the module docstring)."""
    kinds: dict[tuple, str] = {}
    variant_of_run = dict(zip(current.run_id, current.variant, strict=True))
    for (preset, dataset, method), runs in current.groupby(["preset", "dataset", "method"], sort=True):
        key = (preset, dataset, method)
        if runs.kind.eq("baseline").all():
            kinds.update({(*key, v): BASELINE for v in runs.variant.unique()})
            continue
        if declared.family.get(method) in (SENSITIVITY, CONTROL):
            kinds.update({(*key, v): declared.family[method] for v in runs.variant.unique()})
            continue
        settings = runs.drop_duplicates("variant").set_index("variant").config.to_dict()
        points = chain_points(runs, settings, variant_of_run)
        required = {variant_of_run.get(rid) for needs in runs.requires for rid in needs} - points
        open_ = [v for v in sorted(settings) if v != "default" and v not in required]
        found = {v: REQUIRED for v in settings if v in required and v != "default"}
        published = declared.as_published.get(method) or {}
        if published:
            fits = [v for v in open_ if all(same_level(settings[v].get(k), x) for k, x in published.items())]
            if fits:
                found[min(fits, key=lambda v: (len(changed_fields(settings, v)), v))] = AS_PUBLISHED
        defects = declared.defects(method)
        for name, spec in defects.items():
            variant = defect_variant(settings, name, tuple(spec)[0], defects, [v for v in open_ if v not in found])
            if variant is not None:
                found[variant] = DEFECT
        kinds.update({(*key, v): DEFAULT if v == "default" else found.get(v, ABLATION) for v in settings})
    return kinds


def config_names(current: pd.DataFrame, kinds: Mapping[tuple, str], declared: Declarations) -> dict[tuple, str]:
    """(preset, dataset, method, variant) -> the name its rows carry: a default configuration names the fields
    its method declares in ``named_fields`` ("js_entanglement · views=halves"), the as-published one is
    "method · as published", any other ``text.config_label``."""
    names = {}
    for r in current.drop_duplicates(["preset", "dataset", "method", "variant"]).itertuples():
        key = (r.preset, r.dataset, r.method, r.variant)
        kind = kinds.get(key)
        if kind == DEFAULT:
            named = [f for f in declared.named_fields.get(r.method, ()) if f in r.config]
            names[key] = " · ".join([r.method, *(f"{f}={param_text(r.config[f])}" for f in named)])
        elif kind == AS_PUBLISHED:
            names[key] = f"{r.method} · as published"
        else:
            names[key] = config_label(r.method, r.variant)
    return names


def main_configs(current: pd.DataFrame, roles: pd.DataFrame, kinds: Mapping[tuple, str], *,
                 controls: bool = False) -> set[tuple]:
    """The configurations of the main table: each method's default and as-published configurations (every
    configuration of a method stored without a default), what their runs require (a teacher), the scratch students
    paired with them or with nothing, and the other baselines unless only other configurations require them.
    ``controls``: the positive controls and the controls for what distillation is not too (with their teachers and
    scratch students), as the budget audit reads them."""
    key_of_run = {r.run_id: (r.preset, r.dataset, r.method, r.variant) for r in current.itertuples()}
    with_default = {k[:3] for k, kind in kinds.items() if kind == DEFAULT}
    shown_kinds = (DEFAULT, AS_PUBLISHED, SENSITIVITY, CONTROL) if controls else (DEFAULT, AS_PUBLISHED)
    main = {k for k, kind in kinds.items()
            if kind in shown_kinds or (kind not in (BASELINE, SENSITIVITY, CONTROL) and k[:3] not in with_default)}
    needed = dict(zip(current.run_id, current.requires, strict=True))
    for _ in range(2):  # a teacher of a teacher
        main |= {key_of_run[rid] for run, key in key_of_run.items() if key in main
                 for rid in needed.get(run, ()) if rid in key_of_run}
    pairs = [(key_of_run[r.run_id], r.pair_key) for r in roles.itertuples()
             if isinstance(r.pair_key, str) and r.run_id in key_of_run]
    partners = {(k[0], k[1], p) for k, p in pairs if k[2] != SCRATCH}
    shown = {(k[0], k[1], p) for k, p in pairs if k[2] != SCRATCH and k in main}
    main |= {k for k, p in pairs if k[2] == SCRATCH and ((k[0], k[1], p) in shown or (k[0], k[1], p) not in partners)}
    paired = {k for k, _ in pairs if k[2] == SCRATCH}
    required = {key_of_run[rid] for needs in needed.values() for rid in needs if rid in key_of_run}
    main |= {k for k, kind in kinds.items() if kind == BASELINE and k[2] != SCRATCH and k not in required}
    main |= {k for k in kinds if k[2] == SCRATCH and k not in paired}
    return main


def identical_roles(metrics: pd.DataFrame, current: pd.DataFrame, kinds: Mapping[tuple, str]) -> dict[tuple, str]:
    """(preset, dataset, method, variant, role) -> the variant whose runs of that role it repeats exactly (every
    final metric of every repetition equal), for every method role shown under another configuration already
    (the default first, then by kind and name)."""
    final = metrics[(metrics.epoch == FINAL) & (metrics.kind != "baseline")]
    if final.empty:
        return {}
    prints: dict[tuple, tuple] = {}
    for (preset, dataset, method, variant, role), g in final.groupby(
            ["preset", "dataset", "method", "variant", "role"], sort=True):
        rows = g.sort_values([*UNIT, "metric"])
        prints[(preset, dataset, method, variant, role)] = tuple(
            zip(*(rows[c] for c in [*UNIT, "metric", "value"]), strict=True))

    def rank(key):
        kind = kinds.get(key[:4], ABLATION)
        return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), key[3]

    seen: dict[tuple, str] = {}
    same: dict[tuple, str] = {}
    for key in sorted(prints, key=lambda k: (k[0], k[1], k[2], k[4], *rank(k))):
        group = (key[0], key[1], key[2], key[4], prints[key])
        if group in seen:
            same[key] = seen[group]
        else:
            seen[group] = key[3]
    return same


# ---- families and verdicts -----------------------------------------------------------------------------------

def metric_part(metric: str, selection: str = FINAL_SEL) -> str:
    """" · test_nll", " · test_acc (validation-selected)", or "" for the official test accuracy."""
    if metric == PRIMARY and selection == FINAL_SEL:
        return ""
    return f" · {metric}" + (" (validation-selected)" if selection == VAL_SEL else "")


def family_name(kind: str, method: str, metric: str, selection: str, against: str) -> str:
    """The Holm family of one comparison (``against``: "scratch", "untrained" or "default"); see the module
    docstring."""
    part = metric_part(metric, selection)
    if against == "default":
        return f"{FAMILY_WORDS.get(kind, kind)} vs default · {method}{part}"
    control = " vs untrained" if against == "untrained" else ""
    if kind in (SENSITIVITY, CONTROL):  # every control of the kind together, per dataset and metric
        return f"{kind}{part}{control}"
    if kind == DEFAULT:
        return PRIMARY_FAMILY if not part and not control else f"default{part}{control}"
    return f"{FAMILY_WORDS.get(kind, kind)} · {method}{part}{control}"


def corrected_verdict(nominal: str, p_holm: float) -> str:
    """The nominal verdict where the family-corrected p-value is below α, else unclear."""
    decided = nominal in (stats.HIGHER, stats.LOWER)
    return nominal if decided and not math.isnan(p_holm) and p_holm < stats.ALPHA else stats.UNCLEAR


def correct(frame: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Holm's correction of ``<prefix>p_value`` within each ``<prefix>family`` per dataset and preset
    (``<prefix>p_holm``, its size ``<prefix>holm_m``), and the verdicts: ``<prefix>verdict`` follows the corrected
    test, ``<prefix>verdict_nominal`` the uncorrected one."""
    frame = frame.copy()
    if frame.empty:
        return frame.assign(**{prefix + c: pd.Series(dtype=object) for c in ("p_holm", "holm_m", "verdict_nominal")})
    grouped = frame.assign(_f=frame[prefix + "family"].astype(object).fillna(""))
    frame[prefix + "p_holm"], frame[prefix + "holm_m"] = stats.holm_within(grouped, ["preset", "dataset", "_f"],
                                                                           prefix + "p_value")
    frame[prefix + "verdict_nominal"] = frame[prefix + "verdict"]
    frame[prefix + "verdict"] = [corrected_verdict(v, p) if isinstance(v, str) else v for v, p in
                                 zip(frame[prefix + "verdict_nominal"], frame[prefix + "p_holm"], strict=True)]
    return corrected_mde(frame, prefix)


def corrected_mde(frame: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """``<prefix>mde`` restated at the level a verdict needs, Holm's first step α/m over the comparison's family
    (``stats.holm_first_level``), and that level in ``<prefix>mde_alpha``; a comparison in no family keeps its MDE
    at α."""
    if prefix + "mde" not in frame or frame.empty:
        return frame.assign(**{prefix + "mde_alpha": pd.Series(dtype=float)})
    n_column = prefix + "n" if prefix else "pair_n"
    sd = frame[prefix + "delta_std"].astype(float)
    m = frame[prefix + "holm_m"].fillna(0).astype(int)
    levels = [stats.holm_first_level(k) for k in m]
    mdes = []
    for old, s, n, level, k in zip(frame[prefix + "mde"], sd, frame.get(n_column, frame.get("n")), levels, m,
                                   strict=True):
        if k <= 1 or not (isinstance(old, float) and math.isfinite(old)):
            mdes.append(old)
        else:
            mdes.append(stats.mde(float(s), int(n), stats.POWER, level))
    return frame.assign(**{prefix + "mde": mdes, prefix + "mde_alpha": levels})
