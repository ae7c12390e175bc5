"""Born-Again Networks (Furlanello, Lipton, Tschannen, Itti & Anandkumar, ICML 2018, arXiv:1805.04770): a student of
its teacher's own architecture, trained from a new random initialisation on the labels and the teacher's soft
targets, and then the teacher of the next generation.

Generation 0 is the shared ``teacher`` baseline (the architecture trained on labels alone). Generation k >= 1 is one
run of this method: it requires generation k-1 (the teacher for k = 1, else ``born_again#<k-1>``) and, from k = 2 on,
every earlier generation too, for the ensemble role: BANE, the mean of the softmax outputs of generations 1..k.
``--set born_again.generation=3`` plans teacher -> 1 -> 2 -> 3. Each generation starts from an initialisation stream
of its own (``Role.init``), never its teacher's initial weights; its scratch student starts from the same stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
from benchmark.losses import SoftTargetLoss
from benchmark.supervised import DISTILLATION_PRESETS

ENSEMBLE = "born_again_ensemble"  # methods/born_again/models.py


@dataclass
class Config(TeacherFields):  # generation 0 is the shared teacher; every generation is its architecture
    view: str = "image"  # input view of every generation: the teacher's (teacher_view), as its architecture is
    generation: PositiveInt = 1  # k: this run trains generation k from generation k-1 (1: from the teacher)
    alpha: UnitInterval = 0.5  # weight of the hard-label CE; the soft targets of generation k-1 get 1 - alpha
    temperature: PositiveFloat = 1.0  # T of the soft targets (the paper matches the teacher's output at T = 1)
    lr: LearningRate = 1e-3  # Adam learning rate of each generation (the teacher's recipe)
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 50  # upper bound; early stopping on validation NLL may end sooner
    patience: PositiveInt | None = 10  # epochs without a better validation NLL; None: every epoch
    validation: Validation = "stratified"  # training/validation split of every generation (benchmark.contract)

    def __post_init__(self):
        super().__post_init__()
        if self.view != self.teacher_view:  # every generation is the teacher's network, on the teacher's input
            raise ValueError(f"born_again trains the teacher's architecture again: view={self.view!r} must be "
                             f"teacher_view={self.teacher_view!r}")


def stream(generation: int) -> str:
    """The initialisation stream of a generation (generation 0, the teacher, uses the shared one)."""
    return f"born_again:{generation}"


def soft_target_loss(teacher_logits, cfg: Config) -> SoftTargetLoss:
    """alpha * CE(y, z) + (1 - alpha) * T^2 * mean KL(softmax(v/T) || softmax(z/T)), v generation k-1's logits."""
    return SoftTargetLoss(teacher_logits, temperature=cfg.temperature, alpha=cfg.alpha, t_squared=True)


class Method(MethodBase):
    Config = Config
    presets = DISTILLATION_PRESETS  # generation 0 is the very teacher run `benchmark all` trains
    ablations = {"generation": [1, 2, 3], "alpha": [0.0, 0.5], "temperature": [1.0, 4.0]}
    provides_cache = True  # every generation may be the teacher of the next: its checkpoint is kept

    def roles(self, cfg, data):
        g = cfg.generation
        roles = {"student": Role(cfg.teacher_arch, cfg.view, scratch=Recipe.of(cfg), init=stream(g))}
        if g >= 2:
            # Compared with one network of the architecture trained alone on labels with the same recipe (the
            # paper compares BANE with its teacher and with single BANs): same batch order, not the same weights.
            roles["ensemble"] = Role(ENSEMBLE, cfg.view, scratch=Recipe.of(cfg, arch=cfg.teacher_arch),
                                     pairing="order", options={"member": cfg.teacher_arch, "members": g})
        return roles

    def requires(self, cfg):
        if cfg.generation == 1:
            return shared_teacher(cfg)
        values = dataclasses.asdict(cfg)
        return {f"{self.name}#{k}": {**values, "generation": k} for k in range(1, cfg.generation)}

    def train(self, run, cfg):
        g = cfg.generation
        # Earlier generations in order, so that the last loaded, generation k-1, is the reference of the
        # agreement metric.
        earlier = [run.required(f"{self.name}#{k}", "student") for k in range(1, g)]
        teacher = earlier[-1] if earlier else run.required("teacher")
        criterion = soft_target_loss(run.logits(teacher, run.view_of(teacher), "train"), cfg)

        def step(b):
            b.update({"student": criterion(b.forward("student"), b.y, b.idx)})

        student = run.build(cfg.teacher_arch, cfg.view, init=stream(g))
        run.fit({"student": student}, step, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                patience=cfg.patience)
        if g == 1:
            return {"student": student}
        ensemble = run.build(ENSEMBLE, cfg.view, member=cfg.teacher_arch, members=g).copy_from([*earlier, student])
        return {"student": student, "ensemble": ensemble}
