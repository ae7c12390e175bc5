"""The answer the report opens with, per dataset and preset: which methods beat their scratch students after
Holm's correction over the primary family (the default configurations' distillation comparisons), by how much,
which comparisons could not be decided and what they could have detected, then a compact table of that family and
the methods' anchors, with the footnotes of any row that looks broken."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.contract import LABEL_SMOOTHING
from benchmark.reporting import audit, controls, families, stats, text
from benchmark.reporting.columns import FINAL_SEL, PRIMARY, SCRATCH
from benchmark.reporting.frames import Results, order_rows
from benchmark.reporting.notes import Footnotes
from benchmark.reporting.sentences import amount, who
from benchmark.reporting.tables import markdown_table

TABLE_HEAD = ["model", "role", "n", "accuracy %", "scratch %", "Δ pp [95% CI]", "p (nominal)", "p (Holm)",
              "verdict", text.MDE_HEAD + " pp", "Δ vs label smoothing pp [95% CI]", "teacher advantage pp [95% CI]"]
TARGET_MDE = 0.01  # the detectable difference the answer plans repetitions for: 1 pp


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _decided(rows: pd.DataFrame, metric: str = PRIMARY) -> list[str]:
    """"js_entanglement C (+1.2 pp [0.2, 2.1], p (Holm) = 0.01)" for each row its family's correction decides."""
    out = []
    for r in rows.itertuples():
        c = text.comparison(r)
        ci = (f" [{c['delta_ci_low'] * 100:.1f}, {c['delta_ci_high'] * 100:.1f}]"
              if text.has_interval(c) else "")
        mark = text.pairing_mark(c)
        out.append(f"{who(r)} ({amount(c['delta_mean'], metric)}{ci}, p (Holm) = {text.fmt_p(c['p_holm'])}"
                   f"{'; ' + mark if mark else ''})")
    return out


def _is(rows: pd.DataFrame, verdict: str) -> pd.DataFrame:
    return rows[rows.verdict == verdict]


def _mde_clause(undecided: pd.DataFrame) -> str:
    """What the undecided comparisons could have detected: the range and median of their MDEs."""
    mdes = undecided.mde.dropna().to_numpy(dtype=float) * 100
    n = sorted({int(x) for x in undecided.pair_n.dropna() if x > 0})
    reps = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}" if n else "0"
    if not len(mdes):
        return (f"cannot state the smallest difference {'it' if len(undecided) == 1 else 'they'} could have "
                f"detected (no spread, or fewer than two repetitions; n = {reps})")
    span = f"{mdes.min():.1f}" if len(mdes) == 1 else f"{mdes.min():.1f}-{mdes.max():.1f}"
    missing = len(undecided) - len(mdes)
    more = f" ({missing} cannot state one: no spread, or fewer than two repetitions)" if missing else ""
    m = int(undecided.holm_m.max()) if undecided.holm_m.notna().any() else 1
    return (f"could have detected differences of about {span} pp (median {np.median(mdes):.1f} pp) at "
            f"{stats.POWER:.0%} power with n = {reps} repetitions, at "
            f"{text.mde_level({'holm_m': m})}{more}")


def control_cell(row: dict | None, prefix: str) -> str:
    """Δ [95% CI] in pp of a ``controls`` comparison, "–" where it was not made (no such runs)."""
    if not row or not row.get(prefix + "n"):
        return "–"
    c = {k: row.get(prefix + k) for k in ("delta_mean", "delta_ci_low", "delta_ci_high", "delta_std")}
    c.update(n=int(row[prefix + "n"]), delta_vs="", pairing="")
    return text.fmt_delta(None, PRIMARY, c)


def combined_verdict(words: str, row: dict | None) -> str:
    """The vs-scratch verdict, with label smoothing's where it was compared: "beats scratch, not label
    smoothing"."""
    if not row or not row.get("ls_n") or not words.startswith("beats"):
        return words
    if row.get("ls_verdict") == stats.HIGHER:
        return f"{words} and label smoothing"
    return f"{words}, not label smoothing"


