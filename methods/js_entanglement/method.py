"""JS entanglement (notebook 000, ``js_entanglement_cifar10``): a CNN A and two small MLPs B and C on PCA
views of the same images, trained together online; the MLPs are pulled toward A and toward each other by a
Jensen-Shannon term.

Each step, for one batch (forward order A, B, C, all in training mode; then one Adam step each):

    A:  CE(y, A)
    B:  CE(y, B) + λ_e·D(B, sg A) + λ_e·D(B, sg C)
    C:  CE(y, C) + λ_e·D(C, sg A) + λ_e·D(C, sg B)

with sg the stop-gradient, D the JS divergence (nats), λ_e = λ_max·log10(1 + 9e/(E−1)), e = 0 … E−1.
The notebook adds ``mutual_loss = λ·JS(B, sg C) + λ·JS(C, sg B)`` to *both* B's and C's loss. Each model's
gradient is taken of its own loss with respect to its own weights, so B feels only the first term and C
only the second (in the other one the model is stopped). That is what is optimised here; the logged
training loss is the notebook's (with both terms). From epoch round(phase2_start·E) (20 of 30) the notebook
swaps D for the fraction of argmax mismatches, which has no gradient: ``phase2`` chooses that
(``argmax_as_published``), a differentiable replacement (``hard_labels``, cross-entropy against the
partner's argmax: the default) or nothing (``none``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from benchmark.contract import (
    LAMBDA,
    AdamEpsilon,
    LearningRate,
    MethodBase,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    Recipe,
    Role,
    UnitInterval,
    Validation,
)
from benchmark.metrics import agreement

from .losses import SCHEDULES, alignment, entangled_losses, js_divergence, kl_divergence, lambda_at  # noqa: F401
from .views import PCA_SEED_B, PCA_SEED_C, mlp_views, view_features, view_rank  # noqa: F401

ROLES = ("A", "B", "C")  # forward order of the notebook's training step
# The default min_steps: the notebook's own step count, 30 epochs of CIFAR-10 at batch 128 (10,560 steps on the
# harness's 45,000 training images). 30 epochs of digits, mnist1d or mnist_5k are 330-870 steps, and there the
# budget audit found every model still rising; at the former floor of 3,000 steps the MLPs B and C and their
# scratch students still ended with their best validation NLL in the last 10% of their epochs on every small
# dataset (README.md, "Budget on small data"). On CIFAR-10 and the whole Fashion-MNIST it changes nothing.
MIN_STEPS = 10_560


@dataclass
class Config:
    epochs: PositiveInt = 30  # E; every epoch is trained (the notebook has no validation split, no early stopping)
    # Fewest optimiser steps: adapt raises E to ceil(min_steps / steps per epoch) where the data are small, so that
    # the BatchNorm running statistics (Keras momentum 0.99, a ~100-step memory) and the slow MLPs catch up. The
    # default (MIN_STEPS) is shorter than the notebook's 30 epochs of CIFAR-10, where it changes nothing; 0: E as
    # given (the notebook, --as-published).
    min_steps: NonNegativeInt = MIN_STEPS
    batch_size: PositiveInt = 128  # the notebook's batch size
    lr: LearningRate = 5e-4  # Adam learning rate of each of the three models (the notebook's Adam(0.0005))
    adam_eps: AdamEpsilon = 1e-7  # Keras Adam epsilon (PyTorch's default is 1e-8)
    # K, size of the MLPs' PCA views (notebook: 100); capped at one less than the features a view reads and at
    # the rank of its training input (adapt)
    pca_components: PositiveInt = 100
    lambda_max: NonNegativeFloat = 0.1  # λ at the last epoch (the notebook's 0.1·log10(1 + 9) = 0.1)
    schedule: Literal["log", "linear", "constant", "zero"] = "log"  # shape of λ_e (see SCHEDULES)
    divergence: Literal["js", "kl"] = "js"  # phase-1 D: JS (notebook) or KL(sg partner ‖ self), nats
    # D after the switch: CE against the partner's argmax (default), the notebook's argmax mismatch
    # fraction (no gradient), or no alignment term.
    phase2: Literal["hard_labels", "argmax_as_published", "none"] = "hard_labels"
    phase2_start: UnitInterval = 20 / 30  # phase 2 from epoch round(phase2_start·E): the notebook's epoch 20 of 30
    # B/C read PCA of the top / bottom half of the image (first / second half of a 1-D signal): two genuinely
    # different views. "as_published": PCA (seed 42 / seed 123) of every pixel, which is one view twice.
    views: Literal["halves", "as_published"] = "halves"
    # Val/test PCA features standardised with the training split's statistics, or with their own
    # (the notebook's StandardScaler().fit_transform(x_test_pca)).
    scaler: Literal["train", "as_published"] = "train"
    # Training split: a seeded stratified 10% held out for validation curves (nothing is selected on it), or
    # "none", the notebook's whole training split
    validation: Validation = "stratified"


def steps_per_epoch(data, cfg: Config) -> int:
    """Batches in one epoch of this configuration's training split (``validation="none"`` trains on the
    validation examples too; the last batch may be incomplete)."""
    examples = data.size("train") + (data.size("val") if cfg.validation == "none" else 0)
    return math.ceil(examples / cfg.batch_size)


def min_epochs(data, cfg: Config) -> int:
    """E raised to at least ``min_steps`` optimiser steps on ``data``."""
    return max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch(data, cfg)))


def phase2_epoch(cfg: Config) -> int:
    """First epoch of phase 2 (``epochs`` or more: no phase 2)."""
    return round(cfg.phase2_start * cfg.epochs)


# ---- the method --------------------------------------------------------------------------------------------

def log_agreement_with_a(run, models) -> None:
    """Top-1 agreement of B and C with A (the notebook's teacher) on the val and test splits: the
    ``*_agreement`` rows hinton_kd's student gets against its teacher."""
    for split in ("val", "test"):
        if run.data.size(split):
            logits = {role: run.logits(models[role], run.roles[role].view, split) for role in ROLES}
            for role in ("B", "C"):
                run.log(role, f"{split}_agreement", agreement(logits[role], logits["A"]))


def step(b, cfg: Config, switch: int) -> None:
    """The notebook's step: forward A, B, C (training mode), then one Adam step each on its own loss."""
    weight = lambda_at(b.epoch, cfg.epochs, cfg.schedule, cfg.lambda_max)
    objective, parts = entangled_losses({r: b.forward(r) for r in ROLES}, b.y, weight, cfg, b.epoch >= switch)
    b.update(parts, loss=objective)


class Method(MethodBase):
    Config = Config
    # quick is the notebook's recipe (30 epochs, K = 100 capped by adapt) with at least MIN_STEPS steps: nothing
    # is cut; the data budget is the harness's.
    presets = {"smoke": {"epochs": 3, "min_steps": 0, "pca_components": 20}, "quick": {}, "paper": {}}
    ablations = {"divergence": ["js", "kl"], "schedule": ["log", "linear", "constant", "zero"],
                 "phase2": ["hard_labels", "argmax_as_published", "none"]}
    notebook_defects = {
        "phase2": ("argmax_as_published", "phase 2 pulls by an argmax mismatch fraction: no gradient, CE only"),
        "scaler": ("as_published", "val/test PCA features standardised by a scaler fitted on those splits"),
        "views": ("as_published", "B and C read PCAs of all pixels differing only in random_state: one view"),
    }
    # views: halves B 76.8 / C 66.1 on digits, as published (one view twice) 87.6 / 75.8; min_steps: see MIN_STEPS
    named_fields = ("views", "min_steps")
    as_published = {"phase2": "argmax_as_published", "scaler": "as_published", "views": "as_published",
                    "validation": "none",  # the notebook trains on its whole training split
                    "min_steps": 0}  # and for 30 epochs whatever the data

    def adapt(self, cfg, data):
        """K at most one less than the features each MLP's view reads (the notebook's K = 100 is for CIFAR-10's
        3,072; digits has 64, mnist1d 40, and their halves half that) and at most the rank of either view's
        training input (a component beyond it is noise; the harness would cap it anyway, and the config then
        says what ran: 30 on digits, whose bottom half has two constant pixels)."""
        k = min(cfg.pca_components, view_features(data, cfg) - 1, view_rank(data, cfg))
        # At least min_steps steps (README.md, "Budget on small data"); the λ schedule and the phase-2 switch
        # follow the adapted E, and so do the scratch students' epochs (roles reads this configuration).
        return dataclasses.replace(cfg, pca_components=k, epochs=min_epochs(data, cfg))

    def roles(self, cfg, data):
        # Each model's architecture and view trained alone, with the notebook's optimiser and budget (every epoch).
        recipe, views = Recipe.of(cfg), mlp_views(cfg)
        # A trains on cross-entropy alone (the notebook's teacher): no distillation signal, the method's anchor
        return {"A": Role("js_cnn", "image", scratch=recipe, distilled=False),
                "B": Role("js_mlp_b", views["B"], scratch=recipe),
                "C": Role("js_mlp_c", views["C"], scratch=recipe)}

    def train(self, run, cfg):
        models = {role: run.build(r.arch, r.view) for role, r in run.roles.items()}
        for epoch in range(cfg.epochs):
            for role in ("B", "C"):
                run.log(role, LAMBDA, lambda_at(epoch, cfg.epochs, cfg.schedule, cfg.lambda_max), epoch)
                run.log(role, "phase", 2 if epoch >= phase2_epoch(cfg) else 1, epoch)
        # The notebook's per-epoch panels: test accuracy and ROC-AUC (val: for reading only).
        run.fit(models, lambda b: step(b, cfg, phase2_epoch(cfg)), epochs=cfg.epochs, batch_size=cfg.batch_size,
                lr=cfg.lr, adam_eps=cfg.adam_eps, curves=("acc", "nll", "auc"))
        log_agreement_with_a(run, models)
        return models
