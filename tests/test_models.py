import pytest
import torch

from benchmark import nn as models
from benchmark.engine.discovery import discover

discover()  # registers every method folder's architectures (models.py)

SHAPES = {"digits": (1, 8, 8), "mnist1d": (1, 40), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
IMAGE_ARCHS = ["subclass_cnn", "kl_cnn", "js_cnn"]
FLAT_ARCHS = ["hinton_teacher", "hinton_student", "subclass_mlp", "kl_mlp", "js_mlp_b", "js_mlp_c", "ska_stack"]


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("arch", IMAGE_ARCHS + FLAT_ARCHS)
def test_every_architecture_adapts_to_every_input(arch, shape):
    view_shape = shape if arch in IMAGE_ARCHS else (int(torch.tensor(shape).prod()),)
    model = models.build(arch, view_shape, 10, generator=torch.Generator().manual_seed(0))
    model.eval()
    out = model(torch.rand(3, *view_shape))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_notebook_shapes_on_mnist():
    # Keras: 28 -conv3-> 26 -pool-> 13 -conv3-> 11 -pool-> 5, so the dense layer sees 64*5*5 inputs.
    cnn = models.build("subclass_cnn", (1, 28, 28), 10, subclasses=2)
    dense = [m for m in cnn.modules() if isinstance(m, torch.nn.Linear)]
    assert dense[0].in_features == 64 * 5 * 5 and dense[-1].out_features == 20
    teacher = models.build("hinton_teacher", (784,), 10)
    assert [m.out_features for m in teacher.modules() if isinstance(m, torch.nn.Linear)] == [1200, 1200, 10]
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in teacher.modules()) == 2


def test_keras_defaults_glorot_zero_bias_and_batchnorm():
    model = models.build("js_cnn", (3, 32, 32), 10, generator=torch.Generator().manual_seed(1))
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.in_channels * 9
            fan_out = m.out_channels * 9
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.8 * bound
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.momentum == pytest.approx(0.01) and m.eps == pytest.approx(1e-3)


def test_same_generator_same_weights():
    a = models.build("hinton_student", (64,), 10, generator=torch.Generator().manual_seed(5))
    b = models.build("hinton_student", (64,), 10, generator=torch.Generator().manual_seed(5))
    c = models.build("hinton_student", (64,), 10, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
