"""The results store: one JSON file per finished run, written atomically, and the model cache.

Layout under the output folder (default ``results/``)::

    runs/<run_id>.json      one finished run (status ok / failed / skipped)
    cache/<tag>-<key>.pt    cached models (state dicts; loaded with weights_only=True)
    set-aside/              run files that failed validation, moved out of runs/ (kept, never deleted)
    tables/ figures/ profiles/ REPORT.md

A file is written to a temporary name in the same folder (``.tmp-<host>-<pid>-<random>``), flushed to disk and
renamed over the target, so a killed process never leaves a half-written result under a name that is read; readers
ignore the temporary names, and :meth:`Store.open` removes those of writers that died on this host. Files are
created with mode 0666 & ~umask, as ``open`` creates them, so a group sharing the folder can read them.

Nothing read is trusted: a run file counts (as done, or in a table) only if it parses, has every field of a record
with its type, names the run its file name says and has a known status (:func:`record_problem`). Any other is
reported in one line and set aside, and its run is redone.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BadInput, one_line

TMP_PREFIX = ".tmp-"
HOST = socket.gethostname()


def _temp_path(folder: Path) -> Path:
    """A fresh temporary name in ``folder`` that says which process on which host owns it."""
    return folder / f"{TMP_PREFIX}{HOST}-{os.getpid()}-{secrets.token_hex(6)}"


def _create(path: Path) -> int:
    """A new file, mode 0666 & ~umask (tempfile.mkstemp would give 0600: unreadable to the folder's group)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path.parent)
    try:
        with open(_create(tmp), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temp_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of a temporary file named by :func:`_temp_path`; None for any other name."""
    owner = name.removeprefix(TMP_PREFIX).rpartition("-")[0]  # without the random part
    host, _, pid = owner.rpartition("-")
    return (host, int(pid)) if name.startswith(TMP_PREFIX) and host and pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _json_default(value):
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite_or_none(obj):
    """JSON has no NaN/inf: store them as null (tables drop them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_finite_or_none(obj), indent=1, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


STATUSES = ("ok", "failed", "skipped")
# What every reader of a record relies on: these keys, with these types.
REQUIRED = {"run_id": str, "status": str, "method": str, "variant": str, "dataset": str, "preset": str, "rep": int,
            "config": dict, "metrics": list}
# Keys a record may lack or leave null, but not hold with another type.
OPTIONAL = {"kind": str, "base_seed": int, "data": dict, "roles": dict, "timing": dict, "requires": dict,
            "source_hash": str, "error": str, "wall_time_s": (int, float)}


def _is(value, kind) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)  # JSON true is no number


def _name(kind) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__


def record_problem(record: Any, run_id: str) -> str | None:
    """None if ``record`` is a run record of run ``run_id``, else what is wrong with it (one line)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a run record"
    for key, kind in REQUIRED.items():
        if key not in record:
            return f"no {key!r}"
        if not _is(record[key], kind):
            return f"{key!r} is a {type(record[key]).__name__}, not a {_name(kind)}"
    for key, kind in OPTIONAL.items():
        if record.get(key) is not None and not _is(record[key], kind):
            return f"{key!r} is a {type(record[key]).__name__}, not a {_name(kind)}"
    if record["run_id"] != run_id:
        return f"its run_id {record['run_id']!r} is not the {run_id!r} of its file name"
    if record["status"] not in STATUSES:
        return f"status {record['status']!r} is not one of {', '.join(STATUSES)}"
    for i, row in enumerate(record["metrics"]):
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str) and _is(row[1], int)
                and isinstance(row[2], str) and (row[3] is None or _is(row[3], (int, float)))):
            return f"metrics[{i}] is {json.dumps(row)[:60]}, not [role, epoch, metric, value]"
    if not all(isinstance(entry, dict) for entry in (record.get("roles") or {}).values()):
        return "'roles' holds an entry that is not an object"
    return None


def _stderr(line: str) -> None:
    print(f"benchmark: {line}", file=sys.stderr)


class Store:
    """``warn`` receives the one line that reports a run file set aside (default: stderr)."""

    def __init__(self, root: Path | str, warn: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.cache_dir = self.root / "cache"
        self.tables_dir = self.root / "tables"
        self.figures_dir = self.root / "figures"
        self.profiles_dir = self.root / "profiles"
        self.set_aside_dir = self.root / "set-aside"
        self.warn = warn or _stderr

    def open(self) -> Store:
        """Ready for a suite: every folder a suite writes exists and takes a new file (else BadInput, one line,
        before anything trains), and the temporary files of writers that died on this host are removed."""
        if self.root.exists() and not self.root.is_dir():
            raise BadInput(f"the results folder {self.root} is a file: pass --out a folder")
        for folder in (self.root, self.runs_dir, self.cache_dir, self.tables_dir, self.figures_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = _temp_path(folder)
                os.close(_create(probe))
                probe.unlink()
            except OSError as exc:
                raise BadInput(f"cannot write results into {folder} ({exc.strerror or one_line(exc)}): pass --out a "
                               "writable folder") from None
        self.clean_temporary()
        return self

    def clean_temporary(self) -> int:
        """Remove the temporary files whose writer, a process of this host, is dead (a kill between write and
        rename leaves one); another host's, or a live process's, may still be renamed into place. How many."""
        removed = 0
        for folder in (self.root, self.runs_dir, self.cache_dir, self.tables_dir, self.figures_dir,
                       self.profiles_dir, self.set_aside_dir):
            for path in folder.glob(TMP_PREFIX + "*") if folder.is_dir() else ():
                owner = _temp_owner(path.name)
                if owner is not None and owner[0] == HOST and not _alive(owner[1]):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1
        return removed

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def write_run(self, record: dict) -> None:
        atomic_write_json(self.run_path(record["run_id"]), record)

    def read_run(self, run_id: str) -> dict | None:
        """The stored record, or None if absent or invalid (an invalid file is set aside and its run redone)."""
        path = self.run_path(run_id)
        if not path.exists():
            return None
        return self._read(path)

    def iter_runs(self) -> Iterator[dict]:
        """Every valid record (the invalid ones are set aside on the way)."""
        if not self.runs_dir.is_dir():
            return
        for path in sorted(self.runs_dir.glob("*.json")):
            record = self._read(path)
            if record is not None:
                yield record

    def require_runs(self) -> None:
        """BadInput (one line) unless the store holds a valid record: a store of unreadable or invalid records
        has no tables to give (they are set aside, and reported in that line)."""
        lines: list[str] = []
        for path in sorted(self.runs_dir.glob("*.json")) if self.runs_dir.is_dir() else ():
            if self._read(path, lines.append) is not None:
                for line in lines:
                    self.warn(line)
                return
        found = f"; the {len(lines)} found were invalid, set aside into {self.set_aside_dir}" if lines else ""
        raise BadInput(f"no valid run record under {self.runs_dir}{found}: run `python -m benchmark all --out "
                       f"{self.root}` first")

    def _read(self, path: Path, warn: Callable[[str], None] | None = None) -> dict | None:
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:  # set aside or replaced by another process meanwhile
            return None
        except (OSError, ValueError) as exc:
            problem = f"unreadable: {one_line(exc)}"
        else:
            problem = record_problem(record, path.stem)
            if problem is None:
                return record
        self.set_aside(path, problem, warn)
        return None

    def set_aside(self, path: Path, why: str, warn: Callable[[str], None] | None = None) -> None:
        """Move an invalid run file out of ``runs/`` (kept for a look, never deleted) and say so in one line."""
        warn = warn or self.warn
        dest, n = self.set_aside_dir / path.name, 0
        while dest.exists():
            n += 1
            dest = self.set_aside_dir / f"{path.stem}.{n}{path.suffix}"
        try:
            self.set_aside_dir.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        except FileNotFoundError:  # another process set it aside first
            return
        except OSError as exc:
            warn(f"ignoring run file {path} ({why}); it cannot be moved aside: {one_line(exc)}")
            return
        warn(f"run file {path.name} set aside into {dest.parent} ({why}): its run will be redone")

    def cache_path(self, tag: str, key: str) -> Path:
        return self.cache_dir / f"{tag}-{key}.pt"


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd or Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_dirty(cwd: Path | None = None) -> bool | None:
    """Whether the checkout's code differs from its commit (None outside git). The top-level results/ folder is
    left out: it is what a suite writes (the default --out), and its committed files change with every suite."""
    status = _git("status", "--porcelain", "--", ":(top)", ":(top,exclude)results", cwd=cwd)
    return bool(status) if status is not None else None


_PROVENANCE: dict | None = None


def provenance() -> dict[str, Any]:
    """Where and with what a run was made (computed once per process)."""
    global _PROVENANCE
    if _PROVENANCE is None:
        import torchvision

        _PROVENANCE = {
            "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": code_dirty(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "machine": platform.machine(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        }
    return dict(_PROVENANCE, threads=torch.get_num_threads(),
                deterministic_algorithms=torch.are_deterministic_algorithms_enabled())
