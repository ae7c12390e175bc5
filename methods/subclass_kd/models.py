"""The subclass notebook's networks: a CNN teacher and a 784-784 MLP student, both with S logits per class.

A class's logit is computed from its S subclass logits (class c owns subclasses c*S .. c*S+S-1, the grouping of the
official ``reshape(-1, C, S)``); with S = 1 the builders return the plain network with C outputs, which is the
scratch student's architecture. The first layers draw the same initial weights whatever S is (the harness seeds a
build by architecture and view only), so a student and its scratch student differ only in their head.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.nn import architecture, conv_stack, flat_size, mlp


def class_logits(subclass_logits: torch.Tensor, num_classes: int, collapse: str = "logsumexp"):
    """(N, C*S) subclass logits -> (N, C) class logits; class c owns subclasses c*S .. c*S+S-1."""
    grouped = subclass_logits.reshape(subclass_logits.shape[0], num_classes, -1)
    return grouped.logsumexp(-1) if collapse == "logsumexp" else grouped.sum(-1)


class SubclassNet(nn.Module):
    """A net with C*S outputs used as a C-class classifier: ``forward`` gives class logits (what the harness
    evaluates), ``subclass_logits`` the raw outputs."""

    def __init__(self, net: nn.Module, num_classes: int, collapse: str):
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.collapse = collapse

    def subclass_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return class_logits(self.net(x), self.num_classes, self.collapse)

    # The harness may train several repetitions of this net as one batch: it runs the wrapped network itself and
    # asks for the output from the network's (per-example) raw logits.
    def stack_inner(self) -> nn.Module:
        return self.net

    def stack_output(self, raw: torch.Tensor, call: str | None) -> torch.Tensor:
        return raw if call == "subclass_logits" else class_logits(raw, self.num_classes, self.collapse)


def _with_head(net: nn.Module, num_classes: int, subclasses: int, collapse: str) -> nn.Module:
    return net if subclasses == 1 else SubclassNet(net, num_classes, collapse)


@architecture("subclass_cnn")
def subclass_cnn(input_shape, num_classes, subclasses: int = 1, collapse: str = "logsumexp", dropout: float = 0.5):
    """32c3-pool-64c3-pool-dropout-128-dropout-(C*S)."""
    features, size = conv_stack(input_shape, [("conv", 32), ("pool",), ("conv", 64), ("pool",)])
    net = nn.Sequential(features, nn.Dropout(dropout), nn.Linear(size, 128), nn.ReLU(), nn.Dropout(dropout),
                        nn.Linear(128, num_classes * subclasses))
    return _with_head(net, num_classes, subclasses, collapse)


@architecture("subclass_mlp")
def subclass_mlp(input_shape, num_classes, subclasses: int = 1, collapse: str = "logsumexp", hidden: int = 784):
    """Dense(784)-Dense(784)-(C*S) (the notebook's width for MNIST, kept on every dataset)."""
    net = nn.Sequential(*mlp([flat_size(input_shape), hidden, hidden, num_classes * subclasses]))
    return _with_head(net, num_classes, subclasses, collapse)
