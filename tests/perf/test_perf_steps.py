"""One pytest-benchmark benchmark per training step of every discovered method and baseline.

The default test run executes each benchmark once, untimed (pyproject sets ``--benchmark-disable``), so they
cannot rot; ``tox -e perf`` times them (``--benchmark-enable --benchmark-autosave``). What is timed is the
method's own loop body, advanced one step at a time by :class:`tests.perf.stepper.MethodStepper` at one
torch thread: no per-method code here, and a new method folder gets its benchmark without editing this file.

Environment: ``BENCHMARK_PERF_DATASET`` (default digits), ``BENCHMARK_PERF_PRESET`` (default smoke),
``BENCHMARK_PERF_ROUNDS`` (timed steps per benchmark when enabled, default 50).
"""

import os

import pytest
import torch

from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.profiling.measure import target_spec
from benchmark.store import Store
from tests.perf.stepper import MethodStepper

DATASET = os.environ.get("BENCHMARK_PERF_DATASET", "digits")
PRESET = os.environ.get("BENCHMARK_PERF_PRESET", "smoke")
ROUNDS = int(os.environ.get("BENCHMARK_PERF_ROUNDS", "50"))
WARMUP_STEPS = 3  # untimed: first-call allocations, lazy initialisation


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One results folder for the module, so that a cached teacher is trained once."""
    return tmp_path_factory.mktemp("perf-store")


@pytest.fixture
def one_thread():
    """One torch thread, restored after. The step runs in a worker thread, and with more torch threads libgomp
    would then stop spinning (it manages more threads than there are cores) and every parallel region would
    wait for a sleeping worker: the benchmark would time that, not the step (0.7 ms -> 1.8 ms for the
    scratch student). One thread also keeps the untimed default run quick on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(discover()))
def test_training_step(benchmark, name, store, one_thread):
    methods = discover()
    info = methods[name]
    if not info.ok:
        pytest.fail(f"{info.kind} {name} cannot be loaded: {info.error}")
    spec = target_spec(info, dataset=DATASET, preset=PRESET)
    stepper = MethodStepper(spec, Settings(store=Store(store)), methods)
    try:
        for _ in range(WARMUP_STEPS):
            stepper.wait_ready()
            stepper.step()
        benchmark.group = f"{DATASET} ({PRESET})"
        benchmark.extra_info.update(method=name, dataset=DATASET, preset=PRESET,
                                    batch_size=stepper.timer.samples[-1])
        benchmark.pedantic(stepper.step, setup=stepper.wait_ready, rounds=ROUNDS, iterations=1)
        # the method's loop really went through the harness's batch iterator, one step per call
        assert len(stepper.timer.times) in (WARMUP_STEPS + 1, WARMUP_STEPS + ROUNDS)
    finally:
        stepper.close()
