"""Tests of methods/dkd: TCKD and NCKD against their formulas computed here with numpy/scipy (by hand, on random logits,
a one-hot teacher, equal logits, T = 1), against the official code's masked form, the warm-up as the official
trainer counts epochs, and a run end to end that distils the shared teacher."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr, softmax

from benchmark.contract import LAMBDA
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.store import Store

METHODS = discover()
INFO = METHODS["dkd"]
Method = INFO.cls
dkd = sys.modules[Method.__module__]


def reference(student, teacher, labels, temperature):
    """(TCKD, NCKD) in float64 from the definitions: T² · mean_i KL(b_teacher ‖ b_student) with b = (p_y, Σ_{c≠y}
    p_c), p = softmax(z / T); and T² · mean_i KL(p̂_teacher ‖ p̂_student), p̂ the softmax of the non-target z / T."""
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    n, classes = student.shape
    target = np.eye(classes, dtype=bool)[labels]
    p_s, p_t = softmax(student / temperature, axis=1), softmax(teacher / temperature, axis=1)
    b_s = np.stack([p_s[target], np.where(target, 0, p_s).sum(1)], 1)
    b_t = np.stack([p_t[target], np.where(target, 0, p_t).sum(1)], 1)
    tckd = rel_entr(b_t, b_s).sum(1).mean() * temperature**2
    q_s = softmax(student[~target].reshape(n, classes - 1) / temperature, axis=1)
    q_t = softmax(teacher[~target].reshape(n, classes - 1) / temperature, axis=1)
    nckd = rel_entr(q_t, q_s).sum(1).mean() * temperature**2
    return tckd, nckd


def official_form(student, teacher, labels, temperature, alpha, beta):
    """The official code's arithmetic, written out in numpy: the log of the summed masked probabilities for TCKD,
    and the target's logit / T lowered by 1000 for NCKD (sums over the batch, divided by its size)."""
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    gt = np.eye(student.shape[1])[labels]
    p_s, p_t = softmax(student / temperature, axis=1), softmax(teacher / temperature, axis=1)
    b_s = np.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1)
    b_t = np.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
    tckd = (b_t * (np.log(b_t) - np.log(b_s))).sum() * temperature**2 / len(labels)
    q_t = softmax(teacher / temperature - 1000.0 * gt, axis=1)
    log_q_s = log_softmax(student / temperature - 1000.0 * gt, axis=1)
    nckd = rel_entr(q_t, np.exp(log_q_s)).sum() * temperature**2 / len(labels)  # xlogy: 0 where q_t = 0
    return alpha * tckd + beta * nckd


def ours(student, teacher, labels, temperature, dtype=torch.float32):
    tckd, nckd = dkd.decoupled_kl(torch.tensor(student, dtype=dtype), torch.tensor(teacher, dtype=dtype),
                                  torch.tensor(labels), temperature)
    return float(tckd), float(nckd)


def random_case(seed, n=16, classes=10, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (n, classes)), rng.normal(0, scale, (n, classes)), rng.integers(0, classes, n))


# ---- the loss against its formula -------------------------------------------------------------------------------

def test_by_hand_two_classes():
    """Label 1, teacher logits (0, 2 ln 3) at T = 2: p_teacher = (1/4, 3/4), so b_teacher = (3/4, 1/4); the student's
    (0, 0) gives b_student = (1/2, 1/2). TCKD = T² (3/4 ln(3/2) + 1/4 ln(1/2)) = 4 · 0.1308120; with one non-target
    class its distribution is (1) for both: NCKD = 0."""
    tckd, nckd = ours([[0.0, 0.0]], [[0.0, 2 * math.log(3)]], [1], 2.0)
    assert tckd == pytest.approx(4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)), rel=1e-6)
    assert tckd == pytest.approx(0.523248, abs=1e-6) and nckd == 0.0


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_logits(seed, temperature):
    student, teacher, labels = random_case(seed)
    expected = reference(student, teacher, labels, temperature)
    assert ours(student, teacher, labels, temperature, torch.float64) == pytest.approx(expected, rel=1e-10)
    assert ours(student, teacher, labels, temperature) == pytest.approx(expected, rel=1e-4)


def test_a_one_hot_teacher():
    """A teacher whose probabilities are one-hot (in float64 too): on the target, TCKD = -T² mean log b_student[0]
    and its non-target distribution is uniform; on another class j, TCKD = -T² mean log b_student[1] and NCKD =
    -T² mean log p̂_student[j]."""
    student, _, labels = random_case(2, n=6, classes=5)
    for wrong in (False, True):
        hot = (labels + 1) % 5 if wrong else labels
        teacher = np.where(np.eye(5, dtype=bool)[hot], 1e4, 0.0)
        for temperature in (1.0, 4.0):
            expected = reference(student, teacher, labels, temperature)
            got = ours(student, teacher, labels, temperature)
            assert all(math.isfinite(v) for v in got)
            assert got == pytest.approx(expected, rel=1e-5)
            p = softmax(student / temperature, axis=1)
            b_student_target = p[np.arange(6), labels]
            tckd = -np.log(1 - b_student_target if wrong else b_student_target).mean() * temperature**2
            assert got[0] == pytest.approx(tckd, rel=1e-5)


