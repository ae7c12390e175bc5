"""The one publish step of ``all``, ``tables``, ``figures`` and ``report``: the store is read once, every output
asked for is made in memory from those same runs, and the files are replaced as a set.

- Every output lives in one folder, ``<out>/published/`` (``REPORT.md``, ``reference/``, ``tables/``,
  ``figures/``). The new set is written and flushed in a staging folder beside it, which then takes its place in
  one atomic rename (``benchmark.store.StagedFolder``): a kill, a full disk, or an error while making one output,
  leaves the old set as it was, never two tables new and four old. A staging folder left by a killed publish is
  removed by the next one.
- The report is written with the tables and figures it links (asking for it asks for them), so that every number
  and picture in it comes from the same runs.
- A file is only ever replaced by its new version, never deleted: what this publish does not make (a part not
  asked for) is carried into the new set as it was. A figure file that this store's runs no longer
  draw (a method removed, figures committed from other runs) is left as it was, said in a warning, and not linked
  from the report: deleting it could destroy committed reference figures that a user's new runs cannot rebuild.
- A figure that cannot be drawn is a warning; a part asked for that produced none of its files because of errors
  (every figure failed) is :class:`benchmark.errors.NothingPublished`, raised after everything else is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import NothingPublished
from benchmark.reporting import report, tables
from benchmark.reporting.families import Declarations, MethodDeclarations, NotebookDefects
from benchmark.reporting.figures import FigureSet, draw_figures
from benchmark.reporting.frames import Results, load_results
from benchmark.store import StagedFolder, Store
from benchmark.store.io import remove_dead_staging

PARTS = ("tables", "figures", "report")
MAX_NAMED = 3  # figure files named in the warning about files left as they were


@dataclass
class Published:
    """What one publish step wrote: every file replaced, in order; the figures drawn (with the ones that failed);
    the report's path when it was asked for; and one line per thing the user should know (a figure not drawn,
    figure files left from other runs)."""

    written: list[Path] = field(default_factory=list)
    summary: Path | None = None  # tables/summary.md, the table a reader opens first
    figures: FigureSet | None = None
    report: Path | None = None
    warnings: list[str] = field(default_factory=list)
    results: Results | None = None  # what was published from (the READMEs' result blocks are filled from it too)


def publish(store: Store, parts: Iterable[str] = PARTS, notebook_defects: NotebookDefects | None = None,
            declarations: MethodDeclarations | None = None) -> Published:
    """Write the ``parts`` asked for (``tables``, ``figures``, ``report``; the report brings the other two) from the
    store's runs, as one set. BadInput (one line) when the store holds no valid run record, before anything is
    written; NothingPublished when a part produced none of its files because of errors.

    What the methods declare decides which runs are compared together and how rows are named, in the tables and
    the report alike: ``notebook_defects`` ``{method: Method.notebook_defects}`` (the defect table, and which
    variants are defect runs; None: the report says it was not given) and ``declarations`` ``{method:
    {"as_published": Method.as_published, "named_fields": (field, ...)}}`` (which variant is the as-published
    run, shown beside the default; which fields a default's rows name). Without them every variant is an
    ablation and no field is named."""
    asked = set(parts)
    if asked - set(PARTS):
        raise ValueError(f"unknown parts {sorted(asked - set(PARTS))}: publish makes {', '.join(PARTS)}")
    if "report" in asked:
        asked = set(PARTS)
    store.check_inside()  # nothing is written through a planted link
    results = load_results(store, Declarations.of(declarations, notebook_defects))
    out = Published(warnings=_earlier_layout(store), results=results)
    if "figures" in asked:
        out.figures = draw_figures(results, store)
        out.warnings += [f"figure not drawn: {line}" for line in out.figures.errors]
    remove_dead_staging(store.root)
    with StagedFolder(store.published_dir) as staged:
        if "tables" in asked:
            for name, data in tables.table_files(results).items():
                staged.add(store.tables_dir / name, data)
            out.summary = store.tables_dir / tables.SUMMARY_MD
        for figure in out.figures.files if out.figures else ():
            staged.add(figure.path, figure.png)
        if "report" in asked:
            for path, text in report.reference_files(results, out.figures, store).items():
                staged.add(path, text.encode())
            out.report = staged.add(store.report_path,
                                    report.render(results, out.figures, store).encode())
        out.written = staged.commit()
    if out.figures is not None:
        out.warnings += _left_as_they_were(store, out.figures)
        if out.figures.errors and not out.figures.files:
            raise NothingPublished(f"no figure could be drawn ({len(out.figures.errors)} figure kinds failed, "
                                   f"first: {out.figures.errors[0]})")
    return out


def _earlier_layout(store: Store) -> list[str]:
    """A warning when the store holds outputs where an earlier version wrote them, beside ``runs/``: they are no
    longer written nor read, and are left for the user to delete."""
    old = [name for name in (Store.TABLES, Store.FIGURES, Store.REPORT, report.REFERENCE)
           if (store.root / name).exists()]
    if not old:
        return []
    return [f"{', '.join(old)} in {store.root} are outputs of an earlier version, left as they were: the outputs "
            f"are now in {store.published_dir}; delete the old ones"]


def _left_as_they_were(store: Store, figures: FigureSet) -> list[str]:
    drawn = {f.path for f in figures.files}
    left = sorted(p.name for p in store.figures_dir.glob("*.png") if p not in drawn)
    if not left:
        return []
    named = ", ".join(left[:MAX_NAMED]) + (f" and {len(left) - MAX_NAMED} more" if len(left) > MAX_NAMED else "")
    return [f"{len(left)} figure file(s) in {store.figures_dir} were not drawn from this store's runs and are left "
            f"as they were, not linked from the report ({named}); delete them if they are stale"]
