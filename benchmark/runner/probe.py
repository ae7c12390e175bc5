"""A configuration's step time, measured before the plan's estimate: a few steps of the method's real ``train`` (its
loss included, which FLOPs of its networks leave out: a loss over all pairs of a batch can cost 100x the student's
step), stopped by the step timer; and one epoch's evaluation of the models it built (each on the validation and
test splits, as the fit loop evaluates every epoch: on a small transfer set trained for hundreds of epochs that
is most of a run, and the FLOPs of a forward pass leave out its per-call costs and metrics).

The runs it requires need not exist yet: each is replaced by an untrained model of the required run's declared
architecture (only its cost matters here). Nothing is stored. A probe is capped in steps and seconds, and the probes
of one plan share a budget; a configuration that cannot be probed (a required run of unknown configuration, a method
that fails, the budget spent) keeps the FLOP estimate.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch

from benchmark.contract import required_method
from benchmark.engine.context import freeze
from benchmark.engine.execute import Settings, prepare
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.engine.timing import StepTimer, StopTraining
from benchmark.store import Store

WARMUP = 3  # untimed first steps (allocations, lazy initialisation)
STEPS = 8  # timed steps; their median is the step time
PROBE_S = 5.0  # one probe stops after this many seconds, whatever it has timed
BUDGET_S = 30.0  # all the probes of one plan together


class ProbeTimer(StepTimer):
    """Times ``WARMUP + STEPS`` steps (or what ``seconds`` allow), then ends the method's loop."""

    def __init__(self, seconds: float):
        super().__init__(warmup=WARMUP)
        self.deadline = time.monotonic() + seconds

    def before_step(self) -> None:
        if len(self.times) >= WARMUP + STEPS or (len(self.times) > WARMUP and time.monotonic() > self.deadline):
            raise StopTraining


class Prober:
    """Step seconds of planned runs, measured once per kind within a shared budget (:data:`BUDGET_S`)."""

    def __init__(self, methods, known: dict[str, RunSpec], data_root=None, budget_s: float = BUDGET_S):
        self.methods, self.known, self.data_root = methods, known, data_root
        self.left = budget_s

    def measure(self, spec: RunSpec) -> Measured:
        """The median step time and one epoch's evaluation time of ``spec``'s configuration here; None where not
        measured (see the module)."""
        if spec.device != "cpu" or self.left <= 0 or not all(r in self.known for r in spec.requires.values()):
            return Measured()  # a GPU is not touched by the planning process: its workers own it
        began = time.monotonic()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as a run trains (Settings.threads)
        try:
            return self._measure(spec)
        except Exception:  # noqa: BLE001 - the estimate only orders runs; the run itself reports the error
            return Measured()
        finally:
            torch.set_num_threads(threads)
            self.left -= time.monotonic() - began

    def _measure(self, spec: RunSpec) -> Measured:
        settings = Settings(store=Store(_NOWHERE, read_only=True), data_root=self.data_root)
        method, cfg, data, _, run = prepare(spec, settings, self.methods)
        if method.skip(cfg, data):
            return Measured()
        # Instance attributes: this context's required runs are stand-ins (see the module docstring), and the
        # models it builds are kept to time their evaluation.
        run.required = lambda key, role=None: self._stand_in(run, spec, key, role)
        built, build = [], run.build

        def keep(arch, view, **options):
            model = build(arch, view, **options)
            built.append((model, view))
            return model

        run.build = keep
        run.timer = timer = ProbeTimer(min(PROBE_S, self.left))
        try:
            method.train(run, cfg)
        except StopTraining:
            pass
        return Measured(timer.summary().get("step_median_s"), _epoch_evaluation(run, built))

    def _stand_in(self, run, spec: RunSpec, key: str, role: str | None):
        needed = self.known[spec.requires[key]]
        info = self.methods[required_method(key)]
        roles = info.cls().roles(config_from_dict(info, needed.config), run.data)
        declared = roles[role] if role is not None else next(iter(roles.values()))
        return freeze(run.build(declared.arch, declared.view, init=declared.init, **declared.options))


class Measured(NamedTuple):
    step_s: float | None = None  # median step time
    eval_s: float | None = None  # one epoch's evaluation: every model built, on the validation and test splits


def _epoch_evaluation(run, built: list[tuple[torch.nn.Module, str]]) -> float | None:
    """Seconds to evaluate each classifier of ``built`` on the validation and test splits once, after one untimed
    pass (as the fit loop does after every epoch); None when none of them evaluates (a label-free model)."""
    splits = [s for s in ("val", "test") if run.data.size(s)]
    total, evaluated = 0.0, False
    for model, view in built:
        try:
            run.evaluate(model, view, splits[-1])  # untimed: the first pass allocates
            began = time.perf_counter()
            for split in splits:
                run.evaluate(model, view, split)
            total += time.perf_counter() - began
            evaluated = True
        except Exception:  # noqa: BLE001 - a model that is not a classifier is not evaluated each epoch
            continue
    return total if evaluated else None


# The probe's store: never written (read-only) nor read (required runs are stand-ins).
_NOWHERE = "/nonexistent-probe-store"
