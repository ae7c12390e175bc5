"""The tables under ``<out>/tables``: ``metrics.parquet``/``.csv`` (one row per run, role, epoch, metric),
``runs.csv`` (one row per run with its parameters), ``summary.csv``/``summary.md`` (per dataset, method, variant
and role, with paired differences against the scratch student) and ``ablations.csv`` (per method variant and role,
the paired difference against the method's default variant, with the changed parameters as columns).

The numbers come from ``benchmark.reporting.frames``; here they become markdown (``summary.md``) and file contents
(:func:`table_files`), which ``benchmark.reporting.publish`` writes as one set. Names a reader understands: a
scratch student's row is labelled by what it is the control for ("scratch · js_entanglement A (CNN)"); its raw
variant (its config) stays in the CSVs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from types import SimpleNamespace

import pandas as pd

from benchmark.reporting import stats
from benchmark.reporting.columns import FINAL_SEL, ORDER_ONLY, PRIMARY, SCRATCH, UNTRAINED, VAL_SEL
from benchmark.reporting.failures import failed_runs_markdown
from benchmark.reporting.frames import Results, metrics_frame, order_rows, runs_frame
from benchmark.reporting.notes import Footnotes, row_notes
from benchmark.reporting.text import (
    ANCHOR,
    MDE_HEAD,
    UNCLEAR_CORRECTED,
    comparison,
    fmt_delta,
    fmt_family,
    fmt_holm,
    fmt_mean_ci,
    fmt_p_test,
    is_anchor,
    mde_short,
    verdict_words,
)
from benchmark.store import Store

SUMMARY_MD = "summary.md"
TABLE_FILES = ("metrics.parquet", "metrics.csv", "runs.csv", "summary.csv", SUMMARY_MD, "ablations.csv")

def markdown_table(head: list[str], rows: list[list[str]], right: int, text_after: int = 0) -> list[str]:
    """A markdown table; its last ``right`` columns aligned right (numbers), but for the very last ``text_after``
    (words) after them."""
    align = ["---"] * (len(head) - right - text_after) + ["---:"] * right + ["---"] * text_after
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _cells(r, metric: str, against: str) -> list[str]:
    """Δ, pairs, p (test), p (Holm), family (m), verdict and MDE of one summary row."""
    if is_anchor(r):
        return [ANCHOR] + ["–"] * 6
    c = comparison(r)
    if not isinstance(r.delta_vs, str):
        return ["–"] * 7
    if c["n"] == 0:
        return [fmt_delta(r, metric, c), "0", "–", "–", "–", "–", "–"]
    return [fmt_delta(r, metric, c), str(c["n"]), fmt_p_test(c), fmt_holm(c), fmt_family(c),
            verdict_words(c, against, metric), mde_short(c, metric)]


COMPARISON_HEAD = ["pairs", "p (test)", "p (Holm)", "family (m)", "verdict", MDE_HEAD]
REFERENCE = ["reference"] + ["–"] * 6


def _key(r) -> tuple:
    return (r.preset, r.dataset, r.method, r.variant, r.role)


def accuracy_table(block: pd.DataFrame, selection: str, notes: Footnotes | None = None) -> list[str]:
    """The test accuracy of ``block``'s rows at ``selection``, with each row's comparison with its scratch
    student; the notes of its rows under it."""
    notes = notes or Footnotes(None)
    part = order_rows(block[(block.metric == PRIMARY) & (block.selection == selection)])
    if part.empty:
        return []
    rows = []
    for r in part.itertuples():
        cells = REFERENCE if r.method == SCRATCH else _cells(r, PRIMARY, "scratch")
        wall = f"{r.wall_time_s:.1f}" if not math.isnan(r.wall_time_s) else "–"
        rows.append([r.label + notes.mark(_key(r)), r.role, str(r.n), fmt_mean_ci(r, PRIMARY), *cells, wall])
    return markdown_table(["model", "role", "n", "accuracy % ± 95% CI", "Δ vs scratch, pp [95% CI]", *COMPARISON_HEAD,
                   "wall s"], rows, 10) + [""] + notes.lines()


def other_table(block: pd.DataFrame) -> list[str]:
    controls = set(block.metric[block.metric.str.endswith(UNTRAINED)].str[:-len(UNTRAINED)])
    part = block[(block.metric != PRIMARY) & (block.selection == FINAL_SEL) & ~block.metric.isin(controls)
                 & ~block.metric.str.endswith(UNTRAINED)]
    if part.empty:
        return []
    rows = [[r.label, r.role, r.metric, str(r.n), fmt_mean_ci(r, r.metric), *_cells(r, r.metric, "scratch")]
            for r in order_rows(part).itertuples()]
    return markdown_table(["model", "role", "metric", "n", "mean ± 95% CI", "Δ vs scratch [95% CI]", *COMPARISON_HEAD],
                  rows, 9) + [""]


def control_tables(block: pd.DataFrame, notes: Footnotes | None = None) -> list[str]:
    """Metrics that have an untrained control (e.g. linear probes of label-free layers), side by side."""
    notes = notes or Footnotes(None)
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
            rows.append([r.label + notes.mark(_key(r)), r.role, str(r.n), fmt_mean_ci(r, metric), untrained,
                         *_cells(r, metric, "untrained")])
        if rows:
            lines += [f"#### {metric}: trained vs untrained (same runs)", ""]
            lines += markdown_table(["model", "role", "n", f"{metric} ± 95% CI", f"{control} ± 95% CI", "Δ [95% CI]",
                             *COMPARISON_HEAD], rows, 10) + [""]
    return lines + notes.lines()


def how_to_read_summary() -> str:
    return (
        "Mean over repetitions with a 95% Student-t interval. The main table is the official number: the test "
        "accuracy of the model each method ends with, for each method's default configuration (its name says any "
        "field whose default differs from the notebook's and changes the number, e.g. \"· views=halves\"), the "
        "configuration its notebook ran (\"· as published\"), what they require (a teacher) and their scratch "
        "students. Δ is paired: each run minus its scratch student (the same architecture, input view and recipe "
        "trained alone, named by the role it is the control for) on the same dataset and repetition, with the same "
        "seed. Unmarked rows share the scratch student's initial weights and batch order; rows marked "
        f"\"{ORDER_ONLY}\" share its data and batch order but not its initial weights. The interval is a 95% "
        "t-interval of the per-repetition differences; when all differences are equal no t-interval exists and "
        "the cell says so (\"no interval: all n differences equal\"). pairs: n, the number of paired repetitions. "
        "p (test): the comparison's two-sided p-value, uncorrected, and its test (t: paired t-test; sign-flip: the "
        "exact paired sign-flip test, used when the differences have zero variance). p (Holm): that p-value after "
        "Holm's correction within its family, per dataset and preset; family (m): the family and its number of "
        "comparisons m. The primary family holds the default configurations' test-accuracy comparisons, one per "
        "role that receives a distillation signal; the default configurations' other metrics, validation-selected "
        "accuracy and untrained controls are a family each; as-published runs, notebook defects, required runs "
        "and ablations are a family per method (and per metric). "
        f"`*` marks p (Holm) < {stats.ALPHA}. verdict: \"beats\" or \"worse than\" only when p (Holm) < "
        f"{stats.ALPHA}; \"{UNCLEAR_CORRECTED} (nominal p = …)\" when only the uncorrected test is below "
        f"{stats.ALPHA}; else \"{stats.UNCLEAR}\". A role that receives no distillation signal is the method's "
        f"anchor (\"{ANCHOR}\"): its accuracy is shown, nothing is compared. A role whose runs are identical "
        "under several configurations is shown once, with a note. MDE: the smallest |Δ| the comparison could "
        f"detect with {stats.POWER:.0%} power at the level a verdict needs, Holm's first step α/m (α = "
        f"{stats.ALPHA}, m the family's size), given its n and the observed SD of the "
        "differences (none without spread). Numbered notes under a table say why a row looks as it does. "
        f"Wilcoxon signed-rank p-values (with at least {stats.WILCOXON_MIN_NONZERO} non-zero differences), "
        "every config and every column named here are in `summary.csv`. Accuracies in %, their Δ and MDE in pp.")


APPENDIX = "Appendix: validation-selected test accuracy"
APPENDIX_SENTENCE = (
    "Test accuracy at the epoch of best validation accuracy, for roles that log learning curves: what early "
    "stopping on the validation split would have chosen. It is not the official number; read it only to judge "
    "how much a method's last epoch differs from its best one. Its comparisons are families of their own.")


def summary_sections(summary: pd.DataFrame, notes: dict | None = None) -> list[str]:
    """Per dataset and preset: the main table, the other variants against their scratch students, the other
    final metrics and the untrained controls, each table with its notes."""
    lines = []
    for (dataset, preset), block in summary.groupby(["dataset", "preset"], sort=True):
        lines += [f"## {dataset} (preset {preset})", ""]
        main = block[block["main"].astype(bool)]
        official = accuracy_table(main, FINAL_SEL, Footnotes(notes))
        if official:
            lines += ["### Main table: test accuracy of the model each method ends with (official)", ""] + official
        others = accuracy_table(block[~block["main"].astype(bool)], FINAL_SEL, Footnotes(notes))
        if others:
            lines += ["### Other variants against their scratch students (ablations, notebook defects)", ""]
            lines += others
        other = other_table(main)
        if other:
            lines += ["### Other final metrics (main-table rows; every variant's are in `summary.csv`)", ""] + other
        controls = control_tables(block, Footnotes(notes))
        if controls:
            lines += ["### Against an untrained control", ""] + controls
    if summary.empty:
        lines += ["No successful runs in the store.", ""]
    return lines


def appendix_sections(summary: pd.DataFrame) -> list[str]:
    """The validation-selected accuracy of the main-table rows, per dataset and preset, under one sentence."""
    lines = []
    for (dataset, preset), block in summary.groupby(["dataset", "preset"], sort=True):
        table = accuracy_table(block[block["main"].astype(bool)], VAL_SEL)
        if table:
            lines += [f"### {dataset} (preset {preset})", ""] + table
    return [f"## {APPENDIX}", "", APPENDIX_SENTENCE, ""] + lines if lines else []


def summary_markdown(summary: pd.DataFrame, superseded: int = 0, records: list[dict] | None = None,
                     skipped: int = 0, notes: dict | None = None, stale: str = "") -> str:
    """``summary.md``; with ``records``, a "Failed runs" section at the end names the runs that failed;
    ``skipped``: how many run files were not valid records (said after the superseded runs); ``notes``: each
    row's footnotes (``notes.row_notes``)."""
    lines = ["# Summary", "", how_to_read_summary(), ""]
    if superseded:
        lines += [f"{superseded} older run(s), replaced by newer runs of the same configuration, "
                  "are left out.", ""]
    if skipped:
        lines += [skipped_sentence(skipped), ""]
    lines += summary_sections(summary, notes) + appendix_sections(summary)
    failed = failed_runs_markdown(records) if records is not None else ""
    if failed:
        lines += [failed]
    if stale:  # ``Results.stale_section``: the runs of other code, left out above
        lines += [stale]
    return "\n".join(lines).rstrip() + "\n"


