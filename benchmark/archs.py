"""The networks two or more methods share: the Hinton notebook's teacher and student (hinton_kd_mnist), and the
convolutional teacher the distillation methods share by default.

The student is the default control of the ``scratch_student`` baseline and the student of ``hinton_kd`` (and of the
method template); ``hinton_teacher`` is the teacher of the notebook's as-published rows. ``cnn_teacher`` is the
``teacher`` baseline's default: on the ``flat`` view the notebook's MLP teacher was measured no better than its
784-300-10 student on three of the four datasets, and a teacher that knows no more than its student leaves nothing
to transfer. Every one names its dense hidden layers' activations ``hidden1``, ``hidden2`` (the hints and
embeddings fitnets and rkd read).
"""

from __future__ import annotations

import math

from torch import nn

from benchmark.nn import Network, architecture, flat_size, mlp_network


@architecture("hinton_teacher")
def hinton_teacher(input_shape, num_classes, hidden: int = 1200, dropout: float = 0.5):
    """D-1200-1200-C with ReLU and dropout 0.5 after each hidden layer; features hidden1, hidden2 (before dropout)."""
    return mlp_network([flat_size(input_shape), hidden, hidden, num_classes], dropout=dropout)


@architecture("hinton_student")
def hinton_student(input_shape, num_classes, hidden: int = 300):
    """D-300-C with ReLU; feature hidden1."""
    return mlp_network([flat_size(input_shape), hidden, num_classes])


@architecture("cnn_teacher")
def cnn_teacher(input_shape, num_classes, channels: tuple[int, int] = (32, 64), hidden: tuple[int, int] = (256, 128),
                dropout: float = 0.5):
    """conv3x3(32)-ReLU-pool2 - conv3x3(64)-ReLU-pool2 - dense 256 - dense 128 - C, on an image (C, H, W) or a
    signal (C, L) (Conv1d/MaxPool1d: mnist1d's 40 samples). "Same" padding, so 8x8 digits give 4x4 then 2x2 maps,
    28x28 images 14x14 then 7x7, a signal of 40 lengths 20 then 10. Dropout after each dense layer; features
    ``block1``, ``block2`` (each conv block's ReLU, before its pool) and ``hidden1``, ``hidden2`` (the dense
    layers' activations, before dropout): flat hints of a few hundred values, not a whole feature map."""
    dims = len(input_shape) - 1
    if dims not in (1, 2):
        raise ValueError(f"cnn_teacher needs an image (C, H, W) or a signal (C, L): view shape {input_shape} "
                         "(give the teacher the image view)")
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if dims == 2 else (nn.Conv1d, nn.MaxPool1d)
    layers: list[nn.Module] = []
    cuts: dict[str, int] = {}
    width, sides = input_shape[0], list(input_shape[1:])
    for block, out in enumerate(channels, start=1):
        layers += [conv(width, out, kernel_size=3, padding=1), nn.ReLU()]
        cuts[f"block{block}"] = len(layers)
        layers.append(pool(2))
        width, sides = out, [s // 2 for s in sides]
    layers.append(nn.Flatten())
    size = width * math.prod(sides)
    for k, units in enumerate(hidden, start=1):
        layers += [nn.Linear(size, units), nn.ReLU()]
        cuts[f"hidden{k}"] = len(layers)
        if dropout:
            layers.append(nn.Dropout(dropout))
        size = units
    layers.append(nn.Linear(size, num_classes))
    return Network(*layers, features=cuts)
