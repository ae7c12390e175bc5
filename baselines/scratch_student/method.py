"""The control for every method: a student architecture trained alone on the labels with cross-entropy.

Its defaults are the Hinton notebook's student (784-300-10, Adam 1e-3, batch 64, up to 50 epochs, early stopping with
patience 10 on validation loss, best weights restored). Each method's roles declare the architecture, input view and
recipe to compare with; the harness runs this baseline with those values, paired by repetition.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.contract import MethodBase, Role
from benchmark.supervised import SUPERVISED_PRESETS, SupervisedConfig, train_supervised


@dataclass
class Config(SupervisedConfig):
    arch: str = "hinton_student"  # the Hinton notebook's 784-300-10 student


class Method(MethodBase):
    Config = Config
    presets = SUPERVISED_PRESETS
    as_published = {"validation": "keras_last"}  # the Hinton notebook's validation_split=0.1 (no defect)

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, init=cfg.init)}

    def train(self, run, cfg):
        return train_supervised(run, cfg, "student")
