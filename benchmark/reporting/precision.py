"""Which comparisons are still too imprecise to decide: the input of ``--until-ci``.

A comparison is one role of one method configuration on one dataset against its scratch student (a role that
receives no distillation signal is not compared), paired by repetition (the ``pair_key`` of the role and of the
scratch run, the same ``rep``). It is *open* while its paired Δ interval of test accuracy is wider than the target
(half-width > W pp), or has no interval at all (fewer than two pairs, or every pair differing by the same amount,
where no t-interval exists): more repetitions can only help.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from benchmark.reporting import stats

METRIC, FINAL = "test_acc", -1


@dataclass(frozen=True)
class Cell:
    """A method configuration on a dataset: what ``--until-ci`` adds repetitions to."""

    method: str
    variant: str
    dataset: str
    preset: str


def _final(record: dict, role: str, metric: str = METRIC) -> float | None:
    for r, epoch, name, value in record.get("metrics", []):
        if r == role and epoch == FINAL and name == metric:
            return float(value)
    return None


def comparisons(records: Iterable[dict]) -> dict[tuple[Cell, str], dict]:
    """(cell, role) -> ``stats.paired`` of the Δ test accuracy (pp) against the scratch student, by repetition."""
    records = [r for r in records if r.get("status") == "ok"]
    scratch: dict[tuple, float] = {}
    for r in records:
        if r.get("method") == "scratch_student":
            for role, entry in r.get("roles", {}).items():
                value = _final(r, role)
                if value is not None and entry.get("pair_key"):
                    scratch[(r["dataset"], r["preset"], r["rep"], entry["pair_key"])] = value
    diffs: dict[tuple[Cell, str], list[float]] = defaultdict(list)
    for r in records:
        if r.get("kind") != "method":
            continue
        cell = Cell(r["method"], r["variant"], r["dataset"], r["preset"])
        for role, entry in r.get("roles", {}).items():
            key = (r["dataset"], r["preset"], r["rep"], entry.get("pair_key"))
            value = _final(r, role)
            # a role with no distillation signal is an anchor: never compared, so no repetitions for its interval
            if entry.get("classifier") and entry.get("distilled") is not False and value is not None and key in scratch:
                diffs[(cell, role)].append(100.0 * (value - scratch[key]))
    return {k: stats.paired(d) for k, d in diffs.items()}


def is_open(comparison: dict, width_pp: float) -> bool:
    hw = comparison["halfwidth"]
    return math.isnan(hw) or hw > width_pp


def next_reps(records: Iterable[dict], width_pp: float, max_reps: int) -> dict[Cell, int]:
    """Open cells -> the repetitions to have next: the n at which the observed paired SD would give an interval of
    half-width ``width_pp`` (``stats.reps_for_halfwidth``), at least two more than now, at most ``max_reps``.
    Cells already at ``max_reps`` are left out."""
    want: dict[Cell, int] = {}
    for (cell, _), c in comparisons(records).items():
        if not is_open(c, width_pp) or c["n"] >= max_reps:
            continue
        needed = stats.reps_for_halfwidth(c["delta_std"], width_pp, n_max=max_reps) if c["n"] >= 2 else None
        target = min(max_reps, max(c["n"] + 2, needed or 0))
        want[cell] = max(want.get(cell, 0), target)
    return want


def open_at_max(records: Iterable[dict], width_pp: float, max_reps: int) -> list[Cell]:
    """Cells with a comparison still open at ``max_reps`` pairs (what ``--until-ci`` could not decide)."""
    found = {cell for (cell, _), c in comparisons(records).items() if c["n"] >= max_reps and is_open(c, width_pp)}
    return sorted(found, key=lambda c: (c.method, c.variant, c.dataset))
