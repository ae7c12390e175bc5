"""Finding datasets: every module in ``benchmark/data/datasets/`` is one (see :mod:`benchmark.data.contract`).

Nothing is registered by hand: adding a dataset is adding a file. A module whose name starts with ``_`` is a
template or a helper and is skipped. A module that fails to import, or lacks part of the contract, is still listed,
by name, with its error (its availability is that error), and the others still work.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BadInput
from benchmark.modules import failure_line, import_plugin

DATASETS_PACKAGE = "benchmark.data.datasets"
REQUIRED = ("name", "order", "classes", "input_shape", "citation", "locate", "read")
_SUPERCLASS = re.compile(r"(?P<base>[a-z0-9_]+):(?P<groups>\d+)x(?P<size>\d+)")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    path: Path  # the module's file
    module: types.ModuleType | None = None
    error: str | None = None  # one line: why the module cannot be used

    @property
    def ok(self) -> bool:
        return self.module is not None

    @property
    def sort_key(self) -> tuple:
        return (0, self.module.order, self.name) if self.ok else (1, 0, self.name)  # broken ones last


def default_data_root() -> Path:
    """$BENCHMARK_DATA_ROOT if set, else ~/.cache/distill-benchmark/data."""
    env = os.environ.get("BENCHMARK_DATA_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "distill-benchmark" / "data"


def _check_contract(module: types.ModuleType, name: str) -> None:
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise TypeError(f"{name}.py does not define {', '.join(missing)} (see benchmark/data/contract.py)")
    if module.name != name:
        raise ValueError(f"its name is {module.name!r} but the file is {name}.py")
    if not module.classes or not all(isinstance(c, str) for c in module.classes):
        raise TypeError(f"{name}.py: classes must be a non-empty list of names")


def _load(name: str, path: Path) -> DatasetInfo:
    full = f"{DATASETS_PACKAGE}.{name}"
    try:
        module = import_plugin(full)
        _check_contract(module, name)
        return DatasetInfo(name, path, module)
    except BaseException as exc:  # noqa: B036 - a broken dataset module (even one that exits) takes only itself down
        return DatasetInfo(name, path, error=failure_line(exc))


_DISCOVERED: dict[str, DatasetInfo] | None = None
_LOCK = threading.Lock()


def discover() -> dict[str, DatasetInfo]:
    """Every dataset module, by name, in listing order (imported once per process; :func:`refresh` rescans)."""
    global _DISCOVERED
    with _LOCK:
        if _DISCOVERED is None:
            package = importlib.import_module(DATASETS_PACKAGE)
            infos = [_load(m.name, Path(m.module_finder.path) / f"{m.name}.py")
                     for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_") and not m.ispkg]
            _DISCOVERED = {i.name: i for i in sorted(infos, key=lambda i: i.sort_key)}
        return _DISCOVERED


def refresh() -> None:
    """Forget the scan, so the next call sees added or edited dataset modules."""
    global _DISCOVERED
    with _LOCK:
        _DISCOVERED = None


def dataset_names() -> list[str]:
    return list(discover())


def parse_name(name: str) -> tuple[str, tuple[int, int] | None]:
    """``"fashion_mnist"`` -> ("fashion_mnist", None); ``"fashion_mnist:2x5"`` -> ("fashion_mnist", (2, 5)).

    ``<base>:GxK`` is the superclass task of subclass distillation: the base dataset's classes, in order, collapsed
    into G superclasses of K consecutive labels (2x5: labels 0-4 -> 0, 5-9 -> 1); the original labels stay
    available as :meth:`Dataset.fine_labels`.
    """
    m = _SUPERCLASS.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        return name, None
    return m["base"], (int(m["groups"]), int(m["size"]))


def is_known(name: str) -> bool:
    base, _ = parse_name(name)
    return isinstance(base, str) and base in discover()


def check_name(name: str) -> DatasetInfo:
    """The base dataset's info; BadInput (one line) for an unknown name or a superclass task that does not fit
    the dataset's classes (decided from the module's class names, without loading anything)."""
    if not is_known(name):
        raise BadInput(f"unknown dataset {name!r}; known datasets: {', '.join(discover())} "
                       "(and <name>:GxK superclass tasks, e.g. digits:2x5)")
    base, superclass = parse_name(name)
    info = discover()[base]
    if superclass is not None and info.ok and superclass[0] * superclass[1] != len(info.module.classes):
        groups, size = superclass
        raise BadInput(f"dataset {name!r}: {groups}x{size} = {groups * size} superclass members, but {base} has "
                       f"{len(info.module.classes)} classes; G*K must equal {len(info.module.classes)}")
    return info


def module(name: str) -> types.ModuleType:
    """A dataset's module (tests redirect e.g. fashion_mnist's SYSTEM_DIRS through it)."""
    info = check_name(name)
    if not info.ok:
        raise BadInput(f"dataset {info.name!r} cannot be loaded: {info.error}")
    return info.module


def _data_modules(mod: types.ModuleType) -> set[types.ModuleType]:
    """The modules of this package that ``mod`` uses: imported as modules, or through a name imported from one."""
    prefix = "benchmark.data."
    used = set()
    for value in vars(mod).values():
        owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(owner, str) and owner.startswith(prefix) and owner in sys.modules:
            used.add(sys.modules[owner])
    used.discard(mod)
    return used


def source_files(name: str) -> list[Path]:
    """The source files that determine a dataset's arrays: its module and the package modules it reads through
    (shared readers, helpers, the fixed-split code), followed transitively. Run ids hash them, so editing one
    dataset's file re-runs only that dataset's runs."""
    info = check_name(name)
    if not info.ok:
        return [info.path]
    seen, todo = {info.module}, [info.module]
    while todo:
        for used in _data_modules(todo.pop()):
            if used not in seen:
                seen.add(used)
                todo.append(used)
    return sorted(Path(m.__file__).resolve() for m in seen)
