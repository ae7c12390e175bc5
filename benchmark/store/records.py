"""A run record: its id, and what a file must be to count as one.

A run's id is a hash of the fields that define the run (:data:`IDENTITY`): the engine names each run by
:func:`run_id_of`, and every reader checks it again, so a record edited, or copied under another run's name with
its ``run_id`` changed to match, is not that run.

Nothing read is trusted (:func:`parse_record`, :func:`record_problem`): a run file counts only if it is standard
JSON (no NaN or Infinity, every number finite and within 64 bits, nested at most :data:`MAX_DEPTH` deep), has
every field a reader uses, each with its type and in its range, names the run its file name says, and hashes to
that name. Anything else is reported in one line and set aside by the store.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

STATUSES = ("ok", "failed", "skipped")
# The fields a run's id hashes; a record's own id must be their hash.
IDENTITY = ("method", "kind", "dataset", "rep", "base_seed", "config", "data", "source_hash", "requires", "device",
            "precision")
# Identity fields added later, with the value every earlier run had: hashed only when a run's value differs, so
# the ids of earlier records (and of every CPU run) keep their formula, while a CUDA run never has a CPU run's id.
LATER_IDENTITY = {"device": "cpu", "precision": "fp32"}
DEVICES, PRECISIONS = ("cpu", "cuda"), ("fp32", "tf32")
# A record is a few hundred KB at most (per-epoch metrics of every role of a paper-preset run); 64 MiB leaves
# room for a method that logs per step while a file of gigabytes (or a device) is refused before it is read.
MAX_RECORD_BYTES = 64 * 2**20
MAX_DEPTH = 16  # a record's arrays and objects nest 3 deep (record, metrics, row); far deeper is not one
MAX_REP = 10_000  # the command line allows 100 repetitions per configuration
MAX_EPOCH = 2**31  # epochs or steps of a learning curve; -1 is the final evaluation
MAX_THREADS = 4096
INT64 = 2**63
# The version of the record format this code writes and reads. Records written before the field existed (the
# committed reference records among them) are version 0 and read as before; a newer version is another program's
# format, and so is a field this code does not know: such a record is set aside, never half-read.
SCHEMA_VERSION = 1


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=list, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_id_of(fields: Mapping[str, Any]) -> str:
    """The id of the run these identity fields describe (a record, or a run spec's fields)."""
    identity = {
        "method": fields["method"], "kind": fields["kind"], "dataset": fields["dataset"], "rep": fields["rep"],
        "base_seed": fields["base_seed"], "config": fields["config"], "data": fields["data"],
        "source": fields.get("source_hash", ""), "requires": fields.get("requires", {}),
    }
    for name, earlier in LATER_IDENTITY.items():
        if fields.get(name, earlier) != earlier:
            identity[name] = fields[name]
    return stable_hash(identity)


@contextlib.contextmanager
def gc_paused():
    """The cyclic garbage collector off for the block, and back as it was after. Reading a store makes millions of
    lists and dicts (a record's metric rows), and every 700 new ones the collector starts a pass, a full one over
    everything alive now and then: reading the committed records and framing their metrics took about twice the
    CPU time with it on. Nothing is kept longer: parsed JSON and the frames built from it hold no reference cycle,
    and reference counting frees them as before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is too large for a float")
    return value


def _int(text: str) -> int:
    value = int(text)
    if not -INT64 <= value < INT64:
        raise ValueError(f"the integer {text[:20]}... does not fit in 64 bits")
    return value


def parse_record(data: bytes) -> Any:
    """The JSON value of ``data``; ValueError (one line) for anything but standard JSON (UTF-8) of finite 64-bit
    numbers nested at most ``MAX_DEPTH`` deep."""
    text = data.decode("utf-8")  # JSON is UTF-8 (RFC 8259); nesting_depth reads the bytes as such
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise ValueError(f"nested deeper than the {MAX_DEPTH} levels a record may have") from None
    if nesting_depth(data) > MAX_DEPTH:
        raise ValueError(f"nested deeper than the {MAX_DEPTH} levels a record may have")
    return value


_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the character it escapes, inside a string
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STRING = re.compile(rb'"[^"]*"')
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")


def nesting_depth(data: bytes) -> int:
    """How deep the arrays and objects of ``data`` (valid JSON) nest: 0 for a scalar, 1 for ``[1, 2]``, 3 for a
    record (record, metrics, row); past ``MAX_DEPTH`` it stops counting (a number above it). Its escapes, then all
    but quotes and brackets, then its strings taken out, what is left of the text is its brackets, balanced; each
    pass takes out the innermost pairs, so the number of passes is the depth. The text is walked by the
    regular-expression engine, not by Python: a record holds thousands of metric rows."""
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", data).translate(None, _NOT_STRUCTURE))
    depth = 0
    while brackets and depth <= MAX_DEPTH:
        brackets = _INNERMOST_PAIR.sub(b"", brackets)
        depth += 1
    return depth if not brackets else depth + 1


def _is(value, kind) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)  # JSON true is no number


NUMBER = (int, float)
TEXT = str
BOOL = bool


def _kind_name(kind) -> str:
    if kind is BOOL:
        return "bool"
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


# What every reader of a record relies on: these keys, with these types.
REQUIRED = {"run_id": str, "status": str, "method": str, "variant": str, "dataset": str, "preset": str, "rep": int,
            "config": dict, "metrics": list, "kind": str, "base_seed": int, "data": dict}
# Keys a record may lack or leave null, but not hold with another type.
OPTIONAL = {"roles": dict, "timing": dict, "requires": dict, "source_hash": str, "error": str,
            "wall_time_s": NUMBER, "finished_at": str, "seed": int, "provenance": dict, "code": dict, "batch": dict,
            "timed_out_in": str, "traceback": str, "device": str, "precision": str, "replaced": str,
            "schema_version": int}
ROLE_FIELDS = {"arch": TEXT, "view": TEXT, "classifier": BOOL, "pair_key": TEXT, "pairing": TEXT,
               "distilled": BOOL, "label_smoothing_key": TEXT}
PROVENANCE_FIELDS = {"git_commit": TEXT, "git_dirty": BOOL, "python": TEXT, "torch": TEXT, "torchvision": TEXT,
                     "machine": TEXT, "platform": TEXT, "processor": TEXT, "cpu_count": int, "threads": int,
                     "deterministic_algorithms": BOOL, "device": TEXT, "gpu": TEXT, "gpu_capability": TEXT,
                     "gpu_driver": TEXT, "cuda": TEXT, "cudnn": TEXT}
PROVENANCE_FIELDS.update({"cpu": TEXT, "cpu_capability": TEXT, "mkl": TEXT, "onednn": TEXT})  # optional (older lack)


def _type_problem(where: str, value, kind) -> str | None:
    """None if ``value`` is None or of ``kind``, else what it is instead."""
    if value is None:
        return None
    ok = isinstance(value, bool) if kind is BOOL else _is(value, kind)
    return None if ok else f"{where} is a {type(value).__name__}, not a {_kind_name(kind)}"


def _fields_problem(where: str, entry: dict, fields: dict) -> str | None:
    return next((p for key, kind in fields.items()
                 if (p := _type_problem(f"{where}[{key!r}]", entry.get(key), kind))), None)


def _range_problem(record: dict) -> str | None:
    rep, wall = record["rep"], record.get("wall_time_s")
    if not 0 <= rep < MAX_REP:
        return f"'rep' is {rep}, not a repetition number in [0, {MAX_REP})"
    if wall is not None and wall < 0:
        return f"'wall_time_s' is {wall}, a negative time"
    if record["status"] not in STATUSES:
        return f"status {record['status']!r} is not one of {', '.join(STATUSES)}"
    for name, allowed in (("device", DEVICES), ("precision", PRECISIONS)):
        if record.get(name) is not None and record[name] not in allowed:
            return f"{name} {record[name]!r} is not one of {', '.join(allowed)}"
    threads = (record.get("provenance") or {}).get("threads")
    if threads is not None and not 0 < threads <= MAX_THREADS:
        return f"provenance threads is {threads}, not a thread count in [1, {MAX_THREADS}]"
    if record.get("schema_version") is not None and record["schema_version"] < 0:
        return f"'schema_version' is {record['schema_version']}, not a version number"
    return None


def _parts_problem(record: dict) -> str | None:
    """The structure inside the record's objects: metric rows, roles, timing, requirements, provenance."""
    for i, row in enumerate(record["metrics"]):
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str) and _is(row[1], int)
                and -1 <= row[1] < MAX_EPOCH and isinstance(row[2], str)
                and (row[3] is None or _is(row[3], NUMBER))):
            return f"metrics[{i}] is {json.dumps(row)[:60]}, not [role, epoch, metric, value]"
    for name, entry in (record.get("roles") or {}).items():
        if not isinstance(entry, dict):
            return f"roles[{name!r}] is a {type(entry).__name__}, not an object"
        problem = _fields_problem(f"roles[{name!r}]", entry, ROLE_FIELDS)
        if problem:
            return problem
    for key, value in (record.get("timing") or {}).items():
        if not (value is None or _is(value, NUMBER)):
            return f"timing[{key!r}] is a {type(value).__name__}, not a number"
    if not all(isinstance(v, str) and RUN_ID.fullmatch(v) for v in (record.get("requires") or {}).values()):
        return "'requires' holds something that is not a run id (16 hexadecimal digits)"
    if not all(v is None or isinstance(v, (str, int, float, bool)) for v in record["data"].values()):
        return "'data' holds a value that is not a number, string or bool"
    return _fields_problem("provenance", record.get("provenance") or {}, PROVENANCE_FIELDS)


