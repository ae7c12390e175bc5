"""Step timing: the batch iterator measures each training step (from handing out a batch to being asked for
the next one), excluding a few warm-up steps; evaluation happens outside the loop and is never counted.

A timer decides what happens around each step through the hooks the iterators call, ``before_step`` and
``after_step``. :class:`StepTimer` only records. A timer of another kind (``benchmark profile``'s, in
:mod:`benchmark.profiling.timer`) may also instrument steps, hold them back, or end a run's training early by
raising :class:`StopTraining` out of the method's loop. A method never sees the difference: it only iterates
``run.batches(...)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch


class StopTraining(BaseException):
    """Raised by a step timer to end a run's training early (a measurement that has timed enough steps), out
    through the method's training loop; the fit loop and a batch of repetitions pass it on to whoever runs the
    method.

    A BaseException (like KeyboardInterrupt), so that a method's ``except Exception`` cannot swallow it.
    """


class StepTimer:
    def __init__(self, warmup: int = 5):
        self.warmup = warmup
        self.times: list[float] = []
        self.samples: list[int] = []

    # ---- hooks called by the iterators --------------------------------------------------------------------
    def before_step(self) -> None:
        """Called just before a batch is handed out (and before the step's clock starts)."""

    def after_step(self, seconds: float, samples: int) -> None:
        """Called when the next batch is asked for: the step took ``seconds`` on ``samples`` examples."""
        self.times.append(seconds)
        self.samples.append(samples)

    def abort_step(self) -> None:
        """The step did not finish (the loop broke out or raised)."""

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


def timed_batches(n: int, batch_size: int, *, generator: torch.Generator | None, shuffle: bool,
                  drop_last: bool, timer: StepTimer | None) -> Iterator[torch.Tensor]:
    """Index slices of a permutation of ``range(n)``; each step's time is recorded in ``timer``."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    clock = time.perf_counter
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        if timer is None:
            yield idx
            continue
        timer.before_step()
        began = clock()
        try:
            yield idx
        except BaseException:  # GeneratorExit (the loop broke out) or an exception thrown in
            timer.abort_step()
            raise
        timer.after_step(clock() - began, len(idx))


def timed_iter(iterable: Iterable, timer: StepTimer,
               samples: Callable[[Any], int] = lambda item: len(item[0])) -> Iterator[Any]:
    """Any iterable (e.g. a DataLoader) timed like :func:`timed_batches`, except that each step's clock also
    covers fetching the item: a DataLoader's collation is part of its loop's cost."""
    iterator = iter(iterable)
    clock = time.perf_counter
    while True:
        timer.before_step()
        began = clock()
        try:
            item = next(iterator)
        except StopIteration:
            timer.abort_step()
            return
        try:
            yield item
        except BaseException:
            timer.abort_step()
            raise
        timer.after_step(clock() - began, samples(item))
