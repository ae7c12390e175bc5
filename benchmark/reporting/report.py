"""``<out>/REPORT.md`` from the store alone: the findings in plain sentences, the figures, the ablations, what each
notebook defect did, the summary tables and the runs that did not finish. :func:`render` writes it from the same
``Results`` and figures as the tables (``benchmark.reporting.publish`` writes all three as one set), so every link
points to a file drawn from the same runs. Nothing is trained, and nothing here imports the engine: the methods'
declared notebook defects come in as an argument (the command line passes them).

One sentence per paired comparison, from ``stats.paired``: "beats" or "is worse than" only when the 95% interval
of the paired difference excludes 0 (when the differences have zero variance there is no interval, and the exact
sign-flip test decides), otherwise "unclear at this n" with the smallest difference the comparison could have
detected at 80% power (or why none can be stated). The p-value is named by its test; the Holm-corrected p-value is
given beside it, and said plainly when the difference does not survive the correction. A comparison whose role
shares only the batch order with its scratch student (not its initial weights) is marked "order-paired only".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pandas as pd

from benchmark.reporting import ablations, columns, frames, stats, tables, text
from benchmark.reporting.failures import current_failures
from benchmark.reporting.figures import FigureSet
from benchmark.reporting.plot import FigureFile
from benchmark.store import Store

# {method: {config field: (the notebook's value, one line on what the notebook did)}}, as methods declare it
NotebookDefects = Mapping[str, Mapping[str, Any]]
DEFECTS_COMMAND = "python -m benchmark defects"


# ---- sentences ---------------------------------------------------------------------------------------------

def amount(value: float, metric: str) -> str:
    return f"{value * 100:+.1f} pp" if columns.is_percent(metric) else f"{value:+.3g}"


def interval(lo: float, hi: float, metric: str) -> str:
    if columns.is_percent(metric):
        return f"95% CI [{lo * 100:.1f}, {hi * 100:.1f}]"
    return f"95% CI [{lo:.3g}, {hi:.3g}]"


def _holm_clause(c: dict) -> str:
    p_holm, m = c.get("p_holm", math.nan), int(c.get("holm_m") or 0)
    if p_holm is None or math.isnan(p_holm):
        return ""
    if p_holm < stats.ALPHA:
        return f"; Holm-adjusted p={text.fmt_p(p_holm)} over {m} comparisons"
    return f"; after Holm's correction over {m} comparisons it is not significant (p={text.fmt_p(p_holm)})"


def _pairing_clause(c: dict) -> str:
    """A sentence after the comparison when its pair does not share the initial weights, or may not."""
    mark = text.pairing_mark(c)
    if mark == columns.ORDER_ONLY:
        return (f" {columns.ORDER_ONLY.capitalize()}: the same data and batch order as its scratch student, not the "
                "same initial weights.")
    if mark:
        return " Its records do not say whether it shares its scratch student's initial weights (pairing not recorded)."
    return ""


def delta_sentence(subject: str, against: str, where: str, metric: str, c: dict) -> str:
    """One paired comparison in words; ``c`` is a ``tables.comparison`` dict (``stats.paired``'s keys, n, the
    Holm-adjusted p-value and family size, and for comparisons with a scratch student its pairing)."""
    n, mean = int(c["n"]), c["delta_mean"]
    pairing = _pairing_clause(c)
    if n < 2:
        return (f"{subject} differs from {against} {where} by {amount(mean, metric)} in its only paired "
                f"repetition: too few for an interval or a test, so {stats.UNCLEAR}; {text.mde_sentence(c, metric)}"
                f".{pairing}")
    if text.zero_variance(c):
        if mean == 0:
            head = f"{subject} matches {against} exactly {where} in all {n} repetitions"
        else:
            head = f"{subject} differs from {against} {where} by {amount(mean, metric)} in each of its {n} repetitions"
        floor = ", the smallest it can be at this n" if mean != 0 and math.isclose(c["p_signflip"], 2 / 2**n) else ""
        numbers = f"{text.no_interval_text(n)}; sign-flip p={text.fmt_p(c['p_signflip'])}{floor}"
        found = text.verdict_text(c["verdict"], against, metric)
        if found == stats.UNCLEAR:
            return f"{head} ({numbers}): {stats.UNCLEAR}; {text.mde_sentence(c, metric)}.{pairing}"
        return f"{head} ({numbers}): it {found}{_holm_clause(c)}.{pairing}"
    test = c["p_value_test"] or "test"
    numbers = (f"{amount(mean, metric)}, {interval(c['delta_ci_low'], c['delta_ci_high'], metric)}, n={n}, "
               f"{test} p={text.fmt_p(c['p_value'])}")
    found = text.verdict_text(c["verdict"], against, metric)
    if found == stats.UNCLEAR:
        return (f"{subject} against {against} {where}: {stats.UNCLEAR} ({numbers}); "
                f"{text.mde_sentence(c, metric)}.{pairing}")
    verb = found if found.startswith("beats") else f"is {found}"
    return f"{subject} {verb} {where}: {numbers}{_holm_clause(c)}.{pairing}"


def who(r) -> str:
    variant = "" if r.variant == "default" else f" [{r.variant}]"
    return f"{r.method}{variant} ({r.role})"


def comparison_sentence(r, dataset: str, selected=None) -> str:
    """One summary row with a paired Δ (against scratch or an untrained control), in words."""
    against = "scratch" if str(r.delta_vs).startswith(columns.SCRATCH) else "the untrained network"
    subject = who(r) if r.metric == columns.PRIMARY else f"{r.metric} of {who(r)}"
    sentence = delta_sentence(subject, against, f"on {dataset}", r.metric, text.comparison(r))
    if selected is not None and not math.isnan(selected.delta_mean):
        c = text.comparison(selected)
        ci = f", {interval(c['delta_ci_low'], c['delta_ci_high'], r.metric)}" if not math.isnan(
            c["delta_ci_low"]) else (f", {text.no_interval_text(c['n'])}" if text.zero_variance(c) else "")
        found = text.verdict_text(c["verdict"], against, r.metric)
        if found == stats.UNCLEAR:
            found += f"; {text.mde_sentence(c, r.metric)}"
        sentence += f" Validation-selected: {amount(c['delta_mean'], r.metric)}{ci}, {found}."
    return sentence


def findings(block: pd.DataFrame, dataset: str) -> list[str]:
    lines = []
    paired = block[block.delta_vs.notna() & (block.pair_n > 0)]
    main = paired.metric.map(columns.is_main).astype(bool)
    final = frames.order_rows(frames.main_rows(paired[(paired.selection == columns.FINAL_SEL) & main]))
    chosen = paired[paired.selection == columns.VAL_SEL].set_index(["method", "variant", "role"])
    chosen = chosen[~chosen.index.duplicated()]
    for r in final.itertuples():
        key = (r.method, r.variant, r.role)
        sel = chosen.loc[key] if r.metric == columns.PRIMARY and key in chosen.index else None
        lines.append("- " + comparison_sentence(r, dataset, sel))
    unpaired = block[block.delta_vs.notna() & (block.pair_n == 0) & (block.metric == columns.PRIMARY)
                     & (block.selection == columns.FINAL_SEL)]
    for r in frames.order_rows(frames.main_rows(unpaired)).itertuples():
        lines.append(f"- {who(r)} on {dataset}: {r.note}.")
    return lines


# ---- sections ----------------------------------------------------------------------------------------------

def image(f: FigureFile, store: Store) -> str:
    return f"![{f.title}]({store.relative(f.path)})\n"


def by_kind(figures: FigureSet, kind: str, **match) -> list[FigureFile]:
    return [f for f in figures.files if f.kind == kind and all(getattr(f, k) == v for k, v in match.items())]


def header(results: frames.Results) -> list[str]:
    provenance = [r.get("provenance") or {} for r in results.records]
    counts = Counter(r.get("status") for r in results.records)
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    commits = ", ".join(sorted({(p.get("git_commit") or "unknown")[:12] for p in provenance}))
    dirty = " (with uncommitted changes)" if any(p.get("git_dirty") for p in provenance) else ""
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
             f"Code: git commit {commits}{dirty}; {torch}.", ""]
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


def dataset_sections(results: frames.Results, figures: FigureSet, store: Store) -> list[str]:
    lines = ["## Findings", ""]
    summary = results.summary
    if summary.empty:
        return lines + ["No successful runs: nothing to compare.", ""]
    a = results.ablations
    for (dataset, preset), block in summary.groupby(["dataset", "preset"], sort=True):
        lines += [f"### {dataset} (preset {preset})", ""]
        found = findings(block, dataset)
        if found and not a.empty and ((a.dataset == dataset) & (a.preset == preset)).any():
            found.append("- Other variants are compared with their method's default under Ablations.")
        lines += (found or ["- No paired comparison: the store has no method run with a paired scratch "
                            "student here."]) + [""]
        for kind in ("accuracy", "forest", "cost", "step_time", "schedule"):
            lines += [image(f, store) for f in by_kind(figures, kind, dataset=dataset, preset=preset)]
        lines.append("")
    return lines


def method_sections(figures: FigureSet, store: Store) -> list[str]:
    per_method = [f for f in figures.files if f.method and f.kind in ("curves", "heatmap", "outputs")]
    if not per_method:
        return []
    lines = ["## Per method: learning curves and per-step diagnostics", ""]
    for method in sorted({f.method for f in per_method}):
        lines += [f"### {method}", ""] + [image(f, store) for f in per_method if f.method == method] + [""]
    return lines


def _vs_default(r) -> dict:
    return text.comparison(r, prefix=columns.VS_DEFAULT, n=columns.VS_DEFAULT + "n")


def _comparison_cells(c: dict, metric: str, against: str) -> list[str]:
    """Δ [CI], pairs, p (test), p (Holm), verdict and MDE of one comparison."""
    return [text.fmt_delta(None, metric, c), str(c["n"]), text.fmt_p_test(c), text.fmt_holm(c),
            text.verdict_text(c["verdict"], against, metric), text.mde_short(c, metric)]


def ablation_sections(results: frames.Results, figures: FigureSet, store: Store) -> list[str]:
    a = results.ablations
    if a.empty:
        return []
    lines = ["## Ablations", "",
             "Every method stored in its default variant and at least one other: per variant (the config fields "
             "it changes from the default: one factor at a time from `ablate`, several from `ablate --grid`), "
             "its main metrics (mean ± 95% CI over repetitions) and Δ, the paired difference from the method's "
             "default run of the same repetition, read as in the summary tables (p (test), verdict, MDE); "
             "p (Holm) corrects the Δ-vs-default p-values across every variant of the method on that dataset "
             "for the same metric. The last column is the variant's Δ against its scratch student. "
             "Accuracies in %, their Δ in pp.", ""]
    for (dataset, preset, method), block in a.groupby(["dataset", "preset", "method"], sort=True):
        block = block.assign(_d=block.variant.ne("default"), _k=block.n_factors).sort_values(
            ["_d", "_k", "factors", "variant", "role", "metric"])
        head = ["variant", "role", "metric", "n", "mean ± 95% CI", "Δ vs default [95% CI]", "pairs", "p (test)",
                "p (Holm)", "verdict", "MDE", "Δ vs scratch [95% CI]"]
        rows = []
        records = [SimpleNamespace(**d) for d in block.to_dict("records")]
        for r in records:
            mean = text.fmt_mean_ci(r, r.metric) if not pd.isna(r.mean) else "–"
            scratch = text.fmt_delta(r, r.metric) if isinstance(r.delta_vs, str) else "–"
            if r.variant == "default":
                cells = ["reference", "–", "–", "–", "–", "–"]
            else:
                cells = _comparison_cells(_vs_default(r), r.metric, "the default")
            rows.append([r.changed or r.variant, r.role, r.metric, _int(r.n), mean, *cells, scratch])
        lines += [f"### {method} on {dataset} (preset {preset})", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        lines += ablation_sentences(block, dataset) + [""]
        lines += [image(f, store) for f in by_kind(figures, "ablation", dataset=dataset, preset=preset,
                                                 method=method)] + [""]
    return lines


def _int(value) -> str:
    return "–" if pd.isna(value) else str(int(value))


def ablation_sentences(block: pd.DataFrame, dataset: str) -> list[str]:
    """Every variant's Δ against the default in words, for each role's main metric (test accuracy, or e.g. a
    label-free layer's probe accuracy)."""
    lines = []
    for r in ablations.main_metric(block[block.variant != "default"]).itertuples():
        metric = "" if r.metric == columns.PRIMARY else ", " + r.metric
        subject = f"{r.method} with {r.changed or r.variant} ({r.role}{metric})"
        c = _vs_default(r)
        if c["n"] == 0:
            lines.append(f"- {subject} on {dataset}: no repetition shared with the default.")
            continue
        lines.append("- " + delta_sentence(subject, "the default", f"on {dataset}", r.metric, c))
    return lines


def defect_sections(results: frames.Results, notebook_defects: NotebookDefects | None) -> list[str]:
    """"What each notebook defect did": per method and dataset, each declared defect's variant against the
    corrected default, paired (``tables.defect_frame``)."""
    lines = ["## What each notebook defect did", ""]
    if notebook_defects is None:
        return lines + ["The methods' notebook defects were not given to this report (`python -m benchmark "
                        "report` passes each method's `notebook_defects`).", ""]
    declared = {m: dict(d) for m, d in notebook_defects.items() if d}
    methods = set(results.current.method[results.current.kind == "method"])
    none = sorted(m for m, d in notebook_defects.items() if not d and m in methods)
    lines += ["Each notebook behaviour a method's default corrects, run alone (`" + DEFECTS_COMMAND + "`) and "
              "compared with the corrected default on the same repetitions: Δ is the notebook's behaviour minus "
              "the corrected default, read as in the summary tables (p (test), verdict, MDE: the smallest |Δ| "
              f"it could have detected at {stats.POWER:.0%} power); p (Holm) corrects across every variant of "
              "the method on that dataset for the same metric. Accuracies in %, Δ and MDE in pp.", ""]
    if not declared:
        return lines + ["No method declares a notebook defect.", ""]
    frame = ablations.defect_frame(results.ablations, declared)
    run = frame[frame.variant.notna()] if not frame.empty else frame
    defaults = results.current[(results.current.variant == "default") & results.current.method.isin(declared)]
    if run.empty:
        lines += [f"No notebook-defect runs in the store: `{DEFECTS_COMMAND}` runs each notebook defect alone "
                  "beside the default, paired (add `--datasets` and `--preset` to match the runs here).", ""]
    for (dataset, preset), block in defaults.groupby(["dataset", "preset"], sort=True):
        here = run[(run.dataset == dataset) & (run.preset == preset)] if not run.empty else run
        if here.empty:
            continue
        lines += [f"### {dataset} (preset {preset})", "",
                  "| method | defect | what the notebook did | role | n | Δ vs corrected default [95% CI] "
                  "| pairs | p (test) | p (Holm) | verdict | MDE |", "|" + "---|" * 4 + "---:|" * 7]
        missing = []
        for method in sorted(set(block.method)):
            for name, spec in declared[method].items():
                value, description = tuple(spec)[:2]
                rows = here[(here.method == method) & (here.field == name)]
                if rows.empty:
                    missing.append(f"{method} {name}={value}")
                    continue
                for r in rows.itertuples():
                    c = _vs_default(r)
                    cells = _comparison_cells(c, r.metric, "the default")
                    defect = f"{name}={r.notebook_value}"
                    changed = r.changed or r.variant
                    if changed != defect:  # e.g. a field the method adapts to the notebook's view changed too
                        defect += f" (variant: {changed})"
                    lines.append("| " + " | ".join([method, defect, _cell(description), r.role, _int(r.n),
                                                    *cells]) + " |")
        lines.append("")
        if missing:
            methods = " ".join(sorted({m.split()[0] for m in missing}))
            lines += [f"Not run on {dataset} ({preset}): {', '.join(missing)}; `{DEFECTS_COMMAND} {methods} "
                      f"--datasets {dataset} --preset {preset}` runs them.", ""]
    if none:
        lines += [f"{', '.join(none)} {'declares' if len(none) == 1 else 'declare'} no notebook defects.", ""]
    return lines


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def problems(results: frames.Results) -> list[str]:
    """Runs that failed (and are not superseded by a later finished run of the same slot) or were skipped."""
    failed = current_failures(results.records)
    bad = failed + [r for r in results.records if r.get("status") == "skipped"]
    if not bad:
        return []
    lines = ["## Runs that did not finish", "", "| status | method | dataset | rep | variant | reason |",
             "|---|---|---|---:|---|---|"]
    for r in sorted(bad, key=lambda r: (r["status"], r["method"], r["dataset"], r["rep"])):
        reason = _cell(str(r.get("error") or "").strip().splitlines()[0] if r.get("error") else "")[:200]
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
            "- \"Beats\" / \"worse than\" means the 95% interval excludes 0 (or, without an interval, the sign-flip "
            f"p < {stats.ALPHA}); otherwise the verdict is \"{stats.UNCLEAR}\", which is not evidence of "
            "equality: the sentence then gives the smallest |Δ| the comparison could have detected at "
            f"{stats.POWER:.0%} power (MDE) from its n and the observed spread of the differences.",
            "- p (test) is the comparison's p-value and the test it comes from (the paired t-test, or the "
            "sign-flip test at zero variance); p (Holm) corrects it across every comparison of the same metric "
            f"and selection in the tables. Wilcoxon signed-rank p-values are in `{Store.TABLES}/summary.csv` only, "
            f"with at least {stats.WILCOXON_MIN_NONZERO} non-zero differences: below that it cannot reach 0.05, and at "
            "the default five repetitions it would never be shown.",
            "- Official numbers are the final model's test metrics. Validation-selected numbers are the test "
            "accuracy at the epoch of best validation accuracy, for roles that log learning curves.",
            "- Label-free roles (e.g. SKA's layers) have no scratch counterpart; their linear-probe accuracy "
            "is compared with the same probe on the same network before training (`*_untrained`, same run).",
            "- Wall time is a whole run's, including any shared baseline (e.g. the teacher) that the run had "
            "to train first; step times exclude evaluation and warm-up.", ""]


