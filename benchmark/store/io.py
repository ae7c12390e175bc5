"""Files written so that no reader ever sees half of one, and files read without trusting what they are.

A file is written to a temporary name in its own folder (``.tmp-<host>-<pid>-<random>``), flushed to disk and
renamed over the target, so a killed process never leaves a half-written file under a name that is read; readers
ignore the temporary names, and :func:`remove_dead_temporaries` removes those of writers that died on this host.
Files are created with mode 0666 & ~umask, as ``open`` creates them, so a group sharing the folder can read them.

:class:`StagedFiles` does the same for a set of files that belong together (the tables of one command): every file
is written and flushed under its temporary name first, and only when all of them are ready are they renamed into
place. A full disk then leaves every old file as it was, never two tables new and four old; a rename needs no space.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import DiskFull, disk_full

TMP_PREFIX = ".tmp-"
HOST = socket.gethostname()


def temp_path(folder: Path) -> Path:
    """A fresh temporary name in ``folder`` that says which process on which host owns it."""
    return folder / f"{TMP_PREFIX}{HOST}-{os.getpid()}-{secrets.token_hex(6)}"


def create(path: Path) -> int:
    """A new file, mode 0666 & ~umask (tempfile.mkstemp would give 0600: unreadable to the folder's group)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def _write_temporary(path: Path, data: bytes) -> Path:
    """``data`` flushed to disk under a temporary name beside ``path``; that name (removed again on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent)
    try:
        with open(create(tmp), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = disk_full(exc)
        if full is not None:  # named by the file it was for, not the temporary name: one line says where
            raise DiskFull(full.errno, full.strerror, str(path)) from None
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class StagedFiles:
    """Files replaced as a set: :meth:`add` writes each under a temporary name, :meth:`commit` renames them all
    into place. Leaving the ``with`` block without a commit (an error, a full disk) removes every temporary file
    and leaves the old files untouched."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temporary, target)

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def add(self, path: Path, data: bytes) -> Path:
        self._staged.append((_write_temporary(path, data), path))
        return path

    def commit(self) -> list[Path]:
        """Rename every staged file over its target; the targets, in the order they were added."""
        done = []
        while self._staged:
            tmp, path = self._staged[0]
            os.replace(tmp, path)
            self._staged.pop(0)
            done.append(path)
        return done

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._staged.clear()


def temp_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of a temporary file named by :func:`temp_path`; None for any other name."""
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


def remove_dead_temporaries(folders) -> int:
    """Remove the temporary files in ``folders`` whose writer, a process of this host, is dead (a kill between
    write and rename leaves one); another host's, or a live process's, may still be renamed into place. How many."""
    removed = 0
    for folder in folders:
        for path in folder.glob(TMP_PREFIX + "*") if folder.is_dir() else ():
            owner = temp_owner(path.name)
            if owner is not None and owner[0] == HOST and not _alive(owner[1]):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


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


def json_bytes(obj: Any) -> bytes:
    return json.dumps(_finite_or_none(obj), indent=1, default=_json_default, allow_nan=False).encode()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def atomic_torch_save(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


class NotAFileToRead(ValueError):
    """A path that is not a regular file of a readable size; ``str()`` says what it is instead."""


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file (not a link, FIFO, device or folder) of at most ``limit``
    bytes, else :class:`NotAFileToRead`. Opened without following a link and without blocking (opening a FIFO that
    has no writer would wait forever), and checked again once open, in case the name was replaced meanwhile."""
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotAFileToRead(f"{_kind(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFileToRead(f"{_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise NotAFileToRead(f"{info.st_size:,} bytes, above the {limit:,} a run file may have")
        data = fh.read(limit + 1)
    if len(data) > limit:  # it grew after the check
        raise NotAFileToRead(f"more than the {limit:,} bytes a run file may have")
    return data
