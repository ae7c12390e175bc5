"""A convolutional teacher and student whose attention maps are compared block by block (the paper's CIFAR setting,
scaled down: the teacher twice as deep and twice as wide as the student, with the same spatial sizes per block).

Every convolution is 3x3 with "same" padding, so a block keeps its input's spatial size and the two networks' maps
at the end of block k have the same size on every input: 8x8 digits give 8x8 and 4x4, 28x28 images 28x28 and
14x14, a 1-D signal of length 40 maps of length 40 and 20 (Conv1d/MaxPool1d). The features ``block1``, ``block2``
are each block's activation after its last ReLU, before the pooling that ends the block: the paper's "at the end of
a group of residual blocks", before the next group's downsampling.
"""

from __future__ import annotations

import math

from torch import nn

from benchmark.nn import Network, architecture


def attention_cnn(input_shape, num_classes, widths: tuple[int, ...], depth: int, hidden: int | None) -> Network:
    """``len(widths)`` blocks of ``depth`` conv-ReLU layers each, every block ended by a 2x max pool, then an
    optional dense hidden layer and the C logits; features ``block1`` … named before each pool."""
    dims = len(input_shape) - 1
    if dims not in (1, 2):
        raise ValueError(f"a CNN needs an image (C, H, W) or a signal (C, L), got shape {input_shape}")
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if dims == 2 else (nn.Conv1d, nn.MaxPool1d)
    layers: list[nn.Module] = []
    cuts: dict[str, int] = {}
    channels, sides = input_shape[0], list(input_shape[1:])
    for block, width in enumerate(widths, start=1):
        for _ in range(depth):
            layers += [conv(channels, width, kernel_size=3, padding=1), nn.ReLU()]
            channels = width
        cuts[f"block{block}"] = len(layers)
        layers.append(pool(2))
        sides = [s // 2 for s in sides]
    layers.append(nn.Flatten())
    size = channels * math.prod(sides)
    if hidden:
        layers += [nn.Linear(size, hidden), nn.ReLU()]
        size = hidden
    layers.append(nn.Linear(size, num_classes))
    return Network(*layers, features=cuts)


@architecture("at_teacher")
def at_teacher(input_shape, num_classes):
    """[conv16 x2] - pool - [conv32 x2] - pool - dense64 - dense C; features block1, block2."""
    return attention_cnn(input_shape, num_classes, (16, 32), depth=2, hidden=64)


@architecture("at_student")
def at_student(input_shape, num_classes):
    """conv8 - pool - conv16 - pool - dense C; features block1, block2 (the teacher's spatial sizes)."""
    return attention_cnn(input_shape, num_classes, (8, 16), depth=1, hidden=None)
