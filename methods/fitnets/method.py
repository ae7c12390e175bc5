"""FitNets: hints for thin deep nets (Romero, Ballas, Kahou, Chassang, Gatta & Bengio, ICLR 2015, arXiv:1412.6550;
official code: adri-romsor/FitNets, Theano). Two stages, the second starting from the first's weights:

1. hints: the student's layers up to its guided layer, and a regressor r on top of them, learn to predict the
   teacher's hint layer: L_HT = 1/2 ||u_h(x) - r(v_g(x))||² (batch mean). r is Linear + ReLU, the hint's
   non-linearity (the paper: "u_h and r must be the same non-linearity"); the teacher is frozen and its hints are
   computed once, in eval mode.
2. knowledge distillation of the whole student from the teacher's logits: hinton_kd's soft-target loss with its
   defaults (T = 10, α = 0.1, T²), where the paper anneals the soft targets' weight (README.md).

The regressor is dropped after stage 1; with the student it trains as one stacked batch of repetitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from benchmark.budgets import DISTILLED_PRESETS
from benchmark.contract import (
    LearningRate,
    MethodBase,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Recipe,
    Role,
    TeacherFields,
    UnitInterval,
    Validation,
    shared_teacher,
)
from benchmark.losses import SoftTargetLoss
from benchmark.nn import keras_init


@dataclass
class Config(TeacherFields):  # the shared teacher (default: cnn_teacher on the image view)
    arch: str = "hinton_student"  # student architecture: the Hinton notebook's 784-300-10 (benchmark.archs)
    view: str = "flat"  # the student's input view (the teacher's: teacher_view)
    # The teacher's hint layer and the student's guided layer (features the architectures name). The paper takes
    # the middle layer of each; here the teacher's first dense layer (cnn_teacher: after its two conv blocks).
    hint_layer: Literal["hidden1", "hidden2"] = "hidden1"
    guided_layer: str = "hidden1"
    hint_epochs: NonNegativeInt = 10  # stage 1's epochs (0: no hints, plain KD); not early-stopped
    temperature: PositiveFloat = 10.0  # stage 2: hinton_kd's soft-target temperature T
    alpha: UnitInterval = 0.1  # stage 2: weight of the hard-label CE; the soft targets get (1 - alpha)·T²
    lr: LearningRate = 1e-3  # Adam learning rate of both stages (hinton_kd's recipe)
    batch_size: PositiveInt = 64  # batch size of both stages
    epochs: PositiveInt = 50  # upper bound on stage 2's epochs; early stopping may end sooner
    patience: PositiveInt | None = 10  # stage 2: epochs without a better validation NLL before stopping
    # Training/validation split of student, teacher and scratch student (see benchmark.contract)
    validation: Validation = "stratified"


def hint_loss(regressed: torch.Tensor, hints: torch.Tensor) -> torch.Tensor:
    """1/2 ||u_h - r(v_g)||², summed over the hint's features, averaged over the batch (the paper's L_HT)."""
    return 0.5 * (hints - regressed).pow(2).sum(1).mean()


def regressor(run, guided: int, hint: int) -> nn.Module:
    """r: the guided layer's width to the hint's, ReLU like the hint; Glorot-uniform from the run's seed."""
    r = nn.Sequential(nn.Linear(guided, hint), nn.ReLU())
    keras_init(r, run.generator("init", "fitnets_regressor"))
    return r


def feature_width(model: nn.Module, x: torch.Tensor, name: str) -> int:
    """How many values the feature ``name`` has per example (one example, eval mode, nothing changes)."""
    was_training = model.training
    with torch.no_grad():
        width = model.eval().features(x[:1], name).flatten(1).shape[1]
    model.train(was_training)
    return width


class Method(MethodBase):
    Config = Config
    presets = {preset: {**values, **({"hint_epochs": 1} if preset == "smoke" else {})}
               for preset, values in DISTILLED_PRESETS.items()}
    ablations = {"hint_epochs": [0, 10], "hint_layer": ["hidden1", "hidden2"]}

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def requires(self, cfg):
        return shared_teacher(cfg)

    def train(self, run, cfg):
        teacher = run.required("teacher")
        student = run.build(cfg.arch, cfg.view)
        if cfg.hint_epochs:
            hints = run.features(teacher, run.view_of(teacher), "train", cfg.hint_layer).flatten(1)
            guided = feature_width(student, run.view(cfg.view, "train"), cfg.guided_layer)

            def hint_step(b):
                regressed = b.apply("regressor", b.features("student", cfg.guided_layer).flatten(1))
                loss = hint_loss(regressed, hints[b.idx])
                b.update({"student": {"hint": loss}, "regressor": {}}, loss=loss)

            # Only the layers up to the guided layer get a gradient: the student's head is left as initialised.
            run.fit({"student": student, "regressor": regressor(run, guided, hints.shape[1])}, hint_step,
                    epochs=cfg.hint_epochs, batch_size=cfg.batch_size, lr=cfg.lr, curves=())

        criterion = SoftTargetLoss(run.logits(teacher, run.view_of(teacher), "train"), temperature=cfg.temperature,
                                   alpha=cfg.alpha)

        def step(b):
            b.update({"student": criterion(b.forward("student"), b.y, b.idx)})

        return run.fit({"student": student}, step, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                       patience=cfg.patience)
