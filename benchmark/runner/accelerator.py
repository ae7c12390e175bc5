"""Worker processes that each own a GPU (``--device cuda``): the local backend's workers, each bound to one GPU.

Several workers share a GPU (``--jobs`` counts them all): one worker's step leaves the GPU idle while its process
queues the next kernels, and another's kernels fill those gaps. With several GPUs the workers are spread over them,
a new worker going to the GPU with the fewest (round-robin as they start, and a worker that died is replaced on its
own GPU). Each worker keeps the datasets it has loaded, copied to its GPU once (:class:`benchmark.data.Dataset`), and
trains each task there: a configuration's repetitions as one packed model (:mod:`benchmark.engine.stacked`), index
batches sliced on the GPU, losses summed there and read once per epoch. Everything else (kills, time limits, the
death of a worker) is the local backend's.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from benchmark.engine.execute import Settings
from benchmark.runner.local import LocalBackend, _Worker


def spread(gpus: tuple[int, ...], live: list[int | None]) -> int:
    """The GPU a new worker goes to: the one with the fewest live workers, the first listed on a tie."""
    counts = Counter(g for g in live if g is not None)
    return min(gpus, key=lambda g: (counts[g], gpus.index(g)))


class AcceleratorBackend(LocalBackend):
    """Up to ``jobs`` worker processes spread over ``gpus``, each executing one task at a time on its GPU."""

    def __init__(self, jobs: int, settings: Settings, gpus: tuple[int, ...]):
        if not gpus:
            raise ValueError("the accelerator backend needs at least one GPU")
        super().__init__(jobs, settings)
        self.gpus = tuple(gpus)

    def _spawn(self) -> _Worker:
        live = [w.gpu for w in self.idle + list(self.busy.values())]
        return self._spawn_with(dataclasses.replace(self.settings, gpu=spread(self.gpus, live)))
