"""The "Failed runs" section of ``summary.md``: a run that failed has no row in the tables above it, so it is named
here with the first line of its error (its record under ``runs/`` holds the traceback)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from benchmark.reporting.current import instant
from benchmark.store import Store

MAX_ERROR = 160  # characters of an error's first line shown in the table


def _error(record: dict) -> str:
    lines = str(record.get("error") or "").strip().splitlines()
    text = lines[0] if lines else "(no error recorded)"
    if len(text) > MAX_ERROR:
        text = text[: MAX_ERROR - 1] + "…"
    return text.replace("|", "\\|")


def _slot(record: dict) -> tuple:
    """What a later run of the same method, variant, preset, dataset and repetition replaces."""
    return (record.get("method"), record.get("variant"), record.get("preset"), record.get("dataset"),
            record.get("base_seed", 0), record.get("rep"))


def current_failures(records: Iterable[dict]) -> list[dict]:
    """The failed records not superseded by a later finished (ok or skipped) run in the same slot: a failure that
    was fixed and rerun under new code is history, not a missing number."""
    records = list(records)
    finished: dict[tuple, datetime] = {}
    for r in records:
        if r.get("status") in ("ok", "skipped"):
            slot, at = _slot(r), instant(r.get("finished_at"))
            finished[slot] = max(finished.get(slot, at), at)
    failed = [r for r in records if r.get("status") == "failed"  # instants: 08:30-0800 is after 16:07+0000
              and not (_slot(r) in finished and finished[_slot(r)] >= instant(r.get("finished_at")))]
    return sorted(failed, key=lambda r: tuple(str(v) for v in _slot(r)))


def failed_runs_markdown(records: Iterable[dict]) -> str:
    """A "## Failed runs" section (method, variant, dataset, rep, the first line of the error) for the failed runs
    among ``records``; "" when none failed."""
    failed = current_failures(records)
    if not failed:
        return ""
    n = len(failed)
    lines = ["## Failed runs", "",
             f"{n} run{'s' * (n != 1)} failed and {'are' if n != 1 else 'is'} missing from the tables above; "
             f"`{Store.RUNS}/<run_id>.json` holds each traceback.", "",
             "| method | variant | dataset | rep | run | error |", "|---|---|---|---:|---|---|"]
    lines += [f"| {r.get('method')} | {r.get('variant')} | {r.get('dataset')} | {r.get('rep')} | `{r.get('run_id')}` "
              f"| {_error(r)} |" for r in failed]
    return "\n".join(lines) + "\n"
