"""Tests of methods/fitnets: the hint loss against its formula (numpy), the two stages (stage 1 changes only the
student's layers up to the guided layer, and the regressor; stage 2 the whole student with hinton_kd's soft-target
loss), the teacher's hints in eval mode, and the student with its regressor trained as one stacked batch of
repetitions, bit for bit the numbers each repetition gets alone."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

from benchmark.engine.context import RunContext
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.store import Store

METHODS = discover()
INFO = METHODS["fitnets"]
Method = INFO.cls
fitnets = sys.modules[Method.__module__]


def test_hint_loss_by_hand_and_against_numpy():
    """1/2 ||u - r||² per example, batch mean: (1/2)(1 + 4) and (1/2)(0) average to 1.25."""
    regressed = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    hints = torch.tensor([[0.0, 0.0], [3.0, -1.0]])
    assert float(fitnets.hint_loss(regressed, hints)) == 1.25
    assert float(fitnets.hint_loss(hints, hints)) == 0.0
    rng = np.random.default_rng(0)
    u, r = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    expected = 0.5 * np.mean(np.sum((u - r) ** 2, axis=1))
    assert float(fitnets.hint_loss(torch.tensor(r), torch.tensor(u))) == pytest.approx(expected, rel=1e-12)


def test_stage_two_is_hinton_kds_loss_with_its_defaults():
    cfg = Method.Config()
    hinton = METHODS["hinton_kd"].cls.Config()
    assert (cfg.temperature, cfg.alpha) == (hinton.temperature, hinton.alpha) and hinton.t_squared
    assert (cfg.hint_layer, cfg.guided_layer, cfg.hint_epochs) == ("hidden1", "hidden1", 10)  # presets: test_presets


def _smoke(out, reps=1, batch_reps=1, spy=None):
    specs = plan([INFO], data=["digits"], reps=reps, preset="smoke", base_seed=0, methods=METHODS)
    settings = Settings(store=Store(out), threads=1, batch_reps=batch_reps)
    with pytest.MonkeyPatch.context() as mp:
        if spy is not None:
            mp.setattr(RunContext, "fit", spy)
        outcome = run_plan(specs, settings, backend="inprocess")
    assert not outcome.failed, [r["error"] for r in outcome.failed]
    return {(r["method"], r["rep"]): r for r in Store(out).iter_runs()}


def test_stage_one_trains_the_layers_up_to_the_guided_layer_and_the_regressor(tmp_path):
    calls = []
    original = RunContext.fit

    def spy(self, models, step, **options):
        if self.spec.method != "fitnets":
            return original(self, models, step, **options)
        before = {role: copy.deepcopy(m.state_dict()) for role, m in models.items()}
        if "regressor" in models:
            teacher = self.required("teacher")
            cut = teacher.feature_cuts["hidden1"]  # the CNN teacher's first dense layer, read on its image view
            assert self.view_of(teacher) == "image"
            calls.append({"hints_eval": torch.equal(self.features(teacher, "image", "train", "hidden1"),
                                                    copy.deepcopy(teacher).eval()[:cut](self.view("image", "train")))})
        result = original(self, models, step, **options)
        after = {role: m.state_dict() for role, m in models.items()}
        changed = {role: [k for k in before[role] if not torch.equal(before[role][k], after[role][k])]
                   for role in models}
        calls.append({"roles": sorted(models), "changed": changed, "options": options})
        return result

    records = _smoke(tmp_path, spy=spy)
    hint_check, stage1, stage2 = calls
    assert hint_check["hints_eval"]
    assert stage1["roles"] == ["regressor", "student"] and stage1["options"]["epochs"] == 1
    assert stage1["changed"] == {"student": ["1.weight", "1.bias"], "regressor": ["0.weight", "0.bias"]}
    assert stage2["roles"] == ["student"] and stage2["changed"]["student"] == ["1.weight", "1.bias", "3.weight",
                                                                                "3.bias"]
    rows = {(role, e, m) for role, e, m, _ in records["fitnets", 0]["metrics"]}
    assert ("student", 0, "train_hint") in rows and ("student", 1, "train_hint") not in rows
    assert {("student", e, m) for e in (0, 1) for m in ("train_loss", "train_ce", "train_kd", "val_nll")} <= rows


def test_the_student_and_its_regressor_train_as_one_batch_of_repetitions(tmp_path):
    batched = _smoke(tmp_path / "batched", reps=2, batch_reps=2)
    alone = _smoke(tmp_path / "alone", reps=2, batch_reps=1)
    for rep in (0, 1):
        assert batched["fitnets", rep]["batch"]["reps"] == [0, 1]
        assert "batch" not in alone["fitnets", rep]
        assert batched["fitnets", rep]["metrics"] == alone["fitnets", rep]["metrics"]
    assert batched["fitnets", 0]["metrics"] != batched["fitnets", 1]["metrics"]


def test_the_regressor_is_seeded_by_the_run_and_ends_in_the_hints_nonlinearity(tmp_path):
    from tests.projects import run_context

    run, _ = run_context(tmp_path, "fitnets")
    a, b = fitnets.regressor(run, 300, 1200), fitnets.regressor(run, 300, 1200)
    assert isinstance(a[1], torch.nn.ReLU) and a[0].weight.shape == (1200, 300)
    assert torch.equal(a[0].weight, b[0].weight) and not a[0].bias.detach().any()
    student = run.build("hinton_student", "flat")
    assert fitnets.feature_width(student, run.view("flat", "train"), "hidden1") == 300 and student.training


def test_without_hints_it_is_hinton_kd_bit_for_bit(tmp_path):
    """hint_epochs=0 leaves stage 2 alone: hinton_kd's loss, defaults, student and recipe, so the same numbers."""
    specs = plan([INFO, METHODS["hinton_kd"]], data=["digits"], reps=1, preset="smoke", base_seed=0,
                 methods=METHODS, overrides={"fitnets": {"hint_epochs": 0}})
    assert not run_plan(specs, Settings(store=Store(tmp_path), threads=1), backend="inprocess").failed
    records = {r["method"]: r for r in Store(tmp_path).iter_runs()}
    assert records["fitnets"]["variant"] == "hint_epochs=0"
    assert records["fitnets"]["metrics"] == records["hinton_kd"]["metrics"]
