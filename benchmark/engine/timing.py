"""Step timing: the batch iterator measures each training step (from handing out a batch to being asked for
the next one), excluding a few warm-up steps; evaluation happens outside the loop and is never counted.

A timer decides what happens around each step through the hooks the iterators call, ``before_step`` and
``after_step``. :class:`StepTimer` only records. A timer of another kind (``benchmark profile``'s, in
:mod:`benchmark.profiling.timer`) may also instrument steps, hold them back, or end a run's training early by
raising :class:`StopTraining` out of the method's loop. A method never sees the difference: it only iterates
``run.batches(...)``.

A timer reads its steps with a clock of the run's device. On a CPU a step has ended when the loop asks for the next
batch (:class:`HostClock`). A GPU runs a step's kernels after the host has queued them, so there the clock is a
pair of CUDA events queued at the step's ends (:class:`EventClock`: the host never waits for the GPU, and a step's
time is read once the run is over) or, for ``profile``, the host's clock after waiting for the GPU at both ends
(:class:`SynchronisedClock`).
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


class HostClock:
    """Seconds on the host's clock from ``start()`` to ``stop(began)``."""

    start = staticmethod(time.perf_counter)

    @staticmethod
    def stop(began: float) -> float:
        return time.perf_counter() - began


class SynchronisedClock:
    """The host's clock after the GPU has finished everything queued before each end of a step."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> float:
        torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def stop(self, began: float) -> float:
        torch.cuda.synchronize(self.device)
        return time.perf_counter() - began


class EventSpan:
    """The GPU time between two recorded CUDA events, read (waiting for the second) when ``float()`` asks."""

    __slots__ = ("began", "ended")

    def __init__(self, began, ended):
        self.began, self.ended = began, ended

    def __float__(self) -> float:
        self.ended.synchronize()
        return self.began.elapsed_time(self.ended) / 1e3


class EventClock:
    """A CUDA event queued at each end of a step: no host synchronisation inside the loop."""

    @staticmethod
    def start():
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def stop(self, began) -> EventSpan:
        return EventSpan(began, self.start())


def step_clock(device: torch.device | None) -> HostClock | EventClock:
    """The clock a run's steps are timed with on ``device``."""
    return EventClock() if device is not None and device.type == "cuda" else HostClock()


class StepTimer:
    def __init__(self, warmup: int = 5, clock: HostClock | EventClock | SynchronisedClock | None = None):
        self.warmup = warmup
        self.clock = clock or HostClock()
        self.times: list[float | EventSpan] = []
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
        every = np.asarray([float(t) for t in self.times], dtype=float)  # CUDA events are read here, once
        times = every[self.warmup:] if len(every) > self.warmup else every
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
            "train_time_s": float(np.sum(every)),
        }


def timed_batches(n: int, batch_size: int, *, generator: torch.Generator | None, shuffle: bool,
                  drop_last: bool, timer: StepTimer | None, device: torch.device | None = None
                  ) -> Iterator[torch.Tensor]:
    """Index slices of a permutation of ``range(n)`` drawn on the CPU (the same order on every device); each
    step's time is recorded in ``timer``. ``device``: a GPU the epoch's order is copied to once, each batch then
    being a slice of it there."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if device is not None:
        order = order.to(device)
    stop = n - n % batch_size if drop_last else n
    clock = timer.clock if timer is not None else None
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        if timer is None:
            yield idx
            continue
        timer.before_step()
        began = clock.start()
        try:
            yield idx
        except BaseException:  # GeneratorExit (the loop broke out) or an exception thrown in
            timer.abort_step()
            raise
        timer.after_step(clock.stop(began), len(idx))


def timed_iter(iterable: Iterable, timer: StepTimer,
               samples: Callable[[Any], int] = lambda item: len(item[0])) -> Iterator[Any]:
    """Any iterable (e.g. a DataLoader) timed like :func:`timed_batches`, except that each step's clock also
    covers fetching the item: a DataLoader's collation is part of its loop's cost."""
    iterator = iter(iterable)
    clock = timer.clock
    while True:
        timer.before_step()
        began = clock.start()
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
        timer.after_step(clock.stop(began), samples(item))
