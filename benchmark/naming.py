"""How a method's or dataset's name becomes part of a file name (figures, tables): one function, used by the
reporting to name its files and by discovery to refuse two methods whose names would give the same file."""

from __future__ import annotations

import re

MAX_SLUG = 120


def slug(*parts) -> str:
    """``parts`` joined by ``_``, every run of other characters than letters, digits, ``_``, ``.``, ``=`` and ``-``
    made one ``-`` (so "my method" and "my-method" give the same text), at most :data:`MAX_SLUG` characters."""
    text = "_".join(str(p) for p in parts if p is not None)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-")[:MAX_SLUG]


def file_key(name: str) -> str:
    """What two names must differ in for their files to differ, on a filesystem that ignores case too."""
    return slug(name).casefold()
