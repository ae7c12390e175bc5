"""A method's real training loop advanced one step at a time, for the step benchmarks (test-only)."""

from __future__ import annotations

import threading

from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.execute import Settings
from benchmark.engine.spec import RunSpec
from benchmark.engine.timing import StepTimer
from benchmark.profiling.measure import run_with_timer, train_requirements
from benchmark.profiling.timer import StepGate


class SteppedTimer(StepTimer):
    """A :class:`StepTimer` whose every step waits for its turn at ``gate``."""

    def __init__(self, gate: StepGate):
        super().__init__(warmup=0)
        self.gate = gate

    def before_step(self) -> None:
        self.gate.enter()

    def after_step(self, seconds: float, samples: int) -> None:
        super().after_step(seconds, samples)
        self.gate.leave()

    def abort_step(self) -> None:
        self.gate.leave()


class MethodStepper:
    """A method's real training loop, run in a worker thread and advanced one step at a time by :meth:`step`
    (what ``tests/perf`` benchmarks). When the method finishes it starts again, so there is always a next
    step. Call :meth:`wait_ready` (untimed: it waits through evaluation and set-up) before each
    :meth:`step`."""

    def __init__(self, spec: RunSpec, settings: Settings, methods: dict[str, MethodInfo] | None = None,
                 timeout: float = 300.0):
        self.gate = StepGate(timeout)
        self.timer = SteppedTimer(self.gate)
        methods = methods or discover()
        train_requirements([spec], settings, methods)  # the shared teacher, trained as its own run first
        self._thread = threading.Thread(target=self._work, args=(spec, settings, methods), daemon=True)
        self._thread.start()

    def _work(self, spec, settings, methods) -> None:
        error = None
        try:
            while not self.gate.stopped and not run_with_timer(spec, settings, methods, self.timer):
                pass
        except BaseException as exc:  # noqa: B036 - handed to the controlling thread, never lost
            error = exc
        finally:
            self.gate.finish(error)

    def wait_ready(self) -> None:
        if not self.gate.wait_ready():
            raise RuntimeError(f"the training loop ended: {self.gate.error!r}") from self.gate.error

    def step(self) -> None:
        self.gate.step()

    def close(self) -> None:
        self.gate.stop()
        self._thread.join(timeout=60)
