"""Plain supervised training with cross-entropy: what both baselines (scratch student, teacher) do."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F


@dataclass
class SupervisedConfig:
    arch: str = "hinton_student"  # a builder name from benchmark.models.ARCHS
    view: str = "flat"  # input view: image, flat or pca:K
    lr: float = 1e-3  # Adam learning rate (Keras default)
    batch_size: int = 64
    epochs: int = 50  # upper bound; early stopping may end sooner
    patience: int | None = 10  # epochs without a better validation NLL before stopping; None trains all epochs


SUPERVISED_PRESETS = {"smoke": {"epochs": 2}, "quick": {"epochs": 10, "patience": 3}, "paper": {}}


def cross_entropy_step(model, x, y, idx):
    return F.cross_entropy(model(x), y)


def train_supervised(run, cfg: SupervisedConfig, role: str):
    model = run.build(cfg.arch, cfg.view)
    run.fit(model, role=role, view=cfg.view, loss_fn=cross_entropy_step, epochs=cfg.epochs,
            batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience)
    return {role: model}
