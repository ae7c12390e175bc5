"""The two sections REPORT.md opens with: the answer across datasets (``across``) and Sensitivity, the positive
controls (methods whose ``family`` is ``sensitivity``: an effect known to exist, e.g. Hinton et al. 2015's omitted
class), each control's Δ against its scratch student, its interval and Holm p per dataset, and against the
label-smoothing student of the same transfer set. When a control fails to beat its scratch student after
correction on a dataset, the section says first that the harness could not detect a known effect there; when it
beats scratch but not label smoothing, it says that there the control's effect is not told apart from what soft
targets without knowledge give."""

from __future__ import annotations

import pandas as pd

from benchmark.contract import ACCURACY_CORRECTED, OMITTED_ACCURACY, OMITTED_ACCURACY_CORRECTED
from benchmark.reporting import controls, families, stats, text
from benchmark.reporting.across import MIN_BLOCKS, Across, across
from benchmark.reporting.columns import FINAL_SEL, PRIMARY
from benchmark.reporting.figures import FigureSet, by_kind, image
from benchmark.reporting.tables import markdown_table
from benchmark.store import Store

CONTROLS_COMMAND = "python -m benchmark all"
# The metric that decides whether a control was detected: the first its runs log (the omitted class after the
# paper's bias correction, where there is an omitted class)
DECIDING = (OMITTED_ACCURACY_CORRECTED, OMITTED_ACCURACY, PRIMARY)
SHOWN = (PRIMARY, ACCURACY_CORRECTED, OMITTED_ACCURACY, OMITTED_ACCURACY_CORRECTED)


NO_PAIR_CELL = "no scratch pair yet"  # a row whose scratch student has not run: no Δ, so no verdict


def _short(c: dict) -> str:
    words = text.verdict_words(c, "scratch", PRIMARY)
    return {"beats scratch": "beats", "worse than scratch": "worse"}.get(words, "unclear")


def across_section(summary: pd.DataFrame, figures: FigureSet, store: Store) -> list[str]:
    lines = ["## Across datasets", ""]
    found = across(summary)
    if not found:
        return lines + ["No default configuration has a distillation comparison with a scratch student yet.", ""]
    for a in found:
        lines += [f"### Preset {a.preset}", "",
                  "Each cell: the default configuration's Δ test accuracy against its scratch student, pp [95% CI], "
                  "and its verdict after Holm's correction over the dataset's primary family. Average rank: ranked "
                  "per dataset by mean Δ against scratch (1 = largest; ties share the average rank), over the "
                  "methods with a Δ on every dataset ranked (a dataset where few methods have one yet is left out).",
                  ""]
        ranks = a.average_ranks
        rows = []
        for name, block in a.table.groupby("name", sort=True):
            cells = []
            for dataset in a.datasets:
                here = block[block.dataset == dataset]
                if here.empty:
                    cells.append("–")
                    continue
                c = text.comparison(here.iloc[0])
                cells.append(f"{text.fmt_delta(None, PRIMARY, c)} {_short(c)}" if text.has_pair(c) else NO_PAIR_CELL)
            rank = f"{ranks[name]:.2f}" if name in ranks else "– (not on every dataset)"
            rows.append([name, *cells, rank])
        rows.sort(key=lambda r: (r[0] not in ranks, ranks.get(r[0], 0.0), r[0]))  # best average rank first
        lines += markdown_table(["method (role)", *a.datasets, "average rank"], rows, len(a.datasets) + 1) + [""]
        k, n = len(a.ranked), len(a.ranked_datasets)
        left_out = [d for d in a.datasets if d not in a.ranked_datasets]
        if k and left_out:
            lines.append(f"Ranked on {', '.join(a.ranked_datasets)}; left out: "
                         + "; ".join(_left_out(a, d) for d in left_out) + ".")
        if a.friedman is None:
            lines.append(f"Friedman's test needs at least {MIN_BLOCKS} datasets and {MIN_BLOCKS} methods with a Δ on "
                         f"every dataset; here there are {n} and {k}: not run.")
        else:
            stat, p = a.friedman
            lines.append(f"Friedman's test over the {k} methods' ranks on {n} datasets: χ²_F = {stat:.2f}, "
                         f"p = {text.fmt_p(p)}.")
        if a.cd is not None:
            lines.append(f"Nemenyi's critical difference (Demšar 2006) at α = {stats.ALPHA}: CD = {a.cd:.2f} "
                         "average ranks; methods whose average ranks differ by less are not shown to differ.")
        lines += [f"With {n} dataset{'s' * (n != 1)} these tests have little power: a difference inside the CD "
                  "is not evidence of equality." + _several_roles(a), ""]
        lines += [image(f, store) for f in by_kind(figures, "cd_diagram", preset=a.preset)] + [""]
    return lines


def _several_roles(a: Across) -> str:
    """Which ranked methods enter once per distilled role (their roles' Δ share a run, so they are not independent
    entries)."""
    methods = a.table[a.table.name.isin(a.ranked)].groupby("method").role.nunique()
    several = sorted(methods[methods > 1].index)
    if not several:
        return ""
    return (f" {', '.join(several)} enter{'s' * (len(several) == 1)} once per distilled role: the roles of one run "
            "are ranked as separate entries, and their Δ are not independent.")