def no_teacher_advantage(block: pd.DataFrame, found: dict[tuple, dict]) -> str:
    """The sentence naming the primary rows whose teacher has no significant advantage over their scratch
    student ("" where every paired teacher has one)."""
    rows = order_rows(block[block.family.eq(families.PRIMARY_FAMILY) & block.metric.eq(PRIMARY)
                            & block.selection.eq(FINAL_SEL)])
    weak, own = [], []
    for r in rows.itertuples():
        row = found.get((r.preset, r.dataset, r.method, r.variant, r.role))
        if controls.teacher_significant(row) is False:
            named = f"{who(r)} (teacher {control_cell(row, 'teacher_')} pp)"
            (own if row.get("self_distilled") else weak).append(named)
    words = []
    if weak:
        words.append(f"The teacher has no significant advantage over the scratch student (95% interval includes 0) "
                     f"for {_listing(weak)}: {'this row' if len(weak) == 1 else 'these rows'} cannot show transfer, "
                     "whatever the verdict.")
    if own:
        words.append(f"{_listing(own)} distil{'s' * (len(own) == 1)} from {'its' if len(own) == 1 else 'their'} own "
                     "architecture (self-distillation): a teacher no better than the student trained alone is the "
                     "premise there, and a gain is what training on its soft targets adds.")
    return " ".join(words)


def reps_sentence(block: pd.DataFrame, dataset: str) -> str:
    """Repetitions the primary family needs for a 1 pp MDE at Holm's first-step level, from the median observed
    SD of its paired differences."""
    primary = block[block.family.eq(families.PRIMARY_FAMILY) & block.metric.eq(PRIMARY)
                    & block.selection.eq(FINAL_SEL) & block.p_value.notna()]
    sds = primary.delta_std.astype(float)
    sds = sds[sds > 0]
    if primary.empty or sds.empty:
        return ""
    m = int(primary.holm_m.max())
    sd = float(sds.median())
    n = stats.reps_for_mde(sd, TARGET_MDE, stats.holm_first_level(m))
    need = f"about {n} repetitions" if n else "more than 10,000 repetitions"
    return (f"A 1 pp MDE in the primary family on {dataset} needs {need} (median observed SD of its paired "
            f"differences {sd * 100:.2f} pp, {text.mde_level({'holm_m': m})}, {stats.POWER:.0%} power).")


def budget_flags(frame: pd.DataFrame, partners: dict[tuple, str],
                 smoothing: dict[tuple, str] | None = None) -> dict[tuple, list[str]]:
    """(dataset, method, variant, role) -> what the budget audit flags in the comparisons of that role: the role's
    own flags, its scratch student's and its label-smoothing control's (``partners``, ``smoothing``:
    ``Results.scratch_partners`` and ``Results.smoothing_partners``, keyed with the preset)."""
    own = {(r.dataset, r.method, r.variant, r.role): audit.flag_words(r) for r in frame.itertuples() if r.flagged}
    flags: dict[tuple, list[str]] = {key: list(words) for key, words in own.items()}
    for name, who_, mapping in ((SCRATCH, "its scratch student", partners),
                                (LABEL_SMOOTHING, "its label-smoothing control", smoothing or {})):
        for (_, dataset, method, variant, role), other in mapping.items():
            words = own.get((dataset, name, other, "student"))
            if words and method not in (SCRATCH, LABEL_SMOOTHING):
                flags.setdefault((dataset, method, variant, role), []).extend(f"{who_} {w}" for w in words)
    return flags


def stored_flags(results) -> dict[tuple, list[str]]:
    """:func:`budget_flags` of ``results`` (its audit, scratch and label-smoothing partners), computed once per
    Results for the report and every README block."""
    return results.memo("budget_flags", lambda r: budget_flags(r.audit, r.scratch_partners, r.smoothing_partners))


def budget_sentence(primary: pd.DataFrame, flags: dict[tuple, list[str]]) -> str:
    """The sentence naming the primary comparisons whose role or scratch student the budget audit flags ("" where
    none is)."""
    named = [f"{who(r)}: {'; '.join(flags[key])}" for r in order_rows(primary).itertuples()
             if (key := (r.dataset, r.method, r.variant, r.role)) in flags]
    if not named:
        return ""
    return (f"The budget audit flags {'this comparison' if len(named) == 1 else 'these comparisons'} (see Budget "
            f"audit; a verdict on a flagged role is provisional): {_listing(named)}.")


