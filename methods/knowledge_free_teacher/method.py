"""Control for what distillation is not: Hinton et al.'s soft-target distillation (hinton_kd's loss, student and
recipe) from a teacher that knows nothing: the shared ``teacher`` baseline left at its initial weights
(``teacher_knowledge="untrained"``; ``"shuffled_labels"``: trained on randomly permuted labels).

Such soft targets carry no knowledge of the task, so whatever this student gains over its scratch student is
regularisation, not transfer (the observation behind Yuan et al., CVPR 2020: a poorly trained teacher still
helps). A distillation method's gain over scratch reads as transfer only where it exceeds this control's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.budgets import DISTILLED_PRESETS
from benchmark.contract import (
    CONTROL,
    LearningRate,
    MethodBase,
    PositiveFloat,
    PositiveInt,
    Recipe,
    Role,
    TeacherFields,
    UnitInterval,
    Validation,
    shared_teacher,
)
from benchmark.supervised import train_distilled


@dataclass
class Config(TeacherFields):  # the shared teacher's recipe, with what it knows taken away
    teacher_knowledge: Literal["trained", "untrained", "shuffled_labels"] = "untrained"  # what the teacher knows
    arch: str = "hinton_student"  # student architecture: hinton_kd's 784-300-10
    view: str = "flat"  # input view of student and teacher
    temperature: PositiveFloat = 10.0  # hinton_kd's T
    alpha: UnitInterval = 0.1  # hinton_kd's weight of the hard-label CE; the soft targets get (1 - alpha)·T²
    lr: LearningRate = 1e-3  # Adam learning rate
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 50  # upper bound; early stopping on validation NLL may end sooner
    patience: PositiveInt | None = 10  # epochs without a better validation NLL before stopping
    validation: Validation = "stratified"  # validation split of teacher, student and scratch student


class Method(MethodBase):
    Config = Config
    family = CONTROL  # a control for what distillation is not: its own family, never a method's row
    presets = DISTILLED_PRESETS
    ablations = {"teacher_knowledge": ["untrained", "shuffled_labels"]}

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def requires(self, cfg):
        return shared_teacher(cfg)

    def train(self, run, cfg):
        return train_distilled(run, cfg)
