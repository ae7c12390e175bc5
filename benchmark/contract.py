"""The method contract: what a folder under ``methods/`` or ``baselines/`` provides.

A method is a class ``Method`` (subclass of :class:`MethodBase`) with a ``name``, a ``Config`` dataclass whose defaults
are its notebook's settings, ``presets`` and ``ablations``, a ``roles(cfg)`` declaration and ``train(run, cfg)``.
Everything generic (data, seeding, batching, timing, evaluation, storage) is the harness's job: see
:class:`benchmark.run.RunContext`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class Role:
    """One trained model a method ends with, and how to train the same architecture alone.

    ``scratch`` holds the fields of the ``scratch_student`` baseline's config that reproduce this role's
    architecture, input view and optimisation recipe without the method (e.g. ``{"arch": "hinton_student",
    "view": "flat", "lr": 1e-3, "batch_size": 64, "epochs": 50, "patience": 10}``). The harness runs that baseline
    for the same dataset and repetition and pairs the role with it. ``None`` means the role has no scratch
    counterpart (a teacher, or a label-free representation).
    """

    arch: str
    view: str
    scratch: dict[str, Any] | None = None
    # False for roles whose outputs are not class scores (e.g. SKA's sigmoid layers): the harness then does not
    # compute accuracy/AUC/NLL for them; the method logs its own metrics.
    classifier: bool = True


@dataclass
class Trained:
    """What ``train`` may return instead of a plain ``{role: model}`` dict."""

    models: dict[str, torch.nn.Module]
    rows: list[dict[str, Any]] = field(default_factory=list)


class MethodBase:
    """Base class of every method and baseline. Subclasses set the class attributes and implement ``train``."""

    name: ClassVar[str] = ""
    # A dataclass; each field's default is the notebook's value, with a comment saying what it is.
    Config: ClassVar[type] = None  # type: ignore[assignment]
    # Overrides of Config fields per preset ("smoke": seconds, "quick": minutes for the whole suite, "paper": the
    # notebook's full budget). The data budget per preset is the harness's (benchmark.config.DATA_PRESETS), shared
    # by every method so that paired runs see the same examples.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # Parameter -> values; ``ablate`` expands the cartesian product.
    ablations: ClassVar[dict[str, list[Any]]] = {}
    # True for baselines the runner schedules before the methods (their outputs are cached and reused).
    provides_cache: ClassVar[bool] = False

    def roles(self, cfg) -> dict[str, Role]:
        """The models ``train`` returns, by role name."""
        raise NotImplementedError

    def requires(self, cfg) -> dict[str, dict[str, Any]]:
        """Cache-providing baselines this configuration uses through ``run.baseline_model``, as
        ``{baseline name: config overrides}``. The runner schedules them before the method, so the method finds
        them ready (and its wall time does not include training them)."""
        return {}

    def skip(self, cfg, dataset) -> str | None:
        """A reason why this configuration does not apply to ``dataset`` (recorded as ``skipped``), or None."""
        return None

    def train(self, run, cfg) -> dict[str, torch.nn.Module] | Trained:
        raise NotImplementedError


def config_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
