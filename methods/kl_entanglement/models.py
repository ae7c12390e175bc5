"""Notebook 001's two networks: CNN A and MLP B (the notebook's softmax outputs are folded into the losses)."""

from __future__ import annotations

from torch import nn

from benchmark.nn import architecture, conv_stack, flat_size, mlp


@architecture("kl_cnn")
def kl_cnn(input_shape, num_classes):
    """Conv16 3x3 - pool - Dense32 - Dense C."""
    features, size = conv_stack(input_shape, [("conv", 16), ("pool",)])
    return nn.Sequential(features, nn.Linear(size, 32), nn.ReLU(), nn.Linear(32, num_classes))


@architecture("kl_mlp")
def kl_mlp(input_shape, num_classes):
    """D-64-32-C with ReLU (the notebook's 784-64-32-10)."""
    return nn.Sequential(*mlp([flat_size(input_shape), 64, 32, num_classes]))
