import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from benchmark import metrics as M


@pytest.fixture
def example():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 0, 1])
    return logits, labels


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_accuracy_and_nll_against_formula(example):
    logits, labels = example
    p = _softmax(logits.numpy().astype(float))
    assert M.accuracy(logits, labels) == pytest.approx(2 / 4)
    assert M.nll(logits, labels) == pytest.approx(-np.mean(np.log(p[np.arange(4), labels.numpy()])))


def test_ece_by_hand(example):
    logits, labels = example
    p = _softmax(logits.numpy().astype(float))
    conf, pred = p.max(1), p.argmax(1)
    correct = pred == labels.numpy()
    edges = np.linspace(0, 1, 16)
    expected = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            expected += m.mean() * abs(correct[m].mean() - conf[m].mean())
    assert M.expected_calibration_error(logits, labels) == pytest.approx(expected)
    assert expected > 0


def test_macro_auc_is_mean_of_one_vs_rest(example):
    logits, labels = example
    p = _softmax(logits.numpy().astype(float))
    y = labels.numpy()
    expected = np.mean([roc_auc_score(y == c, p[:, c]) for c in range(3)])
    assert M.macro_auc(logits, labels, 3) == pytest.approx(expected)


def test_agreement():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [3.0, 1.0], [1.0, 0.0]])
    assert M.agreement(a, b) == pytest.approx(2 / 3)
