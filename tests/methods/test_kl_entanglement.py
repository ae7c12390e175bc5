"""Tests of methods/kl_entanglement: both KL directions against scipy, the Keras clipping, the gradients,
the linear λ schedule, the notebook's update order, and (end to end) that the first epoch, where λ = 0, is bit
for bit the scratch student's."""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr, softmax
from scipy.stats import entropy

from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.store import Store

METHODS = discover()
Method = METHODS["kl_entanglement"].cls
kl = sys.modules[Method.__module__]
KERAS_EPSILON = 1e-7

# Fixed logits with a wide spread, so that some probabilities fall far below Keras's 1e-7 clip.
SELF_LOGITS = np.array([[2.0, -1.0, 0.5, 30.0], [0.1, 0.2, 0.3, 0.4], [-5.0, 12.0, 0.0, 1.0]])
OTHER_LOGITS = np.array([[1.0, 1.0, -2.0, 0.0], [3.0, -3.0, 0.0, 0.5], [0.0, -25.0, 4.0, 2.0]])
LABELS = np.array([3, 0, 1])


def t(a, requires_grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad)


def numpy_kl(p_logits, q_logits, epsilon=0.0):
    """Row-mean KL(p ‖ q) in float64; with epsilon, keras.losses.KLDivergence (clip both to [epsilon, 1])."""
    p, q = softmax(p_logits, axis=1), softmax(q_logits, axis=1)
    if epsilon:
        p, q = np.clip(p, epsilon, 1), np.clip(q, epsilon, 1)
        return float(np.mean(np.sum(p * np.log(p / q), axis=1)))
    return float(rel_entr(p, q).sum(axis=1).mean())


# ---- both KL directions against scipy ----------------------------------------------------------------------

def test_kl_by_hand():
    """p = (1/4, 3/4), q = (1/2, 1/2): KL(p ‖ q) = 1/4 ln(1/2) + 3/4 ln(3/2),
    KL(q ‖ p) = 1/2 ln 2 + 1/2 ln(2/3)."""
    p_logits, q_logits = t([[0.0, math.log(3)]]), t([[0.0, 0.0]])
    assert float(kl.kl_divergence(p_logits, q_logits, 0.0)) == pytest.approx(
        0.25 * math.log(0.5) + 0.75 * math.log(1.5), rel=1e-12)
    assert float(kl.kl_divergence(q_logits, p_logits, 0.0)) == pytest.approx(
        0.5 * math.log(2) + 0.5 * math.log(2 / 3), rel=1e-12)


@pytest.mark.parametrize("direction", ["self_other", "other_self"])
def test_kl_directions_match_scipy(direction):
    p_self, p_other = softmax(SELF_LOGITS, axis=1), softmax(OTHER_LOGITS, axis=1)
    first, second = (p_self, p_other) if direction == "self_other" else (p_other, p_self)
    expected = rel_entr(first, second).sum(axis=1).mean()
    assert expected == pytest.approx(entropy(first, second, axis=1).mean(), rel=1e-12)
    parts = kl.entangled_loss(t(SELF_LOGITS), t(OTHER_LOGITS), torch.tensor(LABELS), 0.3, direction, 0.0)
    assert float(parts["kl"]) == pytest.approx(expected, rel=1e-10)


def test_the_two_directions_differ_on_these_inputs():
    forward = numpy_kl(SELF_LOGITS, OTHER_LOGITS)
    reverse = numpy_kl(OTHER_LOGITS, SELF_LOGITS)
    assert abs(forward - reverse) > 1.0  # so the direction test above can tell them apart
    labels = torch.tensor(LABELS)
    got = {d: float(kl.entangled_loss(t(SELF_LOGITS), t(OTHER_LOGITS), labels, 1.0, d, 0.0)["kl"])
           for d in ("self_other", "other_self")}
    assert got["self_other"] == pytest.approx(forward, rel=1e-10)
    assert got["other_self"] == pytest.approx(reverse, rel=1e-10)


