"""Step timing: the batch iterator measures each training step (from handing out a batch to being asked for the
next one), excluding a few warm-up steps; evaluation happens outside the loop and is never counted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch


class StepTimer:
    def __init__(self, warmup: int = 5):
        self.warmup = warmup
        self.times: list[float] = []
        self.samples: list[int] = []

    def summary(self) -> dict[str, float | int]:
        times = np.asarray(self.times[self.warmup:] or self.times, dtype=float)
        samples = np.asarray(self.samples[self.warmup:] or self.samples, dtype=float)
        if times.size == 0:
            return {"steps": 0}
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        return {
            "steps": len(self.times),
            "warmup_steps": min(self.warmup, len(self.times)),
            "step_median_s": float(median),
            "step_iqr_s": float(q3 - q1),
            "samples_per_s": float(samples.sum() / times.sum()) if times.sum() > 0 else float("nan"),
            "train_time_s": float(np.sum(self.times)),
        }


def timed_batches(n: int, batch_size: int, *, generator: torch.Generator | None, shuffle: bool, drop_last: bool,
                  timer: StepTimer | None) -> Iterator[torch.Tensor]:
    """Index slices of a permutation of ``range(n)``; each step's time is recorded in ``timer``."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    clock = time.perf_counter
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        began = clock()
        yield idx
        if timer is not None:
            timer.times.append(clock() - began)
            timer.samples.append(len(idx))
