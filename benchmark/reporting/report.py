"""``<out>/REPORT.md`` from the store alone, short enough to read in two minutes: the answer across datasets
(methods × datasets, average ranks, Friedman, the critical-difference diagram), Sensitivity (the positive
controls), then the answer on each dataset (which methods beat their scratch students after correction, by how
much, against label smoothing, with the teacher's advantage, what could not be decided and why), the budget audit
and the runs that did not finish. What is for reference (ablations and per-method figures, what each notebook
defect did, the summary tables, how to read them, the validation-selected appendix) goes to files under
``<out>/reference/`` (:func:`reference_files`), linked from it.
:func:`render` writes it from the same ``Results`` and figures as the tables (``benchmark.reporting.publish``
writes all three as one set), so every link points to a file drawn from the same runs. Nothing is trained, and
nothing here imports the engine: what the methods declare (notebook defects, as-published overrides, named
fields) comes in with the ``Results`` (the command line passes it to ``publish``).

Verdicts follow the family-corrected test (``benchmark.reporting.families``); sentences are
``benchmark.reporting.sentences``'.
"""

from __future__ import annotations

from collections import Counter

from benchmark.reporting import (
    answer,
    audit,
    columns,
    controls,
    frames,
    machines,
    report_front,
    stats,
    tables,
)
from benchmark.reporting.failures import current_failures
from benchmark.reporting.figures import FigureSet, by_kind, image
from benchmark.reporting.notes import Footnotes, row_notes
from benchmark.reporting.report_sections import ablation_sections, cell, defect_sections, method_sections
from benchmark.store import Store

DATASET_FIGURES = ("accuracy", "forest", "cost", "step_time", "schedule")


def _commit(provenance: dict) -> str:
    """A run's commit as the header names it (12 hex digits, or "unknown")."""
    return (provenance.get("git_commit") or "unknown")[:12]


def dirty_clause(provenance: list[dict]) -> str:
    """" (at a3481f21409a, 15 of its 20 runs from a tree with uncommitted changes)" for the commits whose runs
    were trained from a tree with uncommitted changes ("" for none). Their code is still the code their ids hash: a run
    whose hashed code differs from this checkout's is stale and in no table."""
    by_commit = Counter(_commit(p) for p in provenance)
    dirty = Counter(_commit(p) for p in provenance if p.get("git_dirty"))
    if not dirty:
        return ""
    each = "; ".join(f"at {c}, {n} of its {by_commit[c]} runs" for c, n in sorted(dirty.items()))
    return f" ({each} from a tree with uncommitted changes)"


def header(results: frames.Results) -> list[str]:
    provenance = [r.get("provenance") or {} for r in results.records]
    counts = Counter(r.get("status") for r in results.records)
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    commits = ", ".join(sorted({_commit(p) for p in provenance}))
    dirty = dirty_clause(provenance)
    torch = ", ".join(sorted({f"torch {p.get('torch')}" for p in provenance}))
    c = results.current

    def names(column):
        return ", ".join(sorted(c[column].unique())) or "–"

    # the folder is named relative to nothing: an absolute path would be this machine's
    lines = ["# Benchmark report", "",
             f"Written by `python -m benchmark report` from the {len(results.records)} run records in `{Store.RUNS}/` "
             f"beside this file ({status}); nothing was trained to write it.",
             f"Datasets: {names('dataset')}. Presets: {names('preset')}. Methods and baselines: "
             f"{names('method')}.",
             f"Code: git commit {commits}{dirty}; {torch}. {machines.machines_sentence(results.records)}".rstrip(),
             machines.compute_sentence(results.records), ""]
    current = set(c.run_id)  # a stale run's dependencies no longer matter: it is in no table
    lines += machines.earlier_models_lines(results.records, judged=current)
    if results.superseded:
        lines += [f"{results.superseded} older run(s), superseded by newer runs of the same configuration "
                  "(e.g. after a method's code changed), are left out of every table and figure.", ""]
    if results.skipped:
        lines += [tables.skipped_sentence(results.skipped), ""]
    # One configuration on one dataset trained by several versions of the code that can change its result (its
    # source hash; configurations and datasets differ in theirs by design)
    versions = c.groupby(["method", "preset", "dataset", "variant"]).source_hash.nunique()
    mixed = versions[versions > 1].groupby(level=["method", "preset"]).size()
    for (method, preset), count in mixed.items():
        lines += [f"Note: {count} {preset} configuration(s) of {method} mix runs of different versions of the "
                  "code they execute.", ""]
    return lines


