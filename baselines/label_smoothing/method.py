"""A control for what distillation is not: a distilled role's architecture, recipe and data trained alone on the
labels with label smoothing (Szegedy et al. 2016; Müller, Kornblith & Hinton, NeurIPS 2019; Yuan et al., CVPR 2020,
who read knowledge distillation as a learned label smoothing).

The cross-entropy's target is (1 - ε)·one-hot + ε/C: every class gets ε/C, the label 1 - ε + ε/C. A teacher's soft
targets regularise the same way even when they carry no knowledge of the task, so a distilled student that beats its
scratch student but not this control has shown regularisation, not transfer. The harness plans one for every role
that receives a distillation signal, with the role's recipe, validation split and transfer set, the same
initialisation and batch order as its scratch student (the run's role records its partner's ``label_smoothing_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from benchmark.contract import MethodBase, Range, Role
from benchmark.supervised import SUPERVISED_PRESETS, SupervisedConfig, train_supervised


@dataclass
class Config(SupervisedConfig):
    arch: str = "hinton_student"  # the role's architecture (planned with the role's own)
    # ε in [0, 1): the mass spread uniformly over the C classes. 0.1 is the usual value (Szegedy et al. 2016;
    # Müller et al. 2019's image classifiers), the same order as a trained teacher's non-target mass at T = 1.
    smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.1


class Method(MethodBase):
    Config = Config
    presets = SUPERVISED_PRESETS
    ablations = {"smoothing": [0.05, 0.1, 0.2]}

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, init=cfg.init)}

    def train(self, run, cfg):
        return train_supervised(run, cfg, "student", label_smoothing=cfg.smoothing)