def render(results: frames.Results, figures: FigureSet, store: Store,
           notebook_defects: NotebookDefects | None = None) -> str:
    """``REPORT.md``'s text; ``notebook_defects`` is ``{method: Method.notebook_defects}`` for the methods whose
    defects the report should tabulate (None: the section says it was not given)."""
    lines = header(results)
    lines += dataset_sections(results, figures, store)
    lines += method_sections(figures, store)
    lines += ablation_sections(results, figures, store)
    lines += defect_sections(results, notebook_defects)
    summary = tables.summary_markdown(results.summary).split("\n", 1)[1]  # without its "# Summary" title
    lines += ["## Summary tables", "", f"Also in `{store.relative(store.tables_dir / tables.SUMMARY_MD)}` and, "
              f"tidy, `{store.relative(store.tables_dir / 'summary.csv')}`."]
    lines += ["#" + line if line.startswith("#") else line for line in summary.split("\n")]
    lines += problems(results)
    profile = store.profile_figure
    if profile.is_file() and profile.stat().st_size:
        lines += ["## Timing profile", "",
                  f"From `python -m benchmark profile` (`{Store.PROFILES}/profile.csv`); not regenerated here.", "",
                  f"![Timing profile]({store.relative(profile)})", ""]
    if figures.errors:
        lines += ["## Figures that could not be drawn", ""] + [f"- {e}" for e in figures.errors] + [""]
    lines += how_to_read()
    return "\n".join(lines).rstrip() + "\n"
