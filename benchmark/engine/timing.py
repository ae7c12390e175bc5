"""Step timing: the batch iterator measures each training step (from handing out a batch to being asked for
the next one), excluding a few warm-up steps; evaluation happens outside the loop and is never counted.

A timer decides what happens around each step through two hooks the iterators call, ``before_step`` and
``after_step``. :class:`StepTimer` only records. :class:`ProfilingTimer` (``benchmark profile``), after a
warm-up, counts one step's FLOPs, traces a few steps with ``torch.profiler``, times a fixed number of steps and
then raises :class:`ProfileComplete` out of the method's loop. With a :class:`StepGate`, a loop running in a
worker thread takes its steps when another thread lets it (``profile`` interleaves targets; ``tests/perf``
times single steps with a timer of its own). A method never sees the difference: it only iterates
``run.batches(...)``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch


class ProfileComplete(BaseException):
    """Raised by a timer's iterator when the measurement is done, out through the method's training loop.

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


class ProfilingTimer(StepTimer):
    """``warmup`` untimed steps, one step under ``FlopCounterMode``, ``trace_steps`` steps under
    ``torch.profiler``, then ``steps`` timed steps, and :class:`ProfileComplete` at the next batch.

    The instruments come before the timed steps (so that a method with few steps still gets counted) and never
    overlap them (both slow a step down). FLOPs are those of the matrix products and convolutions, forward and
    backward (``torch.utils.flop_counter``); element-wise work (activations, the optimiser's update) counts
    zero, so GFLOP/s measures how well a step keeps the matrix units busy. With a ``gate``, each step waits
    for its turn (see :class:`StepGate`).
    """

    def __init__(self, warmup: int = 5, steps: int = 20, *, trace_steps: int = 3, count_flops: bool = True,
                 top_ops: int = 8, gate: StepGate | None = None):
        super().__init__(warmup=warmup)
        self.steps = steps
        self.count_flops = count_flops
        self.trace_steps = trace_steps
        self.top_ops = top_ops
        self.gate = gate
        self.flops: int | None = None
        self.flop_samples: int | None = None
        self.operators: list[dict[str, Any]] = []
        self._phase: str | None = None  # the step in progress: "time", "flops", "trace"; "done" at the end
        self._mode: Any = None  # the FlopCounterMode in use
        self._profiler: Any = None
        self._traced = 0

    @property
    def complete(self) -> bool:
        return self._phase == "done"

    def before_step(self) -> None:
        if self.gate is not None:
            self.gate.enter()
        timed = len(self.times)
        if timed < self.warmup:
            self._phase = "time"
        elif self.count_flops and self.flops is None:
            from torch.utils.flop_counter import FlopCounterMode

            self._phase, self._mode = "flops", FlopCounterMode(display=False)
            self._mode.__enter__()
        elif self._traced < self.trace_steps:
            if self._profiler is None:
                # kineto (the profiler's backend) otherwise prints start/stop lines and a GPU probe error
                os.environ.setdefault("KINETO_LOG_LEVEL", "6")
                self._profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                        record_shapes=True)
                self._profiler.start()
            self._phase = "trace"
        elif timed < self.warmup + self.steps:
            self._stop_trace()
            self._phase = "time"
        else:
            self.close()
            self._phase = "done"
            raise ProfileComplete

    def after_step(self, seconds: float, samples: int) -> None:
        if self._phase == "time":
            super().after_step(seconds, samples)
        elif self._phase == "flops":
            self._mode.__exit__(None, None, None)
            self.flops, self.flop_samples, self._mode = int(self._mode.get_total_flops()), samples, None
        elif self._phase == "trace":
            self._traced += 1
        self._phase = None
        if self.gate is not None:
            self.gate.leave()

    def abort_step(self) -> None:
        if self._phase == "flops":
            self._mode.__exit__(None, None, None)
            self._mode = None
        if self._phase in ("time", "flops", "trace"):
            if self.gate is not None:
                self.gate.leave()
            self._phase = None

    def _stop_trace(self) -> None:
        if self._profiler is not None:
            self._profiler.stop()
            self.operators = top_operators(self._profiler, self._traced, self.top_ops)
            self._profiler = None

    def close(self) -> None:
        """Leave any instrument still in use and read the trace; safe to call more than once."""
        self.abort_step()
        self._stop_trace()

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.summary())
        out["timed_steps"] = max(len(self.times) - self.warmup, 0)
        out["step_times_s"] = list(self.times[self.warmup:])
        out["batch_size"] = int(np.median(self.samples[self.warmup:])) if out["timed_steps"] else None
        out["flops_per_step"] = self.flops
        out["flop_samples"] = self.flop_samples
        out["operators"] = self.operators
        out["complete"] = self.complete
        return out


