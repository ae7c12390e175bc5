"""Golden-test scaffold: copy to ``tests/methods/test_<your_name>.py`` (the method's name is read from the file's
name) and replace ``reference_loss`` with your loss's formula, computed independently in numpy/scipy.

The loss is checked on known inputs against that formula, edge cases included (here: a confident teacher, the
student equal to its teacher, alpha at 0 and 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr, softmax

from benchmark.engine.discovery import discover

NAME = Path(__file__).stem.removeprefix("test_")
method = sys.modules[discover()[NAME].cls.__module__]


def reference_loss(student, teacher, labels, *, temperature, alpha):
    """alpha * CE + (1 - alpha) * T^2 * mean_i KL(p_i || q_i), in float64."""
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    ce = -log_softmax(student, axis=1)[np.arange(len(labels)), labels].mean()
    kd = rel_entr(softmax(teacher / temperature, axis=1), softmax(student / temperature, axis=1)).sum(1).mean()
    return alpha * ce + (1 - alpha) * temperature**2 * kd


@pytest.mark.parametrize(("temperature", "alpha"), [(4.0, 0.5), (1.0, 0.0), (10.0, 1.0), (0.5, 0.3)])
def test_loss_matches_its_formula(temperature, alpha):
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(8, 5)) * 3, rng.normal(size=(8, 5)) * 3
    teacher[0] = [30.0, 0, 0, 0, 0]  # a confident teacher: soft targets near one-hot
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    got = method.distillation_loss(torch.tensor(student, dtype=torch.float32), torch.tensor(teacher,
                                   dtype=torch.float32), torch.tensor(labels), temperature=temperature, alpha=alpha)
    want = reference_loss(student, teacher, labels, temperature=temperature, alpha=alpha)
    assert float(got["loss"]) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_a_student_equal_to_its_teacher_has_no_soft_target_loss():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
    got = method.distillation_loss(logits, logits, torch.tensor([0, 1]), temperature=4.0, alpha=0.5)
    assert float(got["kd"]) == pytest.approx(0.0, abs=1e-7)
