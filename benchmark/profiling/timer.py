"""``benchmark profile``'s step timer and what goes with it: :class:`ProfilingTimer` (after a warm-up, counts one
step's FLOPs, traces a few steps with ``torch.profiler``, times a fixed number of steps, then ends the run's training
with the engine's :class:`~benchmark.engine.timing.StopTraining`), :func:`top_operators` (the trace's costliest
operators) and :class:`StepGate` (a loop running in a worker thread takes its steps when another thread lets it:
``profile`` interleaves targets, ``tests/perf`` times single steps with a timer of its own)."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.engine.timing import HostClock, StepTimer, StopTraining, SynchronisedClock


def profile_clock(device: torch.device) -> HostClock | SynchronisedClock:
    """The clock of a profiled step: the host's, after waiting for a GPU at both ends (every kernel of the step
    counted, none of the previous one's)."""
    return SynchronisedClock(device) if device.type == "cuda" else HostClock()


class ProfilingTimer(StepTimer):
    """``warmup`` untimed steps, one step under ``FlopCounterMode``, ``trace_steps`` steps under
    ``torch.profiler``, then ``steps`` timed steps, and :class:`StopTraining` at the next batch.

    The instruments come before the timed steps (so that a method with few steps still gets counted) and never
    overlap them (both slow a step down). FLOPs are those of the matrix products and convolutions, forward and
    backward (``torch.utils.flop_counter``); element-wise work (activations, the optimiser's update) counts
    zero, so GFLOP/s measures how well a step keeps the matrix units busy. With a ``gate``, each step waits
    for its turn (see :class:`StepGate`). On a GPU (``clock``: :func:`profile_clock`), the trace also records the
    GPU's kernels, and :attr:`kernels` holds the costliest.
    """

    def __init__(self, warmup: int = 5, steps: int = 20, *, trace_steps: int = 3, count_flops: bool = True,
                 top_ops: int = 8, gate: StepGate | None = None, clock=None):
        super().__init__(warmup=warmup, clock=clock)
        self.on_gpu = isinstance(clock, SynchronisedClock)
        self.kernels: list[dict[str, Any]] = []
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
            self._phase, self._mode = "flops", FlopCounterMode(display=False)
            self._mode.__enter__()
        elif self._traced < self.trace_steps:
            if self._profiler is None:
                # kineto (the profiler's backend) otherwise prints start/stop lines and a GPU probe error
                os.environ.setdefault("KINETO_LOG_LEVEL", "6")
                activities = [torch.profiler.ProfilerActivity.CPU]
                if self.on_gpu:
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self._profiler = torch.profiler.profile(activities=activities, record_shapes=True)
                self._profiler.start()
            self._phase = "trace"
        elif timed < self.warmup + self.steps:
            self._stop_trace()
            self._phase = "time"
        else:
            self.close()
            self._phase = "done"
            raise StopTraining

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
            if self.on_gpu:
                self.kernels = top_kernels(self._profiler, self._traced, self.top_ops)
            self._profiler = None

    def close(self) -> None:
        """Leave any instrument still in use and read the trace; safe to call more than once."""
        self.abort_step()
        self._stop_trace()

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.summary())
        out["timed_steps"] = max(len(self.times) - self.warmup, 0)
        out["step_times_s"] = [float(t) for t in self.times[self.warmup:]]
        out["batch_size"] = int(np.median(self.samples[self.warmup:])) if out["timed_steps"] else None
        out["flops_per_step"] = self.flops
        out["flop_samples"] = self.flop_samples
        out["operators"] = self.operators
        out["kernels"] = self.kernels
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


def top_kernels(profiler, steps: int, top: int) -> list[dict[str, Any]]:
    """The ``top`` GPU kernels by GPU time per step in a finished trace of ``steps`` steps (with their share of the
    traced GPU time): where a step's time goes on the GPU, as :func:`top_operators` says for the host."""
    cost: dict[str, float] = {}
    count: dict[str, int] = {}
    for event in profiler.events():
        if getattr(event, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        cost[event.name] = cost.get(event.name, 0.0) + event.time_range.elapsed_us()
        count[event.name] = count.get(event.name, 0) + 1
    per, total = max(steps, 1), sum(cost.values()) or 1.0
    ranked = sorted(cost, key=cost.get, reverse=True)
    return [{"name": name, "gpu_ms_per_step": cost[name] / per / 1e3, "share": cost[name] / total,
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
            raise StopTraining

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
        """Make the parked (or next) step raise StopTraining."""
        self.stopped = True
        self._go.release()
