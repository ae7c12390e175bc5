"""The method contract: what a folder under ``methods/`` or ``baselines/`` provides.

A method is a class ``Method`` (subclass of :class:`MethodBase`) in ``method.py``, with a ``Config`` dataclass whose
defaults are its notebook's settings (one comment per field, ranges declared with :class:`Range`), ``presets`` and
``ablations``, a ``roles(cfg, data)`` declaration and ``train(run, cfg)``. Its name is its folder's (set by
discovery). The architectures it builds live beside it in ``models.py`` (registered with
:func:`benchmark.nn.architecture`). What ``python -m benchmark profile`` checks, and which fields count a run's epochs
for the scheduler, live beside it in ``speed.toml`` (:class:`Speed`): none of it changes a number. Everything generic
(data, seeding, batching, the fit loop, timing, evaluation, storage) is the harness's job: see
:class:`benchmark.engine.context.RunContext` and :class:`benchmark.engine.fit.Batch`.

A ``Config`` field named ``validation`` chooses the training/validation split the harness gives the run
(``"stratified"``: a seeded stratified 10% hold-out; ``"keras_last"``: the last 10% of the training arrays, as
Keras's ``validation_split``; ``"none"``: train on the whole training split). A field named ``transfer`` cuts the
training split to a transfer set (``"all"``, ``"omit:C"``, ``"fraction:P"``: :mod:`benchmark.data.splits`); a run
whose transfer set omits a class gets that class's metrics and their bias correction
(:mod:`benchmark.omitted`). Paired scratch students get the same split and transfer set; a required teacher
trains on the whole training split.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch

from benchmark.data.splits import parse_transfer


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


# Metric names that mean something beyond their run: the tables and figures read them.
UNTRAINED = "_untrained"  # "<metric>_untrained": the same measurement on the network before training (same run)
LAMBDA = "lambda"  # a loss term's weight at each epoch (drawn as a schedule)
MEAN_OUTPUT = "mean_output_"  # "mean_output_<unit>": an output unit's batch mean at each step (output evolution)

TEACHER = "teacher"  # the shared teacher baseline (baselines/teacher), loaded by the distillation methods
LABEL_SMOOTHING = "label_smoothing"  # the baseline each distilled role is also compared with (paired as scratch)
SENSITIVITY = "sensitivity"  # ``MethodBase.family`` of a positive control: its comparisons are a family of their own
# ``MethodBase.family`` of a control for what distillation is not (a teacher that knows nothing): a family of its own,
# shown beside the positive controls and never in the main table or the ranking of methods
CONTROL = "control"
# Final metrics of a positive control's roles (the distilled student and its scratch partner alike): overall test
# accuracy, the omitted class's test accuracy, and both after raising the omitted class's logit bias by the amount
# chosen on the validation split (Hinton et al. 2015, section 3). The omitted class is in the config's ``transfer``.
ACCURACY = "test_acc"
OMITTED_ACCURACY = "test_omitted_acc"
ACCURACY_CORRECTED = "test_corrected_acc"
OMITTED_ACCURACY_CORRECTED = "test_omitted_corrected_acc"
OMITTED_BIAS = "omitted_bias"  # the omitted class's logit bias chosen on the validation split (logit units)
CONTROL_METRICS = (OMITTED_ACCURACY, ACCURACY_CORRECTED, OMITTED_ACCURACY_CORRECTED)


# Field metadata: a Config field added after runs were stored, part of a run's identity only when it is not its
# default, so that every run stored before it existed keeps its id.
WHEN_SET = "identity_when_set"


def identity_when_set(default: Any = None) -> Any:
    """A Config field's ``field(...)`` that a run's id hashes only when it differs from ``default``."""
    return field(default=default, metadata={WHEN_SET: True})


@dataclass(frozen=True)
class Recipe:
    """How the ``scratch_student`` baseline trains a role's architecture alone, without the method: Adam's learning
    rate, the batch size, the epochs, and the early-stopping patience on validation NLL (None: every epoch is
    trained). ``arch`` and ``view`` are the role's own unless given. The planner turns it into the baseline's
    configuration (with the method's validation split) and pairs the role with that run."""

    lr: float
    batch_size: int
    epochs: int
    patience: int | None = None
    arch: str | None = None
    view: str | None = None

    @classmethod
    def of(cls, cfg, **changes) -> Recipe:
        """The recipe of a Config's ``lr``, ``batch_size``, ``epochs`` and ``patience`` fields (a Config without a
        ``patience`` field trains every epoch), with ``changes``."""
        recipe = cls(lr=cfg.lr, batch_size=cfg.batch_size, epochs=cfg.epochs, patience=getattr(cfg, "patience", None))
        return dataclasses.replace(recipe, **changes)

    def overrides(self, arch: str, view: str) -> dict[str, Any]:
        """The scratch student's config overrides for a role of architecture ``arch`` reading ``view``."""
        return {"arch": self.arch or arch, "view": self.view or view, "lr": self.lr, "batch_size": self.batch_size,
                "epochs": self.epochs, "patience": self.patience}


@dataclass(frozen=True)
class Role:
    """One trained model a method ends with, and how to train the same architecture alone.

    ``scratch`` is the :class:`Recipe` the ``scratch_student`` baseline trains this role's architecture and input
    view with, without the method. The harness runs that baseline for the same dataset and repetition and pairs
    the role with it. ``None`` means the role has no scratch counterpart (a teacher, or a label-free
    representation).

    ``pairing`` says what the pair shares: ``"init"`` (the same initial weights, bit for bit, and the same batch
    order) or ``"order"`` (the same batch order and data only: e.g. a role whose architecture differs from its
    scratch student's).
    """

    arch: str
    view: str
    scratch: Recipe | None = None
    # False for roles whose outputs are not class scores (e.g. SKA's sigmoid layers): the harness then does not
    # compute accuracy/AUC/NLL for them; the method logs its own metrics.
    classifier: bool = True
    pairing: Literal["init", "order"] = "init"
    # False for a role that trains on its own loss alone and receives no distillation signal (e.g. js_entanglement's
    # A, cross-entropy only): the report shows its accuracy as the method's anchor and compares nothing.
    distilled: bool = True
    # Build options the role's model is made with (e.g. a head size), recorded with the role.
    options: dict[str, Any] = field(default_factory=dict)
    # The role's own initialisation stream (a name, e.g. "born_again:2"), for a self-distilling role whose
    # architecture and view are its teacher's: built with ``run.build(arch, view, init=...)`` it then starts from
    # other weights than the teacher did. Its scratch student is built from the same stream, so the pair still
    # shares its initial weights. None: the stream of (architecture, view) every method shares.
    init: str | None = None


@dataclass
class TeacherFields:
    """The shared ``teacher`` baseline a distillation method loads, as fields of its Config: ``class
    Config(TeacherFields)``, ``requires`` returns :func:`shared_teacher` (cfg) and the presets are
    :data:`benchmark.budgets.DISTILLED_PRESETS` (the baselines' presets, the student capped at 300 epochs). The
    teacher reads ``teacher_view`` (the Config's ``view`` is the student's) and trains on the Config's
    ``validation`` split; equal values share one cached teacher run with ``python -m benchmark run teacher``. A
    method computes the teacher's logits and features on the teacher's own view (``run.logits(teacher,
    run.view_of(teacher), split)``).

    Defaults: ``cnn_teacher`` on the ``image`` view (every dataset has one: its examples with their channel axis),
    Adam 1e-3, batch 64, up to 50 epochs, patience 10. The Hinton notebook's MLP teacher (``hinton_teacher`` on
    ``flat``) was measured no better than its 784-300-10 student on three of four datasets, so that a student
    distilled from it had nothing to learn; the as-published rows keep it."""

    teacher_arch: str = "cnn_teacher"  # teacher architecture (benchmark.archs)
    teacher_view: str = "image"  # the teacher's input view (the student's is ``view``)
    teacher_lr: LearningRate = 1e-3  # teacher's Adam learning rate
    teacher_batch_size: PositiveInt = 64  # teacher's batch size
    teacher_epochs: PositiveInt = 50  # upper bound on the teacher's epochs
    teacher_patience: PositiveInt | None = 10  # teacher's early-stopping patience on validation NLL
    # What the teacher knows: "trained"; "untrained" or "shuffled_labels" make the knowledge-free control teacher
    teacher_knowledge: Literal["trained", "untrained", "shuffled_labels"] = identity_when_set("trained")

    def __post_init__(self):
        if hasattr(self, "transfer"):  # a method's transfer set (the teacher itself trains on the whole split)
            parse_transfer(self.transfer)
        if getattr(self, "validation", None) == "none" and (
                getattr(self, "patience", None) is not None or self.teacher_patience is not None):
            raise ValueError("validation='none' holds out nothing for early stopping: "
                             "also set patience=none and teacher_patience=none")


# The Hinton notebook's teacher, for an as-published row: ``as_published = {**NOTEBOOK_TEACHER, ...}``.
NOTEBOOK_TEACHER = {"teacher_arch": "hinton_teacher", "teacher_view": "flat"}


def shared_teacher(cfg: TeacherFields) -> dict[str, dict[str, Any]]:
    """``requires()`` of a method that distils the shared teacher: the ``teacher`` baseline's config."""
    teacher = {"arch": cfg.teacher_arch, "view": cfg.teacher_view, "lr": cfg.teacher_lr,
               "batch_size": cfg.teacher_batch_size, "epochs": cfg.teacher_epochs,
               "patience": cfg.teacher_patience, "knowledge": cfg.teacher_knowledge}
    if hasattr(cfg, "validation"):
        teacher["validation"] = cfg.validation
    return {TEACHER: teacher}


def required_method(key: str) -> str:
    """The method or baseline a ``requires`` key names: ``"born_again#2"`` is a run of ``born_again``."""
    return key.partition("#")[0]


def with_teacher(presets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each preset's values for the student, and the same values for the teacher's ``teacher_`` fields."""
    return {preset: {**values, **{f"teacher_{k}": v for k, v in values.items()}} for preset, values in presets.items()}


SPEED_TARGETS = ("max_ratio_to_scratch", "min_peak_fraction", "min_textbook_speedup")
BUDGET_KEYS = ("epochs", "batch_size")


@dataclass(frozen=True)
class Speed:
    """A folder's ``speed.toml``, beside ``method.py``: what ``python -m benchmark profile`` checks for the method's
    step (``[targets]``: ``max_ratio_to_scratch``, its step over its scratch students' steps; ``min_peak_fraction``,
    of the in-process matmul peak; ``min_textbook_speedup``, against distillation as a tutorial writes it), the other
    configurations it times (``variants = ["key=value,key=value"]``), and which Config fields hold a run's epochs
    and batch size (``[budget]``, default ``epochs`` and ``batch_size``; a sub-table ``[budget."field=value"]``
    for the configurations with that value), for the scheduler's estimate before a run has been timed.

    It is not in ``method.py`` because none of it changes a number: a run's id hashes the folder's Python files, so
    editing ``speed.toml`` re-runs nothing."""

    targets: dict[str, float] = field(default_factory=dict)
    variants: tuple[str, ...] = ()
    budget: dict[str, str] = field(default_factory=dict)
    when: dict[str, dict[str, str]] = field(default_factory=dict)  # "field=value" -> budget fields

    @classmethod
    def parse(cls, text: str) -> Speed:
        """ValueError (one line) for anything but the keys above."""
        doc = tomllib.loads(text)
        unknown = set(doc) - {"targets", "variants", "budget"}
        if unknown:
            raise ValueError(f"speed.toml: unknown keys {sorted(unknown)} (known: targets, variants, budget)")
        targets = doc.get("targets", {})
        bad = [k for k, v in targets.items() if k not in SPEED_TARGETS or not isinstance(v, (int, float))]
        if bad:
            raise ValueError(f"speed.toml: bad targets {bad} (known, each a number: {', '.join(SPEED_TARGETS)})")
        variants = doc.get("variants", [])
        if not isinstance(variants, list) or not all(isinstance(v, str) and "=" in v for v in variants):
            raise ValueError('speed.toml: variants is a list of "key=value[,key=value]"')
        budget, when = {}, {}
        for key, value in doc.get("budget", {}).items():
            table = value if "=" in key else {key: value}
            if not isinstance(table, dict) or not all(k in BUDGET_KEYS and isinstance(v, str)
                                                      for k, v in table.items()):
                raise ValueError(f"speed.toml: [budget] names the fields of {', '.join(BUDGET_KEYS)}, got {key!r}")
            (when.setdefault(key, {}) if "=" in key else budget).update(table)
        return cls({k: float(v) for k, v in targets.items()}, tuple(variants), budget, when)

    def budget_fields(self, cfg) -> dict[str, str]:
        """The Config fields that hold ``cfg``'s epochs and batch size."""
        fields = {"epochs": "epochs", "batch_size": "batch_size", **self.budget}
        for condition, table in self.when.items():
            name, _, value = condition.partition("=")
            if str(getattr(cfg, name.strip(), None)) == value.strip():
                fields.update(table)
        return fields

    def check(self, config_cls) -> None:
        """ValueError if a field named here is not one of ``config_cls``'s."""
        names = {f.name for f in dataclasses.fields(config_cls)}
        named = list(self.budget.values()) + [c.partition("=")[0].strip() for c in self.when]
        named += [v for table in self.when.values() for v in table.values()]
        missing = sorted(set(named) - names)
        if missing:
            raise ValueError(f"speed.toml names {missing}, which are not Config fields")


@dataclass
class Trained:
    """What ``train`` may return instead of a plain ``{role: model}`` dict: the models and extra metric rows
    (``{"role", "metric", "value"}`` and optionally ``"epoch"``)."""

    models: dict[str, torch.nn.Module]
    rows: list[dict[str, Any]] = field(default_factory=list)


class MethodBase:
    """Base class of every method and baseline. Subclasses set the class attributes and implement ``train``."""

    name: ClassVar[str] = ""  # the folder's name, set by discovery
    # A dataclass; each field's default is the notebook's value, with a comment saying what it is.
    Config: ClassVar[type] = None  # type: ignore[assignment]
    # Overrides of Config fields per preset ("smoke": seconds, "quick": the notebook's recipe on a budget that
    # converges, "paper": the notebook's full budget). The data budget per preset is the harness's
    # (benchmark.engine.config.DATA_PRESETS, per kind of device), shared by every method so that paired runs see the
    # same examples.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # Parameter -> values; ``ablate`` varies one at a time around the defaults (``--grid``: the product).
    ablations: ClassVar[dict[str, list[Any]]] = {}
    # True for baselines whose trained models other runs load (the teacher), and for a method whose every
    # configuration may be loaded by another of its runs (the generations of a chain): their checkpoints are kept.
    provides_cache: ClassVar[bool] = False
    # The folder's speed.toml (set by discovery), and the two parts ``python -m benchmark profile`` reads.
    speed: ClassVar[Speed] = Speed()
    speed_targets: ClassVar[dict[str, float]] = {}
    profile_variants: ClassVar[tuple[str, ...]] = ()
    # Each notebook behaviour the defaults correct, as {field: (the notebook's value, one line on what it does)}.
    # ``python -m benchmark defects`` runs each alone against the default configuration, paired, and the report
    # tabulates its effect.
    notebook_defects: ClassVar[dict[str, tuple[Any, str]]] = {}
    # Every override that makes a run notebook-faithful (the defects above, the notebook's data split and views):
    # ``--as-published``.
    as_published: ClassVar[dict[str, Any]] = {}
    # The fields whose default differs from the notebook's in a way that changes the method's number: the main
    # table names them in the default's row (e.g. "js_entanglement · views=halves"), beside the as-published row.
    named_fields: ClassVar[tuple[str, ...]] = ()
    # The report family a method's comparisons belong to: None, a method whose effect the benchmark asks about;
    # ``SENSITIVITY``, a positive control (an effect known to exist), reported first and corrected apart;
    # ``CONTROL``, a control for what distillation is not (its Δ against scratch is regularisation, not transfer).
    family: ClassVar[str | None] = None

    def adapt(self, cfg, data):
        """The configuration fitted to ``data`` (a dataset: ``input_shape``, ``num_classes``, ``size(split)``,
        ``view_shape(spec)``), e.g. a PCA size capped by the number of input features. Called when planning;
        the adapted configuration is the one stored and hashed. Default: unchanged."""
        return cfg

    def roles(self, cfg, data) -> dict[str, Role]:
        """The models ``train`` returns, by role name."""
        raise NotImplementedError

    def requires(self, cfg) -> dict[str, dict[str, Any]]:
        """Runs whose trained models this configuration loads (``run.required(key)``), as ``{key: config
        overrides}``. A key is a method or baseline name (this method's own included: a chain of stages or
        generations), or ``"name#alias"`` for a further run of the same method (``"born_again#1"``,
        ``"born_again#2"``: several of its configurations). They are planned and trained first, as runs of their
        own; a run never starts another run. Each must keep its checkpoint (``saves_models`` of the required
        configuration), which is checked when planning."""
        return {}

    def saves_models(self, cfg) -> bool:
        """Whether this configuration's trained models are kept as a checkpoint, for the runs that load them: every
        run of a baseline or method that ``provides_cache`` (the teacher; a chain whose every generation may be
        loaded by the next), and, of a method that trains a stage as a run of its own (its default configuration
        requires the method itself), the configurations that require nothing of it. Override it to say otherwise:
        a run that requires a configuration this returns False for is refused when planning."""
        if self.provides_cache:
            return True
        def own(c) -> bool:
            return any(required_method(key) == self.name for key in self.requires(c))

        return not own(cfg) and own(self.Config())

    def budget(self, cfg, data) -> tuple[int, int | None]:
        """(epochs, batch size; None: full batch) of this configuration's training, for the scheduler's estimate
        of how long a run takes before one has been timed: the fields ``speed.toml`` names (default ``epochs``,
        ``batch_size``)."""
        fields = self.speed.budget_fields(cfg)
        return int(getattr(cfg, fields["epochs"], 1)), getattr(cfg, fields["batch_size"], None)

    def skip(self, cfg, data) -> str | None:
        """A reason why this configuration does not apply to ``data`` (recorded as ``skipped``), or None."""
        return None

    def train(self, run, cfg) -> dict[str, torch.nn.Module] | Trained:
        raise NotImplementedError
