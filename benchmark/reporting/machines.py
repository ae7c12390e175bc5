"""Where the report's runs were trained, and which of them learned from a model that has since been trained again.

A run's id names its code, configuration, data and device kind, not the CPU model: two CPUs whose kernels round
differently (AVX2 against AVX-512, one vendor's library against another's) train the same run to slightly different
numbers, each an honest result of the same code. The report says which machines made its runs.

A run that loads another's model (a distilled student its teacher) reads that model's checkpoint. When the
checkpoint is missing, the harness trains the required run again; on another CPU its numbers can differ, and then
the new record replaces the stored one (which is kept in ``set-aside/``, the new record says so in ``replaced``).
Runs that loaded the earlier model keep the numbers it gave them, so the store describes a teacher they never saw.
:func:`learned_from_earlier_models` finds them: a run that finished before a run it requires was trained again.
Input records are plain dicts as the store holds them (``run_id``, ``requires``, ``finished_at``, ``provenance``,
``replaced``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence

from benchmark.reporting.current import EPOCH, instant


def machine(record: dict) -> str:
    """One run's machine in words: the GPU's name on CUDA, else the CPU with its vector capability."""
    p = record.get("provenance") or {}
    if p.get("gpu"):
        return str(p["gpu"])
    cpu = p.get("cpu") or "unrecorded CPU"
    return f"{cpu} ({p['cpu_capability']})" if p.get("cpu_capability") else str(cpu)


def machines_sentence(records: Sequence[dict]) -> str:
    """'Trained on: A (n runs), B (m runs).', most runs first (ties by name)."""
    counts = Counter(machine(r) for r in records)
    if not counts:
        return ""
    parts = [f"{name} ({n} run{'s' if n != 1 else ''})"
             for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return "Trained on: " + ", ".join(parts) + "."


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def compute_sentence(records: Sequence[dict]) -> str:
    """'Run time: 41.2 h, the sum of the records' wall times (digits 5.1 h, ...; AMD EPYC (AVX512) 40.1 h, ...).'
    over the records with a wall time, datasets by name and machines by time (most first). A batch of repetitions
    trained together records its time shared out among them; runs that shared a machine's cores each count their
    own wall time, so the sum is the runs' time, not the machines'."""
    timed = [r for r in records if isinstance(r.get("wall_time_s"), (int, float)) and r["wall_time_s"] >= 0]
    if not timed:
        return ""
    by_dataset, by_machine = Counter(), Counter()
    for r in timed:
        by_dataset[str(r.get("dataset"))] += r["wall_time_s"]
        by_machine[machine(r)] += r["wall_time_s"]
    datasets = ", ".join(f"{d} {_hours(t)}" for d, t in sorted(by_dataset.items()))
    where = ", ".join(f"{m} {_hours(t)}" for m, t in sorted(by_machine.items(), key=lambda item: (-item[1], item[0])))
    untimed = len(records) - len(timed)
    missing = f"; {untimed} record{'s' if untimed != 1 else ''} without one" if untimed else ""
    return (f"Run time: {_hours(sum(by_dataset.values()))}, the sum of the {len(timed)} records' wall times "
            f"({datasets}; {where}{missing}); runs that shared a machine's cores each count their own.")


def learned_from_earlier_models(records: Iterable[dict], judged: Collection[str] | None = None
                                ) -> list[tuple[dict, dict]]:
    """(dependent, required) for every run that finished before a run it requires was trained again (the required
    record carries ``replaced``): the dependent loaded the earlier model, not the one its required record now
    describes. Only the runs in ``judged`` (run ids; None: all) are judged as dependents; runs whose times cannot
    be read are not judged."""
    records = list(records)
    by_id = {r.get("run_id"): r for r in records}
    found = []
    for record in records:
        if judged is not None and record.get("run_id") not in judged:
            continue
        done = instant(record.get("finished_at"))
        for required_id in (record.get("requires") or {}).values():
            required = by_id.get(required_id)
            if required is None or not required.get("replaced"):
                continue
            retrained = instant(required.get("finished_at"))
            if EPOCH not in (done, retrained) and done < retrained:  # the epoch: a time that cannot be read
                found.append((record, required))
    return found


def earlier_models_lines(records: Sequence[dict], judged: Collection[str] | None = None) -> list[str]:
    """The report's paragraph on :func:`learned_from_earlier_models` (nothing when there are none)."""
    found = learned_from_earlier_models(records, judged)
    if not found:
        return []
    named = sorted({f"{d.get('method')} {d.get('dataset')} rep={d.get('rep')} ({d.get('run_id')}, from "
                    f"{r.get('method')} {r.get('run_id')})" for d, r in found})
    return [f"**{len(named)} run(s) learned from a model that was trained again after them** (its checkpoint was "
            "missing; the new record, on another machine or not, replaced the one they learned from, which is kept "
            "in `set-aside/`): " + "; ".join(named) + ". Their numbers are those of the earlier model: remove their "
            "records and run the same command again to train them from the current one.", ""]