def answer_sections(results: frames.Results, figures: FigureSet, store: Store, notes: dict) -> list[str]:
    """"## The answer": per dataset and preset, the answer in a few sentences, the compact table of the primary
    family with its notes, and the dataset's figures."""
    lines = ["## The answer", ""]
    summary = results.summary
    if summary.empty:
        return lines + ["No successful runs: nothing to compare.", ""]
    flags = answer.stored_flags(results)
    everywhere = answer.primary_comparisons(summary)
    for (dataset, preset), block in summary.groupby(["dataset", "preset"], sort=True):
        lines += [f"### {dataset} (preset {preset})", ""]
        lines += [" ".join(answer.answer_sentences(block, dataset, controls.lookup(results), flags,
                                                   everywhere.get(preset))), ""]
        lines += answer.answer_table(block, results, Footnotes(notes))
        a = results.ablations
        if not a.empty and ((a.dataset == dataset) & (a.preset == preset)).any():
            lines += [f"Other variants are compared with their method's default in [the ablations]({REFERENCE}/"
                      f"ablations.md); every row, with its family, is in [the summary tables]({REFERENCE}/summary.md).",
                      ""]
        for kind in DATASET_FIGURES:
            lines += [image(f, store) for f in by_kind(figures, kind, dataset=dataset, preset=preset)]
        lines.append("")
    return lines


def budget_audit(results: frames.Results, *, every_role: bool = False) -> list[str]:
    """The "Budget audit" section (``audit.audit_sections``) of ``Results.audit``: in REPORT.md the flagged roles
    and a link to every role's row (``every_role``, the reference file ``audit.md``)."""
    metrics, runs, base = results.audit_inputs
    return audit.audit_sections(metrics, runs, base, results.declared.budget_fields, frame=results.audit,
                                every_role=every_role, link=f"[the whole audit]({REFERENCE}/{AUDIT_FILE})")


def problems(results: frames.Results) -> list[str]:
    """Runs that failed (and are not superseded by a later finished run of the same slot) or were skipped."""
    failed = current_failures(results.live_records)
    bad = failed + [r for r in results.live_records if r.get("status") == "skipped"]
    if not bad:
        return []
    lines = ["## Runs that did not finish", "", "| status | method | dataset | rep | variant | reason |",
             "|---|---|---|---:|---|---|"]
    for r in sorted(bad, key=lambda r: (r["status"], r["method"], r["dataset"], r["rep"])):
        reason = cell(str(r.get("error") or "").strip().splitlines()[0] if r.get("error") else "")[:200]
        lines.append(f"| {r['status']} | {r['method']} | {r['dataset']} | {r['rep']} | {r['variant']} "
                     f"| {reason} |")
    return lines + [""]


def how_to_read() -> list[str]:
    return ["## How to read this", "",
            "- Every comparison is paired: a method's model and its scratch student (the same architecture, input "
            "view and recipe trained alone, named \"scratch · method role (architecture)\" after the role it is "
            "the control for) share the dataset, repetition, seed, data and batch order, and, unless marked "
            f"\"{columns.ORDER_ONLY}\", the initial weights. Δ is the mean of the per-repetition differences, "
            "with a 95% Student-t interval.",
            "- When every repetition differs by the same amount there is no t-interval (\"no interval: all n "
            "differences equal\"): the exact paired sign-flip test gives the p-value, and with n repetitions it "
            "cannot go below 2/2^n (0.0625 at n = 5).",
            "- Holm's correction runs within a family, per dataset and preset. The primary family is the default "
            "configurations' test-accuracy comparisons with their scratch students, one per role that receives a "
            "distillation signal; the default configurations' other metrics, validation-selected accuracy and "
            "untrained controls are a family each; as-published runs, notebook defects, required runs (a method's "
            "own teacher stage) and ablations are a family per method and metric, and so are comparisons with a "
            "method's default. \"family (m)\" names a comparison's family and its size m.",
            f"- \"Beats\" / \"worse than\" means p (Holm) < {stats.ALPHA}. A comparison whose uncorrected test "
            f"is below {stats.ALPHA} but whose corrected one is not reads \"unclear after correction (nominal p = "
            f"…)\"; otherwise \"{stats.UNCLEAR}\", which is not evidence of equality: the sentence then gives "
            f"the smallest |Δ| the comparison could have detected at {stats.POWER:.0%} power (MDE) from its n and "
            "the observed spread of the differences.",
            "- p (test) is the comparison's uncorrected p-value and the test it comes from (the paired t-test, or "
            "the sign-flip test at zero variance). Wilcoxon signed-rank p-values are in "
            f"`{Store.TABLES}/summary.csv` only, with at least {stats.WILCOXON_MIN_NONZERO} non-zero differences: "
            "below that it cannot reach 0.05, and at the default five repetitions it would never be shown.",
            "- A role that receives no distillation signal (it trains on its own loss alone, e.g. "
            "js_entanglement's A) is its method's anchor: its accuracy is shown and nothing is compared. A role "
            "whose runs are identical under several configurations (they do not change it) is shown once.",
            "- A default configuration's name says any field whose default differs from its notebook and changes "
            "the number (\"js_entanglement · views=halves\"); the notebook's own configuration sits beside it as "
            "\"· as published\".",
            "- Official numbers are the final model's test metrics (the main table). The validation-selected "
            "accuracy, in the appendix, is the test accuracy at the epoch of best validation accuracy, for roles "
            "that log learning curves.",
            "- Label-free roles (e.g. SKA's layers) have no scratch counterpart; their linear-probe accuracy "
            "is compared with the same probe on the same network before training (`*_untrained`, same run).",
            "- Numbered notes under a table say why a row looks as it does: near chance, a teacher no better than "
            "its student, an anchor, runs shown once, a named field.",
            "- Wall time is a whole run's, including any shared baseline (e.g. the teacher) that the run had "
            "to train first; step times exclude evaluation and warm-up.", ""]


