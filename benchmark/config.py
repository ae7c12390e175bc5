"""Resolving a method's configuration: defaults, then the preset, then ``--set`` overrides parsed by type.

Values given on the command line are parsed against the ``Config`` dataclass's annotations (never ``eval``):
``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` (a closed set of choices), ``X | None`` and tuples of those.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

PRESETS = ("smoke", "quick", "paper")

# Data budget per preset, shared by every method so that paired runs see the same examples. ``None`` is the whole
# split. "quick" keeps the full small datasets and 10,000 training examples of the large ones.
DATA_PRESETS: dict[str, dict[str, int | None]] = {
    "smoke": {"max_train": 600, "max_test": 500},
    "quick": {"max_train": 10_000, "max_test": None},
    "paper": {"max_train": None, "max_test": None},
}


class BadInput(ValueError):
    """User input that cannot be honoured; ``str()`` is one line saying what is wrong and how to fix it."""


def field_types(config_cls) -> dict[str, Any]:
    return typing.get_type_hints(config_cls, include_extras=False)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def parse_value(annotation: Any, value: Any) -> Any:
    """Convert ``value`` (usually a string from the command line) to ``annotation``; ValueError if it does not fit."""
    origin = get_origin(annotation)
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
            if inner in (int, float):
                text = text.replace("x", ",")  # "256x128x64" is a shell-friendly way to write sizes
            parts = [p for p in text.split(",") if p.strip()] if text else []
        else:
            parts = list(value)
        return tuple(parse_value(inner, p.strip() if isinstance(p, str) else p) for p in parts)
    if annotation is bool:
        return value if isinstance(value, bool) else _parse_bool(str(value))
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
    if annotation is str:
        return str(value)
    raise ValueError(f"cannot parse a value of type {annotation}")


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
    return dataclasses.replace(cfg, **values)


def resolve(method_cls, preset: str, overrides: dict[str, Any] | None = None):
    """Defaults -> preset -> overrides. Returns the Config instance."""
    if preset not in PRESETS:
        raise BadInput(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    cfg = method_cls.Config()
    cfg = apply_overrides(cfg, method_cls.presets.get(preset, {}), where=f"{method_cls.name} preset {preset}")
    return apply_overrides(cfg, overrides or {}, where=method_cls.name)


def variant_name(method_cls, preset: str, cfg) -> str:
    """``default``, or the parameters that differ from the preset's configuration as ``k=v,k=v``."""
    base = dataclasses.asdict(resolve(method_cls, preset))
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
