"""Building blocks of the architectures, shared by every method: the architecture registry, Keras-style
initialisation and the layer helpers that adapt a notebook's network to the dataset's input shape.

Architectures are registered by name where they belong: a method's own networks in its folder's ``models.py``, the
networks two or more methods share in :mod:`benchmark.archs`. Every builder takes ``(input_shape, num_classes,
**options)`` where ``input_shape`` is one example's shape in the view the model reads: ``(C, H, W)`` or ``(C, L)``
for the ``image`` view, ``(D,)`` for ``flat`` and ``pca:K``. The registry remembers the file each builder lives
in, so a run's id can hash exactly the architecture sources it uses. A builder that returns a :class:`Network`
names its hidden features, which methods then read by name (``run.features``, ``b.features``).

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
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

KERAS_BN = {"momentum": 0.01, "eps": 1e-3}


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: Callable[..., nn.Module]
    source: Path  # the file that defines the builder (hashed into the id of every run that builds it)


ARCHITECTURES: dict[str, Architecture] = {}


class ArchitectureClash(ValueError):
    pass


def architecture(name: str):
    """Register ``fn(input_shape, num_classes, **options) -> nn.Module`` under ``name``."""

    def deco(fn):
        source = Path(inspect.getsourcefile(fn)).resolve()
        known = ARCHITECTURES.get(name)
        if known is not None and known.source != source:
            raise ArchitectureClash(f"architecture {name!r} is defined in both {known.source} and {source}")
        ARCHITECTURES[name] = Architecture(name, fn, source)
        return fn

    return deco


def build(arch: str, input_shape: tuple[int, ...], num_classes: int, *, generator: torch.Generator | None = None,
          **options) -> nn.Module:
    """Build ``arch`` for this input and initialise it Keras-style from ``generator`` (paired initialisation)."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    builder = ARCHITECTURES[arch].builder
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


class Network(nn.Sequential):
    """An ``nn.Sequential`` whose hidden features have names: ``Network(*layers, features={"hidden1": 3})`` names
    the output of its first three layers ``hidden1``. A method reads a frozen model's features with
    ``run.features(model, view, split, name)`` (eval mode, like its logits) and a trained model's with
    ``b.features(role, name)`` (the batch's forward pass, with gradient); stacked repetitions give them too
    (:mod:`benchmark.engine.stacked`). Layers, their order and their state-dict keys are ``nn.Sequential``'s: naming
    features changes no weight and no number."""

    def __init__(self, *layers: nn.Module, features: dict[str, int] | None = None):
        super().__init__(*layers)  # (a slice, ``net[:k]``, is a Network without named features)
        for name, cut in (features or {}).items():
            if not 0 < cut <= len(self):
                raise ValueError(f"feature {name!r} cuts after layer {cut}, but the network has {len(self)}")
        self.feature_cuts = dict(features or {})  # name -> number of layers before the cut

    def features(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """The named feature of ``x`` (only the layers before its cut run)."""
        if name not in self.feature_cuts:
            raise KeyError(f"no feature {name!r}; this network names {', '.join(self.feature_cuts) or 'none'}")
        for layer in list(self)[:self.feature_cuts[name]]:
            x = layer(x)
        return x

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The output and every named feature, from one pass."""
        at = {cut: name for name, cut in self.feature_cuts.items()}
        found = {}
        for i, layer in enumerate(self, start=1):
            x = layer(x)
            if i in at:
                found[at[i]] = x
        return x, found


def feature_names(model: nn.Module) -> list[str]:
    """The hidden features ``model`` names (a wrapper's: those of the network it wraps)."""
    inner = model.stack_inner() if hasattr(model, "stack_inner") else model
    return list(getattr(inner, "feature_cuts", {}))


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


def mlp_network(sizes: list[int], **options) -> Network:
    """:func:`mlp` as a :class:`Network` whose hidden layer k is the feature ``hidden<k>``: its activation, after the
    ReLU (and the BatchNorm, if any), before dropout."""
    layers = mlp(sizes, **options)
    cuts, k = {}, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ReLU):
            k += 1
            follows_norm = i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm1d)
            cuts[f"hidden{k}"] = i + 2 if follows_norm else i + 1
    return Network(*layers, features=cuts)
