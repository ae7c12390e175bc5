"""Relational knowledge distillation (Park, Kim, Lu & Cho, CVPR 2019, arXiv:1904.05068; official code:
lenscloth/RKD, ``metric/loss.py``; the distillation settings of megvii-research/mdistiller, ``distillers/RKD.py``):
the student matches the *relations* among a batch's embeddings, not the embeddings themselves:

    loss = CE(y, z) + λ_D · L_D + λ_A · L_A,

L_D the smooth-L1 between the student's and the teacher's pairwise Euclidean distances, each divided by its batch's
mean over the off-diagonal pairs, and L_A the smooth-L1 between the cosines of the angles every triplet of the batch
forms (the angle at e_j between e_i - e_j and e_k - e_j), both means over every entry as the official code takes
them. The embeddings are the penultimate layers (mdistiller's pooled features): the Hinton student's ``hidden1``
(300) and the shared teacher's ``hidden2`` (1200); relations need no common width (README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from benchmark.budgets import DISTILLED_PRESETS
from benchmark.contract import (
    LearningRate,
    MethodBase,
    NonNegativeFloat,
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
    # The embeddings whose relations are matched: "features", the named hidden features below (the official
    # distillation code's penultimate, pooled features), or "logits", both networks' outputs.
    embedding: Literal["features", "logits"] = "features"
    student_feature: str = "hidden1"  # the student's embedding: its last hidden layer, 300 wide (after the ReLU)
    teacher_feature: str = "hidden2"  # the teacher's embedding: its last hidden layer (cnn_teacher: 128 wide)
    distance_weight: NonNegativeFloat = 25.0  # λ_D, weight of the distance term (official distillation: 25)
    angle_weight: NonNegativeFloat = 50.0  # λ_A, weight of the angle term (official distillation: 50)
    lr: LearningRate = 1e-3  # student's Adam learning rate (hinton_kd's recipe)
    batch_size: PositiveInt = 64  # student's batch size; the relations are among a batch's examples
    epochs: PositiveInt = 50  # upper bound on the student's epochs; early stopping may end sooner
    patience: PositiveInt | None = 10  # epochs without a better validation NLL before stopping; None: every epoch
    # Training/validation split of student, teacher and scratch student (see benchmark.contract)
    validation: Validation = "stratified"


def _relations(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(G, S, apart) of a batch's embeddings: the Gram matrix G = E Eᵀ of the flattened embeddings centred on their
    batch mean (distances and angles do not move, and the Gram forms lose less to cancellation than about the
    origin), the squared distances S_ij = G_ii + G_jj - 2 G_ij (the official ``pdist``'s form), and whether two
    examples are apart: S above 1e-5 of the largest squared norm, far above float32 rounding of equal embeddings,
    so equal embeddings are at distance 0 and their angles 0, as in the official code."""
    e = embeddings.flatten(1).float()
    e = e - e.mean(0, keepdim=True)
    gram = e @ e.T
    diag = gram.diagonal()
    squared = (diag[:, None] + diag[None, :] - 2 * gram).clamp(min=0)
    return gram, squared, squared > 1e-5 * diag.max()


def _root(squared: torch.Tensor, apart: torch.Tensor, power: float) -> torch.Tensor:
    """S^power where apart, else 0, with a finite gradient everywhere (the root of 0 has none)."""
    return torch.where(apart, squared.clamp(min=1e-30).pow(power), torch.zeros_like(squared))


def normalised_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """[N, N] Euclidean distances divided by their mean over the off-diagonal pairs (diagonal 0): the official
    ``pdist`` normalised by its ``d[d > 0].mean()``, whose entries are all positive off the diagonal (clamped at
    1e-12 before the root). Every embedding equal: all 0 (the official code divides 0 by an empty mean: NaN)."""
    _, squared, apart = _relations(embeddings)
    d = _root(squared, apart, 0.5)
    off = ~torch.eye(len(d), dtype=torch.bool, device=d.device)
    return d / d[off].mean().clamp(min=1e-12)


