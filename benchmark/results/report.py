"""``<out>/REPORT.md`` from the store alone: the findings in plain sentences, the figures, the ablations, the
summary tables and the runs that did not finish. The tables and figures are regenerated first, so every link
points to a file drawn from the same runs. Nothing is trained.

One sentence per paired comparison. The verdict follows the 95% interval of the paired difference: "beats" or
"falls behind" only when the interval excludes 0, otherwise "no detectable difference"; the Holm-corrected
p-value is given beside it, and said plainly when the difference does not survive the correction.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from benchmark.errors import BadInput
from benchmark.results import stats
from benchmark.results.figures import FigureFile, FigureSet, write_figures
from benchmark.results.store import atomic_write_bytes
from benchmark.results.tables import (
    FINAL_SEL,
    PRIMARY,
    SCRATCH,
    VAL_SEL,
    Results,
    fmt_mean_ci,
    fmt_p,
    is_main,
    is_percent,
    load_results,
    main_rows,
    order_rows,
    summary_markdown,
    write_tables,
)


def require_results(out: Path | str) -> None:
    """BadInput (one line, exit 2) unless ``out`` holds at least one stored run."""
    runs = Path(out) / "runs"
    if not runs.is_dir() or not any(runs.glob("*.json")):
        raise BadInput(f"no stored runs under {runs}: run `python -m benchmark all --out {out}` first, "
                       "or pass --out with a results folder")


def write_report(out: Path | str) -> tuple[Path, FigureSet]:
    require_results(out)
    results = load_results(out)
    write_tables(out, results)
    figures = write_figures(out, results)
    path = Path(out) / "REPORT.md"
    atomic_write_bytes(path, render(results, figures, Path(out)).encode())
    return path, figures


# ---- sentences ---------------------------------------------------------------------------------------------

def amount(value: float, metric: str) -> str:
    return f"{value * 100:+.1f} pp" if is_percent(metric) else f"{value:+.3g}"


def interval(lo: float, hi: float, metric: str) -> str:
    if is_percent(metric):
        return f"95% CI [{lo * 100:.1f}, {hi * 100:.1f}]"
    return f"95% CI [{lo:.3g}, {hi:.3g}]"


def delta_sentence(subject: str, against: str, where: str, metric: str, d: dict) -> str:
    """``d`` holds n, delta_mean, delta_ci_low, delta_ci_high, note and optionally p_holm, holm_m."""
    n, mean = int(d["n"]), d["delta_mean"]
    if n < 2:
        return (f"{subject} differs from {against} {where} by {amount(mean, metric)} in its only paired "
                "repetition: too few for an interval.")
    if "all differences zero" in str(d.get("note")):
        return f"{subject} matches {against} exactly {where} in all {n} repetitions."
    numbers = f"{amount(mean, metric)}, {interval(d['delta_ci_low'], d['delta_ci_high'], metric)}, n={n}"
    found = stats.verdict(d["delta_ci_low"], d["delta_ci_high"])
    if found == "unclear":
        return f"{subject} shows no detectable difference from {against} {where} ({numbers})."
    if found == "higher":
        text = f"{subject} beats {against} {where} by {numbers}"
    else:
        text = f"{subject} falls behind {against} {where}: {numbers}"
    p_holm, m = d.get("p_holm", math.nan), d.get("holm_m", 0)
    if p_holm is None or math.isnan(p_holm):
        caveat = [part for part in str(d.get("note") or "").split("; ") if part.startswith("constant")]
        return text + (f" ({caveat[0]})." if caveat else ".")
    if p_holm < stats.ALPHA:
        return text + f" (Holm-adjusted p={fmt_p(p_holm)} over {int(m)} comparisons)."
    return text + (f"; after Holm's correction over {int(m)} comparisons it is not significant "
                   f"(p={fmt_p(p_holm)}).")


def who(r) -> str:
    variant = "" if r.variant == "default" else f" [{r.variant}]"
    return f"{r.method}{variant} ({r.role})"


def comparison_sentence(r, dataset: str, selected=None) -> str:
    """One summary row with a paired Δ (against scratch or an untrained control), in words."""
    against = "scratch" if str(r.delta_vs).startswith(SCRATCH) else "the untrained network"
    subject = who(r) if r.metric == PRIMARY else f"{r.metric} of {who(r)}"
    text = delta_sentence(subject, against, f"on {dataset}", r.metric, {**r._asdict(), "n": r.pair_n})
    if selected is not None and not math.isnan(selected.delta_mean):
        ci = "" if math.isnan(selected.delta_ci_low) else \
            f", {interval(selected.delta_ci_low, selected.delta_ci_high, r.metric)}"
        text += f" Validation-selected: {amount(selected.delta_mean, r.metric)}{ci}."
    return text


def findings(block: pd.DataFrame, dataset: str) -> list[str]:
    lines = []
    paired = block[block.delta_vs.notna() & (block.pair_n > 0)]
    main = paired.metric.map(is_main).astype(bool)
    final = order_rows(main_rows(paired[(paired.selection == FINAL_SEL) & main]))
    chosen = paired[paired.selection == VAL_SEL].set_index(["method", "variant", "role"])
    for r in final.itertuples():
        key = (r.method, r.variant, r.role)
        sel = chosen.loc[key] if r.metric == PRIMARY and key in chosen.index else None
        lines.append("- " + comparison_sentence(r, dataset, sel))
    unpaired = block[block.delta_vs.notna() & (block.pair_n == 0) & (block.metric == PRIMARY)
                     & (block.selection == FINAL_SEL)]
    for r in order_rows(main_rows(unpaired)).itertuples():
        lines.append(f"- {who(r)} on {dataset}: {r.note}.")
    return lines


# ---- sections ----------------------------------------------------------------------------------------------

def image(f: FigureFile, out: Path) -> str:
    return f"![{f.title}]({f.path.relative_to(out).as_posix()})\n"


def by_kind(figures: FigureSet, kind: str, **match) -> list[FigureFile]:
    return [f for f in figures.files if f.kind == kind and all(getattr(f, k) == v for k, v in match.items())]


def header(results: Results, out: Path) -> list[str]:
    provenance = [r.get("provenance") or {} for r in results.records]
    counts = Counter(r.get("status") for r in results.records)
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    commits = ", ".join(sorted({(p.get("git_commit") or "unknown")[:12] for p in provenance}))
    dirty = " (with uncommitted changes)" if any(p.get("git_dirty") for p in provenance) else ""
    torch = ", ".join(sorted({f"torch {p.get('torch')}" for p in provenance}))
    c = results.current

    def names(column):
        return ", ".join(sorted(c[column].unique())) or "–"

    lines = ["# Benchmark report", "",
             f"Written by `python -m benchmark report --out {out}` from the {len(results.records)} run "
             f"records in `{out / 'runs'}` ({status}); nothing was trained to write it.",
             f"Datasets: {names('dataset')}. Presets: {names('preset')}. Methods and baselines: "
             f"{names('method')}.",
             f"Code: git commit {commits}{dirty}; {torch}.", ""]
    if results.superseded:
        lines += [f"{results.superseded} older run(s), superseded by newer runs of the same configuration "
                  "(e.g. after a method's code changed), are left out of every table and figure.", ""]
    versions = c.groupby(["method", "preset"]).source_hash.nunique()
    for (method, preset), count in versions[versions > 1].items():
        lines += [f"Note: the {preset} results of {method} come from {count} versions of its code.", ""]
    return lines


def dataset_sections(results: Results, figures: FigureSet, out: Path) -> list[str]:
    lines = ["## Findings", ""]
    summary = results.summary
    if summary.empty:
        return lines + ["No successful runs: nothing to compare.", ""]
    for (dataset, preset), block in summary.groupby(["dataset", "preset"], sort=True):
        lines += [f"### {dataset} (preset {preset})", ""]
        found = findings(block, dataset)
        if found and block[block.kind == "method"].variant.ne("default").any():
            found.append("- Other variants are compared with their method's default under Ablations.")
        lines += (found or ["- No paired comparison: the store has no method run with a paired scratch "
                            "student here."]) + [""]
        for kind in ("accuracy", "forest", "cost", "step_time", "schedule"):
            lines += [image(f, out) for f in by_kind(figures, kind, dataset=dataset, preset=preset)]
        lines.append("")
    return lines


def method_sections(figures: FigureSet, out: Path) -> list[str]:
    per_method = [f for f in figures.files if f.method and f.kind in ("curves", "heatmap", "outputs")]
    if not per_method:
        return []
    lines = ["## Per method: learning curves and per-step diagnostics", ""]
    for method in sorted({f.method for f in per_method}):
        lines += [f"### {method}", ""] + [image(f, out) for f in per_method if f.method == method] + [""]
    return lines


def ablation_sections(results: Results, figures: FigureSet, out: Path) -> list[str]:
    a = results.ablations
    if a.empty:
        return []
    lines = ["## Ablations", "",
             "Every method stored in more than one variant: its main metrics per variant (mean ± 95% CI "
             "over repetitions), the paired Δ against the method's own default variant (same repetitions) "
             "and the paired Δ of the summary tables. Parameters are the config fields that differ between "
             "the stored variants. Accuracies in %, their Δ in pp. The sentences cover variants that "
             "change one parameter; their intervals are not corrected for the number of variants.", ""]
    for (dataset, preset, method), block in a.groupby(["dataset", "preset", "method"], sort=True):
        params = [c for c in block.columns if c.startswith("param.") and block[c].notna().any()]
        refs = {"untrained" if str(v).endswith("(same run)") else "scratch" for v in block.delta_vs.dropna()}
        head = ["variant", *[p[6:] for p in params], "role", "metric", "n", "mean ± 95% CI",
                "Δ vs default [95% CI]", f"Δ vs {' / '.join(sorted(refs)) or 'scratch'} [95% CI]"]
        block = block.assign(_d=block.variant.ne("default")).sort_values(["_d", "variant", "role", "metric"])
        records = [SimpleNamespace(**d) for d in block.to_dict("records")]
        rows = [[r.variant, *[str(vars(r)[p]) for p in params], r.role, r.metric, _int(r.n),
                 fmt_mean_ci(r, r.metric) if not pd.isna(r.mean) else "–",
                 _delta_text(vars(r), "vs_default_delta_", r.metric),
                 _delta_text(vars(r), "delta_", r.metric)]
                for r in records]
        lines += [f"### {method} on {dataset} (preset {preset})", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        lines += ablation_sentences(records, dataset) + [""]
        lines += [image(f, out) for f in by_kind(figures, "ablation", dataset=dataset, preset=preset,
                                                 method=method)] + [""]
    return lines


def _int(value) -> str:
    return "–" if pd.isna(value) else str(int(value))


def _delta_text(d: dict, prefix: str, metric: str) -> str:
    mean = d.get(f"{prefix}mean")
    if mean is None or pd.isna(mean):
        return "–"
    lo, hi = d.get(f"{prefix}ci_low"), d.get(f"{prefix}ci_high")
    k, digits = (100, ".2f") if is_percent(metric) else (1, ".4f")
    text = f"{mean * k:+{digits}}"
    if lo is not None and not pd.isna(lo):
        text += f" [{lo * k:+{digits}}, {hi * k:+{digits}}]"
    return text


def ablation_sentences(records: list, dataset: str) -> list[str]:
    """Variants that change one parameter from the default (e.g. an ``as_published`` switch), in words; for
    roles without test accuracy, their main metric (e.g. a probe's accuracy)."""
    lines = []
    has_primary = {r.role for r in records if r.metric == PRIMARY}
    compared = [r for r in records
                if r.variant != "default" and not pd.isna(vars(r).get("vs_default_n", math.nan))]
    unmoved = {(r.role, r.metric) for r in compared} - {
        (r.role, r.metric) for r in compared if "all differences zero" not in str(r.vs_default_note)}
    for role, metric in sorted(unmoved):
        lines.append(f"- {metric} of {role} is identical to the default's in every variant and repetition.")
    for r in compared:
        d = vars(r)
        if "," in str(r.changed) or (r.role, r.metric) in unmoved:
            continue
        if r.metric != PRIMARY and r.role in has_primary:
            continue
        subject = f"{r.method} with {r.changed} ({r.role}{'' if r.metric == PRIMARY else ', ' + r.metric})"
        keys = ("n", "delta_mean", "delta_ci_low", "delta_ci_high", "note")
        numbers = {k: d[f"vs_default_{k}"] for k in keys}
        lines.append("- " + delta_sentence(subject, "the default", f"on {dataset}", r.metric, numbers))
    return lines


def problems(results: Results) -> list[str]:
    bad = [r for r in results.records if r.get("status") in ("failed", "skipped")]
    if not bad:
        return []
    lines = ["## Runs that did not finish", "", "| status | method | dataset | rep | variant | reason |",
             "|---|---|---|---:|---|---|"]
    for r in sorted(bad, key=lambda r: (r["status"], r["method"], r["dataset"], r["rep"])):
        reason = str(r.get("error") or "").replace("|", "\\|").replace("\n", " ")[:200]
        lines.append(f"| {r['status']} | {r['method']} | {r['dataset']} | {r['rep']} | {r['variant']} "
                     f"| {reason} |")
    return lines + [""]


def how_to_read() -> list[str]:
    return ["## How to read this", "",
            "- Every comparison is paired: a method's model and the scratch student of the same "
            "architecture, input view and recipe share the dataset, repetition, seed, initialisation and "
            "batch order; Δ is the mean of the per-repetition differences, with a 95% Student-t interval.",
            "- \"Beats\" / \"falls behind\" means the interval excludes 0; otherwise the sentence says "
            "\"no detectable difference\", which is not evidence of equality, only of too little precision "
            "to tell with these repetitions.",
            "- p (t) is the paired t-test; p (Holm) corrects it across every comparison of the same metric "
            "and selection in the tables; Wilcoxon's signed-rank p is shown only with at least "
            f"{stats.WILCOXON_MIN_NONZERO} non-zero differences (with fewer it cannot reach 0.05).",
            "- Official numbers are the final model's test metrics. Validation-selected numbers are the test "
            "accuracy at the epoch of best validation accuracy, for roles that log learning curves.",
            "- Label-free roles (e.g. SKA's layers) have no scratch counterpart; their linear-probe accuracy "
            "is compared with the same probe on the same network before training (`*_untrained`, same run).",
            "- Wall time is a whole run's, including any shared baseline (e.g. the teacher) that the run had "
            "to train first; step times exclude evaluation and warm-up.", ""]


def render(results: Results, figures: FigureSet, out: Path) -> str:
    lines = header(results, out)
    lines += dataset_sections(results, figures, out)
    lines += method_sections(figures, out)
    lines += ablation_sections(results, figures, out)
    tables = summary_markdown(results.summary).split("\n", 1)[1]  # without its "# Summary" title
    lines += ["## Summary tables", "", "Also in `tables/summary.md` and, tidy, `tables/summary.csv`."]
    lines += ["#" + line if line.startswith("#") else line for line in tables.split("\n")]
    lines += problems(results)
    profile = out / "profiles" / "profile.png"
    if profile.is_file() and profile.stat().st_size:
        lines += ["## Timing profile", "",
                  "From `python -m benchmark profile` (`profiles/profile.csv`); not regenerated here.", "",
                  f"![Timing profile]({profile.relative_to(out).as_posix()})", ""]
    if figures.errors:
        lines += ["## Figures that could not be drawn", ""] + [f"- {e}" for e in figures.errors] + [""]
    lines += how_to_read()
    return "\n".join(lines).rstrip() + "\n"
