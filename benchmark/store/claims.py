"""One claim per run: two suites on one store never train the same run at the same time.

The process that hands a run to its backend first claims it: ``<out>/claims/<run_id>.claim``, a small JSON file
(host, pid, the process's start time, when) that appears whole or not at all (written under a temporary name, then
hard-linked to its name, which fails if the name exists: an exclusive create that no reader sees half-written).
The claim is released (removed) once the run's record is written or the run is charged as failed, and on the way
out of the suite whatever happens.

A claim whose owner is gone is taken over:

- same host, and no process with its pid, or one whose start time differs from the claim's (the pid was reused);
- another host, and older than :data:`STALE_AFTER_S` (a day, longer than any run's time limit by default): its pid
  cannot be looked at from here, so only its age says it is gone.

A takeover happens under an exclusive lock on ``claims/.lock``, so that of two suites taking over one stale claim,
one wins and the other sees the winner's live claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark.store.io import HOST, temp_path

STALE_AFTER_S = 24 * 3600.0
SUFFIX = ".claim"
MAX_CLAIM_BYTES = 4096


def process_start(pid: int) -> str | None:
    """When the process ``pid`` started (clock ticks since boot, from /proc), or None where that cannot be read:
    with its pid, it names one process, not whichever process has that pid later."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19] if ")" in text else None  # field 22, after the command's name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str | None  # the process's start time (see process_start)
    at: float  # when the claim was made (seconds since the epoch)

    @classmethod
    def me(cls) -> Owner:
        return cls(HOST, os.getpid(), process_start(os.getpid()), time.time())

    def same_process(self, other: Owner) -> bool:
        return (self.host, self.pid, self.started) == (other.host, other.pid, other.started)

    def gone(self, now: float | None = None) -> bool:
        """Its process has ended (same host), or the claim is older than STALE_AFTER_S (another host)."""
        if self.host != HOST:
            return (now or time.time()) - self.at > STALE_AFTER_S
        if not _alive(self.pid):
            return True
        started = process_start(self.pid)
        return started is not None and self.started is not None and started != self.started

    def describe(self) -> str:
        where = "" if self.host == HOST else f" on {self.host}"
        return f"pid {self.pid}{where}, since {time.strftime('%H:%M:%S', time.localtime(self.at))}"


class Claims:
    """The claims of one store (``folder``: ``<out>/claims``), made and released by this process."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.me = Owner.me()
        self.held: set[str] = set()

    def path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}{SUFFIX}"

    def claim(self, run_id: str) -> Owner | None:
        """Claim ``run_id`` for this process: None when it is this process's now (new, already its own, or taken
        over from a gone owner), else the live owner that holds it."""
        if run_id in self.held:
            return None
        for _ in range(3):  # a claim released between our create and our look is tried again
            if self._create(run_id):
                return None
            with self._locked():  # the claim exists: its owner is alive, or it is taken over by one process only
                owner = self.owner(run_id)
                if owner is not None and not owner.gone():
                    if owner.same_process(self.me):
                        self.held.add(run_id)
                        return None
                    return owner
                with contextlib.suppress(FileNotFoundError):
                    self.path(run_id).unlink()
                if self._create(run_id):
                    return None
        return self.owner(run_id)

    def owner(self, run_id: str) -> Owner | None:
        """Who holds ``run_id`` (None: nobody; an unreadable claim counts as gone, with the time it was made)."""
        path = self.path(run_id)
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read(MAX_CLAIM_BYTES))
            return Owner(str(data["host"]), int(data["pid"]), data.get("started"), float(data["at"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                return Owner("", -1, None, path.stat().st_mtime - STALE_AFTER_S - 1)  # unreadable: gone
            return None

    def release(self, run_id: str) -> None:
        """Remove this process's claim of ``run_id`` (never another's)."""
        if run_id not in self.held:
            return
        self.held.discard(run_id)
        owner = self.owner(run_id)
        if owner is not None and owner.same_process(self.me):
            with contextlib.suppress(FileNotFoundError):
                self.path(run_id).unlink()

    def release_all(self) -> None:
        for run_id in list(self.held):
            self.release(run_id)

    def _create(self, run_id: str) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.folder)
        me = self.me
        with open(tmp, "w") as fh:
            json.dump({"host": me.host, "pid": me.pid, "started": me.started, "at": time.time()}, fh)
        try:
            os.link(tmp, self.path(run_id))  # fails if the claim exists: the exclusive create
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        self.held.add(run_id)
        return True

    @contextlib.contextmanager
    def _locked(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
