"""Finding methods and baselines: every ``methods/<name>/method.py`` and ``baselines/<name>/method.py`` that defines a
class ``Method``. Nothing is registered by hand; a folder whose name starts with ``_`` or ``.`` is a template and is
skipped. A folder that fails to import is reported by name with its error, and the others still work. The folder's
name is the method's (``Method.name``, set here), and its ``speed.toml``, if any, is read here
(:class:`benchmark.contract.Speed`).

Each folder is imported as a package of its own (so ``method.py`` can ``from .models import ...``), under a name that
includes the hash of its source, so an edited folder is imported afresh. Its ``models.py``, if any, is imported
first: the architectures it registers (:func:`benchmark.nn.architecture`) are buildable by every run, which is how
the scratch student trains a method's own network.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import benchmark.archs  # noqa: F401  (registers the shared architectures)
from benchmark.contract import MethodBase, Speed
from benchmark.errors import one_line
from benchmark.modules import failure_line, import_plugin
from benchmark.naming import file_key

KINDS = {"baselines": "baseline", "methods": "method"}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: str  # "method" or "baseline"
    folder: Path
    source_hash: str  # of the folder's Python files
    cls: type[MethodBase] | None = None
    error: str | None = None  # one line: why the folder could not be loaded

    @property
    def ok(self) -> bool:
        return self.cls is not None


def project_root() -> Path:
    """Where ``methods/`` and ``baselines/`` live: $BENCHMARK_PROJECT_ROOT, else the checkout holding this package."""
    env = os.environ.get("BENCHMARK_PROJECT_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


MAX_SOURCE_BYTES = 16 * 2**20  # a source file larger than this is not a method's code


def read_source(path: Path) -> bytes:
    """A source file's bytes; ValueError when it is not a regular file of at most MAX_SOURCE_BYTES (a FIFO named
    ``x.py`` would make every command wait on it forever, a link to /dev/zero would fill the memory)."""
    info = os.stat(path)  # a link to a regular file (a shared helper) is followed, like Python's import does
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SOURCE_BYTES:
        raise ValueError(f"{path.name} is not a regular source file of at most {MAX_SOURCE_BYTES:,} bytes")
    with open(path, "rb") as fh:
        return fh.read(MAX_SOURCE_BYTES + 1)


def file_hash(path: Path) -> str:
    return hashlib.sha256(read_source(Path(path))).hexdigest()[:16]


def source_hash(folder: Path) -> str:
    """Hash of the folder's Python source, so editing a method re-runs only that method."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(read_source(path))
    return digest.hexdigest()[:16]


def _package(folder: Path, kind: str, digest: str) -> str:
    name = f"_benchmark_{kind}_{folder.name}_{digest}"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        package.__package__ = name
        sys.modules[name] = package
    return name


SPEED_FILE = "speed.toml"


def _speed_text(folder: Path) -> str | None:
    path = folder / SPEED_FILE
    return read_source(path).decode() if path.exists() else None


def _load(folder: Path, kind: str) -> MethodInfo:
    name = folder.name
    digest = source_hash(folder)
    try:
        package = _package(folder, kind, digest)
        if (folder / "models.py").is_file():
            import_plugin(f"{package}.models")
        module = import_plugin(f"{package}.method")
        cls = getattr(module, "Method", None)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, MethodBase)):
            raise TypeError("method.py defines no class Method(MethodBase)")
        declared = cls.__dict__.get("name")
        if declared is not None and declared != name:
            raise ValueError(f"Method.name is {declared!r} but the folder is {name!r} (leave it out: the folder names "
                             "the method)")
        moved = sorted({"speed_targets", "profile_variants"} & set(cls.__dict__))
        if moved and "speed" not in cls.__dict__:  # (a class seen before carries what discovery set)
            raise ValueError(f"Method declares {', '.join(moved)}: they go in {SPEED_FILE} beside method.py")
        speed_text = _speed_text(folder)
        speed = Speed.parse(speed_text) if speed_text is not None else Speed()
        speed.check(cls.Config)
        cls.name, cls.speed, cls.speed_targets, cls.profile_variants = name, speed, dict(speed.targets), speed.variants
        return MethodInfo(name, kind, folder, digest, cls=cls)
    except BaseException as exc:  # noqa: B036 - a broken folder (even one that exits) takes only itself down
        return MethodInfo(name, kind, folder, digest, error=failure_line(exc))


# The baselines every method is compared with or loads: a method folder of one of these names is refused even
# where the baseline's own folder is absent, so that it can never stand in for it.
BASELINES = ("teacher", "scratch_student")


def discover(root: Path | None = None) -> dict[str, MethodInfo]:
    """All baselines then all methods, by name (a fresh scan each call: cheap, and sees edits). A method folder
    named as a baseline, or whose name gives the same file names as an earlier one's (:func:`benchmark.naming.
    file_key`: "my method" and "my-method" would write one figure), is listed as not loadable, under the key
    ``methods/<name>``, and the baseline or earlier method stays."""
    root = Path(root) if root else project_root()
    found: dict[str, MethodInfo] = {}
    files: dict[str, tuple[str, str]] = {}  # file key -> (the name that has it, its kind)
    for sub, kind in KINDS.items():
        base = root / sub
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if folder.name.startswith(("_", ".")) or not (folder / "method.py").is_file():
                continue
            clash = _name_clash(folder.name, kind, files)
            if clash:
                found[f"{sub}/{folder.name}"] = MethodInfo(folder.name, kind, folder, "", error=clash)
                continue
            files[file_key(folder.name)] = (folder.name, kind)
            try:
                found[folder.name] = _cached_load(folder.resolve(), kind, source_hash(folder), _speed_text(folder))
            except (OSError, ValueError, UnicodeDecodeError) as exc:  # a folder whose files cannot be read
                found[folder.name] = MethodInfo(folder.name, kind, folder, "", error=f"unreadable: {one_line(exc)}")
    return found


def _name_clash(name: str, kind: str, files: dict[str, tuple[str, str]]) -> str | None:
    """Why a folder's name cannot be a method's (one line), or None. ``files``: the names seen so far (baselines
    first) by file key, with their kind."""
    if kind == "method" and file_key(name) in {file_key(b) for b in BASELINES}:
        return "its name is a baseline's: rename the folder (a method never replaces a baseline)"
    other = files.get(file_key(name))
    if other is None:
        return None
    if other[1] == "baseline" and kind == "method":
        return f"its name is the baseline {other[0]!r}'s: rename the folder (a method never replaces a baseline)"
    return (f"its name gives the same file names as the {other[1]} {other[0]!r} (figures and tables are named "
            f"{file_key(name)!r}): rename the folder")


@cache
def _cached_load(folder: Path, kind: str, digest: str, speed_text: str | None) -> MethodInfo:
    return _load(folder, kind)
