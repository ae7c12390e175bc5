"""JS entanglement (notebook 000, ``js_entanglement_cifar10``): a CNN A and two small MLPs B and C on PCA
views of the same images, trained together online; the MLPs are pulled toward A and toward each other by a
Jensen-Shannon term.

Each step, for one batch (forward order A, B, C, all in training mode; then one Adam step each):

    A:  CE(y, A)
    B:  CE(y, B) + λ_e·D(B, sg A) + λ_e·D(B, sg C)
    C:  CE(y, C) + λ_e·D(C, sg A) + λ_e·D(C, sg B)

with sg the stop-gradient, D the JS divergence (nats), λ_e = λ_max·log10(1 + 9e/(E−1)), e = 0 … E−1.
The notebook adds ``mutual_loss = λ·JS(B, sg C) + λ·JS(C, sg B)`` to *both* B's and C's loss. Each model's
gradient is taken of its own loss with respect to its own weights, so B feels only the first term and C
only the second (in the other one the model is stopped). That is what is optimised here; the logged
training loss is the notebook's (with both terms). From epoch round(phase2_start·E) (20 of 30) the notebook
swaps D for the fraction of argmax mismatches, which has no gradient: ``phase2`` chooses that
(``argmax_as_published``), a differentiable replacement (``hard_labels``, cross-entropy against the
partner's argmax: the default) or nothing (``none``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark import metrics as M
from benchmark.contract import MethodBase, Role

PCA_SEED_B, PCA_SEED_C = 42, 123  # the notebook's PCA(random_state=...) for B and for C
ROLES = ("A", "B", "C")  # forward order of the notebook's training step
SPLITS = ("train", "val", "test")

# λ_e = λ_max · shape(t), t = e/(E−1) in [0, 1]: 0 at the first epoch, 1 at the last.
SCHEDULES = {
    "log": lambda t: math.log10(1 + 9 * t),  # the notebook's "slower rise", 0 -> 1
    "linear": lambda t: t,
    "constant": lambda t: 1.0,
    "zero": lambda t: 0.0,  # no alignment at all: three models trained side by side on CE
}


@dataclass
class Config:
    epochs: int = 30  # E; every epoch is trained (the notebook has no validation split, no early stopping)
    batch_size: int = 128  # the notebook's batch size
    lr: float = 5e-4  # Adam learning rate of each of the three models (the notebook's Adam(0.0005))
    adam_eps: float = 1e-7  # Keras Adam epsilon (PyTorch's default is 1e-8)
    pca_components: int = 100  # K, size of the MLPs' PCA view (notebook: 100); at most the input size
    lambda_max: float = 0.1  # λ at the last epoch (the notebook's 0.1·log10(1 + 9) = 0.1)
    schedule: Literal["log", "linear", "constant", "zero"] = "log"  # shape of λ_e (see SCHEDULES)
    divergence: Literal["js", "kl"] = "js"  # phase-1 D: JS (notebook) or KL(sg partner ‖ self), nats
    # D after the switch: CE against the partner's argmax (default), the notebook's argmax mismatch
    # fraction (no gradient), or no alignment term.
    phase2: Literal["hard_labels", "argmax_as_published", "none"] = "hard_labels"
    phase2_start: float = 20 / 30  # phase 2 from epoch round(phase2_start·E): the notebook's epoch 20 of 30
    # B/C read PCA (seed 42 / seed 123) of every pixel, as published, or PCA of the top / bottom half of
    # the image (first / second half of a 1-D signal): two genuinely different views.
    views: Literal["as_published", "halves"] = "as_published"
    # Val/test PCA features standardised with the training split's statistics, or with their own
    # (the notebook's StandardScaler().fit_transform(x_test_pca)).
    scaler: Literal["train", "as_published"] = "train"


# ---- divergences, schedule, phase 2 ------------------------------------------------------------------------

def js_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-example JS(p, q) = ½KL(p ‖ m) + ½KL(q ‖ m), m = ½(p + q), in nats; p, q = softmax(logits).

    Computed in log space (log m = logaddexp(log p, log q) − log 2): no probability is ever divided or
    logged, so it is finite with finite gradients for any finite logits. The notebook clips p/m to
    [1e-7, 1e7] instead; that changes a term only where p < 1e-7·m, by less than 2e-6 nats.
    """
    log_p, log_q = F.log_softmax(p_logits, dim=-1), F.log_softmax(q_logits, dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return 0.5 * (kl_pm + kl_qm)


def kl_divergence(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-example KL(target ‖ self) = Σ_k t_k (log t_k − log s_k), nats: the direction of distillation
    and deep mutual learning (the partner's prediction is the target distribution)."""
    log_t, log_s = F.log_softmax(target_logits, dim=-1), F.log_softmax(logits, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1)


def lambda_at(epoch: int, epochs: int, schedule: str = "log", lambda_max: float = 0.1) -> float:
    """λ for ``epoch`` (0-based) of ``epochs``. With one epoch, that epoch is also the last: t = 1."""
    progress = epoch / (epochs - 1) if epochs > 1 else 1.0
    return lambda_max * SCHEDULES[schedule](progress)


def phase2_epoch(cfg: Config) -> int:
    """First epoch of phase 2 (``epochs`` or more: no phase 2)."""
    return round(cfg.phase2_start * cfg.epochs)


def alignment(logits: torch.Tensor, target_logits: torch.Tensor, cfg: Config, late: bool) -> torch.Tensor:
    """Batch mean of the unweighted pull of ``logits`` toward ``target_logits`` (already detached)."""
    if not late:
        if cfg.divergence == "js":
            return js_divergence(logits, target_logits).mean()
        return kl_divergence(target_logits, logits).mean()
    if cfg.phase2 == "hard_labels":  # the usual convex surrogate of the notebook's 0-1 mismatch
        return F.cross_entropy(logits, target_logits.argmax(-1))
    if cfg.phase2 == "argmax_as_published":  # a constant to autograd: it moves the loss, not the update
        return (logits.argmax(-1) != target_logits.argmax(-1)).to(logits.dtype).mean()
    return logits.new_zeros(())  # "none"


def entangled_losses(logits: dict[str, torch.Tensor], labels: torch.Tensor, weight: float, cfg: Config,
                     late: bool) -> tuple[torch.Tensor, dict[tuple[str, str], torch.Tensor]]:
    """(objective, parts) for one batch.

    ``objective.backward()`` gives each model exactly the gradient the notebook's
    ``tape.gradient(loss_X, model_X.trainable_variables)`` gives it: partners enter detached, so no model
    receives gradient from another's loss. ``parts[(role, name)]``: ``loss`` (the notebook's reported
    loss), ``ce``, ``teacher`` and ``peer`` (the unweighted alignment to A and to the other MLP).
    """
    detached = {role: x.detach() for role, x in logits.items()}
    ce = {role: F.cross_entropy(x, labels) for role, x in logits.items()}
    teacher = {r: alignment(logits[r], detached["A"], cfg, late) for r in ("B", "C")}
    peer = {"B": alignment(logits["B"], detached["C"], cfg, late),
            "C": alignment(logits["C"], detached["B"], cfg, late)}
    # The notebook's mutual_loss, added to both B's and C's reported loss: two terms in phase 1, but a
    # single λ·mismatch(B, C) in its argmax phase 2 (the mismatch is symmetric).
    if late and cfg.phase2 == "argmax_as_published":
        mutual = weight * peer["B"].detach()
    else:
        mutual = weight * (peer["B"] + peer["C"]).detach()
    objective = ce["A"]
    parts = {("A", "loss"): ce["A"].detach(), ("A", "ce"): ce["A"].detach()}
    for role in ("B", "C"):
        own = ce[role] + weight * teacher[role]
        objective = objective + own + weight * peer[role]
        parts.update({(role, "loss"): own.detach() + mutual, (role, "ce"): ce[role].detach(),
                      (role, "teacher"): teacher[role].detach(), (role, "peer"): peer[role].detach()})
    return objective, parts


# ---- the MLPs' input views ---------------------------------------------------------------------------------

class FrozenPCA(nn.Module):
    """Standardised PCA scores of some input features: ((x[:, index] − mean) Vᵀ − score_mean) / score_scale.

    Fitted once on the training split and never trained (buffers, not parameters). As the first layer of
    B or C it lets the harness evaluate them on the ``flat`` view, for views the data registry lacks.
    """

    def __init__(self, index: torch.Tensor, pca, scaler):
        super().__init__()
        self.register_buffer("index", index.long())
        self.register_buffer("mean", torch.as_tensor(pca.mean_, dtype=torch.float32))
        self.register_buffer("components", torch.as_tensor(pca.components_, dtype=torch.float32))
        self.register_buffer("score_mean", torch.as_tensor(scaler.mean_, dtype=torch.float32))
        self.register_buffer("score_scale", torch.as_tensor(scaler.scale_, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = (x.flatten(1)[:, self.index] - self.mean) @ self.components.T
        return (scores - self.score_mean) / self.score_scale


def half_indices(input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the top and bottom halves of an image (C, H, W), or of the first and second halves
    of a signal (C, L): split along the first spatial axis, every channel kept."""
    positions = torch.arange(math.prod(input_shape)).reshape(input_shape)
    middle = input_shape[1] // 2
    return positions[:, :middle].flatten(), positions[:, middle:].flatten()


def fit_frozen_pca(flat_train: torch.Tensor, index: torch.Tensor, k: int, seed: int) -> FrozenPCA:
    """PCA(k) (randomized, ``seed``, like the registry's ``pca:K:seed=S``) and its StandardScaler, both
    fitted on the training split's features ``index``."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = flat_train[:, index].numpy()
    pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(x)
    return FrozenPCA(index, pca, StandardScaler().fit(pca.transform(x)))


def standardise_by_own_statistics(features: torch.Tensor) -> torch.Tensor:
    """The notebook's ``StandardScaler().fit_transform(x_test_pca)``. Applied to features already
    standardised with the training statistics it gives exactly that (a per-feature affine map cancels)."""
    from sklearn.preprocessing import StandardScaler

    return torch.from_numpy(StandardScaler().fit_transform(features.numpy()).astype(np.float32))


def registry_view(cfg: Config, seed: int) -> str:
    return f"pca:{cfg.pca_components}:seed={seed}"


def student_inputs(run, cfg: Config, seed: int, index: torch.Tensor | None):
    """(front end or None, {split: features}) of one MLP; ``index`` None: the registry's PCA view."""
    if index is None:
        front, inputs = None, {s: run.view(registry_view(cfg, seed), s) for s in SPLITS}
    else:
        front = fit_frozen_pca(run.view("flat", "train"), index, cfg.pca_components, seed)
        with torch.no_grad():
            inputs = {s: front(run.view("flat", s)) for s in SPLITS}
    # Training features are the same with either scaler: the notebook fitted the train one on train.
    if cfg.scaler == "as_published":
        inputs.update({s: standardise_by_own_statistics(inputs[s]) for s in ("val", "test")})
    return front, inputs


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    model.eval()
    out = torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    model.train()
    return out


# ---- the method --------------------------------------------------------------------------------------------

class Method(MethodBase):
    name = Path(__file__).parent.name
    Config = Config
    # K = 20 fits every dataset of the quick suite (mnist1d has 40 features, so 20 per half); quick's 10
    # epochs (phase 2 from epoch 7) keep a fashion_mnist run near a minute on one core.
    presets = {"smoke": {"epochs": 3, "pca_components": 20},
               "quick": {"epochs": 10, "pca_components": 20}, "paper": {}}
    ablations = {"divergence": ["js", "kl"], "schedule": ["log", "linear", "constant", "zero"],
                 "phase2": ["hard_labels", "argmax_as_published", "none"]}

    def roles(self, cfg):
        def recipe(arch, view):
            # The same architecture and view trained alone, with the notebook's optimiser and budget.
            return {"arch": arch, "view": view, "lr": cfg.lr, "batch_size": cfg.batch_size,
                    "epochs": cfg.epochs, "patience": None}

        # "halves" views are not in the data registry: B and C then carry their PCA as a frozen first
        # layer and read "flat"; their scratch students read the closest registry view (PCA of every
        # pixel, same K and seed). With the notebook's test-fitted scaler the harness cannot evaluate B and
        # C on a declared view, so they are declared non-classifier roles and train() logs their metrics.
        classifier = cfg.scaler == "train"
        roles = {"A": Role("js_cnn", "image", scratch=recipe("js_cnn", "image"))}
        for role, arch, seed in (("B", "js_mlp_b", PCA_SEED_B), ("C", "js_mlp_c", PCA_SEED_C)):
            view = registry_view(cfg, seed)
            declared = view if cfg.views == "as_published" else "flat"
            roles[role] = Role(arch, declared, scratch=recipe(arch, view), classifier=classifier)
        return roles

    def skip(self, cfg, dataset):
        features = math.prod(dataset.input_shape)
        if cfg.pca_components > features:
            return (f"pca_components={cfg.pca_components} exceeds the {features} input features of "
                    f"{dataset.name}: pass --set pca_components={features // 2}")
        half = min(len(i) for i in half_indices(dataset.input_shape))
        if cfg.views == "halves" and cfg.pca_components > half:
            return (f"views=halves: pca_components={cfg.pca_components} exceeds the {half} features of "
                    f"half of {dataset.name}'s input: pass --set pca_components={half}")
        return None

    def train(self, run, cfg):
        halves = half_indices(run.data.input_shape) if cfg.views == "halves" else (None, None)
        fronts, inputs = {}, {"A": {s: run.view("image", s) for s in SPLITS}}
        models = {"A": run.build("js_cnn", "image")}
        for role, arch, seed, index in (("B", "js_mlp_b", PCA_SEED_B, halves[0]),
                                        ("C", "js_mlp_c", PCA_SEED_C, halves[1])):
            fronts[role], inputs[role] = student_inputs(run, cfg, seed, index)
            # Built for the registry view, so it starts from its scratch student's initialisation.
            models[role] = run.build(arch, registry_view(cfg, seed))
        optimizers = {role: torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
                      for role, model in models.items()}
        labels = {s: run.labels(s) for s in SPLITS}
        switch = phase2_epoch(cfg)

        for epoch in range(cfg.epochs):
            weight = lambda_at(epoch, cfg.epochs, cfg.schedule, cfg.lambda_max)
            late = epoch >= switch
            sums: dict[tuple[str, str], torch.Tensor] = {}
            steps = 0
            for model in models.values():
                model.train()
            for idx in run.batches(cfg.batch_size, epoch=epoch):
                logits = {r: models[r](inputs[r]["train"][idx]) for r in ROLES}
                objective, parts = entangled_losses(logits, labels["train"][idx], weight, cfg, late)
                for optimizer in optimizers.values():
                    optimizer.zero_grad(set_to_none=True)
                objective.backward()
                for optimizer in optimizers.values():
                    optimizer.step()
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
            for (role, part), total in sums.items():
                value = float(total) / max(steps, 1)
                run.check_finite(value, f"training {part} of {role} at epoch {epoch}")
                run.log(role, f"train_{part}", value, epoch)
            for role in ROLES:
                if role != "A":
                    run.log(role, "lambda", weight, epoch)
                    run.log(role, "phase", 2 if late else 1, epoch)
                # The notebook's per-epoch panels: test accuracy and ROC-AUC (val: for reading only).
                for split in ("val", "test"):
                    result = M.classification_metrics(predict(models[role], inputs[role][split]),
                                                      labels[split], run.num_classes)
                    for metric in ("acc", "nll", "auc"):
                        run.log(role, f"{split}_{metric}", result[metric], epoch)

        if cfg.scaler == "as_published":  # roles the harness does not evaluate (see roles())
            for role in ("B", "C"):
                for split in ("val", "test"):
                    logits = predict(models[role], inputs[role][split])
                    for metric, value in M.classification_metrics(logits, labels[split],
                                                                  run.num_classes).items():
                        run.log(role, f"{split}_{metric}", value)
        for role in ("B", "C"):
            if fronts[role] is not None:  # the harness evaluates it on "flat", through its frozen PCA
                models[role] = nn.Sequential(fronts[role], models[role])
        return models
