"""The report's sections on variants: the per-method figures, the ablations (each variant against its method's
default, paired) and what each notebook defect did (and all of them together, as published)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from benchmark.reporting import ablations, columns, families, frames, stats, text
from benchmark.reporting.figures import FigureSet, by_kind, image
from benchmark.reporting.sentences import delta_sentence
from benchmark.reporting.tables import markdown_table
from benchmark.store import Store

DEFECTS_COMMAND = "python -m benchmark defects"
ANCHOR_CELLS = [text.ANCHOR] + ["–"] * 6
NO_SHARED = "no repetition shared with the default"
DEFECT_HEAD = ["method", "defect", "what the notebook did", "role", "n", "Δ vs corrected default [95% CI]", "pairs",
               "p (test)", "p (Holm)", "family (m)", "verdict", text.MDE_HEAD]


def method_sections(figures: FigureSet, store: Store) -> list[str]:
    per_method = [f for f in figures.files if f.method and f.kind in ("curves", "heatmap", "outputs")]
    if not per_method:
        return []
    lines = ["## Per method: learning curves and per-step diagnostics", ""]
    for method in sorted({f.method for f in per_method}):
        lines += [f"### {method}", ""] + [image(f, store) for f in per_method if f.method == method] + [""]
    return lines


def vs_default(r) -> dict:
    return text.comparison(r, prefix=columns.VS_DEFAULT, n=columns.VS_DEFAULT + "n")


def comparison_cells(r, metric: str, against: str) -> list[str]:
    """Δ [CI], pairs, p (test), p (Holm), family (m), verdict and MDE of one row's comparison with the default."""
    if text.is_anchor(r):
        return ANCHOR_CELLS
    c = vs_default(r)
    if c["n"] == 0:  # e.g. an as-published run on another training split: not one repetition in common
        return [NO_SHARED, "0"] + ["–"] * 5
    return [text.fmt_delta(None, metric, c), str(c["n"]), text.fmt_p_test(c), text.fmt_holm(c),
            text.fmt_family(c), text.verdict_words(c, against, metric), text.mde_short(c, metric)]


def ablation_sections(results: frames.Results, figures: FigureSet, store: Store) -> list[str]:
    a = results.ablations
    if a.empty:
        return []
    lines = ["## Ablations", "",
             "Every method stored in its default variant and at least one other: per variant (the config fields "
             "it changes from the default: one factor at a time from `ablate`, several from `ablate --grid`, the "
             "notebook defects from `defects`, the notebook's configuration from `--as-published`), its main "
             "metrics (mean ± 95% CI over repetitions) and Δ, the paired difference from the method's default run "
             "of the same repetition, read as in the summary tables (p (test), verdict, MDE). p (Holm) corrects "
             "the Δ-vs-default p-values within a family per method and metric: its ablations, its notebook "
             "defects and its as-published run are three families (family (m) names each and its size); the "
             "verdict follows the corrected p-value. A role whose runs a variant leaves unchanged (identical in "
             "every repetition) is shown once, under the default. The last column is the variant's Δ against its "
             "scratch student. Accuracies in %, their Δ in pp.", ""]
    for (dataset, preset, method), block in a.groupby(["dataset", "preset", "method"], sort=True):
        block = block.assign(_d=block.variant.ne("default"), _k=block.n_factors).sort_values(
            ["_d", "_k", "factors", "variant", "role", "metric"])
        head = ["variant", "role", "metric", "n", "mean ± 95% CI", "Δ vs default [95% CI]", "pairs", "p (test)",
                "p (Holm)", "family (m)", "verdict", text.MDE_HEAD, "Δ vs scratch [95% CI]"]
        rows = []
        for r in [SimpleNamespace(**d) for d in block.to_dict("records")]:
            mean = text.fmt_mean_ci(r, r.metric) if not pd.isna(r.mean) else "–"
            scratch = text.fmt_delta(r, r.metric) if isinstance(r.delta_vs, str) else "–"
            if r.variant == "default":
                same = f" (the same runs under {r.identical_in})" if isinstance(r.identical_in, str) and \
                    r.identical_in else ""
                cells = [(text.ANCHOR if text.is_anchor(r) else "reference") + same] + ["–"] * 6
            else:
                cells = comparison_cells(r, r.metric, "the default")
            rows.append([r.changed or r.variant, r.role, r.metric, _int(r.n), mean, *cells, scratch])
        lines += [f"### {method} on {dataset} (preset {preset})", ""] + markdown_table(head, rows, len(head) - 3)
        lines += [""]
        lines += ablation_sentences(block, dataset) + [""]
        lines += [image(f, store) for f in by_kind(figures, "ablation", dataset=dataset, preset=preset,
                                                 method=method)] + [""]
    return lines


def _int(value) -> str:
    return "–" if pd.isna(value) else str(int(value))