def skipped_sentence(skipped: int) -> str:
    """What the tables leave out of the run files under ``runs/`` ("" when nothing)."""
    if not skipped:
        return ""
    files = "run file was" if skipped == 1 else "run files were"
    return (f"{skipped} {files} not a valid run record and {'is' if skipped == 1 else 'are'} left out: each was "
            f"reported, and set aside into `{Store.SET_ASIDE}/` (its run is redone by the next suite).")


def table_files(results: Results, names: Iterable[str] | None = None) -> dict[str, bytes]:
    """Every table's file name and its content (only those ``names``, when given: the rest are not computed); the
    tidy metrics keep every ok run, superseded ones too."""
    def runs_csv() -> bytes:
        runs = runs_frame(results.records)
        runs["code"] = runs.run_id.map(results.judgement.of) if len(runs) else []  # current, stale or unknown
        return runs.to_csv(index=False).encode()

    metrics = functools.cache(lambda: metrics_frame(results.records))
    files = {"metrics.parquet": lambda: metrics().to_parquet(index=False),
             "metrics.csv": lambda: metrics().to_csv(index=False).encode(),
             "runs.csv": runs_csv,
             "summary.csv": lambda: results.summary.to_csv(index=False).encode(),
             SUMMARY_MD: lambda: summary_markdown(results.summary, results.superseded, results.live_records,
                                                  results.skipped, row_notes(results),
                                                  results.stale_section).encode(),
             "ablations.csv": lambda: results.ablations.to_csv(index=False).encode()}
    wanted = list(files) if names is None else list(names)
    unknown = sorted(set(wanted) - set(files))
    if unknown:
        raise ValueError(f"no table named {unknown}: the tables are {', '.join(files)}")
    return {name: files[name]() for name in wanted}
