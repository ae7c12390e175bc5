"""Files written so that no reader ever sees half of one, and files read without trusting what they are.

A file is written to a temporary name in its own folder (``.tmp-<host>-<pid>-<random>``), flushed to disk and
renamed over the target, so a killed process never leaves a half-written file under a name that is read; readers
ignore the temporary names, and :func:`remove_dead_temporaries` removes those of writers that died on this host.
Files are created with mode 0666 & ~umask, as ``open`` creates them, so a group sharing the folder can read them.

:class:`StagedFolder` does the same for a set of files that belong together (the published tables, figures and
report): the whole new set is written and flushed in a staging folder, which then takes the old folder's place in
one atomic rename. A full disk or a kill then leaves the old set as it was, never two tables new and four old.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import json
import math
import os
import secrets
import shutil
import socket
import stat
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import DiskFull, disk_full

TMP_PREFIX = ".tmp-"
STAGING_PREFIX = ".publish-"  # a folder being staged by StagedFolder
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


class StagedFolder:
    """A folder replaced as a whole (the published outputs: tables, figures, reference files, the report).

    A fresh staging folder ``.publish-<host>-<pid>-<random>`` is made beside ``target``; :meth:`add` writes each new
    file into it (flushed to disk), and :meth:`commit` copies in every other regular file of the old folder (hard
    links: a file is only replaced, never deleted), flushes the folders and swaps the staging folder with ``target``
    in one rename (:func:`swap_folders`), then removes the old set. A reader that opens ``target`` therefore finds
    the old set or the new one, each complete, never a mix. Leaving the ``with`` block without a commit (an error,
    a full disk) removes the staging folder and leaves ``target`` untouched; a process killed before the end leaves
    its staging folder, which :func:`remove_dead_staging` removes."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.staging = target.parent / f"{STAGING_PREFIX}{HOST}-{os.getpid()}-{secrets.token_hex(6)}"
        self._added: list[Path] = []

    def __enter__(self) -> StagedFolder:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir()  # exclusive: never an existing folder, never through a link
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def add(self, path: Path, data: bytes) -> Path:
        """Stage ``data`` as the new ``path`` (a path inside ``target``); ``path``."""
        staged = self.staging / path.relative_to(self.target)
        staged.parent.mkdir(parents=True, exist_ok=True)
        _write_new(staged, data, named=path)
        self._added.append(path)
        return path

    def commit(self) -> list[Path]:
        """Swap the staged set in; the paths added, in order."""
        added = {p.relative_to(self.target) for p in self._added}
        _carry_over(self.target, self.staging, added)
        for folder, _, _ in os.walk(self.staging):
            fsync_folder(Path(folder))
        swap_folders(self.staging, self.target)
        fsync_folder(self.target.parent)
        self.discard()  # the old set, now under the staging name
        return list(self._added)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _write_new(path: Path, data: bytes, named: Path) -> None:
    """``data`` flushed to disk as the new file ``path``; a full disk is :class:`DiskFull` naming ``named``."""
    try:
        with open(create(path), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        full = disk_full(exc)
        if full is not None:
            raise DiskFull(full.errno, full.strerror, str(named)) from None
        raise


def _carry_over(old: Path, new: Path, replaced: set[Path]) -> None:
    """Every regular file under ``old`` that is not ``replaced``, linked (else copied) to the same place under
    ``new``: what this publish does not make (a part not asked for, a figure no longer drawn) is kept as it was.
    Links and other non-regular files are not carried (a planted link is never followed)."""
    if not old.is_dir() or old.is_symlink():
        return
    for folder, _, files in os.walk(old):  # os.walk does not descend into linked folders
        rel = Path(folder).relative_to(old)
        for name in files:
            src = Path(folder) / name
            if rel / name in replaced or not stat.S_ISREG(os.lstat(src).st_mode):
                continue
            dst = new / rel / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:  # a file system without hard links
                shutil.copyfile(src, dst, follow_symlinks=False)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the names of the files in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if disk_full(exc) is not None:
            raise
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _renameat2():
    """glibc's renameat2 (Linux >= 3.15, glibc >= 2.28), or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def exchange(a: Path, b: Path) -> bool:
    """Swap the two existing names ``a`` and ``b`` in one atomic step (``renameat2(RENAME_EXCHANGE)``). False
    where the system or the file system cannot (not Linux, an old kernel, a file system without it); OSError for
    anything else (FileNotFoundError: one of them is absent)."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_folders(new: Path, target: Path) -> None:
    """Put the folder ``new`` in ``target``'s place in one rename; the old ``target`` ends under ``new``'s name.

    On Linux the two are exchanged atomically: every reader sees the old folder or the new one. Where no atomic
    exchange exists, ``target`` is first renamed aside and ``new`` then renamed into place: for that instant
    ``target`` is absent (a reader finds nothing, never a mix), and a kill in it leaves no ``target`` until the
    next publish."""
    for _ in range(3):  # another publish may create or swap ``target`` meanwhile
        try:
            if exchange(new, target):
                return
        except FileNotFoundError:
            if not target.exists() and not target.is_symlink():
                try:
                    os.rename(new, target)  # nothing to replace: one rename
                    return
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                continue
            raise
        else:
            aside = new.with_name(f"{STAGING_PREFIX}{HOST}-{os.getpid()}-{secrets.token_hex(6)}")
            os.rename(target, aside)
            os.rename(new, target)
            os.rename(aside, new)
            return
    raise OSError(errno.EBUSY, "another publish kept replacing it", str(target))


def temp_owner(name: str, prefix: str = TMP_PREFIX) -> tuple[str, int] | None:
    """(host, pid) of a temporary file named by :func:`temp_path` (or a staging folder of :class:`StagedFolder`,
    ``prefix`` :data:`STAGING_PREFIX`); None for any other name."""
    owner = name.removeprefix(prefix).rpartition("-")[0]  # without the random part
    host, _, pid = owner.rpartition("-")
    return (host, int(pid)) if name.startswith(prefix) and host and pid.isdigit() else None


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


def remove_dead_staging(folder: Path) -> int:
    """Remove the staging folders of :class:`StagedFolder` in ``folder`` whose owner, a process of this host, is
    dead (a publish killed before or just after its swap leaves one, holding the new or the old set). How many."""
    removed = 0
    for path in folder.glob(STAGING_PREFIX + "*") if folder.is_dir() else ():
        owner = temp_owner(path.name, STAGING_PREFIX)
        if owner is not None and owner[0] == HOST and not _alive(owner[1]) and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
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
