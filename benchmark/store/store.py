"""The results store: one JSON file per finished run, the model cache, and where every output goes.

Layout under the output folder (default ``results/``), each name defined here once (:class:`Store`)::

    runs/<run_id>.json      one finished run (status ok / failed / skipped)
    cache/<tag>-<key>.pt    cached models (state dicts; loaded with weights_only=True)
    set-aside/              run files that failed validation, moved out of runs/ (kept, never deleted)
    claims/<run_id>.claim   a run being trained now, and by which process (benchmark.store.claims)
    profiles/               timing profiles (``python -m benchmark profile``)
    published/              what the publish step makes, replaced as one set (benchmark.store.io.StagedFolder):
        REPORT.md  reference/*.md  tables/  figures/

Every file is written atomically (``benchmark.store.io``). Nothing read is trusted: a run file counts (as done,
or in a table) only if it is a regular file of a sane size holding a valid record of the run its name says
(``benchmark.store.records``). Any other is reported in one line and set aside, and its run is redone; a
read-only store (``--dry-run``) reports it, leaves it where it is and does not read it again.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import BadInput, one_line
from benchmark.store.io import (
    NotAFileToRead,
    atomic_write_bytes,
    create,
    json_bytes,
    read_regular_file,
    remove_dead_staging,
    remove_dead_temporaries,
    temp_path,
)
from benchmark.store.records import (
    MAX_RECORD_BYTES,
    SCHEMA_VERSION,
    gc_paused,
    is_run_id,
    parse_record,
    record_problem,
)


def _stderr(line: str) -> None:
    print(f"benchmark: {line}", file=sys.stderr)


@dataclass
class StoredRuns:
    """What one reading of ``runs/`` found: the valid records, one line per run file found invalid (and set
    aside) by this reading, and how many invalid files found by an earlier reading were left in place."""

    records: list[dict] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    ignored: int = 0

    @property
    def skipped(self) -> int:
        """Run files under ``runs/`` that this reading did not count as records."""
        return len(self.invalid) + self.ignored


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")  # a method's or baseline's name (its folder's)


def _run_id(text: str) -> str:
    if not is_run_id(text):
        raise ValueError(f"{str(text)[:40]!r} is not a run id (16 hexadecimal digits): no path is made from it")
    return text


class UnstorableRecord(ValueError):
    """A record no reader would accept (a number beyond 64 bits, say): never written, so its run counts as
    failed where it ends instead of being stored and set aside at the next reading."""


class Store:
    """``warn`` receives the one line that reports an invalid run file (default: stderr). ``read_only``: never
    write or move anything (an invalid run file is reported and left in place)."""

    RUNS, CACHE, SET_ASIDE, CLAIMS = "runs", "cache", "set-aside", "claims"
    TABLES, FIGURES, PROFILES, REPORT = "tables", "figures", "profiles", "REPORT.md"
    PUBLISHED = "published"  # the folder of the outputs above but profiles, swapped whole by each publish
    PROFILE_FIGURE = "profile.png"  # written by ``python -m benchmark profile``, shown in the report

    def __init__(self, root: Path | str, warn: Callable[[str], None] | None = None, read_only: bool = False):
        self.root = Path(root)
        self.runs_dir = self.root / self.RUNS
        self.cache_dir = self.root / self.CACHE
        self.set_aside_dir = self.root / self.SET_ASIDE
        self.claims_dir = self.root / self.CLAIMS  # who trains which run now (benchmark.store.claims)
        self.published_dir = self.root / self.PUBLISHED
        self.tables_dir = self.published_dir / self.TABLES
        self.figures_dir = self.published_dir / self.FIGURES
        self.profiles_dir = self.root / self.PROFILES
        self.report_path = self.published_dir / self.REPORT
        self.profile_figure = self.profiles_dir / self.PROFILE_FIGURE
        self.warn = warn or _stderr
        self.read_only = read_only
        # Invalid run files still in place (read-only, or not movable): (inode, size, mtime) -> why, so that a
        # file is read once, not at every look, and reported once.
        self._invalid: dict[Path, tuple[tuple, str]] = {}

    def relative(self, path: Path, start: Path | None = None) -> str:
        """``path`` as a link from a file in the folder ``start`` (default: the report's, ``published/``)."""
        return Path(os.path.relpath(path, self.published_dir if start is None else start)).as_posix()

    def open(self) -> Store:
        """Ready for a suite: every folder a suite writes exists and takes a new file (else BadInput, one line,
        before anything trains), and the temporary files of writers that died on this host are removed."""
        self._writable("opened for a suite")
        if self.root.exists() and not self.root.is_dir():
            raise BadInput(f"the results folder {self.root} is a file: pass --out a folder")
        self.check_inside()
        for folder in (self.root, self.runs_dir, self.cache_dir):  # the publish step writes in the root
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = temp_path(folder)
                os.close(create(probe))
                probe.unlink()
            except OSError as exc:
                raise BadInput(f"cannot write results into {folder} ({exc.strerror or one_line(exc)}): pass --out a "
                               "writable folder") from None
        self.clean_temporary()
        return self

    def clean_temporary(self) -> int:
        """Remove the temporary files, and the publish step's staging folders, whose writer, a process of this
        host, is dead. How many."""
        self._writable("cleaned")
        return remove_dead_temporaries((self.root, self.runs_dir, self.cache_dir, self.profiles_dir,
                                        self.set_aside_dir, self.claims_dir)) + remove_dead_staging(self.root)

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{_run_id(run_id)}.json"

    def cache_path(self, tag: str, key: str) -> Path:
        if not NAME.fullmatch(tag):
            raise ValueError(f"{tag[:40]!r} is not a method's name: no cache path is made from it")
        return self.cache_dir / f"{tag}-{_run_id(key)}.pt"

    def check_inside(self) -> None:
        """BadInput unless every folder and file the store writes is inside its root: a layout folder that is a
        symbolic link (planted, or left by another tool) would take the writes elsewhere."""
        for path in (self.runs_dir, self.cache_dir, self.set_aside_dir, self.published_dir, self.profiles_dir,
                     self.claims_dir):
            if path.is_symlink():
                raise BadInput(f"{path} is a symbolic link: the store writes only inside {self.root}; remove the "
                               "link (or pass --out another folder)")

    def write_run(self, record: dict) -> None:
        """Write ``record`` (stamped with the format's :data:`SCHEMA_VERSION`) as its run's file, after checking
        that it reads back as a valid record of that run; else :class:`UnstorableRecord`, and nothing is written."""
        self._writable(f"given run {record['run_id']}")
        record["schema_version"] = SCHEMA_VERSION
        data = json_bytes(record)
        try:
            problem = record_problem(parse_record(data), record["run_id"])
        except ValueError as exc:
            problem = one_line(exc)
        if problem is None and len(data) > MAX_RECORD_BYTES:
            problem = f"{len(data):,} bytes, above the {MAX_RECORD_BYTES:,} a run file may have"
        if problem is not None:
            raise UnstorableRecord(f"its record cannot be stored: {problem}")
        atomic_write_bytes(self.run_path(record["run_id"]), data)

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise RuntimeError(f"the store {self.root} is read-only: it is not {what}")

    def read_run(self, run_id: str) -> dict | None:
        """The stored record, or None if absent or invalid (an invalid file is set aside and its run redone)."""
        return self._read(self.run_path(run_id), self.warn)

    def iter_runs(self) -> Iterator[dict]:
        """Every valid record (the invalid ones are reported, and set aside, on the way)."""
        for path in self._run_files():
            record = self._read(path, self.warn)
            if record is not None:
                yield record

    def read_runs(self) -> StoredRuns:
        """Every valid record, and a line per invalid run file (reported too, and set aside)."""
        found = self._scan()
        for line in found.invalid:
            self.warn(line)
        return found

    def require_runs(self) -> StoredRuns:
        """:meth:`read_runs`, or BadInput (one line) when there is no valid record: a store of unreadable or
        invalid records has no tables to give (they are set aside, and counted in that line)."""
        found = self._scan()
        if not found.records:
            where = "left in place (read-only)" if self.read_only else f"set aside into {self.set_aside_dir}"
            invalid = f"; the {found.skipped} found were invalid, {where}" if found.skipped else ""
            raise BadInput(f"no valid run record under {self.runs_dir}{invalid}: run `python -m benchmark all "
                           f"--out {self.root}` first")
        for line in found.invalid:
            self.warn(line)
        return found

    def _run_files(self) -> list[Path]:
        return sorted(self.runs_dir.glob("*.json")) if self.runs_dir.is_dir() else []

    def _scan(self) -> StoredRuns:
        found = StoredRuns()
        with gc_paused():
            for path in self._run_files():
                if self._known_invalid(path):
                    found.ignored += 1
                    continue
                record = self._parse(path, found.invalid.append)
                if record is not None:
                    found.records.append(record)
        return found

    def _known_invalid(self, path: Path) -> bool:
        """Found invalid before, left in place and unchanged since: not read (nor reported) again."""
        try:
            return path in self._invalid and self._invalid[path][0] == _file_key(path)
        except FileNotFoundError:
            return False

    def _read(self, path: Path, warn: Callable[[str], None]) -> dict | None:
        return None if self._known_invalid(path) else self._parse(path, warn)

    def _parse(self, path: Path, warn: Callable[[str], None]) -> dict | None:
        """The record in ``path``, or None: absent, or invalid (then set aside and reported to ``warn``)."""
        try:
            record = parse_record(read_regular_file(path, MAX_RECORD_BYTES))
        except FileNotFoundError:  # absent, or set aside or replaced by another process meanwhile
            return None
        except NotAFileToRead as exc:
            problem = str(exc)
        except (OSError, ValueError) as exc:
            problem = f"unreadable: {one_line(exc)}"
        else:
            problem = record_problem(record, path.stem)
            if problem is None:
                return record
        self.set_aside(path, problem, warn)
        return None

    def set_aside(self, path: Path, why: str, warn: Callable[[str], None] | None = None,
                  then: str = "its run will be redone") -> None:
        """Move an invalid run file out of ``runs/`` (kept for a look, never deleted) and say so in one line; a
        read-only store only says so, and a file that cannot be moved is ignored from then on."""
        warn = warn or self.warn
        if self.read_only:
            self._remember(path, why)
            warn(f"run file {path.name} is invalid ({why}): left in place, the store is read-only")
            return
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
            self._remember(path, why)
            warn(f"ignoring run file {path} ({why}); it cannot be moved aside: {one_line(exc)}")
            return
        warn(f"run file {path.name} set aside into {dest.parent} ({why}): {then}")

    def _remember(self, path: Path, why: str) -> None:
        try:
            self._invalid[path] = (_file_key(path), why)
        except FileNotFoundError:
            pass


def _file_key(path: Path) -> tuple:
    """What changes when a file is replaced or rewritten (without following a link)."""
    info = os.lstat(path)
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