def ablation_sentences(block: pd.DataFrame, dataset: str) -> list[str]:
    """Every variant's Δ against the default in words, for each role's main metric (test accuracy, or e.g. a
    label-free layer's probe accuracy); anchors are not compared."""
    lines = []
    for r in ablations.main_metric(block[(block.variant != "default") & ~block.anchor.eq(True)]).itertuples():
        metric = "" if r.metric == columns.PRIMARY else ", " + r.metric
        subject = f"{r.method} with {r.changed or r.variant} ({r.role}{metric})"
        c = vs_default(r)
        if c["n"] == 0:
            lines.append(f"- {subject} on {dataset}: {NO_SHARED} (its data differ, e.g. another training split): "
                         "its comparison with its own scratch student is in the summary tables.")
            continue
        lines.append("- " + delta_sentence(subject, "the default", f"on {dataset}", r.metric, c))
    return lines


def defect_sections(results: frames.Results) -> list[str]:
    """"What each notebook defect did": per method and dataset, each declared defect's variant against the
    corrected default, paired (``ablations.defect_frame``), then the as-published run, all of them together."""
    lines = ["## What each notebook defect did", ""]
    notebook_defects = results.declared.notebook_defects
    if notebook_defects is None:
        return lines + ["The methods' notebook defects were not given to this report (`python -m benchmark "
                        "report` passes each method's `notebook_defects`).", ""]
    declared = {m: dict(d) for m, d in notebook_defects.items() if d}
    methods = set(results.current.method[results.current.kind == "method"])
    none = sorted(m for m, d in notebook_defects.items() if not d and m in methods)
    lines += ["Each notebook behaviour a method's default corrects, run alone (`" + DEFECTS_COMMAND + "`) and "
              "compared with the corrected default on the same repetitions: Δ is the notebook's behaviour minus "
              "the corrected default, read as in the summary tables (p (test), verdict, MDE: the smallest |Δ| "
              f"it could have detected at {stats.POWER:.0%} power); p (Holm) corrects within the method's "
              "defects (one family per method and metric), and the verdict follows it. The last rows of a method, "
              "\"all (as published)\", are its notebook's whole configuration (`--as-published`), a family of its "
              "own, when it shares repetitions with the default (a run on another training split does not: its "
              "row in the main table compares it with its own scratch student). Accuracies in %, Δ and MDE in pp.", ""]
    if not declared:
        return lines + ["No method declares a notebook defect.", ""]
    frame = ablations.defect_frame(results.ablations, declared)
    run = frame[frame.variant.notna()] if not frame.empty else frame
    a = results.ablations
    published = ablations.main_metric(a[a.config_kind.eq(families.AS_PUBLISHED)]) if not a.empty else a
    defaults = results.current[(results.current.variant == "default") & results.current.method.isin(declared)]
    if run.empty:
        lines += [f"No notebook-defect runs in the store: `{DEFECTS_COMMAND}` runs each notebook defect alone "
                  "beside the default, paired (add `--datasets` and `--preset` to match the runs here).", ""]
    for (dataset, preset), block in defaults.groupby(["dataset", "preset"], sort=True):
        here = run[(run.dataset == dataset) & (run.preset == preset)] if not run.empty else run
        if here.empty:
            continue
        table, missing = [], []
        for method in sorted(set(block.method)):
            for name, spec in declared[method].items():
                value, description = tuple(spec)[:2]
                rows = here[(here.method == method) & (here.field == name)]
                if rows.empty:
                    missing.append(f"{method} {name}={value}")
                    continue
                for r in rows.itertuples():
                    defect = f"{name}={r.notebook_value}"
                    changed = r.changed or r.variant
                    if changed != defect:  # e.g. a field the method adapts to the notebook's view changed too
                        defect += f" (variant: {changed})"
                    table.append([method, defect, cell(description), r.role, _int(r.n),
                                  *comparison_cells(r, r.metric, "the default")])
            mine = published[(published.method == method) & (published.dataset == dataset)
                              & (published.preset == preset)] if not published.empty else published
            for r in mine[mine[columns.VS_DEFAULT + "n"].fillna(0).gt(0)].itertuples():
                table.append([method, "all (as published)", cell(r.changed), r.role, _int(r.n),
                              *comparison_cells(r, r.metric, "the default")])
        lines += [f"### {dataset} (preset {preset})", ""] + markdown_table(DEFECT_HEAD, table, 8) + [""]
        if missing:
            methods = " ".join(sorted({m.split()[0] for m in missing}))
            lines += [f"Not run on {dataset} ({preset}): {', '.join(missing)}; `{DEFECTS_COMMAND} {methods} "
                      f"--datasets {dataset} --preset {preset}` runs them.", ""]
    if none:
        lines += [f"{', '.join(none)} {'declares' if len(none) == 1 else 'declare'} no notebook defects.", ""]
    return lines


def cell(value) -> str:
    """A value as one markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")
