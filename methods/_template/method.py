"""Template: copy this folder to ``methods/<your_name>/``, set ``name`` to the folder's name, and edit.

As shipped it trains the Hinton notebook's student with label-smoothed cross-entropy: a complete, small method
that shows every part of the contract (Config with a comment per field, presets, ablations, roles, train).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn.functional as F

from benchmark.contract import MethodBase, Role


@dataclass
class Config:
    arch: str = "hinton_student"  # student builder (benchmark.models.ARCHS)
    view: str = "flat"  # input view the student reads: image, flat or pca:K
    label_smoothing: float = 0.1  # mass spread uniformly over the classes, in [0, 1)
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 64
    epochs: int = 50  # upper bound; early stopping may end sooner
    patience: int | None = 10  # early-stopping patience on validation NLL; None trains every epoch


class Method(MethodBase):
    name = Path(__file__).parent.name  # the folder's name, so a copied folder needs no edit to run
    Config = Config
    presets = {"smoke": {"epochs": 2}, "quick": {"epochs": 10, "patience": 3}, "paper": {}}
    ablations = {"label_smoothing": [0.0, 0.1, 0.2]}

    def roles(self, cfg):
        # The harness pairs the student with the scratch student trained with the same architecture and recipe.
        recipe = {"arch": cfg.arch, "view": cfg.view, "lr": cfg.lr, "batch_size": cfg.batch_size,
                  "epochs": cfg.epochs, "patience": cfg.patience}
        return {"student": Role(cfg.arch, cfg.view, scratch=recipe)}

    def train(self, run, cfg):
        student = run.build(cfg.arch, cfg.view)

        def loss(model, x, y, idx):
            return F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)

        run.fit(student, role="student", view=cfg.view, loss_fn=loss, epochs=cfg.epochs,
                batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience)
        return {"student": student}
