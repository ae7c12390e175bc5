"""The Born-Again ensemble (BANE): the generations of one architecture as one classifier whose output is the mean of
their softmax outputs.

It is built like any architecture (so a run that ends with it records, checkpoints and reloads it), then each
member's weights are copied from a trained generation: it is never trained itself.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark import nn as layers


class Ensemble(nn.Module):
    """``members`` networks of one architecture; ``forward`` returns log(mean_k softmax(member_k(x))), logits whose
    softmax is the members' average probability (what the harness's accuracy, NLL and calibration then read)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([m(x).log_softmax(1) for m in self.members])
        return log_probs.logsumexp(0) - math.log(len(self.members))  # stable log of the mean probability

    def copy_from(self, trained: list[nn.Module]) -> Ensemble:
        if len(trained) != len(self.members):
            raise ValueError(f"an ensemble of {len(self.members)} members got {len(trained)} networks")
        for member, model in zip(self.members, trained, strict=True):
            member.load_state_dict(model.state_dict())
        return self


@layers.architecture("born_again_ensemble")
def ensemble(input_shape, num_classes, *, member: str, members: int, generator=None):
    # Each member is built with the run's generator only so that building draws nothing from torch's global
    # stream; its weights are replaced by a trained generation's.
    return Ensemble([layers.build(member, input_shape, num_classes, generator=generator) for _ in range(members)])
