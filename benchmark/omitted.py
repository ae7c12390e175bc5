"""The metrics of a model trained on a transfer set without one class (Hinton et al. 2015, section 3), and the
paper's correction: the omitted class's logit raised by a bias, because a student that never saw the class learns
too low a bias for it.

The paper chose the bias (+3.5) for the best overall accuracy on the test set; here it is chosen the same way on
the validation split, never the test split: the bias in ``BIAS_GRID`` (0 to 10 in steps of 0.05) with the highest
validation accuracy, the smallest such bias on a tie. The validation split holds the omitted class's examples
(transfer sets cut the training split only): choosing one number with them is the only use any model makes of
that class's labels. The scratch student of the same transfer set gets the same procedure, so the comparison is
fair. Metric names end in ``_acc`` where they are accuracies, so the tables summarise and pair them:

- ``test_omitted_acc``: accuracy on the test examples of the omitted class;
- ``test_corrected_acc``, ``test_omitted_corrected_acc``: overall and omitted-class test accuracy after the bias;
- ``omitted_bias``: the bias chosen on validation (logits units).
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.contract import ACCURACY_CORRECTED, OMITTED_ACCURACY, OMITTED_ACCURACY_CORRECTED, OMITTED_BIAS

BIAS_GRID = np.round(np.arange(0, 10 + 1e-9, 0.05), 2)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


def shifted(logits: np.ndarray, omitted: int, bias: float) -> np.ndarray:
    out = np.array(logits, dtype=np.float64, copy=True)
    out[:, omitted] += bias
    return out


def choose_bias(val_logits: np.ndarray, val_labels: np.ndarray, omitted: int) -> float:
    """The bias of ``BIAS_GRID`` with the best validation accuracy (the smallest of the best); 0 without examples."""
    if not len(val_labels):
        return 0.0
    scores = [_accuracy(shifted(val_logits, omitted, b), val_labels) for b in BIAS_GRID]
    return float(BIAS_GRID[int(np.argmax(scores))])  # argmax: the first (smallest) of equal scores


def omitted_metrics(val_logits: torch.Tensor, val_labels: torch.Tensor, test_logits: torch.Tensor,
                    test_labels: torch.Tensor, omitted: int) -> dict[str, float]:
    """The metrics of the module docstring for a model's validation and test logits."""
    val_x, val_y = val_logits.double().cpu().numpy(), val_labels.cpu().numpy()
    test_x, test_y = test_logits.double().cpu().numpy(), test_labels.cpu().numpy()
    bias = choose_bias(val_x, val_y, omitted)
    corrected, mask = shifted(test_x, omitted, bias), test_y == omitted
    return {OMITTED_ACCURACY: _accuracy(test_x[mask], test_y[mask]),
            ACCURACY_CORRECTED: _accuracy(corrected, test_y),
            OMITTED_ACCURACY_CORRECTED: _accuracy(corrected[mask], test_y[mask]),
            OMITTED_BIAS: bias}
