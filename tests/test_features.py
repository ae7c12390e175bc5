"""Named hidden features (benchmark.nn.Network): the layers before a cut, the same bit for bit from a stacked batch of
repetitions as from each repetition's own model, a frozen model's in eval mode (dropout off), and a trained model's
from the very forward pass that gives its logits."""

import copy

import pytest
import torch
from torch import nn

from benchmark import nn as layers
from benchmark.engine.discovery import discover
from benchmark.engine.stacked import Stacked, stackable
from tests.projects import run_context

discover()  # registers the architectures
R = 3


pytestmark = pytest.mark.usefixtures("one_thread")  # bits are compared: one torch thread (conftest)


def build(arch, r, shape=(64,)):
    return layers.build(arch, shape, 10, generator=torch.Generator().manual_seed(r))


def conv_network(r):
    """Conv-ReLU-pool with a feature between the ReLU and the pool (where the stacked pass would pool first)."""
    torch.manual_seed(r)
    net = layers.Network(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10),
                         features={"relu": 2, "flat": 4})
    return net


def test_a_feature_is_the_output_of_the_layers_before_its_cut():
    teacher = build("hinton_teacher", 0).eval()
    assert teacher.feature_cuts == {"hidden1": 3, "hidden2": 6} and layers.feature_names(teacher) == ["hidden1",
                                                                                                    "hidden2"]
    x = torch.randn(7, 64)
    out, features = teacher.forward_features(x)
    assert torch.equal(out, teacher(x))
    for name, cut in teacher.feature_cuts.items():
        assert torch.equal(features[name], teacher[:cut](x)) and torch.equal(teacher.features(x, name), features[name])
    assert (features["hidden1"] >= 0).all()  # after the ReLU
    with pytest.raises(KeyError, match="hidden3"):
        teacher.features(x, "hidden3")
    with pytest.raises(ValueError, match="cuts after layer 9"):
        layers.Network(nn.Linear(2, 2), features={"far": 9})


def test_naming_features_changes_no_weight():
    plain = nn.Sequential(*layers.mlp([64, 1200, 1200, 10], dropout=0.5))
    layers.keras_init(plain, torch.Generator().manual_seed(3))
    named = build("hinton_teacher", 3)
    assert list(plain.state_dict()) == list(named.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), named.state_dict().values(),
                                                 strict=True))


def grad(stacked, key, r):
    """Repetition r's gradient of a stacked parameter (a convolution keeps one parameter per repetition)."""
    tensor = stacked.stacked[key]
    if isinstance(tensor, list):
        return tensor[r].grad
    return None if tensor.grad is None else tensor.grad[r]


@pytest.mark.parametrize("make,shape", [(lambda r: build("hinton_teacher", r), (64,)),
                                        (lambda r: build("hinton_student", r), (64,)), (conv_network, (1, 8, 8))],
                         ids=["hinton_teacher", "hinton_student", "conv"])
def test_stacked_features_equal_each_repetitions_own(make, shape):
    models = [make(r) for r in range(R)]
    assert all(stackable(m) for m in models)
    xs = [torch.randn(5, *shape, generator=torch.Generator().manual_seed(50 + r)) for r in range(R)]
    gens = lambda reps: [torch.Generator().manual_seed(9 + r) for r in reps]  # noqa: E731
    # Training mode (dropout with each repetition's own generator), with gradients: batched == alone.
    together = Stacked([copy.deepcopy(m) for m in models], gens(range(R))).train()
    out, features = together.forward_features(xs)
    sum(f.sum() for f in features.values()).backward()
    for r in range(R):
        alone = Stacked([copy.deepcopy(models[r])], gens([r])).train()
        out_r, features_r = alone.forward_features([xs[r]])
        sum(f.sum() for f in features_r.values()).backward()
        assert set(features) == set(features_r) == set(models[0].feature_cuts)
        for name in features:
            assert torch.equal(features[name][r], features_r[name][0]), (r, name)
        for key in together.stacked:  # the features' gradients, parameter by parameter
            ours, theirs = grad(together, key, r), grad(alone, key, 0)
            assert (ours is None) == (theirs is None) and (ours is None or torch.equal(ours, theirs)), key
    # Eval mode: each repetition's own plain module (convolutions channels-last, as the stacked model runs them).
    together.eval()
    with torch.no_grad():
        out, features = together.forward_features(xs)
        for r in range(R):
            plain = copy.deepcopy(models[r]).to(memory_format=torch.channels_last).eval()
            x = xs[r].contiguous(memory_format=torch.channels_last) if xs[r].dim() == 4 else xs[r]
            plain_out, plain_features = plain.forward_features(x)
            assert torch.equal(out[r], plain_out)
            for name in features:
                assert torch.equal(features[name][r], plain_features[name]), (r, name)


