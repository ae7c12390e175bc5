"""Evaluation metrics on a model's logits: accuracy, macro one-vs-rest ROC-AUC, NLL, expected calibration error and
top-1 agreement. Each is a plain function of tensors so it can be tested against its formula."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == labels).double().mean().item()


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood (nats) of the true class under softmax(logits)."""
    return F.cross_entropy(logits.double(), labels).item()


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width confidence bins: sum_b |B|/N * |acc(B) - conf(B)| (Guo et al. 2017)."""
    probs = torch.softmax(logits.double(), dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    ece = torch.zeros((), dtype=torch.float64)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.double().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return ece.item()


def macro_auc(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Macro-averaged one-vs-rest ROC-AUC over the classes present in ``labels`` (NaN if fewer than two)."""
    y = labels.numpy()
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    scores = torch.softmax(logits.double(), dim=1).numpy()
    aucs = [roc_auc_score(y == c, scores[:, c]) for c in present]
    return float(np.mean(aucs))


def agreement(logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Fraction of examples where the two models' top-1 predictions agree."""
    return (logits.argmax(dim=1) == reference_logits.argmax(dim=1)).double().mean().item()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    return {
        "acc": accuracy(logits, labels),
        "auc": macro_auc(logits, labels, num_classes),
        "nll": nll(logits, labels),
        "ece": expected_calibration_error(logits, labels),
    }
