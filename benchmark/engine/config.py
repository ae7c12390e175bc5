"""Resolving a method's configuration: defaults, then the preset, then ``--set`` overrides parsed by type, then the
method's adaptation to the dataset, then every value checked against its field's declared range.

Values given on the command line are parsed against the ``Config`` dataclass's annotations (never ``eval``):
``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` (a closed set of choices), ``X | None``, tuples of those, and
``Annotated[X, Range(...)]`` (a numeric range, :class:`benchmark.contract.Range`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Annotated, Any, Literal, get_args, get_origin

from benchmark.contract import Range
from benchmark.errors import BadInput
from benchmark.store.records import INT64

PRESETS = ("smoke", "quick", "paper")

# Data budget per kind of device and preset, shared by every method so that paired runs see the same examples.
# ``None`` is the whole split. The caps are on training data only: every preset but "smoke" tests on the whole test
# set (fashion_mnist and mnist 10,000 images), since a capped test set only widens every interval and evaluating a
# trained model is cheap next to training it. On a CPU, "quick" keeps the small datasets whole (digits 1,617 training
# / 360 test examples, mnist1d and mnist_5k 4,000 / 1,000) and caps the large ones at 4,000 training examples (a
# stratified subset): every method then runs its converged recipe in minutes. On a GPU, "quick" trains on 6,000
# examples of the large ones. Not all of them: the suite's longest task is kl_entanglement at its notebook's batch
# of 8, 30 epochs of n/8 steps one after the other, each a few milliseconds however fast the GPU (a step of that
# size is launch overhead), so the whole of Fashion-MNIST would make that one task about 20 minutes; 6,000 keeps it
# near 2 minutes, within the 3-minute target of `all` on one GPU. These caps come from per-step times (README, GPU
# section), not from a timed suite: no GPU was at hand when they were chosen (scripts/gpu/measure.sh times them).
# "smoke" is the same everywhere (seconds, for tests); "paper" is the whole of every dataset everywhere.
CPU_DATA_PRESETS: dict[str, dict[str, int | None]] = {
    "smoke": {"max_train": 600, "max_test": 500},
    "quick": {"max_train": 4_000, "max_test": None},
    "paper": {"max_train": None, "max_test": None},
}
DATA_PRESETS: dict[str, dict[str, dict[str, int | None]]] = {
    "cpu": CPU_DATA_PRESETS,
    "cuda": {**CPU_DATA_PRESETS, "quick": {"max_train": 6_000, "max_test": None}},
}
VALIDATION_FIELD = "validation"  # a Config field of this name chooses the run's training/validation split
TRANSFER_FIELD = "transfer"  # a Config field of this name cuts the run's training split to a transfer set
# The fields the harness applies to a run's data, which a role's paired scratch student gets too.
DATA_FIELDS = (VALIDATION_FIELD, TRANSFER_FIELD)


def field_types(config_cls) -> dict[str, Any]:
    return typing.get_type_hints(config_cls, include_extras=True)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def parse_value(annotation: Any, value: Any) -> Any:
    """Convert ``value`` (usually a string from the command line) to ``annotation``; ValueError if it does not fit
    (including a declared range)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extras = get_args(annotation)
        parsed = parse_value(inner, value)
        for extra in extras:
            if isinstance(extra, Range) and parsed is not None:
                for item in parsed if isinstance(parsed, tuple) else (parsed,):
                    problem = extra.check(item)
                    if problem:
                        raise ValueError(f"{problem} (allowed: {extra.text()})")
        return parsed
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if type(None) in options and (value is None or (isinstance(value, str) and value.lower() == "none")):
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return parse_value(option, value)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        choices = get_args(annotation)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, choices))}")
    if origin in (tuple, list):
        inner = get_args(annotation)[0] if get_args(annotation) else str
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            if get_origin(inner) is Annotated:
                base = get_args(inner)[0]
            else:
                base = inner
            if base in (int, float):
                text = text.replace("x", ",")  # "256x128x64" is a shell-friendly way to write sizes
            parts = [p for p in text.split(",") if p.strip()] if text else []
        else:
            parts = list(value)
        if not parts:
            raise ValueError(f"{value!r} is empty")
        return tuple(parse_value(inner, p.strip() if isinstance(p, str) else p) for p in parts)
    if annotation is bool:
        return value if isinstance(value, bool) else _parse_bool(str(value))
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, int):
            return _storable_int(value)
        if isinstance(value, float) and value.is_integer():
            return _storable_int(int(value))
        try:
            return _storable_int(int(str(value).strip()))
        except ValueError as exc:
            if "64 bits" in str(exc):
                raise
            raise ValueError(f"{value!r} is not an integer") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(number):  # JSON, and so a run record, has no NaN or infinity
            raise ValueError(f"{value!r} is not a finite number (a run record cannot hold it)")
        return number
    if annotation is str:
        return str(value)
    raise ValueError(f"cannot parse a value of type {annotation}")