def test_a_stacked_regressor_applied_to_one_repetition_is_its_own_module():
    regressors = [nn.Sequential(nn.Linear(6, 4), nn.ReLU()) for _ in range(R)]
    stacked = Stacked([copy.deepcopy(m) for m in regressors])
    xs = [torch.randn(5, 6) for _ in range(R)]
    for r in range(R):
        y = stacked.apply_one(r, xs[r])
        y.sum().backward()
        expected = regressors[r](xs[r])
        expected.sum().backward()
        assert torch.equal(y, expected)
        assert torch.equal(stacked.stacked[0, "weight"].grad[r], regressors[r][0].weight.grad)
    with pytest.raises(ValueError, match="wrapper"):
        Stacked([layers.build("subclass_mlp", (64,), 10, subclasses=2)]).apply_one(0, torch.randn(5, 64))


def test_a_frozen_teachers_features_are_computed_in_eval_mode(tmp_path):
    run, _ = run_context(tmp_path, "hinton_kd")
    teacher = run.build("hinton_teacher", "flat").train()  # as a fresh slice would be: training mode
    hidden = run.features(teacher, "flat", "train", "hidden2")  # after the first hidden layer's dropout
    x = run.view("flat", "train")
    assert teacher.training  # left as it was
    with torch.no_grad():
        assert torch.equal(hidden, copy.deepcopy(teacher).eval()[:6](x))
        assert not torch.equal(hidden, teacher[:6](x))  # a slice in training mode applies dropout
    assert hidden.shape == (run.data.size("train"), 1200) and not hidden.requires_grad
    with pytest.raises(KeyError, match="names no feature 'logits'"):
        run.features(teacher, "flat", "train", "logits")


def test_a_steps_features_come_from_the_pass_that_gives_its_logits(tmp_path, monkeypatch):
    run, _ = run_context(tmp_path, "hinton_kd")
    passes = []
    original = Stacked.forward_features
    monkeypatch.setattr(Stacked, "forward_features", lambda self, *a: passes.append(1) or original(self, *a))
    student = run.build("hinton_student", "flat")
    start = copy.deepcopy(student)
    seen = {}

    def step(b):
        before = b.features("student", "hidden1")  # asked first: it is the pass b.forward returns next
        logits = b.forward("student")
        after = b.features("student", "hidden1")
        assert before.data_ptr() == after.data_ptr() and before.requires_grad
        if b.epoch == 0 and b.step == 0:  # the first step: the weights are the initial ones
            seen["head"] = torch.equal(logits, start[-1](after))
        again = b.forward("student")  # a second pass, and the features of that one
        assert b.features("student", "hidden1").data_ptr() != after.data_ptr()
        b.update({"student": {"loss": torch.nn.functional.cross_entropy(logits + again, b.y)}})

    run.fit({"student": student}, step, epochs=1, batch_size=256, lr=1e-3, curves=())
    assert seen["head"] and len(passes) == 2 * -(-run.data.size("train") // 256)