REFERENCE = "reference"  # the folder beside REPORT.md with what is for reference, linked from it
REFERENCE_FILES = {"ablations.md": "Ablations and per-method diagnostics",
                   "defects.md": "What each notebook defect did",
                   "summary.md": "Summary tables (every configuration, every metric)",
                   "how_to_read.md": "How to read the tables",
                   "appendix.md": "Appendix: validation-selected test accuracy",
                   "audit.md": "Budget audit: every role"}
AUDIT_FILE = "audit.md"


def reference_dir(store: Store):
    return store.report_path.parent / REFERENCE


def _relinked(lines: list[str]) -> list[str]:
    """Lines written for REPORT.md, re-pointed for a file one folder down (figure and table links)."""
    return [line.replace("](figures/", "](../figures/").replace("](tables/", "](../tables/") for line in lines]


def reference_files(results: frames.Results, figures: FigureSet, store: Store,
                    notes: dict | None = None) -> dict:
    """{path: text} of the reference files beside REPORT.md (``REFERENCE_FILES``), each a section of the
    whole report that a reader looks up rather than reads."""
    notes = row_notes(results) if notes is None else notes
    parts = {
        "ablations.md": method_sections(figures, store) + ablation_sections(results, figures, store),
        "defects.md": defect_sections(results),
        "summary.md": ["## Summary tables", "", f"Also in `{store.relative(store.tables_dir / tables.SUMMARY_MD)}` "
                       f"and, tidy, `{store.relative(store.tables_dir / 'summary.csv')}`.", ""]
        + ["#" + line if line.startswith("#") else line for line in tables.summary_sections(results.summary, notes)],
        "how_to_read.md": how_to_read(),
        "appendix.md": tables.appendix_sections(results.summary) or ["No validation-selected accuracy.", ""],
        AUDIT_FILE: ["#" + line if line.startswith("#") else line
                     for line in budget_audit(results, every_role=True)] or ["No role has a curve to audit.", ""],
    }
    profile = store.profile_figure
    if profile.is_file() and profile.stat().st_size:
        parts["ablations.md"] += ["## Timing profile", "",
                                  f"From `python -m benchmark profile` (`{Store.PROFILES}/profile.csv`); not "
                                  "regenerated here.", "",
                                  f"![Timing profile]({store.relative(profile, reference_dir(store))})", ""]
    back = f"[Back to the report](../{Store.REPORT})"
    return {reference_dir(store) / name: "\n".join([f"# {REFERENCE_FILES[name]}", "", back, ""]
                                                   + _relinked(lines)).rstrip() + "\n"
            for name, lines in parts.items()}


def reference_links() -> list[str]:
    return ["## For reference", "",
            *[f"- [{title}]({REFERENCE}/{name})" for name, title in REFERENCE_FILES.items()], ""]


def render(results: frames.Results, figures: FigureSet, store: Store) -> str:
    """``REPORT.md``'s text (what the methods declare comes with ``results``: ``load_results(store, declared)``):
    the answer across datasets, Sensitivity, the answer per dataset, then links to the reference files
    (``reference_files``)."""
    notes = row_notes(results)
    lines = header(results)
    lines += report_front.across_section(results.summary, figures, store)
    lines += report_front.sensitivity_section(results.summary, report_front.control_smoothing(results))
    lines += answer_sections(results, figures, store, notes)
    lines += budget_audit(results)
    lines += problems(results)
    lines += [results.stale_section] if results.stale_section else []
    if figures.errors:
        lines += ["## Figures that could not be drawn", ""] + [f"- {e}" for e in figures.errors] + [""]
    lines += reference_links()
    return "\n".join(lines).rstrip() + "\n"
