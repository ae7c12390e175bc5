"""Tests of methods/dml: the mutual loss against its definition in numpy (K = 2 and the mean over K − 1 = 2
others, identical predictions, the gradient reaching only the student itself), the order of predictions and
updates in a step (the paper's sequential Algorithm 1 and the simultaneous variant), students of one network
drawing different initial weights, each its own scratch student's (a stream of its own after the first), and a
cohort end to end with one scratch run per student."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr, softmax

from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.store import Store
from tests.projects import run_context

METHODS = discover()
INFO = METHODS["dml"]
dml = sys.modules[INFO.cls.__module__]


def reference(logits, others, labels, weight):
    logits = np.asarray(logits, np.float64)
    ce = -log_softmax(logits, axis=1)[np.arange(len(labels)), labels].mean()
    kl = np.mean([rel_entr(softmax(np.asarray(o, np.float64), axis=1), softmax(logits, axis=1)).sum(1).mean()
                  for o in others])
    return ce + weight * kl, ce, kl


@pytest.mark.parametrize("k_others", [1, 2])
def test_the_mutual_loss_matches_its_definition(k_others):
    gen = torch.Generator().manual_seed(k_others)
    logits = torch.randn(8, 5, generator=gen, requires_grad=True)
    others = [(3 * torch.randn(8, 5, generator=gen)).requires_grad_() for _ in range(k_others)]
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    parts = dml.mutual_loss(logits, others, labels, 0.5)
    expected = reference(logits.detach(), [o.detach() for o in others], labels.numpy(), 0.5)
    for key, value in zip(("loss", "ce", "kl"), expected):
        assert parts[key].item() == pytest.approx(value, rel=1e-5)
    parts["loss"].backward()
    assert logits.grad is not None and all(o.grad is None for o in others)  # the others are targets


def test_identical_predictions_have_no_mimicry_and_weight_zero_is_the_cross_entropy():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    parts = dml.mutual_loss(logits, [logits.clone(), logits.clone()], labels, 1.0)
    assert parts["kl"].item() == pytest.approx(0.0, abs=1e-7)
    other = [torch.randn(4, 3)]
    assert torch.equal(dml.mutual_loss(logits, other, labels, 0.0)["loss"],
                       torch.nn.functional.cross_entropy(logits, labels))


class Recorder:
    """A batch that records what a step asks of it, in order."""

    def __init__(self):
        self.calls, self.y = [], torch.tensor([0, 1])

    def predict(self, role):
        self.calls.append(("predict", role))
        return torch.zeros(2, 3)

    def forward(self, role):
        self.calls.append(("forward", role))
        return torch.zeros(2, 3, requires_grad=True)

    def update(self, parts):
        self.calls.append(("update", *parts))


@pytest.mark.parametrize("update, order", [
    ("sequential", ["predict s2", "predict s3", "forward s1", "update s1", "predict s1", "predict s3", "forward s2",
                    "update s2", "predict s1", "predict s2", "forward s3", "update s3"]),
    ("simultaneous", ["predict s1", "predict s2", "predict s3", "forward s1", "update s1", "forward s2", "update s2",
                      "forward s3", "update s3"]),
])
def test_the_students_update_in_turn_against_the_others_as_they_are(update, order):
    b = Recorder()
    dml.step(b, ["s1", "s2", "s3"], dml.Config(students=3, update=update))
    assert [" ".join(c) for c in b.calls] == order


def test_students_of_one_network_start_apart_and_each_from_its_scratch_students_weights(tmp_path):
    run, cfg = run_context(tmp_path, "dml", overrides={"students": "3"})
    roles = INFO.cls().roles(cfg, run.data)
    assert [roles[r].init for r in ("student1", "student2", "student3")] == [None, "dml:2", "dml:3"]
    assert all(role.pairing == "init" for role in roles.values())
    captured = {}
    run.fit = lambda models, step, **options: captured.update(models) or models
    INFO.cls().train(run, cfg)
    weights = {role: m.state_dict()["1.weight"] for role, m in captured.items()}
    assert not torch.equal(weights["student1"], weights["student2"])
    assert not torch.equal(weights["student2"], weights["student3"])
    assert not torch.equal(weights["student1"], weights["student3"])
    # Each student's scratch partner: the scratch baseline builds the role's architecture from the role's stream.
    for role, spec in roles.items():
        partner = run.build(spec.arch, spec.view, init=spec.init).state_dict()
        for name, value in captured[role].state_dict().items():
            assert torch.equal(value, partner[name]), (role, name)
    mixed = INFO.cls().roles(dml.Config(partner_arch="kl_cnn", partner_view="image", students=3), run.data)
    assert [(mixed[r].arch, mixed[r].init) for r in ("student1", "student2", "student3")] == [
        ("hinton_student", None), ("kl_cnn", None), ("kl_cnn", "dml:3")]


def test_a_cohort_trains_end_to_end_with_each_student_paired(tmp_path):
    specs = plan([INFO], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS,
                 overrides={"dml": {"update": "simultaneous"}})
    # Student 2's scratch partner starts from its stream: two scratch runs, one per student.
    assert [s.method for s in specs].count("dml") == 1
    assert sorted(str(s.config.get("init")) for s in specs if s.method == "scratch_student") == ["None", "dml:2"]
    assert not run_plan(specs, Settings(store=Store(tmp_path)), backend="inprocess").failed
    record = next(r for r in Store(tmp_path).iter_runs() if r["method"] == "dml")
    rows = {(role, epoch, metric) for role, epoch, metric, _ in record["metrics"]}
    for role in ("student1", "student2"):
        assert {(role, e, m) for e in (0, 1) for m in ("train_ce", "train_kl", "val_nll")} <= rows
        assert (role, -1, "test_acc") in rows
