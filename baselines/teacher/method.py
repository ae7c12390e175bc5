"""The teacher trained alone on the labels, shared by the distillation methods.

Defaults: the convolutional ``cnn_teacher`` (benchmark.archs) on the ``image`` view, with the Hinton notebook's
recipe: Adam 1e-3, batch 64, up to 50 epochs with early stopping (patience 10 on validation loss, best weights
restored). The notebook's own teacher, 784-1200-1200-10 with dropout 0.5 on the ``flat`` view, is the as-published
row: it was no better than its 784-300-10 student on three of the four datasets. It is trained once per
(dataset, repetition, configuration) as its own run, and its checkpoint is kept: a method that declares it in
``requires`` gets it frozen through ``run.required("teacher")``.

``knowledge`` makes a teacher that knows nothing, for the control that tells transfer from regularisation: its
initial weights (``untrained``) or a teacher trained on the training labels permuted at random
(``shuffled_labels``); everything else equal (benchmark.supervised.KNOWLEDGE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.contract import MethodBase, Role, identity_when_set
from benchmark.supervised import SUPERVISED_PRESETS, SupervisedConfig, train_supervised


@dataclass
class Config(SupervisedConfig):
    arch: str = "cnn_teacher"  # conv32-pool-conv64-pool-256-128-C (benchmark.archs); notebook: hinton_teacher
    view: str = "image"  # the examples with their channel axis (notebook: flat)
    # "trained" on the labels; "untrained" (initial weights) or "shuffled_labels": a teacher that knows nothing
    knowledge: Literal["trained", "untrained", "shuffled_labels"] = identity_when_set("trained")


class Method(MethodBase):
    Config = Config
    presets = SUPERVISED_PRESETS
    # The Hinton notebook's teacher: its 784-1200-1200-10 on the flat view, validation_split=0.1 (no defect).
    as_published = {"arch": "hinton_teacher", "view": "flat", "validation": "keras_last"}
    provides_cache = True

    def roles(self, cfg, data):
        return {"teacher": Role(cfg.arch, cfg.view)}

    def train(self, run, cfg):
        return train_supervised(run, cfg, "teacher", knowledge=cfg.knowledge)