def _left_out(a: Across, dataset: str) -> str:
    """Why a dataset is not a block of the ranking: how few of the methods have a Δ there so far."""
    n = a.with_delta.get(dataset, 0)
    if not n:
        return f"{dataset} (no method has a Δ against its scratch student there yet)"
    total = a.table.name.nunique()
    return (f"{dataset} (only {n} of the {total} methods ha{'s' if n == 1 else 've'} a Δ there so far; "
            "ranking on it would drop the others)")


def control_rows(summary: pd.DataFrame, kind: str = families.SENSITIVITY) -> pd.DataFrame:
    """The comparisons of the controls of ``kind`` (positive controls, or controls for what distillation is not)
    with their scratch students (final model, every logged control metric)."""
    rows = summary[summary.config_kind.eq(kind) & (summary.selection == FINAL_SEL)
                   & summary.metric.isin(SHOWN) & summary.p_value.notna()]
    return rows.sort_values(["preset", "dataset", "label", "role", "metric"])


def deciding(rows: pd.DataFrame) -> pd.DataFrame:
    """Per control (label and role) on a dataset, its deciding comparison (``DECIDING``'s first metric it logs)."""
    rank = rows.metric.map({m: i for i, m in enumerate(DECIDING)}).fillna(len(DECIDING))
    return rows.assign(_r=rank).sort_values("_r").drop_duplicates(["preset", "dataset", "label", "role"]).drop(
        columns="_r")


def sensitivity_section(summary: pd.DataFrame, smoothing: pd.DataFrame | None = None) -> list[str]:
    """``smoothing``: the controls against label smoothing (``controls.sensitivity_frame``); without it the
    section compares with scratch alone."""
    lines = ["## Sensitivity: can the harness see a known effect?", ""]
    rows = control_rows(summary)
    if rows.empty:
        return lines + ["The positive controls have not been run: no run of a method whose `family` is "
                        f"`sensitivity` is in the store. `{CONTROLS_COMMAND}` runs them with every method (on one "
                        "dataset: `--datasets digits`). Until then a verdict of \"unclear\" below cannot be told "
                        "apart from a harness that could not see an effect.", ""] + negative_controls(summary)
    decided = deciding(rows)
    failed = decided[decided.verdict != stats.HIGHER]
    if len(failed):
        said = "; ".join(f"{r.label} ({r.role}, {r.metric}) on {r.dataset}: "
                         f"{text.verdict_words(text.comparison(r), 'scratch', r.metric)}" for r in failed.itertuples())
        lines += [f"**The harness could not detect a known effect on {', '.join(sorted(set(failed.dataset)))}**: "
                  f"a positive control did not beat its scratch student after Holm's correction ({said}). "
                  "Where the effect is known to exist, this means too few repetitions (see the MDE), a teacher "
                  "with nothing to transfer, or a control whose transfer set is not the one intended; verdicts "
                  "of \"unclear\" on those datasets say nothing about the methods.", ""]
    else:
        lines += ["Every positive control beats its scratch student after Holm's correction on every dataset it "
                  "ran on: the harness detects a known effect there.", ""]
    found = _smoothing_lookup(smoothing)
    lines += smoothing_sentences(decided, rows, found)
    lines += ["Each row: a control's distilled student against its scratch student trained on the same transfer "
              "set (config `transfer`), paired by repetition; p (Holm) over the controls' comparisons of that "
              "metric on the dataset (family `sensitivity`). The deciding metric of each control is the first it "
              f"logs of {', '.join(DECIDING)}."
              + (" Against label smoothing: the same student against the label-smoothing student of the same "
                 "transfer set, recipe and repetition, p (Holm) over the controls' comparisons of that metric "
                 "(family `sensitivity vs label smoothing`)." if found else ""), ""]
    return lines + _control_table(rows, found) + [""] + negative_controls(summary)


SMOOTHING = "label smoothing"
_LS_KEY = ("preset", "dataset", "method", "variant", "role", "metric")


def control_smoothing(results) -> pd.DataFrame:
    """The positive controls (config kind ``sensitivity``) against label smoothing on each metric the section
    shows (``controls.sensitivity_frame``)."""
    s = results.summary
    return controls.sensitivity_frame(results, sorted(set(s.method[s.config_kind.eq(families.SENSITIVITY)])), SHOWN)


def _smoothing_lookup(smoothing: pd.DataFrame | None) -> dict[tuple, dict]:
    """(preset, dataset, method, variant, role, metric) -> the comparison with label smoothing (``text.comparison``
    of its ``ls_*`` row), for the rows that have one."""
    if smoothing is None or smoothing.empty:
        return {}
    rows = smoothing[smoothing.ls_n.fillna(0) > 0]
    return {_ls_key(r): text.comparison(r, prefix="ls_", n="ls_n") for r in rows.itertuples()}


