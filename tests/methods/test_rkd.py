"""Tests of methods/rkd: the distance and angle terms against their definitions computed here in numpy (distances
from the difference vectors, angles from the normalised difference vectors, as the official code builds them), on
random embeddings, identical student and teacher, a batch of two and of one, equal embeddings, a rescaled student;
the weighted sum; and the cost of the angle term against the official formulation."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from benchmark.engine.discovery import discover

METHODS = discover()
rkd = sys.modules[METHODS["rkd"].cls.__module__]


def smooth_l1(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d * d, d - 0.5).mean()


def distances(e):
    """‖e_i - e_j‖ from the differences, divided by the mean over i ≠ j."""
    e = np.asarray(e, np.float64)
    d = np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))
    off = ~np.eye(len(e), dtype=bool)
    return d / d[off].mean()


def cosines(e):
    """[j, i, k]: cosine at e_j between e_i - e_j and e_k - e_j; a zero difference gives 0 (F.normalize's zero)."""
    e = np.asarray(e, np.float64)
    diff = e[None, :, :] - e[:, None, :]  # [j, i]: e_i - e_j
    norm = np.linalg.norm(diff, axis=-1, keepdims=True)
    unit = np.divide(diff, norm, out=np.zeros_like(diff), where=norm > 0)
    return np.einsum("jif,jkf->jik", unit, unit)


def loss_of(student, teacher):
    s, t = torch.tensor(student, dtype=torch.float32), torch.tensor(teacher, dtype=torch.float32)
    return float(rkd.distance_loss(s, t)), float(rkd.angle_loss(s, t))


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(0)
    return np.maximum(rng.normal(1, 1, (16, 30)), 0), np.maximum(rng.normal(0, 2, (16, 120)), 0)


def test_the_terms_match_their_definitions(embeddings):
    student, teacher = embeddings
    distance, angle = loss_of(student, teacher)
    assert distance == pytest.approx(smooth_l1(distances(student), distances(teacher)), rel=1e-5)
    assert angle == pytest.approx(smooth_l1(cosines(student), cosines(teacher)), rel=1e-4)
    np.testing.assert_allclose(rkd.triplet_cosines(torch.tensor(student, dtype=torch.float32)).numpy(),
                               cosines(student), atol=1e-5)
    np.testing.assert_allclose(rkd.normalised_distances(torch.tensor(student, dtype=torch.float32)).numpy(),
                               distances(student), rtol=1e-5, atol=1e-6)


def test_a_student_with_the_teachers_relations_has_no_loss(embeddings):
    _, teacher = embeddings
    assert loss_of(teacher, teacher) == pytest.approx((0.0, 0.0), abs=1e-9)
    rotated = teacher @ np.linalg.qr(np.random.default_rng(1).normal(size=(120, 120)))[0]  # distances kept
    assert loss_of(3.0 * rotated + 5.0, teacher) == pytest.approx((0.0, 0.0), abs=1e-6)  # scale and shift too


def test_two_examples_have_only_trivial_angles_and_one_example_no_distance():
    s, t = np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    cos = rkd.triplet_cosines(torch.tensor(s, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(cos, cosines(s), atol=1e-6)
    assert cos[0, 1, 1] == pytest.approx(1.0) and cos[1, 0, 0] == pytest.approx(1.0) and cos[0, 0, 1] == 0.0
    assert loss_of(s, t) == pytest.approx((0.0, 0.0), abs=1e-7)
    one = torch.ones(1, 4, requires_grad=True)
    assert rkd.distance_loss(one, torch.zeros(1, 3)).item() == 0.0 and rkd.angle_loss(one, torch.ones(1, 3)).item() == 0


def test_equal_embeddings_give_zero_distance_and_angle_and_finite_gradients():
    rng = np.random.default_rng(2)
    student = rng.normal(size=(6, 5))
    student[3] = student[1]  # two examples with one embedding
    s = torch.tensor(student, dtype=torch.float32, requires_grad=True)
    np.testing.assert_allclose(rkd.triplet_cosines(s).detach().numpy(), cosines(student), atol=1e-5)
    np.testing.assert_allclose(rkd.normalised_distances(s).detach().numpy(), distances(student), rtol=1e-5, atol=1e-6)
    teacher = torch.tensor(rng.normal(size=(6, 7)), dtype=torch.float32)
    (rkd.distance_loss(s, teacher) + rkd.angle_loss(s, teacher)).backward()
    assert torch.isfinite(s.grad).all()
    same = torch.ones(5, 3, requires_grad=True)  # every embedding equal (a dead layer): zeros, no NaN
    assert rkd.distance_loss(same, teacher[:5]).item() > 0 and torch.isfinite(rkd.angle_loss(same, teacher[:5]))


def test_the_loss_weighs_its_terms_as_configured(embeddings):
    student, teacher = (torch.tensor(e, dtype=torch.float32) for e in embeddings)
    logits, labels = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    criterion = rkd.RelationalLoss(teacher, distance_weight=25.0, angle_weight=50.0)
    parts = criterion(logits, student, labels, torch.arange(16))
    ce = torch.nn.functional.cross_entropy(logits, labels)
    expected = ce + 25 * rkd.distance_loss(student, teacher) + 50 * rkd.angle_loss(student, teacher)
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(rkd.RelationalLoss(teacher, distance_weight=0.0, angle_weight=50.0)(
        logits, student, labels, torch.arange(16))) == {"loss", "ce", "angle"}


def official_angle(student, teacher):
    """The official code's angle term (lenscloth/RKD, metric/loss.py), for the cost comparison."""
    F = torch.nn.functional
    with torch.no_grad():
        td = F.normalize(teacher.unsqueeze(0) - teacher.unsqueeze(1), p=2, dim=2)
        t_angle = torch.bmm(td, td.transpose(1, 2)).view(-1)
    sd = F.normalize(student.unsqueeze(0) - student.unsqueeze(1), p=2, dim=2)
    return F.smooth_l1_loss(torch.bmm(sd, sd.transpose(1, 2)).view(-1), t_angle)


def test_the_angle_term_is_the_official_one_at_a_fraction_of_its_cost(one_thread):
    gen = torch.Generator().manual_seed(3)
    student = torch.randn(64, 300, generator=gen).relu().requires_grad_()
    teacher = torch.randn(64, 1200, generator=gen).relu()
    ours, theirs = rkd.angle_loss(student, teacher), official_angle(student, teacher)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-4)
    grad_ours, = torch.autograd.grad(ours, student)
    grad_theirs, = torch.autograd.grad(theirs, student)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-3, atol=1e-9)

    def best(fn):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            fn(student, teacher).backward()
            times.append(time.perf_counter() - start)
        return min(times)

    assert best(rkd.angle_loss) * 3 < best(official_angle)