RUN_ID = re.compile(r"[0-9a-f]{16}")  # what stable_hash makes: a run's id is a name, never a path


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def record_problem(record: Any, run_id: str) -> str | None:
    """None if ``record`` is a run record of run ``run_id``, else what is wrong with it (one line)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a run record"
    version = record.get("schema_version", 0)
    if _is(version, int) and version > SCHEMA_VERSION:
        return f"schema version {version}, newer than the {SCHEMA_VERSION} this code reads"
    unknown = sorted(str(key) for key in record if key not in REQUIRED and key not in OPTIONAL)
    if unknown:
        return f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))[:200]} " \
               f"(schema version {version})"
    for key, kind in REQUIRED.items():
        if key not in record:
            return f"no {key!r}"
        if record[key] is None or _type_problem(repr(key), record[key], kind):
            return f"{key!r} is a {type(record[key]).__name__}, not a {_kind_name(kind)}"
    for key, kind in OPTIONAL.items():
        problem = _type_problem(repr(key), record.get(key), kind)
        if problem:
            return problem
    if record["run_id"] != run_id:
        return f"its run_id {record['run_id']!r} is not the {run_id!r} of its file name"
    problem = _parts_problem(record) or _range_problem(record)
    if problem:
        return problem
    if run_id_of(record) != run_id:
        return f"what it records is not run {run_id} (its identity fields hash to another id)"
    return None
