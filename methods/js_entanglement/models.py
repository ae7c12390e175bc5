"""Notebook 000's three networks: the CNN A and the two small MLPs B and C on PCA views."""

from __future__ import annotations

from torch import nn

from benchmark.nn import KERAS_BN, architecture, conv_stack, flat_size


@architecture("js_cnn")
def js_cnn(input_shape, num_classes, dropout: float = 0.4):
    """conv32-BN-pool-conv64-BN-pool-dense128-dropout-dense C (BN after the ReLU, as in the notebook)."""
    features, size = conv_stack(input_shape, [("conv", 32), ("pool",), ("conv", 64), ("pool",)], batchnorm=True)
    return nn.Sequential(features, nn.Linear(size, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, num_classes))


def _pca_mlp(input_shape, num_classes, hidden, dropout):
    return nn.Sequential(nn.Flatten(), nn.Linear(flat_size(input_shape), hidden), nn.ReLU(),
                         nn.BatchNorm1d(hidden, **KERAS_BN), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


@architecture("js_mlp_b")
def js_mlp_b(input_shape, num_classes, dropout: float = 0.4):
    """PCA-K -> 64 -> BN -> dropout -> C."""
    return _pca_mlp(input_shape, num_classes, 64, dropout)


@architecture("js_mlp_c")
def js_mlp_c(input_shape, num_classes, dropout: float = 0.4):
    """PCA-K -> 32 -> BN -> dropout -> C."""
    return _pca_mlp(input_shape, num_classes, 32, dropout)
