"""Tests of methods/hinton_kd: the soft-target loss against its formula (computed here with numpy/scipy), the frozen
teacher, and the presets that make the method share the baselines' runs."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr, softmax

from benchmark.contract import shared_teacher
from benchmark.engine import config as configuration
from benchmark.engine.context import RunContext
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.runner.status import partition
from benchmark.store import Store

METHODS = discover()
INFO = METHODS["hinton_kd"]
Method = INFO.cls
hinton = sys.modules[Method.__module__]
KERAS_EPSILON = 1e-7


def reference_loss(student, teacher, labels, *, temperature, alpha, t_squared, clip=False):
    """The loss from its formula in float64: alpha*CE + (1-alpha)*[T^2]*mean_i KL(p_i || q_i)."""
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    ce = -log_softmax(student, axis=1)[np.arange(len(labels)), labels].mean()
    p, q = softmax(teacher / temperature, axis=1), softmax(student / temperature, axis=1)
    if clip:  # keras.losses.KLDivergence: clip both to [epsilon, 1], then sum p*log(p/q)
        p, q = np.clip(p, KERAS_EPSILON, 1), np.clip(q, KERAS_EPSILON, 1)
    kd = rel_entr(p, q).sum(axis=1).mean()
    weight = (1 - alpha) * (temperature**2 if t_squared else 1.0)
    return {"loss": alpha * ce + weight * kd, "ce": ce, "kd": kd}


def as_floats(parts):
    return {k: float(v) for k, v in parts.items()}


# ---- the loss against its formula -------------------------------------------------------------------------------

def test_loss_by_hand():
    """Two classes: p = (1/4, 3/4) at T=2 from teacher logits (0, 2 ln 3), q = (1/2, 1/2), label 1.
    KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.130812, CE = ln 2."""
    teacher = torch.tensor([[0.0, 2 * math.log(3)]])
    criterion = hinton.SoftTargetLoss(teacher, temperature=2.0, alpha=0.5, t_squared=True)
    parts = as_floats(criterion(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([0])))
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert parts["kd"] == pytest.approx(0.1308120, abs=1e-6) == pytest.approx(kl, rel=1e-6)
    assert parts["ce"] == pytest.approx(math.log(2), rel=1e-6)
    assert parts["loss"] == pytest.approx(0.5 * math.log(2) + 0.5 * 4 * kl, rel=1e-6)  # T^2 = 4
    no_t2 = hinton.SoftTargetLoss(teacher, temperature=2.0, alpha=0.5, t_squared=False)
    assert float(no_t2(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([0]))["loss"]) == pytest.approx(
        0.5 * math.log(2) + 0.5 * kl, rel=1e-6)


@pytest.mark.parametrize("t_squared", [True, False])
@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0, 20.0])
def test_loss_matches_formula(temperature, alpha, t_squared):
    rng = np.random.default_rng(0)
    teacher_all = rng.normal(scale=4.0, size=(12, 10)).astype(np.float32)  # the whole training split
    idx = np.array([7, 2, 11, 0, 5])  # a batch: rows of the split, not its first rows
    student = rng.normal(scale=3.0, size=(5, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=5)
    criterion = hinton.SoftTargetLoss(torch.from_numpy(teacher_all), temperature=temperature, alpha=alpha,
                                      t_squared=t_squared)
    got = as_floats(criterion(torch.from_numpy(student), torch.from_numpy(labels), torch.from_numpy(idx)))
    want = reference_loss(student, teacher_all[idx], labels, temperature=temperature, alpha=alpha,
                          t_squared=t_squared)
    for key in ("loss", "ce", "kd"):
        assert got[key] == pytest.approx(want[key], rel=2e-5, abs=1e-7), key


def test_t_squared_scales_only_the_soft_term():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(4, 10)).astype(np.float32), rng.normal(size=(4, 10)).astype(np.float32)
    labels, idx = torch.tensor([0, 3, 3, 9]), torch.arange(4)
    with_t2 = as_floats(hinton.SoftTargetLoss(torch.from_numpy(teacher), temperature=4.0, alpha=0.3)(
        torch.from_numpy(student), labels, idx))
    without = as_floats(hinton.SoftTargetLoss(torch.from_numpy(teacher), temperature=4.0, alpha=0.3,
                                              t_squared=False)(torch.from_numpy(student), labels, idx))
    assert with_t2["kd"] == pytest.approx(without["kd"]) and with_t2["ce"] == pytest.approx(without["ce"])
    assert with_t2["loss"] - 0.3 * with_t2["ce"] == pytest.approx(16 * (without["loss"] - 0.3 * without["ce"]),
                                                                  rel=1e-5)


def test_keras_clip_matches_keras_formula_where_clipping_binds():
    # At T=1 these logits give teacher and student probabilities far below 1e-7, so the clip changes the value.
    teacher = np.array([[30.0, 0.0, -5.0], [0.0, 1.0, 2.0]], np.float32)
    student = np.array([[-5.0, 25.0, 0.0], [2.0, 1.0, 0.0]], np.float32)
    labels, idx = np.array([0, 2]), torch.arange(2)
    kwargs = {"temperature": 1.0, "alpha": 0.1, "t_squared": False}
    clipped = as_floats(hinton.SoftTargetLoss(torch.from_numpy(teacher), keras_clip=True, **kwargs)(
        torch.from_numpy(student), torch.from_numpy(labels), idx))
    want = reference_loss(student, teacher, labels, clip=True, **kwargs)
    exact = reference_loss(student, teacher, labels, clip=False, **kwargs)
    assert clipped["kd"] == pytest.approx(want["kd"], rel=1e-5)
    assert clipped["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert abs(want["kd"] - exact["kd"]) > 1.0  # the case really exercises the clip


def test_keras_clip_is_inert_when_nothing_is_clipped():
    rng = np.random.default_rng(2)
    teacher, student = rng.normal(size=(6, 10)).astype(np.float32), rng.normal(size=(6, 10)).astype(np.float32)
    labels, idx = torch.from_numpy(rng.integers(0, 10, 6)), torch.arange(6)
    out = [as_floats(hinton.SoftTargetLoss(torch.from_numpy(teacher), temperature=10.0, alpha=0.1,
                                           keras_clip=clip)(torch.from_numpy(student), labels, idx))
           for clip in (False, True)]
    assert out[0]["kd"] == pytest.approx(out[1]["kd"], rel=1e-4, abs=1e-8)


@pytest.mark.parametrize("t_squared", [True, False])
def test_gradient_matches_formula(t_squared):
    """d loss / d z = [alpha*(softmax(z) - onehot(y)) + (1-alpha)*w/T*(q_T - p_T)] / B, w = T^2 or 1."""
    rng = np.random.default_rng(3)
    temperature, alpha = 4.0, 0.2
    teacher, student = rng.normal(scale=3, size=(5, 10)), rng.normal(scale=3, size=(5, 10))
    labels = rng.integers(0, 10, 5)
    z = torch.tensor(student, dtype=torch.float32, requires_grad=True)
    criterion = hinton.SoftTargetLoss(torch.tensor(teacher), temperature=temperature, alpha=alpha,
                                      t_squared=t_squared)
    criterion(z, torch.from_numpy(labels), torch.arange(5))["loss"].backward()
    weight = temperature**2 if t_squared else 1.0
    onehot = np.eye(10)[labels]
    want = (alpha * (softmax(student, axis=1) - onehot)
            + (1 - alpha) * weight / temperature
            * (softmax(student / temperature, axis=1) - softmax(teacher / temperature, axis=1))) / 5
    np.testing.assert_allclose(z.grad.numpy(), want, rtol=1e-4, atol=1e-7)


def test_no_gradient_reaches_the_teacher_logits():
    teacher = torch.randn(8, 10, requires_grad=True)  # even if a caller forgot to detach
    student = torch.randn(3, 10, requires_grad=True)
    criterion = hinton.SoftTargetLoss(teacher, temperature=10.0, alpha=0.1)
    criterion(student, torch.tensor([1, 2, 3]), torch.tensor([4, 0, 7]))["loss"].backward()
    assert teacher.grad is None and student.grad is not None


# ---- configuration ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("temperature", "0"), ("temperature", "-2"), ("alpha", "1.5"),
                                       ("alpha", "-0.1")])
def test_bad_values_are_one_line_errors(key, value):
    with pytest.raises(configuration.BadInput, match=key):
        configuration.resolve(Method, "quick", {key: value})


def test_notebook_defaults():
    cfg = Method.Config()
    assert (cfg.arch, cfg.view) == ("hinton_student", "flat")
    assert (cfg.teacher_arch, cfg.teacher_view) == ("cnn_teacher", "image")  # the notebook's: as_published
    assert (Method.as_published["teacher_arch"], Method.as_published["teacher_view"]) == ("hinton_teacher", "flat")
    assert (cfg.temperature, cfg.alpha, cfg.lr, cfg.batch_size, cfg.epochs, cfg.patience) == \
        (10.0, 0.1, 1e-3, 64, 50, 10)
    assert (cfg.t_squared, cfg.keras_clip, cfg.early_stop) == (True, False, "val_nll")
    grid = Method.ablations
    assert grid == {"temperature": [1, 2, 4, 10, 20], "alpha": [0.1, 0.5, 0.9], "t_squared": [True, False]}


# ---- end to end: the frozen teacher ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("hinton_store")


def _run_smoke(out, overrides=None):
    """One smoke run on digits; records the teacher the method receives and every forward call it gets after."""
    seen = {}
    original = RunContext.required

    def spy(self, name, role=None):
        model = original(self, name, role)
        seen.update(baseline=name, required=dict(self.spec.requires), teacher=model, forwards=0,
                    state={k: v.clone() for k, v in model.state_dict().items()})

        def count(*_):
            seen["forwards"] += 1

        model.register_forward_hook(count)
        return model

    cfg = configuration.resolve(Method, "smoke", overrides)
    specs = plan([INFO], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS,
                 overrides={"hinton_kd": overrides or {}})
    threads = torch.get_num_threads()
    try:  # one thread: on a shared machine a second one mostly waits for the busy core
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(RunContext, "required", spy)
            _, todo = partition(specs, Store(out), METHODS)  # the store is the module's: the teacher may be in it
            outcome = run_plan(todo, Settings(store=Store(out), threads=1), backend="inprocess")  # the spy is here
    finally:
        torch.set_num_threads(threads)
    teacher_spec = next(s for s in specs if s.method == "teacher")
    seen["teacher_spec"] = teacher_spec
    record = next(r for r in Store(out).iter_runs() if r["run_id"] == specs[-1].run_id)
    assert specs[-1].method == "hinton_kd" and not outcome.failed
    assert record["status"] == "ok", record.get("traceback")
    rows = {(role, epoch, metric): value for role, epoch, metric, value in record["metrics"]}
    return cfg, record, rows, seen


def test_run_keeps_the_teacher_frozen_and_reads_it_once(store):
    cfg, record, rows, seen = _run_smoke(store)
    assert seen["baseline"] == "teacher" and seen["required"] == {"teacher": seen["teacher_spec"].run_id}
    assert configuration.resolve(METHODS["teacher"].cls, "smoke", shared_teacher(cfg)["teacher"]) == \
        configuration.resolve(METHODS["teacher"].cls, "smoke")
    teacher = seen["teacher"]
    assert not teacher.training
    for name, param in teacher.named_parameters():
        assert not param.requires_grad and param.grad is None, name
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, seen["state"][name]), name
    # one pass over the training split (540 examples, evaluated RunContext.EVAL_CHUNK at a time), not one per step
    steps = record["timing"]["steps"]
    chunks = -(-540 // RunContext.EVAL_CHUNK)
    assert seen["forwards"] == chunks and steps > chunks

    epochs = int(rows[("student", -1, "epochs_trained")])
    assert epochs == cfg.epochs
    weight = (1 - cfg.alpha) * cfg.temperature**2
    for epoch in range(epochs):  # epoch means of the parts combine like the parts
        ce, kd, loss = (rows[("student", epoch, f"train_{k}")] for k in ("ce", "kd", "loss"))
        assert loss == pytest.approx(cfg.alpha * ce + weight * kd, rel=1e-5)
        assert kd >= 0
    for metric in ("test_acc", "test_nll", "test_agreement", "val_acc"):
        assert ("student", -1, metric) in rows


def test_as_published_early_stopping_keeps_the_first_epoch(store):
    _, _, rows, _ = _run_smoke(store, {"early_stop": "as_published", "t_squared": "false",
                                       "keras_clip": "true"})
    assert rows[("student", -1, "epochs_trained")] == 1
    assert ("student", 1, "train_loss") not in rows
