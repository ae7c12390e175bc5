"""Template: copy this folder to ``methods/<your_name>/``, and edit. The folder's name is the method's.

As shipped it trains the Hinton notebook's student with label-smoothed cross-entropy: a complete, small method
that shows every part of the contract (Config with a comment and a range per field, presets, ablations, roles, and a
train that builds its model, says what one step does, and hands both to the harness's fit loop). A method with
several models reads the same way: one ``step`` that updates them in the method's order, one ``run.fit``. Networks
of its own go in a ``models.py`` beside this file (``@benchmark.nn.architecture("name")``).

To distil the shared teacher: ``class Config(TeacherFields)``, ``requires`` returns ``shared_teacher(cfg)``,
``presets = DISTILLED_PRESETS`` (benchmark.budgets), and ``run.required("teacher")`` in train (see methods/hinton_kd).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.contract import LearningRate, MethodBase, PositiveInt, Recipe, Role, UnitInterval


@dataclass
class Config:
    arch: str = "hinton_student"  # the student's architecture (benchmark.archs, or this folder's models.py)
    view: str = "flat"  # input view the student reads: image, flat or pca:K
    label_smoothing: UnitInterval = 0.1  # mass spread uniformly over the classes
    lr: LearningRate = 1e-3  # Adam learning rate
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 50  # upper bound; early stopping may end sooner
    patience: PositiveInt | None = 10  # early-stopping patience on validation NLL; None trains every epoch


class Method(MethodBase):
    Config = Config
    # smoke: seconds. quick: the source's recipe on the harness's data budget; a cut below paper must be measured
    # where paper's curves flatten and documented (tests/test_presets.py lists the cuts). paper: the full recipe.
    presets = {"smoke": {"epochs": 2}, "quick": {}, "paper": {}}
    ablations = {"label_smoothing": [0.0, 0.1, 0.2]}
    # Each notebook behaviour a default corrects, as {field: (the notebook's value, "one line: what it does")}, and
    # every override that makes a run notebook-faithful (`--as-published`): those values plus the notebook's data
    # split (a `validation` field: "stratified", "keras_last" or "none"). This template copies no notebook.
    notebook_defects = {}
    as_published = {}

    def roles(self, cfg, data):
        # The harness pairs the student with the scratch student of the same architecture, view and recipe (the
        # lr, batch_size, epochs and patience fields).
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def train(self, run, cfg):
        def step(b):
            loss = F.cross_entropy(b.forward("student"), b.y, label_smoothing=cfg.label_smoothing)
            b.update({"student": {"loss": loss}})

        return run.fit({"student": run.build(cfg.arch, cfg.view)}, step, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience)
