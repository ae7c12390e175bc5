"""The critical-difference diagram of each preset's answer across datasets (Demšar, JMLR 2006, figure 1):
``cd_diagram_<preset>.png``. The axis is the average rank (1, the largest mean Δ against scratch, on the left);
each method hangs from its average rank; a bar of length CD is drawn above the axis, and methods whose average ranks
lie within one CD of each other are joined by a thick line (their difference is not shown)."""

from __future__ import annotations

from pathlib import Path

from benchmark.reporting import stats
from benchmark.reporting.across import across
from benchmark.reporting.frames import Results
from benchmark.reporting.plot import FigureFile, drawn, new_figure, slug


def cliques(ordered: list[tuple[str, float]], cd: float) -> list[tuple[float, float]]:
    """The maximal runs of consecutive methods (by average rank) whose spread is below the CD."""
    spans = []
    for i in range(len(ordered)):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][1] - ordered[i][1] < cd:
            j += 1
        if j > i and not any(a <= ordered[i][1] and ordered[j][1] <= b for a, b in spans):
            spans.append((ordered[i][1], ordered[j][1]))
    return spans


def cd_figures(res: Results, folder: Path) -> list[FigureFile]:
    files = []
    for a in across(res.summary):
        if a.cd is None:
            continue
        ranks = a.average_ranks
        ordered = sorted(ranks.items(), key=lambda item: (item[1], item[0]))
        k = len(ordered)
        fig, axes = new_figure(9.0, 1.6 + 0.28 * k)
        fig.set_layout_engine("none")  # the names hang right of the axis, outside it
        ax = axes[0, 0]
        ax.set_position([0.03, 0.02, 0.52, 0.83])
        ax.set_xlim(0.5, k + 0.5)
        ax.set_ylim(-(k + 1), 2.2)
        ax.axhline(0, color="black", lw=1)
        for r in range(1, k + 1):
            ax.plot([r, r], [0, 0.15], color="black", lw=1)
            ax.text(r, 0.3, str(r), ha="center", va="bottom", fontsize=8)
        ax.plot([1, 1 + a.cd], [1.5, 1.5], color="black", lw=2)
        ax.text(1 + a.cd / 2, 1.65, f"CD = {a.cd:.2f} (α = {stats.ALPHA}, N = {len(a.ranks)})", ha="center",
                va="bottom", fontsize=8)
        for i, (name, rank) in enumerate(ordered):
            y = -(i + 1)
            ax.plot([rank, rank, k + 0.5], [0, y, y], color="0.4", lw=0.8)
            ax.text(k + 0.6, y, f"{rank:.2f}  {name}", ha="left", va="center", fontsize=7.5, clip_on=False)
        for n, (lo, hi) in enumerate(cliques(ordered, a.cd)):
            ax.plot([lo, hi], [-0.35 - 0.25 * n] * 2, color="tab:red", lw=3, alpha=0.7)
        ax.axis("off")
        ax.set_title(f"{a.preset}: average rank by mean Δ vs scratch over {len(a.ranks)} datasets "
                     "(1 = largest Δ)", fontsize=9)
        files.append(drawn(fig, folder, slug("cd_diagram", a.preset), "cd_diagram",
                           f"Critical-difference diagram ({a.preset})", a.preset))
    return files
