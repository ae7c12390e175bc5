"""Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang, CVPR 2022, arXiv:2203.08679; official code:
megvii-research/mdistiller, ``mdistiller/distillers/DKD.py``): the KD loss split into a target-class term (TCKD, the
KL between the teacher's and the student's binary "target vs the rest" distributions) and a non-target term
(NCKD, the KL among the non-target classes), reweighted independently:

    loss = CE(y, z) + min(e / warmup, 1) · (α·TCKD + β·NCKD),   each KL at temperature T, times T², batch mean,

with e = 1, 2, … the epoch as the official trainer counts it (b.epoch + 1 here). The student is the Hinton
notebook's 784-300-10 with hinton_kd's recipe, the teacher the shared ``teacher`` baseline (README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.budgets import DKD_PRESETS
from benchmark.contract import (
    LAMBDA,
    LearningRate,
    MethodBase,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Recipe,
    Role,
    TeacherFields,
    Validation,
    shared_teacher,
)


@dataclass
class Config(TeacherFields):  # the shared teacher (default: cnn_teacher on the image view)
    arch: str = "hinton_student"  # student architecture: the Hinton notebook's 784-300-10 (benchmark.archs)
    view: str = "flat"  # the student's input view (the teacher's: teacher_view)
    alpha: NonNegativeFloat = 1.0  # α, weight of TCKD (paper and official code: 1.0)
    beta: NonNegativeFloat = 8.0  # β, weight of NCKD (official default 8.0; its per-pair configs 0.5 to 8)
    temperature: PositiveFloat = 4.0  # T, divides both models' logits in both KL terms (official: 4.0)
    warmup: PositiveInt = 20  # epochs over which the KD term's weight rises linearly to 1 (official: 20)
    lr: LearningRate = 1e-3  # student's Adam learning rate (hinton_kd's recipe)
    batch_size: PositiveInt = 64  # student's batch size
    epochs: PositiveInt = 50  # upper bound on the student's epochs; early stopping may end sooner
    patience: PositiveInt | None = 10  # epochs without a better validation NLL before stopping; None: every epoch
    # Training/validation split of student, teacher and scratch student (see benchmark.contract)
    validation: Validation = "stratified"


def warmup_weight(epoch: int, warmup: int) -> float:
    """The KD term's weight in ``epoch`` (0-based, as ``b.epoch``): the official min(e / warmup, 1) with e = epoch + 1,
    its trainer counting epochs from 1, so the first epoch already weighs 1/warmup."""
    return min((epoch + 1) / warmup, 1.0)


def decoupled_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each T² · batch mean of a KL(teacher ‖ student) at temperature T.

    TCKD compares b = (p_y, Σ_{c≠y} p_c) of p = softmax(z / T); NCKD compares the softmax over the non-target logits
    alone. Both in log space: the official code takes the log of summed probabilities (-inf where they underflow) and
    excludes the target from NCKD by subtracting 1000 from its logit / T, which equals dropping it whenever no logit /
    T exceeds the others by ~900; here the target column is removed, so it gets no NCKD gradient at all.
    """
    n, classes = student_logits.shape
    target = F.one_hot(labels, classes).bool()
    scaled_s, scaled_t = student_logits / temperature, teacher_logits.detach() / temperature

    def binary(scaled):
        log_p = F.log_softmax(scaled, dim=1)
        return torch.stack([log_p[target], log_p.masked_fill(target, -torch.inf).logsumexp(1)], dim=1)

    def non_target(scaled):
        return F.log_softmax(scaled[~target].view(n, classes - 1), dim=1)

    t2 = temperature**2
    tckd = F.kl_div(binary(scaled_s), binary(scaled_t), reduction="batchmean", log_target=True) * t2
    nckd = F.kl_div(non_target(scaled_s), non_target(scaled_t), reduction="batchmean", log_target=True) * t2
    return tckd, nckd


class DecoupledLoss:
    """CE + w·(α·TCKD + β·NCKD) against the frozen teacher's logits, computed once and looked up by ``b.idx``."""

    def __init__(self, teacher_logits: torch.Tensor, *, alpha: float, beta: float, temperature: float):
        self.teacher_logits = teacher_logits.detach().float()
        self.alpha, self.beta, self.temperature = alpha, beta, temperature

    def __call__(self, student_logits, labels, idx, weight: float) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(student_logits, labels)
        tckd, nckd = decoupled_kl(student_logits, self.teacher_logits[idx], labels, self.temperature)
        return {"loss": ce + weight * (self.alpha * tckd + self.beta * nckd), "ce": ce, "tckd": tckd, "nckd": nckd}


class Method(MethodBase):
    Config = Config
    presets = DKD_PRESETS  # the teacher run of `benchmark all`; the student every one of 600 epochs (benchmark.budgets)
    # beta=1 with alpha=1 is close to classic KD's weighting of NCKD (the paper's eq. 5 weighs it by 1 - p_y^T)
    ablations = {"beta": [1.0, 2.0, 4.0, 8.0], "temperature": [1.0, 4.0, 10.0], "warmup": [1, 20]}

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def requires(self, cfg):
        return shared_teacher(cfg)

    def train(self, run, cfg):
        teacher = run.required("teacher")
        criterion = DecoupledLoss(run.logits(teacher, run.view_of(teacher), "train"), alpha=cfg.alpha, beta=cfg.beta,
                                  temperature=cfg.temperature)

        def step(b):
            weight = warmup_weight(b.epoch, cfg.warmup)
            b.update({"student": criterion(b.forward("student"), b.y, b.idx, weight)})

        models = run.fit({"student": run.build(cfg.arch, cfg.view)}, step, epochs=cfg.epochs,
                         batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience)
        for epoch in range(len(run.curve("student", "train_loss"))):  # the epochs trained (early stopping)
            run.log("student", LAMBDA, warmup_weight(epoch, cfg.warmup), epoch)
        return models