@pytest.mark.parametrize("direction", ["self_other", "other_self"])
def test_keras_clipping(direction):
    """kl_epsilon=1e-7 is keras.losses.KLDivergence: both distributions clipped to [1e-7, 1] first."""
    a, b = (SELF_LOGITS, OTHER_LOGITS) if direction == "self_other" else (OTHER_LOGITS, SELF_LOGITS)
    expected = numpy_kl(a, b, KERAS_EPSILON)
    assert abs(expected - numpy_kl(a, b)) > 0.1  # the clip matters on these logits
    parts = kl.entangled_loss(t(SELF_LOGITS), t(OTHER_LOGITS), torch.tensor(LABELS), 0.3, direction,
                              KERAS_EPSILON)
    assert float(parts["kl"]) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("direction", ["self_other", "other_self"])
@pytest.mark.parametrize("weight", [0.0, 0.05, 0.5])
def test_total_loss_is_ce_plus_weighted_kl(direction, weight):
    ce = -log_softmax(SELF_LOGITS, axis=1)[np.arange(3), LABELS].mean()
    a, b = (SELF_LOGITS, OTHER_LOGITS) if direction == "self_other" else (OTHER_LOGITS, SELF_LOGITS)
    parts = kl.entangled_loss(t(SELF_LOGITS), t(OTHER_LOGITS), torch.tensor(LABELS), weight, direction,
                              KERAS_EPSILON)
    assert float(parts["ce"]) == pytest.approx(ce, rel=1e-12)
    assert float(parts["loss"]) == pytest.approx(ce + weight * numpy_kl(a, b, KERAS_EPSILON), rel=1e-10)


def test_float32_exact_kl_stays_finite_where_probabilities_underflow():
    """Logit gaps of 200 underflow softmax to 0 in float32; the log-space KL stays finite (equal to scipy)."""
    p_logits, q_logits = np.array([[0.0, 200.0, 0.0]]), np.array([[200.0, 0.0, 0.0]])
    got = float(kl.kl_divergence(torch.tensor(p_logits, dtype=torch.float32),
                                 torch.tensor(q_logits, dtype=torch.float32), 0.0))
    expected = float(np.sum(softmax(p_logits) * (log_softmax(p_logits) - log_softmax(q_logits))))
    assert math.isfinite(got) and got == pytest.approx(expected, rel=1e-5)


# ---- gradients: only through "self", and the right ones ----------------------------------------------------

@pytest.mark.parametrize("direction", ["self_other", "other_self"])
def test_gradient_flows_only_through_self(direction):
    self_logits, other_logits = t(SELF_LOGITS, True), t(OTHER_LOGITS, True)
    kl.entangled_loss(self_logits, other_logits, torch.tensor(LABELS), 0.5, direction, 0.0)["loss"].backward()
    assert other_logits.grad is None
    assert self_logits.grad is not None and torch.any(self_logits.grad != 0)


@pytest.mark.parametrize("direction", ["self_other", "other_self"])
def test_kl_gradient_against_its_formula(direction):
    """d/dz KL(p ‖ q) = p ⊙ (log p − log q − KL) and d/dz KL(q ‖ p) = p − q for p = softmax(z), each / N."""
    p, q = softmax(SELF_LOGITS, axis=1), softmax(OTHER_LOGITS, axis=1)
    n = len(p)
    if direction == "self_other":
        row_kl = rel_entr(p, q).sum(axis=1, keepdims=True)
        expected = p * (np.log(p) - np.log(q) - row_kl) / n
    else:
        expected = (p - q) / n
    self_logits = t(SELF_LOGITS, True)
    parts = kl.entangled_loss(self_logits, t(OTHER_LOGITS), torch.tensor(LABELS), 1.0, direction, 0.0)
    parts["kl"].backward()
    np.testing.assert_allclose(self_logits.grad.numpy(), expected, rtol=1e-9, atol=1e-15)


