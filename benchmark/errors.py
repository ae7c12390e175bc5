"""Every error the harness raises on purpose, in one place (the lowest layer: imports nothing of the project).

- :class:`BadInput`: user input that cannot be honoured. ``str()`` is one line saying what is wrong and how to fix
  it; the command line prints it and exits with status 2, before anything is written.
- :class:`DatasetUnavailable` / :class:`DatasetCorrupt`: a dataset cannot be loaded (missing files, or a file that
  exists but cannot be parsed); one line naming the fix or the file.
- :class:`NonFiniteLoss`: a training loss became NaN or infinite; the run is recorded as failed with the reason.
- :class:`DiskFull`: a write failed for want of space (ENOSPC, EDQUOT); one line, and the command exits with
  status 1, wherever the write was (a worker's record or checkpoint, a table).
- :class:`NothingPublished`: a command asked for tables, figures or a report and none of a part's files could be
  made (whatever else could be was written); the command line exits with status 1.
"""

import errno
import os


class BadInput(ValueError):
    """User input that cannot be honoured; ``str()`` is one line saying what is wrong and how to fix it."""


class DatasetUnavailable(Exception):
    """A dataset cannot be loaded; ``str(e)`` is one line that names the fix."""


class DatasetCorrupt(DatasetUnavailable):
    """A dataset file exists but cannot be parsed; ``str(e)`` is one line naming the file."""


class NonFiniteLoss(RuntimeError):
    """A training loss became NaN or infinite."""


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for embedding an exception in a one-line message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class NothingPublished(RuntimeError):
    """A publish step (tables, figures, report) wrote none of the files of a part it was asked for, e.g. every
    figure failed; ``str()`` is one line naming the part and why. The command line exits with status 1."""


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(OSError):
    """No space (or quota) left for a write; ``str()`` is the one line the command line prints. An OSError, so that
    whatever handles a failed write handles it too; picklable (a worker's is sent back to the suite)."""

    def __str__(self) -> str:
        where = f" {self.filename}" if self.filename else ""
        return f"disk full while writing{where} ({self.strerror}): free space and run the same command again to resume"


def disk_full(exc: BaseException) -> DiskFull | None:
    """``exc`` as a :class:`DiskFull` when it is a write that failed for want of space, else None."""
    if isinstance(exc, DiskFull):
        return exc
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return DiskFull(exc.errno, exc.strerror or os.strerror(exc.errno), exc.filename)
    return None
