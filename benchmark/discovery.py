"""Finding methods and baselines: every ``methods/<name>/method.py`` and ``baselines/<name>/method.py`` that defines a
class ``Method``. Nothing is registered by hand; a folder whose name starts with ``_`` or ``.`` is a template and is
skipped. A folder that fails to import is reported by name with its error, and the others still work.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from benchmark.contract import MethodBase

KINDS = {"baselines": "baseline", "methods": "method"}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: str  # "method" or "baseline"
    folder: Path
    source_hash: str
    cls: type[MethodBase] | None = None
    error: str | None = None  # one line: why the folder could not be loaded

    @property
    def ok(self) -> bool:
        return self.cls is not None


def project_root() -> Path:
    """Where ``methods/`` and ``baselines/`` live: $BENCHMARK_PROJECT_ROOT, else the checkout holding this package."""
    env = os.environ.get("BENCHMARK_PROJECT_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def source_hash(folder: Path) -> str:
    """Hash of the folder's Python source, so editing a method re-runs only that method."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _load(folder: Path, kind: str) -> MethodInfo:
    name = folder.name
    digest = source_hash(folder)
    module_name = f"_benchmark_{kind}_{name}_{digest}"
    try:
        if module_name in sys.modules:
            module = sys.modules[module_name]
        else:
            spec = importlib.util.spec_from_file_location(module_name, folder / "method.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
        cls = getattr(module, "Method", None)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, MethodBase)):
            raise TypeError("method.py defines no class Method(MethodBase)")
        if cls.name != name:
            raise ValueError(f"Method.name is {cls.name!r} but the folder is {name!r}")
        return MethodInfo(name, kind, folder, digest, cls=cls)
    except Exception as exc:  # a broken folder must not take the others down
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        return MethodInfo(name, kind, folder, digest, error=f"{type(exc).__name__}: {exc}{where}".replace("\n", " "))


def discover(root: Path | None = None) -> dict[str, MethodInfo]:
    """All baselines then all methods, by name (a fresh scan each call: cheap, and sees edits)."""
    root = Path(root) if root else project_root()
    found: dict[str, MethodInfo] = {}
    for sub, kind in KINDS.items():
        base = root / sub
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if folder.name.startswith(("_", ".")) or not (folder / "method.py").is_file():
                continue
            found[folder.name] = _cached_load(folder.resolve(), kind, source_hash(folder))
    return found


@cache
def _cached_load(folder: Path, kind: str, digest: str) -> MethodInfo:
    return _load(folder, kind)
