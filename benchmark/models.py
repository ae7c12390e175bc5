"""The notebooks' architectures as named builders that adapt to the dataset's input shape.

Every builder takes ``(input_shape, num_classes, **options)`` where ``input_shape`` is one example's shape in the
view the model reads: ``(C, H, W)`` or ``(C, L)`` for the ``image`` view, ``(D,)`` for ``flat`` and ``pca:K``.

Framework translation (TensorFlow/Keras -> PyTorch), applied by :func:`keras_init` and the layer helpers:
Dense/Conv kernels Glorot-uniform with zero bias; BatchNormalization momentum 0.99 -> PyTorch momentum 0.01, eps 1e-3.
Adaptations: a 1-D signal (``(C, L)``) gets Conv1d/MaxPool1d in place of Conv2d/MaxPool2d; a convolution whose
unpadded ("valid") output would leave too little room for the pooling that follows is padded ("same"), which is what
lets the notebooks' CNNs run on 8x8 digits.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

KERAS_BN = {"momentum": 0.01, "eps": 1e-3}

ARCHS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def deco(fn):
        ARCHS[name] = fn
        return fn

    return deco


def build(arch: str, input_shape: tuple[int, ...], num_classes: int, *, generator: torch.Generator | None = None,
          **options) -> nn.Module:
    """Build ``arch`` for this input and initialise it Keras-style from ``generator`` (paired initialisation)."""
    if arch not in ARCHS:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    builder = ARCHS[arch]
    if "generator" in inspect.signature(builder).parameters:
        options["generator"] = generator  # builders with their own init (SKA) draw from the same stream
    model = builder(tuple(input_shape), num_classes, **options)
    keras_init(model, generator)
    return model


def keras_init(model: nn.Module, generator: torch.Generator | None) -> None:
    """Glorot-uniform kernels, zero biases (Keras defaults); modules may opt out with ``keep_init = True``."""
    for module in model.modules():
        if getattr(module, "keep_init", False):
            continue
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def flat_size(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)


def _spatial(input_shape):
    return input_shape[1:]


def conv_stack(input_shape: tuple[int, ...], spec: list, *, batchnorm: bool = False) -> tuple[nn.Sequential, int]:
    """Build ``spec`` = list of ("conv", channels) / ("pool",) for a 2-D image or a 1-D signal.

    Returns the stack (ending in Flatten) and its flattened output size. A conv is padded ("same") only when the
    valid version would shrink a spatial side below what the rest of the stack needs (>= 2 before each pool).
    """
    dims = len(input_shape) - 1
    if dims not in (1, 2):
        raise ValueError(f"a CNN needs an image (C, H, W) or a signal (C, L), got shape {input_shape}")
    Conv = nn.Conv2d if dims == 2 else nn.Conv1d
    Pool = nn.MaxPool2d if dims == 2 else nn.MaxPool1d
    Norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    channels, size = input_shape[0], min(_spatial(input_shape))
    layers: list[nn.Module] = []
    sides = list(_spatial(input_shape))
    for i, item in enumerate(spec):
        if item[0] == "conv":
            out = item[1]
            # How much room the rest needs: each later pool halves, each later valid conv removes 2.
            need = 1
            for later in reversed(spec[i + 1:]):
                need = need * 2 if later[0] == "pool" else need + 2
            pad = 0 if size - 2 >= need else 1
            layers += [Conv(channels, out, kernel_size=3, padding=pad), nn.ReLU()]
            if batchnorm:
                layers.append(Norm(out, **KERAS_BN))
            channels = out
            size = size - 2 + 2 * pad
            sides = [s - 2 + 2 * pad for s in sides]
        elif item[0] == "pool":
            layers.append(Pool(2))
            size //= 2
            sides = [s // 2 for s in sides]
        else:
            raise ValueError(f"unknown layer {item!r}")
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), channels * math.prod(sides)


def mlp(sizes: list[int], *, dropout: float = 0.0, batchnorm_after: set[int] = frozenset()) -> list[nn.Module]:
    """Dense layers ``sizes[0] -> ... -> sizes[-1]`` with ReLU between (none after the last, which gives logits)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if i in batchnorm_after:
                layers.append(nn.BatchNorm1d(b, **KERAS_BN))
            if dropout:
                layers.append(nn.Dropout(dropout))
    return layers


# ---- hinton_kd_mnist: teacher 784-1200-1200-10 (dropout 0.5), student 784-300-10 -------------------------------

@register("hinton_teacher")
def hinton_teacher(input_shape, num_classes, hidden: int = 1200, dropout: float = 0.5):
    return nn.Sequential(*mlp([flat_size(input_shape), hidden, hidden, num_classes], dropout=dropout))


