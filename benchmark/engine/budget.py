"""A method's training budget, scaled: the configuration overrides that train a configuration ``factor`` times as
long (the budget audit compares each role of the default suite with the same configuration at 3x its budget).

The budget fields of a method are its class attribute ``budget_fields`` when it declares one, else every
``Config`` field named ``epochs`` or ``steps`` or ending in ``_epochs`` or ``_steps`` (a stage of the method's
own, e.g. subclass_kd's ``teacher_epochs``, or a floor such as ``min_steps``), except the shared teacher's fields
(:class:`benchmark.contract.TeacherFields`: hinton_kd's, dkd's and fitnets' ``teacher_*``), which are the
``teacher`` baseline's recipe, whose budget is audited as the teacher's own run.
An ``epochs`` field that early stopping may cut short is a maximum: scaling it lets the run go on as long as its
validation loss keeps improving, and patience is not a budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from benchmark.contract import TeacherFields

BUDGET_NAMES = ("epochs", "steps")  # fields that are a budget by their name
BUDGET_SUFFIXES = ("_epochs", "_steps")  # ... or by its ending


def method_class(info_or_method_cls):
    """The Method class of a discovered method (``MethodInfo``) or the class itself."""
    return getattr(info_or_method_cls, "cls", info_or_method_cls)


def budget_fields(info_or_method_cls) -> tuple[str, ...]:
    """The Config fields that make up a method's training budget (see the module docstring); ValueError when a
    declared one is not a field of its Config."""
    cls = method_class(info_or_method_cls)
    names = [f.name for f in dataclasses.fields(cls.Config)]
    declared = getattr(cls, "budget_fields", None)
    if declared is None:
        shared = {f.name for f in dataclasses.fields(TeacherFields)} if issubclass(cls.Config, TeacherFields) else ()
        return tuple(n for n in names if (n in BUDGET_NAMES or n.endswith(BUDGET_SUFFIXES)) and n not in shared)
    unknown = [n for n in declared if n not in names]
    if unknown:
        raise ValueError(f"{cls.name}: budget_fields {unknown} are not fields of its Config")
    return tuple(declared)


def scaled(info_or_method_cls, cfg, factor: float) -> dict[str, Any]:
    """Config overrides that multiply each budget field of ``cfg`` (a Config or its dict) by ``factor``, rounded
    to the nearest integer and at least 1; a field set to None (no budget of its own) is left out."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    values = cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)
    out = {}
    for name in budget_fields(info_or_method_cls):
        value = values.get(name)
        if value is not None:
            out[name] = max(1, round(value * factor))
    return out


def set_arguments(info_or_method_cls, cfg, factor: float) -> list[str]:
    """``scaled`` as command-line arguments: ``["--set", "METHOD.FIELD=VALUE", ...]``."""
    name = method_class(info_or_method_cls).name
    args = []
    for key, value in scaled(info_or_method_cls, cfg, factor).items():
        args += ["--set", f"{name}.{key}={value}"]
    return args