def triplet_cosines(embeddings: torch.Tensor) -> torch.Tensor:
    """[N, N, N] with entry (j, i, k) the cosine of the angle at e_j between e_i - e_j and e_k - e_j (0 where either
    difference is zero, as the official ``F.normalize`` leaves a zero vector zero).

    The official code builds the [N, N, F] differences and multiplies them in N batched [N, F] x [F, N] products:
    O(N³F) time, O(N²F) memory. The same numbers follow from the Gram matrix alone: with u_ji = 1 / ‖e_i - e_j‖,

        cos_jik = u_ji u_jk <e_i - e_j, e_k - e_j> = u_ji u_jk G_ik + q_ji u_jk + u_ji q_jk,
        q_ji = u_ji (G_jj/2 - G_ij),

    one [N, F] x [F, N] product and three [N, N, N] operations (an outer product, a product with G, a rank-2
    ``baddbmm``), whatever the width F."""
    gram, squared, apart = _relations(embeddings)
    u = _root(squared, apart, -0.5)  # [j, i]
    q = u * (gram.diagonal()[:, None] / 2 - gram)
    outer = torch.bmm(u.unsqueeze(2), u.unsqueeze(1))  # [j, i, k]: u_ji u_jk
    return torch.baddbmm(outer * gram, torch.stack([u, q], 2), torch.stack([q, u], 1))


def distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_D: smooth-L1 (β = 1) mean over the N² entries of the normalised distances (0 for fewer than 2 examples,
    which have no pair to normalise by)."""
    if len(student) < 2:
        return student.sum() * 0.0
    with torch.no_grad():
        target = normalised_distances(teacher)
    return F.smooth_l1_loss(normalised_distances(student), target)


def angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_A: smooth-L1 (β = 1) mean over the N³ triplet cosines."""
    with torch.no_grad():
        target = triplet_cosines(teacher)
    return F.smooth_l1_loss(triplet_cosines(student), target)


class RelationalLoss:
    """CE + λ_D·L_D + λ_A·L_A against the frozen teacher's embeddings, computed once and looked up by ``b.idx``."""

    def __init__(self, teacher_embeddings: torch.Tensor, *, distance_weight: float, angle_weight: float):
        self.teacher = teacher_embeddings.detach().flatten(1).float()
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def __call__(self, logits, embeddings, labels, idx) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(logits, labels)
        teacher = self.teacher[idx]
        parts = {"ce": ce}
        loss = ce
        # A term of weight 0 is not computed: its ablation then costs what the scratch student's step costs.
        if self.distance_weight:
            parts["distance"] = distance_loss(embeddings, teacher)
            loss = loss + self.distance_weight * parts["distance"]
        if self.angle_weight:
            parts["angle"] = angle_loss(embeddings, teacher)
            loss = loss + self.angle_weight * parts["angle"]
        return {"loss": loss, **parts}


class Method(MethodBase):
    Config = Config
    presets = DISTILLED_PRESETS  # the teacher run of `benchmark all`; the student capped at 300 (benchmark.budgets)
    # Each term alone (the paper's RKD-D and RKD-A), and the embeddings: penultimate features or logits.
    ablations = {"distance_weight": [0.0, 25.0], "angle_weight": [0.0, 50.0], "embedding": ["features", "logits"]}

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def requires(self, cfg):
        return shared_teacher(cfg)

    def train(self, run, cfg):
        teacher = run.required("teacher")
        logits_only = cfg.embedding == "logits"
        if logits_only:
            embeddings = run.logits(teacher, run.view_of(teacher), "train")
        else:
            embeddings = run.features(teacher, run.view_of(teacher), "train", cfg.teacher_feature)
        criterion = RelationalLoss(embeddings, distance_weight=cfg.distance_weight, angle_weight=cfg.angle_weight)

        def step(b):
            logits = b.forward("student")
            own = logits if logits_only else b.features("student", cfg.student_feature)
            b.update({"student": criterion(logits, own, b.y, b.idx)})

        return run.fit({"student": run.build(cfg.arch, cfg.view)}, step, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience)
