"""The JS-entanglement losses: the divergences, the λ schedule, phase 2's alignment terms and the per-model losses
of one step (see method.py for what the notebook does and what is optimised)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# λ_e = λ_max · shape(t), t = e/(E−1) in [0, 1]: 0 at the first epoch, 1 at the last.
SCHEDULES = {
    "log": lambda t: math.log10(1 + 9 * t),  # the notebook's "slower rise", 0 -> 1
    "linear": lambda t: t,
    "constant": lambda t: 1.0,
    "zero": lambda t: 0.0,  # no alignment at all: three models trained side by side on CE
}


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


def alignment(logits: torch.Tensor, target_logits: torch.Tensor, cfg, late: bool) -> torch.Tensor:
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


def entangled_losses(logits: dict[str, torch.Tensor], labels: torch.Tensor, weight: float, cfg,
                     late: bool) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """(objective, parts) for one batch.

    ``objective.backward()`` gives each model exactly the gradient the notebook's
    ``tape.gradient(loss_X, model_X.trainable_variables)`` gives it: partners enter detached, so no model
    receives gradient from another's loss. ``parts[role][name]``: ``loss`` (the notebook's reported
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
    parts = {"A": {"loss": ce["A"].detach(), "ce": ce["A"].detach()}}
    for role in ("B", "C"):
        own = ce[role] + weight * teacher[role]
        objective = objective + own + weight * peer[role]
        parts[role] = {"loss": own.detach() + mutual, "ce": ce[role].detach(), "teacher": teacher[role].detach(),
                       "peer": peer[role].detach()}
    return objective, parts