def test_keras_clip_zeroes_the_gradient_of_clipped_probabilities():
    """p = softmax(18, 18, 0, 0) puts p < 1e-7 on classes 2 and 3; under the clip they contribute nothing of
    their own, so dKL/dz_j = Σ_{k unclipped} (log(p_k/q_k) + 1) · p_k (δ_kj − p_j)."""
    z, other = np.array([[18.0, 18.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 2.0, 3.0]])
    self_logits = t(z, True)
    kl.kl_divergence(self_logits, t(other), KERAS_EPSILON).backward()
    p, q = softmax(z, axis=1)[0], softmax(other, axis=1)[0]
    kept = p >= KERAS_EPSILON
    assert kept.tolist() == [True, True, False, False]
    jacobian = np.diag(p) - np.outer(p, p)  # dp_k/dz_j
    expected = ((np.log(p / q) + 1) * kept) @ jacobian
    np.testing.assert_allclose(self_logits.grad.numpy()[0], expected, rtol=1e-9, atol=1e-15)
    unclipped = (np.log(p / q) + 1) @ jacobian
    assert not np.allclose(expected, unclipped, rtol=1e-6, atol=0)  # the clip visibly changes the gradient


# ---- the λ schedule ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("epoch, expected", [(0, 0.0), (15, 0.025), (29, 0.05 * 29 / 30)])
def test_linear_schedule_first_middle_last(epoch, expected):
    assert kl.entangle_weight(epoch, 30, 0.05, "linear") == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("epoch", [0, 15, 29])
def test_constant_schedule(epoch):
    assert kl.entangle_weight(epoch, 30, 0.05, "constant") == 0.05


def test_unknown_schedule_and_direction_are_errors():
    with pytest.raises(ValueError, match="schedule"):
        kl.entangle_weight(0, 30, 0.05, "cosine")
    with pytest.raises(ValueError, match="direction"):
        kl.entangled_loss(t(SELF_LOGITS), t(OTHER_LOGITS), torch.tensor(LABELS), 0.1, "both", 0.0)


# ---- the notebook's update order ---------------------------------------------------------------------------

def reference_update(model, x, y, target_logits, weight, lr, seed=None):
    """One SGD step of ``model`` on CE + weight*KL(model(x) ‖ target), written out here, not with the method's
    code. ``seed`` reproduces the dropout mask of the step under test."""
    model = copy.deepcopy(model)
    if seed is not None:
        torch.manual_seed(seed)
    logits = model(x)
    log_p, log_q = torch.log_softmax(logits, 1), torch.log_softmax(target_logits, 1)
    ce = -log_p[torch.arange(len(y)), y].mean()
    divergence = (log_p.exp() * (log_p - log_q)).sum(1).mean()
    (ce + weight * divergence).backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= lr * param.grad
    return model


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class FakeBatch:
    """The harness's step protocol (benchmark.engine.fit.Batch) on given models, optimisers and one batch, so the
    method's own step function can be driven with SGD and compared with the reference above."""

    epoch, epochs = 0, 1

    def __init__(self, models, optimisers, x, y):
        self.models, self.optimisers, self.x_, self.y = models, optimisers, x, y
        self.logged = {}

    def forward(self, role):
        return self.models[role](self.x_)

    @torch.no_grad()
    def predict(self, role):
        model = self.models[role].eval()
        out = model(self.x_)
        model.train()
        return out

    def update(self, parts, loss=None):
        for role in parts:
            self.optimisers[role].zero_grad()
        (loss if loss is not None else sum(p["loss"] for p in parts.values())).backward()
        for role in parts:
            self.optimisers[role].step()

    def log(self, role, name, value, weight=1):
        self.logged[role, name] = value