def primary_comparisons(summary: pd.DataFrame) -> dict[str, set]:
    """Per preset, the (method, role) of every tested primary comparison on any dataset: the family a dataset's
    suite makes once it has run every default configuration."""
    rows = summary[summary.family.eq(families.PRIMARY_FAMILY) & summary.metric.eq(PRIMARY)
                   & summary.selection.eq(FINAL_SEL) & summary.p_value.notna()]
    return {preset: set(zip(g.method, g.role, strict=True)) for preset, g in rows.groupby("preset")}


def partial_family(tested: pd.DataFrame, everywhere: set | None) -> str:
    """A sentence when the dataset has tested fewer of the primary comparisons than the preset's other datasets:
    Holm's correction over fewer comparisons is less strict, so its verdicts are provisional."""
    here = set(zip(tested.method, tested.role, strict=True))
    total = len(here | (everywhere or set()))
    if not len(tested) or len(here) >= total:
        return ""
    return (f"Only {len(here)} of the {total} primary comparisons made on the other datasets have run here so far: "
            f"Holm's correction is over these {len(here)}, a smaller family than the complete suite's, so these "
            f"verdicts are provisional (over {total}, its first step is α = {stats.ALPHA:g}/{total} = "
            f"{stats.ALPHA / total:.3g}).")


def answer_sentences(block: pd.DataFrame, dataset: str, found: dict[tuple, dict] | None = None,
                     flags: dict[tuple, list[str]] | None = None, everywhere: set | None = None) -> list[str]:
    """The answer on one dataset and preset, in a few sentences (``block``: its summary rows; ``found``:
    ``controls.lookup``, for the teacher's advantage; ``flags``: :func:`budget_flags`; ``everywhere``: the
    preset's :func:`primary_comparisons`, to say when this dataset's family is still partial)."""
    final = block[(block.selection == FINAL_SEL) & (block.metric == PRIMARY)]
    primary = final[final.family.eq(families.PRIMARY_FAMILY)]
    tested = order_rows(primary[primary.p_value.notna()])
    if primary.empty:
        return [f"On {dataset}, no default configuration has a distillation comparison with a paired scratch student "
                "in the store."]
    m = len(tested)
    better = _is(tested, stats.HIGHER)
    worse = _is(tested, stats.LOWER)
    family = (f"Holm's correction over the {m} distillation comparison{'s' * (m != 1)} of the default "
              "configurations (the primary family)")
    if not m:  # rows without a scratch pair yet (a suite still running): nothing was tested
        lines = [f"**On {dataset}, nothing is decided yet:** none of its {len(primary)} default distillation "
                 "row(s) has a paired scratch student in the store, so no comparison was tested."]
    elif len(better):
        lines = [f"**On {dataset}, {_listing(_decided(better))} beat{'s' * (len(better) == 1)} "
                 f"{'its' if len(better) == 1 else 'their'} scratch student{'s' * (len(better) > 1)} after {family}.**"]
    else:
        lines = [f"**On {dataset}, nothing clearly beats its scratch student:** no comparison is significant after "
                 f"{family}."]
    if len(worse):
        lines.append(f"Worse than their scratch students after correction: {_listing(_decided(worse))}.")
    if partial := partial_family(tested, everywhere):
        lines.append(partial)
    undecided = tested[~tested.verdict.isin([stats.HIGHER, stats.LOWER])]
    nominal = undecided[undecided.verdict_nominal.isin([stats.HIGHER, stats.LOWER])]
    for r in nominal.itertuples():
        c = text.comparison(r)
        lines.append(f"{who(r)} is nominally {'better' if r.delta_mean > 0 else 'worse'} "
                     f"({amount(c['delta_mean'], PRIMARY)}, nominal p = {text.fmt_p(c['p_value'])}) but unclear "
                     f"after correction (p (Holm) = {text.fmt_p(c['p_holm'])}).")
    if len(undecided):
        lines.append(f"The {len(undecided)} undecided "
                     f"comparison{'s' * (len(undecided) != 1)} {_mde_clause(undecided)}.")
    for r in order_rows(primary[primary.p_value.isna()]).itertuples():
        lines.append(f"{who(r)}: no test ({r.note or 'fewer than two paired repetitions'}).")
    anchors = final[final.anchor.eq(True) & final.config_kind.eq(families.DEFAULT)]
    for r in order_rows(anchors).itertuples():
        lines.append(f"{who(r)} receives no distillation signal: it is shown as the method's anchor "
                     f"({r.mean * 100:.1f}%), not compared.")
    lines += [s for s in (budget_sentence(primary, flags or {}), no_teacher_advantage(block, found or {}),
                          reps_sentence(block, dataset)) if s]
    lines += _other_families(block, dataset)
    return lines


