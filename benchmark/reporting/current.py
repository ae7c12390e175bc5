"""Which stored runs the current code plans: a table cell shows the run whose id the current code gives its
identity, never a run of other code (a reverted edit, an older default, another checkout's results).

A record is judged without training and without loading a dataset: its id is recomputed from its identity (method,
configuration, dataset, repetition, seed, data budget, device) with the current code's hashes (its method folder, the
files of the architectures its roles build, its dataset's module and readers, the harness's training path) and the
current ids of the runs it requires, themselves recomputed the same way. It is ``current`` when that gives its own
id, ``stale`` (from other code) when it does not, and ``unknown`` when it cannot be judged here: its method folder
or dataset module is not on this machine (or does not load), or a run it requires is not in the store. Unknown
records are kept in the tables as they are, and counted; stale ones are counted, listed and kept on disk.

A record's ``variant`` (``default``, or the fields that differ from its preset) was named against the presets of the
day it was planned; the presets are not part of a run's identity (the configuration is), so after a preset changes,
the same run is another variant. The tables group a current run by its variant named against the current presets
(:meth:`Judgement.variant`), where that needs no dataset: a method that adapts its configuration to the data
(``adapt``) keeps its stored name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from benchmark.contract import MethodBase
from benchmark.engine.code import architecture_files, code_hash, dataset_hash, harness_hash
from benchmark.engine.config import variant_name
from benchmark.engine.discovery import MethodInfo, discover, file_hash
from benchmark.engine.spec import config_from_dict, config_to_dict
from benchmark.store.records import run_id_of

CURRENT, STALE, UNKNOWN = "current", "stale", "unknown"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant(text: object) -> datetime:
    """A record's ``finished_at`` as an instant (ISO 8601 with its offset; no offset is UTC; unreadable: the epoch),
    so that 08:30-0800 is later than 16:07+0000 of the same day."""
    try:
        at = datetime.fromisoformat(str(text))
    except ValueError:
        return EPOCH
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass
class Judgement:
    """Each record's standing (by run id), and why an unknown one could not be judged."""

    status: dict[str, str] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)  # run id -> reason, for unknown records
    variants: dict[str, str] = field(default_factory=dict)  # run id -> variant named against the current presets

    def of(self, run_id: str) -> str:
        return self.status.get(run_id, UNKNOWN)

    def variant(self, record: dict) -> str:
        """The record's variant as the current presets name it (a current run of a method that does not adapt its
        configuration to the data), else the name stored when it was planned."""
        return self.variants.get(record["run_id"], record["variant"])


class _Unknown(Exception):
    pass


def judge(records: list[dict], methods: dict[str, MethodInfo] | None = None) -> Judgement:
    """The standing of every record (see the module's docstring)."""
    methods = methods if methods is not None else discover()
    by_id = {r["run_id"]: r for r in records}
    hashes: dict[tuple, object] = {}  # what many records share, computed once
    planned: dict[str, str | None] = {}  # run id -> the id the current code gives its identity (None: unknown)
    why: dict[str, str] = {}

    def cached(key, compute):
        if key not in hashes:
            hashes[key] = compute()
        return hashes[key]

    def current_id(record: dict, seen: tuple = ()) -> str:
        run_id = record["run_id"]
        if run_id in planned:
            if planned[run_id] is None:
                raise _Unknown(why[run_id])
            return planned[run_id]
        try:
            if run_id in seen:
                raise _Unknown("its requirements form a cycle")
            planned[run_id] = _recompute(record, seen + (run_id,))
        except _Unknown as exc:
            planned[run_id], why[run_id] = None, str(exc)
            raise
        return planned[run_id]

    def _recompute(record: dict, seen: tuple) -> str:
        name = record["method"]
        info = methods.get(name)
        if info is None or not info.ok:
            raise _Unknown(f"method {name} is {'broken' if info else 'not'} on this machine")
        roles = record.get("roles") or {}
        archs = {entry.get("arch") for entry in roles.values()} or set((record.get("code") or {}).get("architectures")
                                                                           or ())  # the architectures it built
        try:
            parts = {
                "method": info.source_hash,
                "architectures": {a: cached(("arch", a), lambda p=p: file_hash(p))
                                  for a, p in architecture_files(archs).items()},
                "dataset": cached(("dataset", record["dataset"]), lambda: dataset_hash(record["dataset"])),
                "harness": cached(("harness",), harness_hash),
            }
        except Exception as exc:  # an architecture no longer registered, a dataset module not here
            raise _Unknown(f"its code cannot be hashed here ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not cached(("config", name, json.dumps(record.get("config"), sort_keys=True)),
                      lambda: _config_fits(info, record.get("config") or {})):
            return ""  # the current Config adds, drops or refuses a field: another configuration than it plans
        requires = {}
        for role, required_id in (record.get("requires") or {}).items():
            required = by_id.get(required_id)
            if required is None:
                raise _Unknown(f"the {role} run it requires ({required_id}) is not in the store")
            requires[role] = current_id(required, seen)
        return run_id_of({**record, "source_hash": code_hash(parts), "requires": requires})

    status, variants = {}, {}
    for record in records:
        try:
            status[record["run_id"]] = CURRENT if current_id(record) == record["run_id"] else STALE
        except _Unknown:
            status[record["run_id"]] = UNKNOWN
        if status[record["run_id"]] == CURRENT:
            named = _variant_now(methods[record["method"]], record)
            if named is not None:
                variants[record["run_id"]] = named
    return Judgement(status, {k: v for k, v in why.items() if status.get(k) == UNKNOWN}, variants)