def test_update_order_matches_the_notebook():
    """Targets are both taken (in inference mode) before either update; A is updated, then B against A's
    output from *before* A's update. A carries dropout, so inference mode matters for its target for B."""
    torch.manual_seed(0)
    nn = torch.nn
    model_a = nn.Sequential(nn.Linear(5, 6), nn.Dropout(0.5), nn.Linear(6, 3)).double()
    model_b = torch.nn.Linear(5, 3).double()
    x, y = torch.randn(8, 5, dtype=torch.float64) * 3, torch.randint(0, 3, (8,))
    weight, lr, seed = 2.0, 0.5, 123
    a0, b0 = copy.deepcopy(model_a), copy.deepcopy(model_b)
    with torch.no_grad():
        a0_inference = a0.eval()(x)
        a0.train()
        b0_out = b0(x)
    expected_a = reference_update(a0, x, y, b0_out, weight, lr, seed)
    expected_b = reference_update(b0, x, y, a0_inference, weight, lr)

    optimisers = {"A": torch.optim.SGD(model_a.parameters(), lr=lr), "B": torch.optim.SGD(model_b.parameters(), lr=lr)}
    cfg = configuration.resolve(Method, "smoke", {"schedule": "constant", "lambda_max": weight, "kl_epsilon": 0.0})
    batch = FakeBatch({"A": model_a, "B": model_b}, optimisers, x, y)
    torch.manual_seed(seed)
    kl.step(batch, cfg)

    assert torch.allclose(params(model_a), params(expected_a), rtol=0, atol=1e-12)
    assert torch.allclose(params(model_b), params(expected_b), rtol=0, atol=1e-12)
    assert model_a.training and model_b.training  # inference mode was only for the targets
    # The orders the notebook does not use give a different B, so the check above can fail.
    with torch.no_grad():
        a1_inference = expected_a.eval()(x)
        a0_training = a0.train()(x)
    assert not torch.allclose(params(model_b), params(reference_update(b0, x, y, a1_inference, weight, lr)))
    assert not torch.allclose(params(model_b), params(reference_update(b0, x, y, a0_training, weight, lr)))
    # Running accuracy counts B's prediction before B's update.
    assert int(batch.logged["B", "train_running_acc"]) == int((b0_out.argmax(1) == y).sum())


# ---- end to end through the harness ------------------------------------------------------------------------

@pytest.fixture
def one_thread():
    """Batch-8 steps on tiny models run fastest (and reproducibly) on one thread."""
    threads = torch.get_num_threads()
    yield 1
    torch.set_num_threads(threads)


def test_first_epoch_is_the_scratch_student_and_lambda_is_logged(tmp_path, one_thread):
    """λ = 0 in epoch 0, so A and B after epoch 0 are bit for bit their scratch students (same initialisation,
    batch order and Adam); from epoch 1 (λ = λ_max/2 at the smoke preset's 2 epochs) they are not."""
    info = METHODS["kl_entanglement"]
    specs = plan([info], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS)
    outcome = run_plan(specs, Settings(store=Store(tmp_path), threads=one_thread), backend="inprocess")
    assert [r["error"] for r in outcome.records if r["status"] != "ok"] == []
    records = {r["run_id"]: r for r in Store(tmp_path).iter_runs()}
    method = next(r for r in records.values() if r["method"] == "kl_entanglement")
    cfg = configuration.resolve(Method, "smoke")
    rows = {(role, epoch, metric): value for role, epoch, metric, value in method["metrics"]}
    for role, arch in (("A", cfg.arch_a), ("B", cfg.arch_b)):
        assert [rows[(role, e, "lambda")] for e in range(cfg.epochs)] == [0.0, cfg.lambda_max / 2]
        scratch = next(r for r in records.values() if r["method"] == "scratch_student"
                       and r["roles"]["student"]["arch"] == arch)
        assert scratch["roles"]["student"]["pair_key"] == method["roles"][role]["pair_key"]
        scratch_rows = {(epoch, metric): value for _, epoch, metric, value in scratch["metrics"]}
        for metric in ("val_nll", "test_nll", "test_acc"):
            assert rows[(role, 0, metric)] == scratch_rows[(0, metric)], (role, metric)
        assert rows[(role, 1, "val_nll")] != scratch_rows[(1, "val_nll")], role
        assert rows[(role, -1, "train_running_acc")] == rows[(role, cfg.epochs - 1, "train_running_acc")]
        assert 0.0 <= rows[(role, -1, "test_partner_agreement")] <= 1.0