def _storable_int(value: int) -> int:
    """``value`` if a run record can hold it (a signed 64-bit integer, as every reader of a record checks)."""
    if not -INT64 <= value < INT64:
        raise ValueError(f"{str(value)[:24]} does not fit in 64 bits (a run record cannot hold it)")
    return value


def apply_overrides(cfg, overrides: dict[str, Any], *, where: str):
    """Return a copy of ``cfg`` with ``overrides`` parsed against its field types; BadInput names the bad key."""
    types_ = field_types(type(cfg))
    values = {}
    for key, raw in overrides.items():
        if key not in types_:
            known = ", ".join(sorted(types_))
            raise BadInput(f"unknown parameter {key!r} for {where} (known: {known})")
        try:
            values[key] = parse_value(types_[key], raw)
        except ValueError as exc:
            raise BadInput(f"bad value for {where} parameter {key!r}: {exc}") from None
    try:
        return dataclasses.replace(cfg, **values)
    except (ValueError, TypeError) as exc:  # a Config's own __post_init__ check
        raise BadInput(f"bad configuration for {where}: {exc}") from None


def check_ranges(cfg, *, where: str) -> None:
    """Every field's value against its declared range (defaults and presets included, not only ``--set``)."""
    for key, annotation in field_types(type(cfg)).items():
        try:
            parse_value(annotation, getattr(cfg, key))
        except ValueError as exc:
            raise BadInput(f"bad value for {where} parameter {key!r}: {exc}") from None


def resolve(method_cls, preset: str, overrides: dict[str, Any] | None = None, data=None):
    """Defaults -> preset -> overrides -> the method's adaptation to ``data`` (when given). Returns the Config."""
    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    cfg = method_cls.Config()
    cfg = apply_overrides(cfg, method_cls.presets.get(preset, {}), where=f"{method_cls.name} preset {preset}")
    cfg = apply_overrides(cfg, overrides or {}, where=method_cls.name)
    if data is not None:
        cfg = method_cls().adapt(cfg, data)
    check_ranges(cfg, where=method_cls.name)
    return cfg


def variant_name(method_cls, preset: str, cfg, data=None) -> str:
    """``default``, or the parameters that differ from the preset's configuration (adapted to the same data) as
    ``k=v,k=v``."""
    base = dataclasses.asdict(resolve(method_cls, preset, data=data))
    changed = {k: v for k, v in dataclasses.asdict(cfg).items() if base.get(k) != v}
    if not changed:
        return "default"
    return ",".join(f"{k}={_fmt(v)}" for k, v in sorted(changed.items()))


def _fmt(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(map(str, value))
    return str(value)


def parse_assignments(items: list[str] | None, *, flag: str = "--set") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; BadInput for an item without ``=``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{flag} takes key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def validation_mode(cfg) -> str:
    """The training/validation split a configuration asks for (``stratified`` unless it has the field)."""
    return getattr(cfg, VALIDATION_FIELD, "stratified")


def transfer_mode(cfg) -> str:
    """The transfer set a configuration asks for (``all``, the whole training split, unless it has the field)."""
    return getattr(cfg, TRANSFER_FIELD, "all")
