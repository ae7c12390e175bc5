"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017, "Paying More Attention to Attention", arXiv:1612.03928;
official code: szagoruyko/attention-transfer, ``utils.py`` ``at``/``at_loss``): a convolutional student whose
spatial attention maps match a convolutional teacher's at blocks of the same spatial size.

The attention map of an activation A (C channels over positions) is Q = Σ_c |A_c|^p, flattened and divided by its
L2 norm. With j over the compared blocks,

    loss = CE(y, z) + s · β/2 · Σ_j mean_{examples, positions} (Q_S,j − Q_T,j)²,   β = 1000, p = 2,

the official code's ``(at(x) - at(y)).pow(2).mean()`` (the paper writes the norm of the difference; the code's
mean over positions is what β = 1000 was tuned for, on CIFAR's 32×32 inputs). As Q has unit norm, the mean over a
block's P positions weighs each map's squared difference by 1/P: on smaller inputs every block has fewer positions
and the same β weighs the term more (16× on 8×8 digits). ``beta_scale="input_size"`` (the default) keeps the
official weight of each block relative to the input's resolution, s = (input positions) / 1024, which is 1 on
32×32 inputs (the official code exactly); ``beta_scale="official"`` is s = 1 on every input. The teacher is the
shared ``teacher`` baseline trained with the ``at_teacher`` CNN (models.py); its maps are computed once, in eval
mode, for every training example. Optionally (``kd_alpha`` > 0) Hinton's soft targets join, as the official
code's AT+KD.
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


@dataclass
class Config(TeacherFields):  # the shared teacher, trained with the convolutional teacher of models.py
    teacher_arch: str = "at_teacher"  # [conv16 x2]-pool-[conv32 x2]-pool-64-C, features block1, block2 (models.py)
    arch: str = "at_student"  # conv8-pool-conv16-pool-C, features block1, block2 (models.py)
    view: str = "image"  # the student's input view: attention is spatial (a 1-D signal: over its length)
    teacher_view: str = "image"  # the teacher's, spatial too
    # The blocks compared, by feature name, in both networks (comma-separated): the paper's "at the end of each
    # group", before the next group's downsampling.
    attention_layers: str = "block1,block2"
    beta: NonNegativeFloat = 1000.0  # β; the attention term weighs s·β/2 per compared block (paper and code: 1e3)
    # s, the attention term's scale: "input_size" s = input positions / 1024 (32×32, where β was tuned: the
    # official code's weight per map at every resolution); "official" s = 1 (the official code's mean as is).
    beta_scale: Literal["input_size", "official"] = "input_size"
    p: PositiveFloat = 2.0  # the exponent of |A| summed over channels (paper: 2, its best)
    kd_alpha: UnitInterval = 0.0  # weight of Hinton's soft targets, CE then weighs 1 - kd_alpha (0: AT alone)
    temperature: PositiveFloat = 4.0  # T of the soft targets when kd_alpha > 0 (official code: 4), with T²
    lr: LearningRate = 1e-3  # student's Adam learning rate (hinton_kd's recipe)
    batch_size: PositiveInt = 64  # student's batch size
    epochs: PositiveInt = 50  # upper bound on the student's epochs; early stopping may end sooner
    patience: PositiveInt | None = 10  # epochs without a better validation NLL before stopping; None: every epoch
    # Training/validation split of student, teacher and scratch student (see benchmark.contract)
    validation: Validation = "stratified"


# Positions of the inputs β = 1000 was tuned on (CIFAR's 32×32 images, the official code's first group's maps).
REFERENCE_POSITIONS = 1024


def attention_weight(cfg: Config, input_size: tuple[int, ...]) -> float:
    """The weight of Σ_j (per-block mean of squared map differences) in the loss: s · β/2, s as ``beta_scale``
    says for an input of this spatial size."""
    scale = torch.Size(input_size).numel() / REFERENCE_POSITIONS if cfg.beta_scale == "input_size" else 1.0
    return scale * cfg.beta / 2


def layer_names(cfg: Config) -> list[str]:
    return [name.strip() for name in cfg.attention_layers.split(",") if name.strip()]


def attention_map(activation: torch.Tensor, p: float) -> torch.Tensor:
    """[N, positions]: Σ_c |A_c|^p over the channels of [N, C, ...], flattened and L2-normalised per example (the
    official code averages over channels, which the normalisation makes the same; a zero map stays zero)."""
    return F.normalize(activation.abs().pow(p).sum(1).flatten(1), dim=1)


