"""The SKA notebook's network: a stack of sigmoid layers that learns without backpropagation."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.nn import architecture, flat_size


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


@architecture("ska_stack")
def ska_stack(input_shape, num_classes, layer_sizes: tuple[int, ...] = (256, 128, 64, 10), init_std: float = 0.01,
              generator: torch.Generator | None = None):
    return SigmoidStack(flat_size(input_shape), layer_sizes, init_std, generator)
