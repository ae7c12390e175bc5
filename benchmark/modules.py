"""Importing the project's plug-in modules (method folders, dataset files) so that a broken one takes down only
itself: whatever it raises on import, ``sys.exit`` and a ``KeyboardInterrupt`` of its own included, becomes one line
naming the file, while a real Ctrl-C during the import still stops the command."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
import traceback
import types
from pathlib import Path


class UserInterrupt(KeyboardInterrupt):
    """Ctrl-C (SIGINT) arrived while a plug-in module was importing: the user's, not the module's."""


@contextlib.contextmanager
def _sigint_marked():
    """While importing, a real SIGINT raises :class:`UserInterrupt`, so that it can be told apart from a module that
    raises KeyboardInterrupt itself. Only where Python's default handler is in place (the main thread)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def interrupted(signum, frame):
        raise UserInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def import_plugin(name: str) -> types.ModuleType:
    """``importlib.import_module(name)``; on any failure the half-imported module is forgotten and the exception
    re-raised (a :class:`UserInterrupt` for the user's Ctrl-C)."""
    try:
        with _sigint_marked():
            return importlib.import_module(name)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def failure_line(exc: BaseException) -> str:
    """One line saying why a module failed to import, with the file and line where it failed; re-raises the
    user's Ctrl-C."""
    if isinstance(exc, UserInterrupt):
        raise KeyboardInterrupt from None
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
    if isinstance(exc, SystemExit):
        what = f"SystemExit: the module called sys.exit({exc.code!r}) on import"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return f"{what}{where}".replace("\n", " ")