def test_equal_logits_give_zero_and_the_ce_alone():
    student, _, labels = random_case(3)
    assert ours(student, student, labels, 4.0) == (0.0, 0.0)
    uniform = np.zeros((4, 10))  # every class equal: b = (1/10, 9/10) for both models
    assert ours(uniform, uniform, np.arange(4), 1.0) == (0.0, 0.0)
    loss = dkd.DecoupledLoss(torch.tensor(student, dtype=torch.float32), alpha=1.0, beta=8.0, temperature=4.0)
    parts = loss(torch.tensor(student, dtype=torch.float32), torch.tensor(labels), torch.arange(16), weight=1.0)
    ce = -log_softmax(student, axis=1)[np.arange(16), labels].mean()
    assert float(parts["loss"]) == float(parts["ce"]) == pytest.approx(ce, rel=1e-6)


@pytest.mark.parametrize("alpha,beta,temperature,weight", [(1.0, 8.0, 4.0, 0.05), (0.5, 2.0, 1.0, 1.0)])
def test_the_loss_and_the_official_form(alpha, beta, temperature, weight):
    student, teacher, labels = random_case(4)
    loss = dkd.DecoupledLoss(torch.tensor(teacher), alpha=alpha, beta=beta, temperature=temperature)
    parts = loss(torch.tensor(student), torch.tensor(labels), torch.arange(16), weight=weight)
    ce = -log_softmax(student, axis=1)[np.arange(16), labels].mean()
    tckd, nckd = reference(student, teacher, labels, temperature)
    assert float(parts["loss"]) == pytest.approx(ce + weight * (alpha * tckd + beta * nckd), rel=1e-5)
    assert (float(parts["tckd"]), float(parts["nckd"])) == pytest.approx((tckd, nckd), rel=1e-5)
    # The official masking (target logit / T minus 1000) is the same loss for ordinary logits.
    assert alpha * tckd + beta * nckd == pytest.approx(official_form(student, teacher, labels, temperature, alpha,
                                                                     beta), rel=1e-9)


def test_nckd_sends_no_gradient_to_the_target_logit_nor_to_the_teacher():
    student, teacher, labels = random_case(5, n=8)
    z = torch.tensor(student, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(teacher, dtype=torch.float64, requires_grad=True)
    _, nckd = dkd.decoupled_kl(z, t, torch.tensor(labels), 4.0)
    nckd.backward()
    assert (z.grad[torch.arange(8), torch.tensor(labels)] == 0).all() and z.grad.abs().sum() > 0
    assert t.grad is None


def test_warmup_counts_epochs_from_one_as_the_official_trainer():
    assert [dkd.warmup_weight(e, 20) for e in (0, 1, 18, 19, 20, 49)] == [0.05, 0.1, 0.95, 1.0, 1.0, 1.0]
    assert dkd.warmup_weight(0, 1) == 1.0


def test_defaults_are_the_official_ones():  # its presets: tests/methods/test_presets.py
    cfg = Method.Config()
    assert (cfg.alpha, cfg.beta, cfg.temperature, cfg.warmup) == (1.0, 8.0, 4.0, 20)
    assert (cfg.arch, cfg.view, cfg.lr, cfg.batch_size, cfg.epochs, cfg.patience) == \
        (("hinton_student", "flat", 1e-3, 64, 50, 10))


# ---- end to end ----------------------------------------------------------------------------------------------------

def test_a_run_distils_the_teacher_with_the_warmup_of_its_epochs(tmp_path):
    specs = plan([INFO], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS)
    assert sorted(s.method for s in specs) == ["dkd", "label_smoothing", "scratch_student", "teacher"]
    outcome = run_plan(specs, Settings(store=Store(tmp_path), threads=1), backend="inprocess")
    assert not outcome.failed, [r["error"] for r in outcome.failed]
    record = Store(tmp_path).read_run(next(s for s in specs if s.method == "dkd").run_id)
    rows = {(role, epoch, metric): value for role, epoch, metric, value in record["metrics"]}
    cfg = configuration.resolve(Method, "smoke")
    for epoch in range(cfg.epochs):  # the epoch means are linear in the parts: the weight each epoch had
        weight = dkd.warmup_weight(epoch, cfg.warmup)
        assert rows["student", epoch, LAMBDA] == weight
        parts = [rows["student", epoch, f"train_{p}"] for p in ("ce", "tckd", "nckd")]
        assert rows["student", epoch, "train_loss"] == pytest.approx(
            parts[0] + weight * (cfg.alpha * parts[1] + cfg.beta * parts[2]), rel=1e-6)
    assert ("student", -1, "test_agreement") in rows and ("student", -1, "test_acc") in rows
