"""Tests of methods/ska: one step against the formulas computed in numpy, the notebook's whole loop
re-written in numpy (both input variants), no autograd anywhere, the stratified batch, the scaled probe, and
the rows a run logs."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
import torch

from benchmark import nn as models
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.errors import BadInput, NonFiniteLoss
from tests.projects import run_context

INFO = discover()["ska"]
Method = INFO.cls
ska = sys.modules[Method.__module__]
LN2 = math.log(2.0)


def tiny_net(layer_sizes=(4, 2), inputs=3, seed=0, std=0.5):
    """A SigmoidStack with weights large enough that every term of the update matters."""
    return models.build("ska_stack", (inputs,), 2, generator=torch.Generator().manual_seed(seed),
                        layer_sizes=layer_sizes, init_std=std)


def numpy_params(net):
    return [w.detach().double().numpy().copy() for w in net.weights], [b.detach().double().numpy().copy()
                                                                      for b in net.biases]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_forward(weights, biases, x):
    zs, ds, h = [], [], x
    for w, b in zip(weights, biases, strict=True):
        z = h @ w + b
        h = sigmoid(z)
        zs.append(z)
        ds.append(h)
    return zs, ds


# ---- one step against the formulas -------------------------------------------------------------------------

@pytest.mark.parametrize("previous_input", [False, True])
def test_one_step_matches_the_formulas(previous_input):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(5, 3))
    net = tiny_net()
    weights, biases = numpy_params(net)
    d_prev = [rng.uniform(0.2, 0.8, size=(5, 4)), rng.uniform(0.2, 0.8, size=(5, 2))]
    eta = 0.3

    outputs, stats = ska.ska_step(net, torch.tensor(x, dtype=torch.float32),
                                  [torch.tensor(d, dtype=torch.float32) for d in d_prev], eta,
                                  previous_input=previous_input)

    zs, ds = numpy_forward(weights, biases, x)
    layer_inputs = [x, d_prev[0] if previous_input else ds[0]]
    for layer in range(2):
        z, d, inp = zs[layer], ds[layer], layer_inputs[layer]
        delta = d - d_prev[layer]
        entropy = -(1 / LN2) * np.sum(z * delta)
        cos = np.sum(z * delta) / (np.linalg.norm(z) * np.linalg.norm(delta))
        grad = -(1 / LN2) * (z * d * (1 - d) + delta)
        w_new = weights[layer] - eta * inp.T @ grad / 5
        b_new = biases[layer] - eta * grad.mean(axis=0)
        np.testing.assert_allclose(outputs[layer].numpy(), d, rtol=1e-5)
        assert stats[layer]["entropy"] == pytest.approx(entropy, rel=1e-4)
        assert stats[layer]["cos_theta"] == pytest.approx(cos, rel=1e-4)
        assert stats[layer]["z_norm"] == pytest.approx(np.linalg.norm(z), rel=1e-5)
        np.testing.assert_allclose(net.weights[layer].numpy(), w_new, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net.biases[layer].numpy(), b_new, rtol=1e-5, atol=1e-6)
    # The two variants feed layer 2 different inputs, so its update must differ from the other variant's.
    other = [x, ds[0] if previous_input else d_prev[0]]
    grad = -(1 / LN2) * (zs[1] * ds[1] * (1 - ds[1]) + ds[1] - d_prev[1])
    assert not np.allclose(net.weights[1].numpy(), weights[1] - eta * other[1].T @ grad / 5, atol=1e-4)


def test_step_zero_only_records():
    net = tiny_net()
    before = [w.clone() for w in net.weights] + [b.clone() for b in net.biases]
    outputs, stats = ska.ska_step(net, torch.rand(5, 3), None, 0.5)
    after = list(net.weights) + list(net.biases)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert [set(s) for s in stats] == [{"z_norm"}, {"z_norm"}]
    assert [o.shape for o in outputs] == [(5, 4), (5, 2)]


# ---- the notebook's loop, re-written in numpy --------------------------------------------------------------

def notebook_loop(weights, biases, x, steps, eta, previous_input):
    """SKAModel's training cell: forward; if k > 0, entropy, then update from stored tensors; D_prev = D."""
    weights, biases = [w.copy() for w in weights], [b.copy() for b in biases]
    d_prev, history = None, []
    for k in range(steps):
        zs, ds = numpy_forward(weights, biases, x)
        if k > 0:
            history.append([-(1 / LN2) * np.sum(z * (d - p)) for z, d, p in zip(zs, ds, d_prev, strict=True)])
            for i in range(len(weights)):
                inp = x if i == 0 else (d_prev[i - 1] if previous_input else ds[i - 1])
                grad = -(1 / LN2) * (zs[i] * ds[i] * (1 - ds[i]) + ds[i] - d_prev[i])
                weights[i] = weights[i] - eta * inp.T @ grad / len(x)
                biases[i] = biases[i] - eta * grad.mean(axis=0)
        d_prev = ds
    return weights, biases, np.array(history)