def matched(activation: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The activation average-pooled to the spatial ``size`` when it is larger (what the official distillation
    toolkits do when a student's and a teacher's maps differ); unchanged when it is that size."""
    if tuple(activation.shape[2:]) == tuple(size):
        return activation
    pool = F.adaptive_avg_pool2d if activation.dim() == 4 else F.adaptive_avg_pool1d
    return pool(activation, size)


def attention_loss(student_activation: torch.Tensor, teacher_map: torch.Tensor, p: float) -> torch.Tensor:
    """mean over examples and positions of (Q_S − Q_T)², Q_T already a normalised map of the same size."""
    return (attention_map(student_activation, p) - teacher_map).pow(2).mean()


@torch.no_grad()
def feature_sizes(model, x: torch.Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    """The spatial size of each named feature (one example, eval mode, nothing changes)."""
    network = model.stack_inner() if hasattr(model, "stack_inner") else model
    was_training = network.training
    _, found = network.eval().forward_features(x[:1])
    network.train(was_training)
    return {name: tuple(found[name].shape[2:]) for name in names}


@torch.no_grad()
def teacher_maps(teacher, x: torch.Tensor, sizes: dict[str, tuple[int, ...]], p: float, chunk: int = 256):
    """{name: [N, positions]} the frozen teacher's normalised attention maps for every example of ``x``, computed
    ``chunk`` examples at a time so that only the maps (not the activations) of the whole split are kept. A map
    larger than the student's is pooled to its size first."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in sizes}
    for i in range(0, len(x), chunk):
        _, found = teacher.forward_features(x[i:i + chunk])
        for name, size in sizes.items():
            out[name].append(attention_map(matched(found[name], size), p))
    return {name: torch.cat(maps) for name, maps in out.items()}


class Method(MethodBase):
    Config = Config
    presets = DISTILLED_PRESETS  # the teacher run of `benchmark all`; the student capped at 300 (benchmark.budgets)
    # β = 0 is the scratch student's loss (the control inside the method); p = 1 and 4 are the paper's other maps.
    ablations = {"beta": [0.0, 100.0, 1000.0], "p": [1.0, 2.0, 4.0], "attention_layers": ["block1,block2", "block2"],
                 "kd_alpha": [0.0, 0.9], "beta_scale": ["input_size", "official"]}

    def skip(self, cfg, data):
        for field, view in (("view", cfg.view), ("teacher_view", cfg.teacher_view)):
            if not view.startswith("image"):
                return f"attention maps are spatial: {field}={view!r} has no positions (use image)"
        if not layer_names(cfg):
            return "attention_layers names no layer"
        return None

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def requires(self, cfg):
        return shared_teacher(cfg)

    def train(self, run, cfg):
        teacher = run.required("teacher")
        student = run.build(cfg.arch, cfg.view)
        names = layer_names(cfg)
        x, x_teacher = run.view(cfg.view, "train"), run.view(run.view_of(teacher), "train")
        ours, theirs = feature_sizes(student, x, names), feature_sizes(teacher, x_teacher, names)
        # Each compared pair at the smaller of the two sizes (the larger is pooled).
        sizes = {n: min(ours[n], theirs[n], key=lambda s: torch.Size(s).numel()) for n in names}
        maps = teacher_maps(teacher, x_teacher, sizes, cfg.p)
        weight = attention_weight(cfg, tuple(x.shape[2:]))
        soft = SoftTargetLoss(run.logits(teacher, run.view_of(teacher), "train"), temperature=cfg.temperature,
                              alpha=1 - cfg.kd_alpha) if cfg.kd_alpha else None

        def step(b):
            logits = b.forward("student")
            ce = F.cross_entropy(logits, b.y)
            at = sum(attention_loss(matched(b.features("student", n), sizes[n]), maps[n][b.idx], cfg.p)
                     for n in names)
            parts = {"ce": ce, "at": at}
            if soft is None:
                loss = ce + weight * at
            else:
                parts["kd"] = soft.kl(logits, b.idx)
                loss = (1 - cfg.kd_alpha) * ce + cfg.kd_alpha * cfg.temperature**2 * parts["kd"] + weight * at
            b.update({"student": {"loss": loss, **parts}})

        return run.fit({"student": student}, step, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                       patience=cfg.patience)