def _other_families(block: pd.DataFrame, dataset: str) -> list[str]:
    """One sentence each on the as-published runs and the default configurations' untrained-control comparisons,
    which are families of their own."""
    lines = []
    final = block[block.selection == FINAL_SEL]
    published = final[final.config_kind.eq(families.AS_PUBLISHED) & final.metric.eq(PRIMARY)
                      & final.p_value.notna()]
    if len(published):
        decided = order_rows(published[published.verdict.isin([stats.HIGHER, stats.LOWER])])
        said = "; ".join(f"{item} {text.verdict_text(v, 'scratch', PRIMARY)}" for item, v in
                         zip(_decided(decided), decided.verdict, strict=True)) or "nothing is decided"
        lines.append(f"As published (each notebook's own configuration, beside its default in the main table; "
                     f"corrected within a family per method): {said}.")
    controls = final[final.config_kind.eq(families.DEFAULT) & final.family.fillna("").str.endswith("vs untrained")
                     & final.p_value.notna()]
    if len(controls):
        decided = order_rows(controls[controls.verdict.isin([stats.HIGHER, stats.LOWER])])
        said = "; ".join(f"{item} {text.verdict_text(v, 'the untrained network', r.metric)}" for item, v, r in
                         zip(_decided(decided), decided.verdict, decided.itertuples(), strict=True))
        lines.append(f"Label-free roles, compared with the same network before training ({len(controls)} "
                     f"comparisons, a family of their own): {said or 'nothing is decided'}.")
    return lines


def answer_table(block: pd.DataFrame, results: Results, notes: Footnotes) -> list[str]:
    """The primary family and the default configurations' anchors, one row each."""
    final = block[(block.selection == FINAL_SEL) & (block.metric == PRIMARY)]
    rows = final[final.family.eq(families.PRIMARY_FAMILY)
                 | (final.anchor.eq(True) & final.config_kind.eq(families.DEFAULT))]
    if rows.empty:
        return []
    partners = results.scratch_partners
    # A store may hold CPU and CUDA runs of one configuration: a row is shown beside the scratch student of its own
    # device kind (they are never paired across kinds), so the lookup is keyed by both.
    scratch = final[final.method == SCRATCH].set_index(["device", "variant"])["mean"].to_dict()
    found = controls.lookup(results)
    lines = []
    for r in order_rows(rows).itertuples():
        key = (r.preset, r.dataset, r.method, r.variant, r.role)
        alone = scratch.get((r.device, partners.get(key)))
        cells = [f"{r.label}{notes.mark(key)}", r.role, str(r.n), f"{r.mean * 100:.2f}",
                 "–" if alone is None else f"{alone * 100:.2f}"]
        if text.is_anchor(r):
            cells += [text.ANCHOR, "–", "–", "–", "–", "–", "–"]
        else:
            c = text.comparison(r)
            row = found.get(key)
            cells += [text.fmt_delta(r, PRIMARY, c), text.fmt_p(c["p_value"]), text.fmt_holm(c),
                      combined_verdict(text.verdict_words(c, "scratch", PRIMARY), row), text.mde_short(c, PRIMARY),
                      control_cell(row, "ls_"), control_cell(row, "teacher_")]
        lines.append(cells)
    return markdown_table(TABLE_HEAD, lines, len(TABLE_HEAD) - 2) + [""] + notes.lines()
