"""Deep mutual learning (Zhang, Xiang, Hospedales & Lu, CVPR 2018, arXiv:1706.00384): K students trained together
from scratch, no teacher, each on its labels and on the others' predictions:

    L_k = CE(y, p_k) + w · 1/(K−1) · Σ_{l≠k} KL(p_l ‖ p_k),   w = 1,

the gradient flowing through p_k only (the others' predictions are targets). The paper's Algorithm 1 updates the
students in turn within a step: student 1 steps on the batch, then student 2's loss uses the predictions of the
*updated* student 1, and so on (``update="sequential"``); ``update="simultaneous"`` takes every target before any
update, as most reimplementations and kl_entanglement do.

Students default to the Hinton student (784-300-10) for all K; ``partner_arch``/``partner_view`` give students
2…K another network (``partner_arch=kl_cnn partner_view=image``: a CNN+MLP cohort like kl_entanglement's, with
DML's direction and update). Students of one architecture and view start apart: each after the first from an
initialisation stream of its own, shared by its scratch student (README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from benchmark.contract import LearningRate, MethodBase, NonNegativeFloat, PositiveInt, Range, Recipe, Role, Validation


@dataclass
class Config:
    students: Annotated[int, Range(ge=2)] = 2  # K, the cohort's size (paper: 2 to 4)
    arch: str = "hinton_student"  # student 1's architecture: the Hinton notebook's 784-300-10 (benchmark.archs)
    view: str = "flat"  # student 1's input view
    partner_arch: str | None = None  # students 2…K's architecture; None: ``arch`` (the paper's same-network cohorts)
    partner_view: str | None = None  # students 2…K's input view; None: ``view``
    kl_weight: NonNegativeFloat = 1.0  # w, the mimicry term's weight (paper: 1; 0 trains K independent students)
    # "sequential": the paper's Algorithm 1, each student against the others as updated so far in the step;
    # "simultaneous": every target taken before the step's first update.
    update: Literal["sequential", "simultaneous"] = "sequential"
    lr: LearningRate = 1e-3  # every student's Adam learning rate (hinton_kd's recipe)
    batch_size: PositiveInt = 64  # the cohort's batch size
    epochs: PositiveInt = 30  # every epoch is trained (the paper's fixed schedule; no early stopping)
    # Training/validation split of the students and their scratch students (see benchmark.contract)
    validation: Validation = "stratified"


def mutual_loss(logits: torch.Tensor, others: list[torch.Tensor], labels: torch.Tensor,
                weight: float) -> dict[str, torch.Tensor]:
    """CE(y, p) + weight · mean over the others l of KL(p_l ‖ p), batch means; the others' logits are targets."""
    ce = F.cross_entropy(logits, labels)
    log_p = F.log_softmax(logits, dim=1)
    kl = torch.stack([F.kl_div(log_p, F.log_softmax(o.detach(), dim=1), reduction="batchmean", log_target=True)
                      for o in others]).mean()
    return {"loss": ce + weight * kl if weight else ce, "ce": ce, "kl": kl}


def cohort(cfg: Config) -> dict[str, tuple[str, str]]:
    """Each student's role name and (architecture, view)."""
    partner = (cfg.partner_arch or cfg.arch, cfg.partner_view or cfg.view)
    return {f"student{k}": (cfg.arch, cfg.view) if k == 1 else partner for k in range(1, cfg.students + 1)}


def own_stream(cfg: Config) -> dict[str, str | None]:
    """Each student's initialisation stream (``Role.init``): None (the stream of its architecture and view every
    method shares) for the first student of an architecture and view, ``"dml:k"`` for student k after it. The
    harness draws a build's weights from (seed, architecture, view), so students of one network would otherwise
    all start equal and learn nothing from each other that they would not learn alone; a stream of its own gives
    a later student other weights, and its scratch student the same ones."""
    seen, streams = set(), {}
    for k, (role, network) in enumerate(cohort(cfg).items(), start=1):
        streams[role] = f"dml:{k}" if network in seen else None
        seen.add(network)
    return streams


def step(b, roles: list[str], cfg: Config) -> None:
    """One batch: each student in turn steps on its mutual loss. "sequential" takes the others' predictions just
    before each student's update (so student 2 sees student 1 as updated in this step: the paper's Algorithm 1);
    "simultaneous" takes every prediction first. Targets are inference-mode predictions, without gradient."""
    if cfg.update == "simultaneous":
        targets = {role: b.predict(role) for role in roles}
    for role in roles:
        if cfg.update == "sequential":
            targets = {other: b.predict(other) for other in roles if other != role}
        others = [targets[other] for other in roles if other != role]
        b.update({role: mutual_loss(b.forward(role), others, b.y, cfg.kl_weight)})


class Method(MethodBase):
    Config = Config
    # quick and paper: 150 epochs, the baselines' cap. At 30 the budget audit flagged both students and their
    # scratch and label-smoothing partners "capped" on digits and mnist1d (best validation NLL in the last 10% of
    # the 30 epochs in at least half the repetitions): the fixed schedule ended them while they still improved.
    presets = {"smoke": {"epochs": 2}, "quick": {"epochs": 150}, "paper": {"epochs": 150}}
    ablations = {"students": [2, 3], "kl_weight": [0.0, 1.0], "update": ["sequential", "simultaneous"]}

    def roles(self, cfg, data):
        # Each student against its architecture trained alone with the same recipe, from the same initial weights
        # (a later student of one network from its own stream, which its scratch student shares).
        streams = own_stream(cfg)
        return {role: Role(arch, view, scratch=Recipe.of(cfg), init=streams[role])
                for role, (arch, view) in cohort(cfg).items()}

    def train(self, run, cfg):
        streams = own_stream(cfg)
        models = {role: run.build(arch, view, init=streams[role]) for role, (arch, view) in cohort(cfg).items()}
        return run.fit(models, lambda b: step(b, list(models), cfg), epochs=cfg.epochs, batch_size=cfg.batch_size,
                       lr=cfg.lr)
