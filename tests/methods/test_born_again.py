"""Tests of methods/born_again: its loss and its ensemble against their formulas (computed here with numpy/scipy),
the chain a generation plans, and each generation's own initialisation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, logsumexp, rel_entr, softmax

from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.plan import load, plan
from tests.projects import run_context

METHODS = discover()
INFO = METHODS["born_again"]
Method = INFO.cls
born_again = sys.modules[Method.__module__]
models = sys.modules[Method.__module__.rpartition(".")[0] + ".models"]


def reference_loss(student, teacher, labels, *, alpha, temperature):
    """alpha * CE + (1 - alpha) * T^2 * mean_i KL(softmax(v_i/T) || softmax(z_i/T)), in float64."""
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    ce = -log_softmax(student, axis=1)[np.arange(len(labels)), labels].mean()
    kd = rel_entr(softmax(teacher / temperature, axis=1), softmax(student / temperature, axis=1)).sum(1).mean()
    return alpha * ce + (1 - alpha) * temperature**2 * kd


@pytest.mark.parametrize(("alpha", "temperature"), [(0.5, 1.0), (0.0, 1.0), (1.0, 1.0), (0.3, 4.0), (0.5, 0.5)])
def test_loss_matches_its_formula(alpha, temperature):
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(7, 5)) * 3, rng.normal(size=(11, 5)) * 3
    teacher[0] = [40.0, 0, 0, 0, 0]  # a confident teacher: soft targets near one-hot, KL still finite
    idx, labels = np.array([0, 3, 3, 10, 2, 7, 5]), np.array([0, 1, 2, 3, 4, 0, 1])
    cfg = born_again.Config(alpha=alpha, temperature=temperature)
    got = born_again.soft_target_loss(torch.tensor(teacher, dtype=torch.float32), cfg)(
        torch.tensor(student, dtype=torch.float32), torch.tensor(labels), torch.tensor(idx))["loss"]
    want = reference_loss(student, teacher[idx], labels, alpha=alpha, temperature=temperature)
    assert float(got) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_loss_is_the_cross_entropy_alone_when_the_student_is_its_teacher():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    loss = born_again.soft_target_loss(logits, born_again.Config(alpha=0.5))(logits, torch.tensor([0, 2]),
                                                                           torch.arange(2))
    assert float(loss["kd"]) == pytest.approx(0.0, abs=1e-7)
    assert float(loss["loss"]) == pytest.approx(0.5 * -log_softmax(logits.numpy(), 1)[[0, 1], [0, 2]].mean())


def test_the_ensemble_outputs_the_log_of_its_members_mean_probability():
    torch.manual_seed(0)
    members = [torch.nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(6, 4)
    ensemble = models.Ensemble([torch.nn.Linear(4, 3) for _ in range(3)]).copy_from(members)
    got = ensemble(x).detach().numpy()
    outs = np.stack([m(x).detach().numpy().astype(np.float64) for m in members])
    want = np.log(softmax(outs, axis=2).mean(0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logsumexp(got, axis=1), 0.0, atol=1e-5)  # a distribution already
    with pytest.raises(ValueError, match="3 members got 2"):
        ensemble.copy_from(members[:2])


def test_generation_3_plans_the_teacher_then_generations_1_2_3_and_an_ensemble():
    data = load(["digits"], "smoke")
    specs = plan([INFO], data=data, reps=1, preset="smoke", base_seed=0, methods=METHODS,
                 overrides={"born_again": {"generation": 3}})
    chain = [s for s in specs if s.method in ("teacher", "born_again")]
    assert [(s.method, s.config.get("generation")) for s in chain] == [
        ("teacher", None), ("born_again", 1), ("born_again", 2), ("born_again", 3)]
    teacher, first, second, third = chain
    assert first.requires == {"teacher": teacher.run_id}
    assert second.requires == {"born_again#1": first.run_id}
    assert third.requires == {"born_again#1": first.run_id, "born_again#2": second.run_id}
    cfg = configuration.resolve(Method, "smoke", {"generation": 3}, data["digits"])
    roles = Method().roles(cfg, data["digits"])
    assert roles["ensemble"].options == {"member": cfg.teacher_arch, "members": 3}
    assert roles["ensemble"].scratch is not None and roles["ensemble"].pairing == "order"
    assert all(Method().saves_models(configuration.resolve(Method, "smoke", {"generation": g})) for g in (1, 2))
    # the paired scratch students: generation 3's own stream, and the architecture alone for the ensemble
    streams = {s.config.get("init") for s in specs if s.method == "scratch_student"}
    assert streams == {"born_again:3", None}


def test_a_generation_starts_from_new_weights_not_its_teachers(tmp_path):
    run, cfg = run_context(tmp_path, "born_again")
    teacher_run, teacher_cfg = run_context(tmp_path, "teacher", overrides={"arch": cfg.teacher_arch})
    assert run.seed == teacher_run.seed  # the same repetition: only the stream differs
    role = Method().roles(cfg, run.data)["student"]
    assert role.arch == teacher_cfg.arch and role.view == teacher_cfg.view and role.init == "born_again:1"
    student = run.build(role.arch, role.view, init=role.init).state_dict()
    teacher = teacher_run.build(teacher_cfg.arch, teacher_cfg.view).state_dict()
    weights = [k for k in student if k.endswith("weight")]
    assert weights and not any(torch.equal(student[k], teacher[k]) for k in weights)
    second = run.build(role.arch, role.view, init=born_again.stream(2)).state_dict()
    assert not any(torch.equal(student[k], second[k]) for k in weights)  # and each generation its own
