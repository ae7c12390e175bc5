"""The method contract: what a folder under ``methods/`` or ``baselines/`` provides.

A method is a class ``Method`` (subclass of :class:`MethodBase`) in ``method.py``, with a ``name``, a ``Config``
dataclass whose defaults are its notebook's settings (one comment per field, ranges declared with :class:`Range`),
``presets`` and ``ablations``, a ``roles(cfg, data)`` declaration and ``train(run, cfg)``. The architectures it
builds live beside it in ``models.py`` (registered with :func:`benchmark.nn.architecture`). Everything generic
(data, seeding, batching, the fit loop, timing, evaluation, storage) is the harness's job: see
:class:`benchmark.engine.context.RunContext` and :class:`benchmark.engine.fit.Batch`.

A ``Config`` field named ``validation`` chooses the training/validation split the harness gives the run
(``"stratified"``: a seeded stratified 10% hold-out; ``"keras_last"``: the last 10% of the training arrays, as
Keras's ``validation_split``; ``"none"``: train on the whole training split). Paired scratch students get the same.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric Config field: ``Annotated[float, Range(gt=0, le=1)]``. NaN is never allowed;
    a bound left ``None`` is open. Checked before anything is planned (bad values are bad input, exit 2)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: float) -> str | None:
        """None if ``value`` is allowed, else what is wrong (one line)."""
        if isinstance(value, float) and math.isnan(value):
            return "NaN is not a value"
        for bound, ok, word in ((self.ge, lambda b: value >= b, ">="), (self.gt, lambda b: value > b, ">"),
                                (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<")):
            if bound is not None and not ok(bound):
                return f"{value!r} is not {word} {bound:g}"
        if isinstance(value, float) and math.isinf(value):
            return f"{value!r} is not finite"
        return None

    def text(self) -> str:
        parts = [f"{word} {b:g}" for b, word in ((self.ge, ">="), (self.gt, ">"), (self.le, "<="), (self.lt, "<"))
                 if b is not None]
        return " and ".join(parts) or "finite"


# Ranges that recur in every Config.
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
UnitInterval = Annotated[float, Range(ge=0, le=1)]
LearningRate = Annotated[float, Range(gt=0, le=1)]  # Adam beyond 1 only diverges
AdamEpsilon = Annotated[float, Range(gt=0, le=1)]
Validation = Literal["stratified", "keras_last", "none"]


@dataclass(frozen=True)
class Role:
    """One trained model a method ends with, and how to train the same architecture alone.

    ``scratch`` holds the fields of the ``scratch_student`` baseline's config that reproduce this role's
    architecture, input view and optimisation recipe without the method (e.g. ``{"arch": "hinton_student",
    "view": "flat", "lr": 1e-3, "batch_size": 64, "epochs": 50, "patience": 10}``). The harness runs that baseline
    for the same dataset and repetition and pairs the role with it. ``None`` means the role has no scratch
    counterpart (a teacher, or a label-free representation).

    ``pairing`` says what the pair shares: ``"init"`` (the same initial weights, bit for bit, and the same batch
    order) or ``"order"`` (the same batch order and data only: e.g. a role whose architecture differs from its
    scratch student's).
    """

    arch: str
    view: str
    scratch: dict[str, Any] | None = None
    # False for roles whose outputs are not class scores (e.g. SKA's sigmoid layers): the harness then does not
    # compute accuracy/AUC/NLL for them; the method logs its own metrics.
    classifier: bool = True
    pairing: Literal["init", "order"] = "init"
    # False for a role that trains on its own loss alone and receives no distillation signal (e.g. js_entanglement's
    # A, cross-entropy only): the report shows its accuracy as the method's anchor and compares nothing.
    distilled: bool = True
    # Build options the role's model is made with (e.g. a head size), recorded with the role.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trained:
    """What ``train`` may return instead of a plain ``{role: model}`` dict: the models and extra metric rows
    (``{"role", "metric", "value"}`` and optionally ``"epoch"``)."""

    models: dict[str, torch.nn.Module]
    rows: list[dict[str, Any]] = field(default_factory=list)


class MethodBase:
    """Base class of every method and baseline. Subclasses set the class attributes and implement ``train``."""

    name: ClassVar[str] = ""
    # A dataclass; each field's default is the notebook's value, with a comment saying what it is.
    Config: ClassVar[type] = None  # type: ignore[assignment]
    # Overrides of Config fields per preset ("smoke": seconds, "quick": the notebook's recipe on a budget that
    # converges, "paper": the notebook's full budget). The data budget per preset is the harness's
    # (benchmark.engine.config.DATA_PRESETS), shared by every method so that paired runs see the same examples.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # Parameter -> values; ``ablate`` varies one at a time around the defaults (``--grid``: the product).
    ablations: ClassVar[dict[str, list[Any]]] = {}
    # True for baselines whose trained models other runs load (the teacher): their checkpoints are kept.
    provides_cache: ClassVar[bool] = False
    # What ``python -m benchmark profile`` checks for this method's step: ``max_ratio_to_scratch`` (its step over
    # its scratch students' steps), ``min_peak_fraction`` (of the in-process matmul peak), ``min_textbook_speedup``
    # (against distillation as a tutorial writes it).
    speed_targets: ClassVar[dict[str, float]] = {}
    # Other configurations ``profile`` times by default, as "key=value[,key=value]".
    profile_variants: ClassVar[tuple[str, ...]] = ()
    # Each notebook behaviour the defaults correct, as {field: (the notebook's value, one line on what it does)}.
    # ``python -m benchmark defects`` runs each alone against the default configuration, paired, and the report
    # tabulates its effect.
    notebook_defects: ClassVar[dict[str, tuple[Any, str]]] = {}
    # Every override that makes a run notebook-faithful (the defects above, the notebook's data split and views):
    # ``--as-published``.
    as_published: ClassVar[dict[str, Any]] = {}

    def adapt(self, cfg, data):
        """The configuration fitted to ``data`` (a dataset: ``input_shape``, ``num_classes``, ``size(split)``,
        ``view_shape(spec)``), e.g. a PCA size capped by the number of input features. Called when planning;
        the adapted configuration is the one stored and hashed. Default: unchanged."""
        return cfg

    def roles(self, cfg, data) -> dict[str, Role]:
        """The models ``train`` returns, by role name."""
        raise NotImplementedError

    def requires(self, cfg) -> dict[str, dict[str, Any]]:
        """Runs whose trained models this configuration loads (``run.required(name)``), as ``{method or baseline
        name: config overrides}``. They are planned and trained first, as runs of their own; a run never starts
        another run."""
        return {}

    def saves_models(self, cfg) -> bool:
        """Whether this configuration's trained models are kept as a checkpoint (for runs that require it)."""
        return self.provides_cache

    def budget(self, cfg, data) -> tuple[int, int | None]:
        """(epochs, batch size; None: full batch) of this configuration's training, for the scheduler's estimate
        of how long a run takes before one has been timed. Default: the ``epochs`` and ``batch_size`` fields."""
        return int(getattr(cfg, "epochs", 1)), getattr(cfg, "batch_size", None)

    def skip(self, cfg, data) -> str | None:
        """A reason why this configuration does not apply to ``data`` (recorded as ``skipped``), or None."""
        return None

    def train(self, run, cfg) -> dict[str, torch.nn.Module] | Trained:
        raise NotImplementedError


def config_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
