"""The answer across datasets, per preset: one table of methods × datasets (each cell the primary family's Δ
against the scratch student, its 95% interval and corrected verdict), each method's average rank, Friedman's test
and the Nemenyi critical difference (Demšar, JMLR 2006), drawn as a critical-difference diagram.

A "method" here is one distilled role of a default configuration (``hinton_kd``'s student, ``kl_entanglement``'s
A). Ranks are per dataset by mean Δ against the scratch student (rank 1: the largest Δ; ties share the average
rank), over the methods that have a Δ on every dataset ranked (Friedman's test needs complete blocks). The datasets
ranked are the set that keeps the most (method, dataset) cells in a complete block (ties: more datasets): a dataset
whose suite has run a few methods so far is left out rather than shrinking the ranking to those few.

    Friedman: scipy.stats.friedmanchisquare over the methods' Δ (blocks: datasets), tie-corrected;
    Nemenyi:  CD = q_α √(k(k+1) / (6N)),  q_α = studentized range quantile (1-α; k, ∞) / √2,

with k methods and N datasets. With a handful of datasets neither has much power: four datasets leave most
rank differences inside the CD, which says "not shown", not "equal".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchmark.reporting import families, stats
from benchmark.reporting.columns import FINAL_SEL, PRIMARY

MIN_BLOCKS = 3  # Friedman's test needs at least 3 datasets and 3 methods (scipy refuses fewer)


@dataclass
class Across:
    """One preset's answer across datasets."""

    preset: str
    datasets: list[str]
    table: pd.DataFrame  # one row per (method, role) and dataset: label, delta_*, verdict, verdict_nominal
    ranked: list[str] = field(default_factory=list)  # the methods ranked (present on every dataset), by name
    # the datasets they are ranked on (:func:`complete_block`): a dataset with few methods' Δ so far, e.g. one
    # whose suite is still running, is left out rather than emptying the ranking
    ranked_datasets: list[str] = field(default_factory=list)
    with_delta: dict[str, int] = field(default_factory=dict)  # per dataset, how many methods have a Δ there
    ranks: pd.DataFrame | None = None  # datasets × ranked methods: each dataset's ranks (1 = largest Δ)
    friedman: tuple[float, float] | None = None  # (statistic, p), None when there are too few datasets or methods
    cd: float | None = None  # Nemenyi's critical difference of average ranks at α = stats.ALPHA

    @property
    def average_ranks(self) -> pd.Series:
        return self.ranks.mean(axis=0) if self.ranks is not None else pd.Series(dtype=float)


def method_name(label: str, role: str) -> str:
    return f"{label} ({role})"


def nemenyi_q(k: int, alpha: float = stats.ALPHA) -> float:
    """q_α of Demšar's Table 5: the studentized range quantile at 1-α for k groups and infinite df, over √2."""
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = stats.ALPHA) -> float:
    """Nemenyi's critical difference of average ranks, k methods over n datasets."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def rank_rows(matrix: np.ndarray) -> np.ndarray:
    """Ranks within each row, 1 for the largest value, ties sharing their average rank."""
    return np.vstack([sps.rankdata(-row, method="average") for row in matrix])


def friedman(matrix: np.ndarray) -> tuple[float, float] | None:
    """scipy's Friedman test of the columns (methods) over the rows (datasets); None below 3 of either."""
    n, k = matrix.shape
    if n < MIN_BLOCKS or k < MIN_BLOCKS:
        return None
    result = sps.friedmanchisquare(*matrix.T)
    return float(result.statistic), float(result.pvalue)


MAX_SUBSETS_DATASETS = 12  # above this many datasets, drop the emptiest one at a time instead of trying every set


def complete_block(wide: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The datasets (rows of ``wide``: datasets × methods, NaN where a method has no Δ) and methods to rank: of the
    sets of datasets, the one whose complete block (the methods with a Δ on all of them) has the most cells,
    k methods × N datasets; ties go to more datasets, then to the earlier names. Empty when no cell has a Δ."""
    have = wide.notna()
    have = have[have.any(axis=1)]
    names = list(have.index)

    def score(rows: list[str]) -> tuple[int, int]:
        k = int(have.loc[rows].all(axis=0).sum())
        return k * len(rows), len(rows)

    if len(names) <= MAX_SUBSETS_DATASETS:
        subsets = ([n for i, n in enumerate(names) if mask >> i & 1] for mask in range(1, 2 ** len(names)))
        best = max(subsets, key=score, default=[])
    else:
        best, rows = list(names), list(names)
        while len(rows) > 1:
            rows = sorted(rows, key=lambda d: (int(have.loc[d].sum()), d))[1:]
            best = max([best, rows], key=score)
    if not best or not score(best)[0]:
        return [], []
    methods = sorted(have.columns[have.loc[best].all(axis=0)])
    return sorted(best), methods


def across(summary: pd.DataFrame) -> list[Across]:
    """Per preset, the primary family's rows across datasets (presets with at least one such row)."""
    final = summary[(summary.selection == FINAL_SEL) & (summary.metric == PRIMARY)
                    & summary.family.eq(families.PRIMARY_FAMILY)]
    out = []
    for preset, block in final.groupby("preset", sort=True):
        block = block.assign(name=[method_name(lb, r) for lb, r in zip(block.label, block.role, strict=True)])
        # one name per (method, role): a label can name a field's per-dataset value
        first = block.sort_values("dataset").drop_duplicates(["method", "role"]).set_index(["method", "role"]).name
        block = block.assign(name=[first[(m, r)] for m, r in zip(block.method, block.role, strict=True)])
        datasets = sorted(block.dataset.unique())
        result = Across(preset, datasets, block)
        wide = block.pivot_table(index="dataset", columns="name", values="delta_mean", aggfunc="first",
                                 dropna=False)
        result.with_delta = {d: int(n) for d, n in wide.notna().sum(axis=1).items()}
        result.ranked_datasets, result.ranked = complete_block(wide)
        if result.ranked:
            matrix = wide.loc[result.ranked_datasets, result.ranked].to_numpy(dtype=float)
            result.ranks = pd.DataFrame(rank_rows(matrix), index=result.ranked_datasets, columns=result.ranked)
            result.friedman = friedman(matrix)
            if matrix.shape[0] >= 2 and matrix.shape[1] >= 2:
                result.cd = critical_difference(matrix.shape[1], matrix.shape[0])
        out.append(result)
    return out