def top_operators(profiler, steps: int, top: int) -> list[dict[str, Any]]:
    """The ``top`` operators by self CPU time per step in a finished ``torch.profiler`` run of ``steps`` steps.

    An operator's time per step sums, over its distinct input shapes, the median self time of the calls with
    those shapes times their number per step: robust to a few calls that the OS preempted (on a busy machine a
    plain total blames whichever operator happened to be running).
    """
    calls: dict[tuple[str, str], list[float]] = {}
    for event in profiler.events():
        calls.setdefault((event.name, str(event.input_shapes)), []).append(event.self_cpu_time_total)
    per = max(steps, 1)
    cost: dict[str, float] = {}
    count: dict[str, int] = {}
    for (name, _), times in calls.items():
        cost[name] = cost.get(name, 0.0) + float(np.median(times)) * len(times) / per
        count[name] = count.get(name, 0) + len(times)
    total = sum(cost.values()) or 1.0
    ranked = sorted((name for name in cost if cost[name] > 0), key=cost.get, reverse=True)
    return [{"name": name, "self_cpu_ms_per_step": cost[name] / 1e3, "share": cost[name] / total,
             "calls_per_step": count[name] / per} for name in ranked[:top]]


class StepGate:
    """Hands out the steps of a training loop running in a worker thread, one at a time.

    The worker's timer calls :meth:`enter` before each step (it parks there until let through) and
    :meth:`leave` after it; the worker calls :meth:`finish` when its loop ends, however it ends. The
    controlling thread either runs one step and returns as soon as it is done (:meth:`wait_ready`, then
    :meth:`step`; tests/perf), or gives the worker a turn that lasts until it parks again (:meth:`turn`), so
    that whatever the loop does between steps (evaluation, set-up) never overlaps another worker's turn
    (``profile``).
    """

    def __init__(self, timeout: float = 900.0):
        self.timeout = timeout
        self.stopped = False
        self.finished = False
        self.error: BaseException | None = None
        self._ready, self._go, self._done = (threading.Semaphore(0) for _ in range(3))

    # worker side
    def begin(self) -> None:
        """Wait for the first turn before doing anything (``profile``: set-up is serialised too)."""
        self._go.acquire()

    def enter(self) -> None:
        self._ready.release()
        self._go.acquire()
        if self.stopped:
            raise ProfileComplete

    def leave(self) -> None:
        self._done.release()

    def finish(self, error: BaseException | None = None) -> None:
        self.finished, self.error = True, error
        self._ready.release()
        self._done.release()

    # controlling side
    def _wait(self, semaphore: threading.Semaphore, what: str) -> None:
        if not semaphore.acquire(timeout=self.timeout):
            raise TimeoutError(f"the training loop did not reach {what} within {self.timeout:.0f} s")

    def wait_ready(self) -> bool:
        """Wait until the loop is parked before its next step (True) or has ended (False)."""
        self._wait(self._ready, "its next step")
        return not self.finished

    def step(self) -> None:
        """Let one step through and wait for its end (the loop then goes on to its next park by itself)."""
        self._go.release()
        self._wait(self._done, "the end of its step")

    def turn(self) -> bool:
        """Let the loop run until it parks again (True) or ends (False)."""
        self._go.release()
        return self.wait_ready()

    def stop(self) -> None:
        """Make the parked (or next) step raise ProfileComplete."""
        self.stopped = True
        self._go.release()
