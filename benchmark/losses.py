"""Losses two or more methods share: Hinton's soft-target loss (hinton_kd, and the second stage of fitnets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

KERAS_EPSILON = 1e-7  # keras.backend.epsilon(): KLDivergence clips both distributions to [1e-7, 1]


class SoftTargetLoss:
    """α·CE(y, z) + (1-α)·w·KL(p_T ‖ q_T), batch means, with p_T = softmax(teacher_logits / T),
    q_T = softmax(z / T) and w = T² (1 without ``t_squared``).

    The teacher's logits are fixed for the whole run (frozen teacher, no augmentation), so its soft targets
    are computed once here and looked up by the batch's example indices: a step costs the student's forward
    and backward plus a few [batch, classes] operations.
    """

    def __init__(self, teacher_logits: torch.Tensor, *, temperature: float, alpha: float,
                 t_squared: bool = True, keras_clip: bool = False):
        self.temperature = temperature
        self.alpha = alpha
        self.kd_weight = (1.0 - alpha) * (temperature**2 if t_squared else 1.0)
        self.keras_clip = keras_clip
        # detach: whatever the caller passes, no gradient can flow back into the teacher through its targets
        log_p = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
        if keras_clip:
            log_p = log_p.exp().clamp(KERAS_EPSILON, 1.0).log()
        self.teacher_log_probs = log_p  # [training examples, classes]

    def kl(self, student_logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Mean over the batch ``idx`` of KL(p_T ‖ q_T) = Σ_c p_c (log p_c - log q_c)."""
        if self.keras_clip:
            # Keras clips probabilities, not log-probabilities: no gradient flows through a clipped q_c
            log_q = F.softmax(student_logits / self.temperature, dim=1).clamp(KERAS_EPSILON, 1.0).log()
        else:
            log_q = F.log_softmax(student_logits / self.temperature, dim=1)
        return F.kl_div(log_q, self.teacher_log_probs[idx], reduction="batchmean", log_target=True)

    def __call__(self, student_logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> dict:
        ce = F.cross_entropy(student_logits, labels)
        kd = self.kl(student_logits, idx)
        return {"loss": self.alpha * ce + self.kd_weight * kd, "ce": ce, "kd": kd}