def _variant_now(info: MethodInfo, record: dict) -> str | None:
    """The variant of a current run named against the current presets; None where that needs the dataset (the
    method adapts its configuration to the data) or the record has no preset."""
    if info.cls.adapt is not MethodBase.adapt:
        return None
    preset = record.get("preset")
    if not preset:
        return None
    try:
        return variant_name(info.cls, preset, config_from_dict(info, record.get("config") or {}))
    except Exception:  # noqa: BLE001 - a preset no longer defined: the stored name stands
        return None


def _config_fits(info: MethodInfo, config: dict) -> bool:
    """Whether the current Config rebuilds ``config`` exactly (its fields, their types and ranges)."""
    try:
        return config_to_dict(config_from_dict(info, config)) == config
    except Exception:  # a field the current Config no longer has, or a value it refuses
        return False


def stale_markdown(records: list[dict], judgement: Judgement, limit: int = 20) -> str:
    """The "Stale: from other code" section: how many stored runs the current code does not plan (kept on disk,
    left out of every table), the first ``limit`` of them, and how many could not be judged here (kept in)."""
    stale = sorted((r for r in records if judgement.of(r["run_id"]) == STALE),
                   key=lambda r: (r["method"], r["dataset"], str(r.get("variant")), r["rep"], r["run_id"]))
    unknown = [r for r in records if judgement.of(r["run_id"]) == UNKNOWN]
    if not stale and not unknown:
        return ""
    lines = ["## Stale: from other code", ""]
    if stale:
        n = len(stale)
        lines += [f"{n} stored run{'s' * (n != 1)} {'were' if n != 1 else 'was'} made by other code than the current "
                  f"(the current code gives {'their' if n != 1 else 'its'} identity another id): kept in `runs/`, "
                  "left out of every table, figure and comparison.", "",
                  "| method | variant | dataset | rep | run | finished |", "|---|---|---|---:|---|---|"]
        lines += [f"| {r['method']} | {r.get('variant')} | {r['dataset']} | {r['rep']} | `{r['run_id']}` "
                  f"| {r.get('finished_at') or ''} |" for r in stale[:limit]]
        if n > limit:
            lines.append(f"| ... | | | | {n - limit} more | |")
        lines.append("")
    if unknown:
        reasons = sorted({judgement.why.get(r["run_id"], "") for r in unknown} - {""})
        n = len(unknown)
        lines += [f"{n} stored run{'s' * (n != 1)} could not be judged here and {'are' if n != 1 else 'is'} kept in "
                  f"the tables as stored: {'; '.join(reasons[:3]) or 'no reason recorded'}"
                  f"{' ...' if len(reasons) > 3 else ''}.", ""]
    return "\n".join(lines)
