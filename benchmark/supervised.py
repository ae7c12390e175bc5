"""Plain supervised training with cross-entropy: what the baselines (scratch student, teacher, label smoothing) do;
their presets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.contract import LearningRate, PositiveInt, Validation, identity_when_set, with_teacher
from benchmark.data.splits import parse_transfer
from benchmark.losses import SoftTargetLoss

# What a teacher knows (the teacher baseline's ``knowledge``): "trained" on the labels; "untrained", its initial
# weights (soft targets that carry no knowledge of the task); "shuffled_labels", trained on the training labels
# permuted at random, so what it learns of the inputs says nothing about their classes.
KNOWLEDGE = ("trained", "untrained", "shuffled_labels")


@dataclass
class SupervisedConfig:
    arch: str = "hinton_student"  # a registered architecture (benchmark.nn.ARCHITECTURES)
    view: str = "flat"  # input view: image, flat or pca:K[...]
    lr: LearningRate = 1e-3  # Adam learning rate (Keras default)
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 50  # upper bound; early stopping may end sooner
    patience: PositiveInt | None = 10  # epochs without a better validation NLL before stopping; None: every epoch
    validation: Validation = "stratified"  # training/validation split (see benchmark.contract)
    # The transfer set it trains on: "all" (the whole training split), "omit:C" (without class C) or "fraction:P"
    # (a stratified fraction P); validation and test stay whole (benchmark.data.splits). A scratch student gets
    # its method's, so the pair trains on the same examples.
    transfer: str = identity_when_set("all")
    # The initialisation stream of the role it trains (Role.init), e.g. a self-distilled generation's; None: the
    # (architecture, view) stream every method shares.
    init: str | None = identity_when_set(None)

    def __post_init__(self):
        parse_transfer(self.transfer)


# quick and paper: the notebook's recipe (early stopping, patience 10 on validation NLL) with the cap raised from
# its 50 epochs to 150. At 50 the budget audit found the distilled students of hinton_kd, dkd and fitnets ending at
# the cap with their best validation NLL in its last 10% (digits, mnist1d, mnist_5k) while their scratch students
# stopped by their patience: the cap, not the stopping rule, ended them. Patience ends a converged run as before,
# so the raise costs only the epochs a run still improves in. The data budget is the harness's.
SUPERVISED_PRESETS = {"smoke": {"epochs": 2}, "quick": {"epochs": 150}, "paper": {"epochs": 150}}
# A distillation method's presets (with benchmark.contract.TeacherFields): its student pairs with, and its teacher
# is, the very run `python -m benchmark all` makes for each baseline at the same preset.
DISTILLATION_PRESETS = with_teacher(SUPERVISED_PRESETS)
# A distillation method whose student keeps its own budget (a control's fixed epochs): only its teacher follows the
# baselines' presets, so it is still the very teacher run `all` makes; smoke shortens both.
OWN_BUDGET_PRESETS = {preset: {key: value for key, value in values.items()
                               if preset == "smoke" or key.startswith("teacher_")}
                      for preset, values in DISTILLATION_PRESETS.items()}


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Batch mean of −Σ_c t_c log softmax(z)_c with the target t = (1 − ε)·one-hot(y) + ε/C (ε = ``smoothing``;
    0: the plain cross-entropy)."""
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def train_supervised(run, cfg: SupervisedConfig, role: str, *, label_smoothing: float = 0.0,
                     knowledge: str = "trained"):
    """``role`` trained on cross-entropy with the labels (smoothed by ``label_smoothing`` ε: the target is
    (1 - ε)·one-hot + ε/C), or, by ``knowledge`` (:data:`KNOWLEDGE`), left untrained or trained on shuffled
    labels."""
    model = run.build(cfg.arch, cfg.view, init=getattr(cfg, "init", None))  # a paired role's own stream
    if knowledge == "untrained":
        return {role: model}
    labels = run.labels("train")
    if knowledge == "shuffled_labels":  # one fixed permutation per run: each example keeps one random label
        labels = labels[torch.randperm(len(labels), generator=run.generator("shuffled_labels")).to(labels.device)]
    elif knowledge != "trained":
        raise ValueError(f"knowledge {knowledge!r} is not one of {', '.join(KNOWLEDGE)}")

    def step(b):
        target = b.y if knowledge == "trained" else labels[b.idx]
        b.update({role: {"loss": smoothed_cross_entropy(b.forward(role), target, label_smoothing)}})

    return run.fit({role: model}, step, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                   patience=cfg.patience)


def train_distilled(run, cfg, role: str = "student"):
    """``role`` (``cfg.arch`` on ``cfg.view``) trained on Hinton et al.'s α·CE + (1 − α)·T²·KL against the required
    ``teacher``'s soft targets, with ``cfg``'s recipe: the controls' student (hinton_kd's loss with its defaults)."""
    teacher = run.required("teacher")
    criterion = SoftTargetLoss(run.logits(teacher, run.view_of(teacher), "train"), temperature=cfg.temperature,
                               alpha=cfg.alpha)

    def step(b):
        b.update({role: criterion(b.forward(role), b.y, b.idx)})

    return run.fit({role: run.build(cfg.arch, cfg.view)}, step, epochs=cfg.epochs, batch_size=cfg.batch_size,
                   lr=cfg.lr, patience=cfg.patience)
