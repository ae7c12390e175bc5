"""Template of a distillation method: copy this folder to ``methods/<your_name>/``, and edit. The folder's name is
the method's.

As shipped it is Hinton et al.'s soft-target distillation (arXiv:1503.02531) of the shared teacher into the Hinton
notebook's student, written out in full so that it reads as the place for another loss: the teacher in one line
(``Config(TeacherFields)``, ``requires`` returns ``shared_teacher(cfg)``, ``presets = DISTILLED_PRESETS``), the
teacher's logits computed once, a loss function of plain tensors (what the golden test calls), and one ``step``.
The golden test's scaffold is ``golden_test.py`` beside this file: copy it to ``tests/methods/test_<your_name>.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.budgets import DISTILLED_PRESETS
from benchmark.contract import (
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


@dataclass
class Config(TeacherFields):  # the shared teacher's fields (teacher_arch, teacher_lr, ...): its recipe
    arch: str = "hinton_student"  # the student's architecture (benchmark.archs, or this folder's models.py)
    view: str = "flat"  # input view of student and teacher: image, flat or pca:K
    temperature: PositiveFloat = 4.0  # T, divides both models' logits in the soft-target term
    alpha: UnitInterval = 0.5  # weight of the hard-label cross-entropy; the soft targets get 1 - alpha
    lr: LearningRate = 1e-3  # the student's Adam learning rate
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 50  # upper bound; early stopping may end sooner
    patience: PositiveInt | None = 10  # early-stopping patience on validation NLL; None trains every epoch
    validation: Validation = "stratified"  # training/validation split of student, teacher and scratch student


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      temperature: float, alpha: float) -> dict[str, torch.Tensor]:
    """alpha * CE(y, z) + (1 - alpha) * T^2 * mean_i KL(softmax(v_i / T) || softmax(z_i / T)): z the student's
    logits, v the teacher's. T^2 keeps the soft-target gradients' size independent of T (Hinton et al., section 2).
    Each part is returned: the harness logs every entry as an epoch mean."""
    ce = F.cross_entropy(student_logits, labels)
    kd = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                  F.log_softmax(teacher_logits.detach() / temperature, dim=1), reduction="batchmean", log_target=True)
    return {"loss": alpha * ce + (1 - alpha) * temperature**2 * kd, "ce": ce, "kd": kd}


class Method(MethodBase):
    Config = Config
    # The baselines' presets with the student's cap raised to 300 epochs (benchmark.budgets): the teacher is the
    # very run `benchmark all` trains for the `teacher` baseline; the scratch student gets the student's recipe.
    presets = DISTILLED_PRESETS
    ablations = {"temperature": [1, 4, 10], "alpha": [0.1, 0.5, 0.9]}
    # This template copies no notebook (see methods/_template for notebook_defects and as_published).
    notebook_defects = {}
    as_published = {}

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def requires(self, cfg):
        return shared_teacher(cfg)  # the teacher, in one line

    def train(self, run, cfg):
        teacher = run.required("teacher")  # frozen, eval mode; its test logits are the agreement metric's reference
        # The teacher is frozen and nothing is augmented: its logits on the training split are the same at every
        # step, computed once and looked up by the batch's example indices.
        targets = run.logits(teacher, run.view_of(teacher), "train")

        def step(b):
            b.update({"student": distillation_loss(b.forward("student"), targets[b.idx], b.y,
                                                   temperature=cfg.temperature, alpha=cfg.alpha)})

        return run.fit({"student": run.build(cfg.arch, cfg.view)}, step, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience)