@register("hinton_student")
def hinton_student(input_shape, num_classes, hidden: int = 300):
    return nn.Sequential(*mlp([flat_size(input_shape), hidden, num_classes]))


# ---- subclass_kd_mnist: CNN teacher and 784-784 MLP student, both with a C*S subclass head ----------------------

@register("subclass_cnn")
def subclass_cnn(input_shape, num_classes, num_outputs: int | None = None, dropout: float = 0.5):
    """32c3-pool-64c3-pool-dropout-128-dropout; ``num_outputs`` = C*S subclass logits (default C)."""
    features, size = conv_stack(input_shape, [("conv", 32), ("pool",), ("conv", 64), ("pool",)])
    return nn.Sequential(features, nn.Dropout(dropout), nn.Linear(size, 128), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(128, num_outputs or num_classes))


@register("subclass_mlp")
def subclass_mlp(input_shape, num_classes, num_outputs: int | None = None, hidden: int = 784):
    """Dense(784)-Dense(784) (the notebook's width for MNIST, kept on every dataset) -> C*S logits."""
    return nn.Sequential(*mlp([flat_size(input_shape), hidden, hidden, num_outputs or num_classes]))


# ---- kl_entanglement_mnist (notebook 001): CNN A and MLP B ------------------------------------------------------

@register("kl_cnn")
def kl_cnn(input_shape, num_classes):
    """Conv16 3x3 - pool - Dense32 - Dense C (the notebook's softmax is folded into the loss)."""
    features, size = conv_stack(input_shape, [("conv", 16), ("pool",)])
    return nn.Sequential(features, nn.Linear(size, 32), nn.ReLU(), nn.Linear(32, num_classes))


@register("kl_mlp")
def kl_mlp(input_shape, num_classes):
    return nn.Sequential(*mlp([flat_size(input_shape), 64, 32, num_classes]))


# ---- js_entanglement_cifar10 (notebook 000): CNN A, PCA MLPs B and C -------------------------------------------

@register("js_cnn")
def js_cnn(input_shape, num_classes, dropout: float = 0.4):
    """conv32-BN-pool-conv64-BN-pool-dense128-dropout-dense C (BN after the ReLU, as in the notebook)."""
    features, size = conv_stack(input_shape, [("conv", 32), ("pool",), ("conv", 64), ("pool",)], batchnorm=True)
    return nn.Sequential(features, nn.Linear(size, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, num_classes))


def _js_mlp(input_shape, num_classes, hidden, dropout):
    return nn.Sequential(nn.Flatten(), nn.Linear(flat_size(input_shape), hidden), nn.ReLU(),
                         nn.BatchNorm1d(hidden, **KERAS_BN), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


@register("js_mlp_b")
def js_mlp_b(input_shape, num_classes, dropout: float = 0.4):
    """PCA-K -> 64 -> BN -> dropout -> C."""
    return _js_mlp(input_shape, num_classes, 64, dropout)


@register("js_mlp_c")
def js_mlp_c(input_shape, num_classes, dropout: float = 0.4):
    """PCA-K -> 32 -> BN -> dropout -> C."""
    return _js_mlp(input_shape, num_classes, 32, dropout)


# ---- ska_mnist_subset: the sigmoid stack --------------------------------------------------------------------------

class SigmoidStack(nn.Module):
    """Layers ``z = x W + b``, ``D = sigmoid(z)``; weights N(0, 0.01^2), zero biases (the SKA notebook's init).

    Parameters never take part in autograd: SKA updates them in place without backpropagation.
    """

    keep_init = True

    def __init__(self, input_size: int, layer_sizes: tuple[int, ...], init_std: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.layer_sizes = tuple(layer_sizes)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        prev = input_size
        for size in self.layer_sizes:
            w = torch.randn(prev, size, generator=generator) * init_std
            self.weights.append(nn.Parameter(w, requires_grad=False))
            self.biases.append(nn.Parameter(torch.zeros(size), requires_grad=False))
            prev = size

    def layers(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(z, D) per layer]`` for a batch ``x`` (flattened)."""
        out = []
        h = x.flatten(1)
        for w, b in zip(self.weights, self.biases):
            z = h @ w + b
            h = torch.sigmoid(z)
            out.append((z, h))
        return out

    def forward(self, x):
        return self.layers(x)[-1][1]


@register("ska_stack")
def ska_stack(input_shape, num_classes, layer_sizes: tuple[int, ...] = (256, 128, 64, 10), init_std: float = 0.01,
              generator: torch.Generator | None = None):
    return SigmoidStack(flat_size(input_shape), layer_sizes, init_std, generator)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
