"""The forecast measures a new configuration's step before the plan: a method whose loss costs far more than its
network's FLOPs is forecast within 2x of the time it takes, where the FLOP estimate alone is far below it."""

from __future__ import annotations

import math
import time

import pytest

from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, execute
from benchmark.engine.plan import plan
from benchmark.runner import schedule
from benchmark.runner.probe import STEPS, WARMUP, Measured, Prober
from benchmark.store import Store
from benchmark.suite.forecast import Forecast
from tests.projects import METHOD_HEADER, make_project

# A small student whose loss adds a fixed amount of arithmetic per step (as an all-pairs loss would): its networks'
# FLOPs say nothing of it.
COSTLY = METHOD_HEADER + '''

@dataclass
class Config:
    epochs: int = 4  # training epochs
    batch_size: int = 64  # what Method.budget reads, with epochs, to count a run's steps
    work: int = 12  # 300x300 matrix products per step in the loss


class Method(MethodBase):
    Config = Config

    def roles(self, cfg, data):
        return {{"student": Role("hinton_student", "flat")}}

    def train(self, run, cfg):
        model = run.build("hinton_student", "flat")

        def step(b):
            z = b.forward("student")
            m = torch.full((300, 300), 1e-3)
            for _ in range(cfg.work):
                m = torch.tanh(m @ m)
            b.update({{"student": {{"loss": F.cross_entropy(z, b.y) + 0 * m.sum()}}}})

        return run.fit({{"student": model}}, step, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=1e-3)
'''


def test_a_costly_loss_is_forecast_within_2x_of_its_time(tmp_path, one_thread):
    methods = discover(make_project(tmp_path, {"costly": COSTLY}))
    (spec,) = plan([methods["costly"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
    flops_only = schedule.expected_seconds([spec], {}, methods)[spec.run_id]
    prober = Prober(methods, {spec.run_id: spec})
    measured = schedule.expected_seconds([spec], {}, methods, prober=prober)
    assert measured.measured == {schedule.kind(spec)}
    took = execute(spec, Settings(store=Store(tmp_path / "out")), methods)
    assert took["status"] == "ok", took.get("error")
    took_s = took["wall_time_s"]
    assert flops_only < took_s / 2  # what the forecast said before it measured: the test can fail
    assert took_s / 2 <= measured[spec.run_id] <= 2 * took_s, (measured[spec.run_id], took_s)
    assert took["timing"]["steps"] > WARMUP + STEPS  # the probe measured fewer steps than the run trains


def test_a_probe_is_skipped_without_budget_and_for_unknown_requirements(tmp_path):
    methods = discover(make_project(tmp_path, {"costly": COSTLY}))
    (spec,) = plan([methods["costly"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
    assert Prober(methods, {}, budget_s=0).measure(spec) == Measured()
    needing = type(spec)(**{**spec.to_dict(), "requires": {"teacher": "0" * 16}})
    assert Prober(methods, {}).measure(needing) == Measured()  # its teacher's configuration is not known


def test_the_probe_times_one_epochs_evaluation_and_the_estimate_adds_it_each_epoch(tmp_path, one_thread):
    """A run evaluates its models on the validation and test splits after every epoch: on a small transfer set
    trained for hundreds of epochs that is most of its time, which a forward pass's FLOPs leave out. The probe
    times it once (every model it built, both splits), and the estimate is steps x step + epochs x evaluation."""
    from benchmark.engine.execute import Settings as RunSettings
    from benchmark.engine.execute import prepare

    methods = discover(make_project(tmp_path, {"costly": COSTLY}))
    (spec,) = plan([methods["costly"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
    measured = Prober(methods, {spec.run_id: spec}).measure(spec)
    assert measured.step_s > 0 and measured.eval_s > 0
    # the same evaluation timed here, of a model built as the method builds it (best of 5: the machine is shared)
    _, cfg, data, _, run = prepare(spec, RunSettings(store=Store(tmp_path / "none", read_only=True)), methods)
    model = run.build("hinton_student", "flat")
    run.evaluate(model, "flat", "test")
    times = []
    for _ in range(5):
        began = time.perf_counter()
        run.evaluate(model, "flat", "val")
        run.evaluate(model, "flat", "test")
        times.append(time.perf_counter() - began)
    assert min(times) / 5 <= measured.eval_s <= 20 * min(times)

    class Fixed:
        def measure(self, _spec):
            return Measured(step_s=0.01, eval_s=0.5)

    method = methods["costly"].cls()
    epochs, batch_size = method.budget(cfg, data)
    steps = epochs * math.ceil(data.size("train") / batch_size)
    estimate = schedule.expected_seconds([spec], {}, methods, prober=Fixed())[spec.run_id]
    assert estimate == pytest.approx(steps * 0.01 + epochs * 0.5)


@pytest.mark.parametrize(("estimated", "took", "ratio"), [(100.0, 150.0, "1.50x"), (600.0, 300.0, "0.50x")])
def test_after_a_suite_one_line_says_how_far_the_estimate_was(estimated, took, ratio):
    line = Forecast([], [], wall_s=estimated).versus(took)
    assert line.startswith("training time: estimated ") and f"({ratio} the estimate)" in line