def _ls_key(r) -> tuple:
    return tuple(getattr(r, k) for k in _LS_KEY)


def smoothing_sentences(decided: pd.DataFrame, rows: pd.DataFrame, found: dict[tuple, dict]) -> list[str]:
    """What the deciding comparisons say against label smoothing: a control that beats scratch but not label
    smoothing on its deciding metric detects an effect that soft targets without knowledge also give, so on that
    dataset it shows the harness can see a gain, not that knowledge was transferred (the metrics on which it does
    beat label smoothing are named)."""
    beaten = decided[decided.verdict == stats.HIGHER]
    if not len(beaten):
        return []
    paired = [r for r in beaten.itertuples() if _ls_key(r) in found]
    if not paired:
        return ["No label-smoothing student was trained on the controls' transfer sets: what they detect against "
                "scratch is not told apart from what soft targets without knowledge give (`python -m benchmark "
                "all` trains them).", ""]
    lost = [r for r in paired if found[_ls_key(r)]["verdict"] != stats.HIGHER]
    if not lost:
        return ["Each of those also beats the label-smoothing student of its transfer set on its deciding metric "
                "after Holm's correction: what the controls detect is more than soft targets without knowledge "
                "give.", ""]
    said = []
    for r in lost:
        c = found[_ls_key(r)]
        others = [m.metric for m in rows.itertuples()
                  if (m.preset, m.dataset, m.label, m.role) == (r.preset, r.dataset, r.label, r.role)
                  and m.metric != r.metric and found.get(_ls_key(m), {}).get("verdict") == stats.HIGHER]
        words = text.verdict_words(c, SMOOTHING, r.metric)
        power = f": {text.mde_sentence(c, r.metric)}" if words == stats.UNCLEAR else ""
        also = f". It beats label smoothing on {', '.join(others)}" if others else ""
        said.append(f"- {r.label} ({r.role}, {r.metric}) on {r.dataset}: {text.fmt_delta(None, r.metric, c)} pp "
                    f"against label smoothing, {words}{power}{also}.")
    datasets = ", ".join(sorted({r.dataset for r in lost}))
    return [f"**Not told apart from label smoothing on {datasets}**: these positive controls beat their scratch "
            "student there but not the label-smoothing student of the same transfer set on their deciding metric. "
            "On that metric soft targets that carry no knowledge give the same gain, so they show that the "
            "harness sees a gain, not that it sees knowledge transferred; read the metrics on which they beat "
            "label smoothing.", "", *said, ""]


def _control_table(rows: pd.DataFrame, smoothing: dict[tuple, dict] | None = None) -> list[str]:
    """The controls' rows against scratch; with ``smoothing`` (:func:`_smoothing_lookup`), against label smoothing
    too."""
    table = []
    for r in rows.itertuples():
        c = text.comparison(r)
        transfer = str(r.variant or "").replace(",", ", ")
        cells = [r.dataset, r.label, transfer, r.role, r.metric, str(int(r.n)), text.fmt_mean_ci(r, r.metric),
                 text.fmt_delta(r, r.metric, c), text.fmt_holm(c), text.fmt_family(c),
                 text.verdict_words(c, "scratch", r.metric), text.mde_short(c, r.metric)]
        if smoothing:
            ls = smoothing.get(_ls_key(r))
            cells += ([text.fmt_delta(None, r.metric, ls), text.fmt_holm(ls),
                       text.verdict_words(ls, SMOOTHING, r.metric)] if ls else ["–", "–", "–"])
        table.append(cells)
    head = ["dataset", "control", "variant", "role", "metric", "n", "mean ± 95% CI", "Δ vs scratch [95% CI]",
            "p (Holm)", "family (m)", "verdict", text.MDE_HEAD]
    if smoothing:
        head += ["Δ vs label smoothing [95% CI]", "p (Holm)", "verdict vs label smoothing"]
    return markdown_table(head, table, len(head) - 5)


def negative_controls(summary: pd.DataFrame) -> list[str]:
    """The controls for what distillation is not (a teacher that knows nothing): where one beats its scratch
    student, a method's gain over scratch with the same recipe is no evidence of transfer."""
    rows = control_rows(summary, families.CONTROL)
    rows = rows[rows.metric == PRIMARY]
    if rows.empty:
        return []
    lines = ["### What distillation is not", "",
             "A distillation recipe with a teacher that knows nothing (untrained, or trained on shuffled labels), "
             "everything else equal, against its scratch student; p (Holm) over these controls per dataset (family "
             "`control`). Where such a student beats its scratch student, the recipe's gain is regularisation: a "
             "method's \"beats scratch\" with that recipe is no evidence that knowledge was transferred, and the "
             "main table's Δ against label smoothing is the comparison to read.", ""]
    beaten = rows[rows.verdict == stats.HIGHER]
    if len(beaten):
        lines += [f"**A knowledge-free teacher beats scratch on {', '.join(sorted(set(beaten.dataset)))}.**", ""]
    return lines + _control_table(rows) + [""]