@pytest.mark.parametrize("previous_input", [False, True])
def test_loop_matches_the_notebook(previous_input):
    torch.manual_seed(0)
    x = torch.rand(6, 3)
    net = tiny_net(layer_sizes=(4, 3, 2), std=0.8)
    weights, biases = numpy_params(net)
    steps, eta = 6, 0.5
    d_prev, history = None, []
    for _ in range(steps):
        d_prev, stats = ska.ska_step(net, x, d_prev, eta, previous_input=previous_input)
        if "entropy" in stats[0]:
            history.append([s["entropy"] for s in stats])
    w_ref, b_ref, h_ref = notebook_loop(weights, biases, x.double().numpy(), steps, eta, previous_input)
    assert len(history) == steps - 1  # K forward steps make K-1 updates
    assert history[0] == [0.0, 0.0, 0.0]  # step 1: nothing has changed since step 0
    np.testing.assert_allclose(np.array(history), h_ref, rtol=1e-3, atol=1e-6)
    for i in range(3):
        np.testing.assert_allclose(net.weights[i].numpy(), w_ref[i], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(net.biases[i].numpy(), b_ref[i], rtol=1e-4, atol=1e-6)


def test_input_variants_differ_only_after_layer_one_and_step_two():
    x = torch.rand(6, 3, generator=torch.Generator().manual_seed(2))
    nets = {}
    for steps in (2, 3):
        for previous_input in (False, True):
            net, d_prev = tiny_net(layer_sizes=(4, 3, 2), std=0.8), None
            for _ in range(steps):
                d_prev, _ = ska.ska_step(net, x, d_prev, 0.5, previous_input=previous_input)
            nets[steps, previous_input] = net
    # One update: D_prev equals this step's D, so both variants feed every layer the same input.
    for a, b in zip(nets[2, False].parameters(), nets[2, True].parameters(), strict=True):
        assert torch.equal(a, b)
    # Two updates: layer 1 always reads x, so it agrees; deeper layers do not.
    current, published = nets[3, False], nets[3, True]
    assert torch.equal(current.weights[0], published.weights[0])
    assert not torch.allclose(current.weights[1], published.weights[1])
    assert not torch.allclose(current.weights[2], published.weights[2])


# ---- data and probe ----------------------------------------------------------------------------------------

def test_stratified_subset_takes_per_class_and_clamps():
    labels = torch.tensor([0] * 7 + [1] * 3 + [2] * 5)
    idx = ska.stratified_subset(labels, 4, torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(labels[idx]), torch.tensor([4, 3, 4]))  # class 1 has only 3
    assert torch.equal(idx, torch.sort(idx).values) and len(set(idx.tolist())) == len(idx)
    again = ska.stratified_subset(labels, 4, torch.Generator().manual_seed(0))
    other = ska.stratified_subset(labels, 4, torch.Generator().manual_seed(1))
    assert torch.equal(idx, again) and not torch.equal(idx, other)
    assert torch.equal(ska.stratified_subset(labels, None, torch.Generator()), torch.arange(15))


def test_probe_scales_features_that_vary_by_1e_minus_5():
    """Two classes 2e-5 apart around 0.5 in 3 features (like a deep layer from a 0.01-scale init)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = 0.5 + 1e-5 * (y[:, None] * 2 - 1 + 0.3 * rng.normal(size=(400, 3)))
    acc = ska.Probe().accuracy(x[:300], y[:300], x[300:], y[300:])
    assert acc > 0.95
    from sklearn.linear_model import LogisticRegression  # the same probe without scaling reads chance

    unscaled = LogisticRegression(max_iter=5000).fit(x[:300], y[:300]).score(x[300:], y[300:])
    assert unscaled < 0.7


# ---- a run: rows, no autograd, NaN -------------------------------------------------------------------------

def make_run(tmp_path, preset="smoke", **overrides):
    return run_context(tmp_path, "ska", preset, overrides)


def rows_of(run):
    return {(r["role"], r["metric"], r["epoch"]): r["value"] for r in run.rows}


def test_run_logs_every_step_and_the_probes(tmp_path):
    run, cfg = make_run(tmp_path)
    trained = Method().train(run, cfg)
    rows = rows_of(run)
    steps, layers = cfg.steps, len(cfg.layer_sizes)
    for layer in range(1, layers + 1):
        role = f"layer{layer}"
        assert sorted(e for r, m, e in rows if (r, m) == (role, "entropy")) == list(range(1, steps))
        assert sorted(e for r, m, e in rows if (r, m) == (role, "cos_theta")) == list(range(1, steps))
        assert sorted(e for r, m, e in rows if (r, m) == (role, "z_norm")) == list(range(steps))
        assert rows[role, "entropy", 1] == 0.0
        assert 0.0 <= rows[role, "probe_acc", -1] <= 1.0
        assert 0.0 <= rows[role, "probe_acc_untrained", -1] <= 1.0
        assert all(-1.0 <= rows[role, "cos_theta", k] <= 1.0 for k in range(1, steps))
    outputs = {m for r, m, e in rows if r == f"layer{layers}" and m.startswith("mean_output_")}
    assert outputs == {f"mean_output_{j}" for j in range(cfg.layer_sizes[-1])}
    assert rows["net", "updates", -1] == steps - 1
    assert rows["net", "train_examples", -1] == cfg.per_class * 10
    assert rows["net", "classes_below_per_class", -1] == 0
    assert 0.5 < rows["input", "probe_acc", -1] <= 1.0
    assert run.timer.summary()["steps"] == steps  # one timed full batch per forward step
    assert set(trained.models) == set(Method().roles(cfg, run.data)) == {"net"}
    # The row budget: z_norm and the output means every step, entropy and cos from step 1, 2L+4 final rows.
    out = cfg.layer_sizes[-1]
    assert len(run.rows) == steps * (layers + out) + 2 * (steps - 1) * layers + 2 * layers + 4


def test_untrained_control_is_the_same_initialisation(tmp_path):
    """The control at K=0 and the trained probe at K=1 (no update yet) are the same network."""
    run, cfg = make_run(tmp_path, steps=1)
    Method().train(run, cfg)
    rows = rows_of(run)
    for layer in range(1, len(cfg.layer_sizes) + 1):
        role = f"layer{layer}"
        assert rows[role, "probe_acc", -1] == rows[role, "probe_acc_untrained", -1]
    assert rows["net", "updates", -1] == 0


def test_too_few_examples_per_class_are_clamped_and_reported(tmp_path):
    run, cfg = make_run(tmp_path, per_class=60)  # digits at the smoke budget: ~54 training images per class
    with pytest.warns(UserWarning, match="fewer than per_class=60"):
        Method().train(run, cfg)
    rows = rows_of(run)
    assert rows["net", "classes_below_per_class", -1] == 10
    assert rows["net", "train_examples", -1] == run.data.size("train")


def test_no_autograd_anywhere(tmp_path, monkeypatch):
    """Parameters never get a .grad, nothing calls backward, and the updates work even on parameters that
    would track gradients (so they are made under no_grad, not through an autograd graph)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("SKA must not use autograd")

    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    run, cfg = make_run(tmp_path)
    built = []
    build = run.build

    def build_tracking(*args, **kwargs):
        net = build(*args, **kwargs)
        assert not any(p.requires_grad for p in net.parameters())  # the stack is built frozen
        for p in net.parameters():
            p.requires_grad_(True)  # would make any tracked update fail or leave a graph behind
        built.append(net)
        return net

    monkeypatch.setattr(run, "build", build_tracking)
    trained = Method().train(run, cfg).models["net"]
    assert built == [trained]
    assert all(p.grad is None for p in trained.parameters())
    x = run.view("flat", "train")[:10]
    outputs, _ = ska.ska_step(trained, x, None, cfg.eta)
    outputs, _ = ska.ska_step(trained, x, outputs, cfg.eta)
    assert all(o.grad_fn is None for o in outputs)
    assert all(p.grad is None and p.grad_fn is None for p in trained.parameters())


def test_a_nan_stops_the_run(tmp_path):
    run, cfg = make_run(tmp_path)
    cfg = dataclasses.replace(cfg, eta=float("nan"))  # past the range check, which refuses it as input
    with pytest.raises(NonFiniteLoss, match="of layer1 at epoch 2 became nan"):
        Method().train(run, cfg)


def test_a_nan_learning_rate_is_bad_input():
    with pytest.raises(BadInput, match="eta"):
        configuration.resolve(Method, "smoke", {"eta": "nan"})


def test_ablation_grid_holds_the_eta_k_family():
    grid = Method.ablations
    family = {(0.02, 25), (0.01, 50), (0.005, 100)}
    assert family <= {(e, k) for e in grid["eta"] for k in grid["steps"]}
    assert {e * k for e, k in family} == {0.5}
    assert set(grid["input"]) == {"current", "as_published"}
    for key, values in grid.items():
        for value in values:
            configuration.resolve(Method, "quick", {key: value})
