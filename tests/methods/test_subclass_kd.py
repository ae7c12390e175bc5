"""Tests of methods/subclass_kd: the class collapse, the auxiliary loss (official and as published), the
distillation loss and the subclass metrics against their formulas computed here with numpy/scipy; and short
trainings on the superclass task digits:2x5 (frozen cached teacher, dropped remainder batches, recovery
rows)."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
import torch
from scipy.special import entr, log_softmax, logsumexp, rel_entr, softmax

from benchmark.data import load_dataset
from benchmark.engine import config as configuration
from benchmark.engine.context import RunContext
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, prepare
from benchmark.engine.plan import plan, scratch_spec_for
from benchmark.runner.runner import run_plan
from benchmark.runner.status import partition
from benchmark.store import Store
from tests.projects import run_context

METHODS = discover()
INFO = METHODS["subclass_kd"]
Method = INFO.cls
subclass = sys.modules[Method.__module__]


def logits(rows: int, cols: int, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, cols)) * scale


# ---- class logits ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("subclasses", [1, 2, 4])
def test_class_logits_group_consecutive_subclasses(subclasses):
    classes = 3
    z = logits(5, classes * subclasses)
    lse = np.stack([logsumexp(z[:, c * subclasses:(c + 1) * subclasses], axis=1) for c in range(classes)], 1)
    total = np.stack([z[:, c * subclasses:(c + 1) * subclasses].sum(1) for c in range(classes)], 1)
    t = torch.tensor(z)
    np.testing.assert_allclose(subclass.class_logits(t, classes, "logsumexp").numpy(), lse, rtol=1e-12)
    np.testing.assert_allclose(subclass.class_logits(t, classes, "sum").numpy(), total, rtol=1e-12)
    # logsumexp collapse: softmax over classes = subclass probabilities summed within each class
    p_sub = softmax(z, axis=1).reshape(5, classes, subclasses).sum(-1)
    np.testing.assert_allclose(softmax(lse, axis=1), p_sub, rtol=1e-12)


# ---- auxiliary loss ----------------------------------------------------------------------------------------

def official_aux(z: np.ndarray, temperature: float) -> float:
    """(1/N) sum_i log sum_j exp(v_i.v_j) - 1/T - log N with K = C*S logits per example and
    v_i = (z_i - mean_i) / sqrt(var_i + 1e-9) / sqrt(T*K)."""
    n, k = z.shape
    standardised = (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + 1e-9)
    v = standardised / np.sqrt(temperature * k)
    return logsumexp(v @ v.T, axis=1).mean() - 1 / temperature - np.log(n)


def notebook_aux(z: np.ndarray, temperature: float) -> float:
    """The notebook's (1/N) sum_ij log(exp(u_i.u_j / T)) - 1/T - log N,
    u_i = (z_i - mean_i) / sqrt(var_i + 1e-8)."""
    n = len(z)
    u = (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + 1e-8)
    return np.log(np.exp(u @ u.T / temperature)).sum() / n - 1 / temperature - np.log(n)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("shape", [(6, 20), (16, 10), (3, 4)])
def test_official_auxiliary_loss_matches_its_formula(shape, temperature):
    z = logits(*shape, seed=shape[0])
    got = subclass.auxiliary_loss(torch.tensor(z), temperature, "official").item()
    assert got == pytest.approx(official_aux(z, temperature), rel=1e-10, abs=1e-12)


def test_official_auxiliary_loss_constants():
    """v_i.v_i = 1/T (the scale uses all C*S logits), so identical rows give exactly 0 and the loss is
    mean_i -log softmax_j(v_i.v_j)[i] - log N >= -log N."""
    n, temperature = 8, 4.0
    same = np.tile(logits(1, 20), (n, 1))
    assert subclass.auxiliary_loss(torch.tensor(same), temperature).item() == pytest.approx(0.0, abs=1e-8)
    z = logits(n, 20, seed=3)
    v = (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + 1e-9) / np.sqrt(temperature * 20)
    np.testing.assert_allclose(np.einsum("ij,ij->i", v, v), 1 / temperature, rtol=1e-8)
    contrastive = -np.diag(log_softmax(v @ v.T, axis=1)).mean() - np.log(n)
    got = subclass.auxiliary_loss(torch.tensor(z), temperature).item()
    assert got == pytest.approx(contrastive, rel=1e-7)
    assert got > -np.log(n)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_official_auxiliary_loss_bounds_and_the_orthogonal_value(temperature):
    """L_aux is in (-log N, 0]: 0 for identical rows, above log((1 + (N-1) e^(-2/T)) / N) > -log N always,
    and log((1 + (N-1) e^(-1/T)) / N) -- not -log N -- for mutually orthogonal rows."""
    hadamard = np.array([[1.0]])
    for _ in range(4):
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])  # 16 x 16, rows orthogonal
    n = 8
    rows = hadamard[1:n + 1]  # zero mean, unit variance, orthogonal: already standardised
    orthogonal = subclass.auxiliary_loss(torch.tensor(3.0 * rows + 1.5), temperature).item()
    assert orthogonal == pytest.approx(np.log((1 + (n - 1) * np.exp(-1 / temperature)) / n), rel=1e-7)
    assert orthogonal > -np.log(n) + 0.5
    for seed, (rows_, cols) in enumerate([(8, 20), (64, 20), (256, 20), (32, 4)]):
        got = subclass.auxiliary_loss(torch.tensor(logits(rows_, cols, seed=seed)), temperature).item()
        floor = np.log((1 + (rows_ - 1) * np.exp(-2 / temperature)) / rows_)
        assert -np.log(rows_) < floor < got <= 1e-9


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_as_published_auxiliary_loss_matches_the_notebook_and_collapses(temperature):
    z = logits(10, 20, seed=7)
    got = subclass.auxiliary_loss(torch.tensor(z), temperature, "as_published").item()
    assert got == pytest.approx(notebook_aux(z, temperature), rel=1e-10)
    # log(exp(x)) = x: the double sum is ||sum_i u_i||^2 / T, a function of the batch mean alone
    n = len(z)
    u = (z - z.mean(1, keepdims=True)) / np.sqrt(z.var(1, keepdims=True) + 1e-8)
    collapsed = np.sum(u.sum(0) ** 2) / (n * temperature) - 1 / temperature - np.log(n)
    assert got == pytest.approx(collapsed, rel=1e-10)
    assert notebook_aux(z, temperature) != pytest.approx(official_aux(z, temperature), rel=1e-3)


def test_auxiliary_loss_rejects_an_unknown_form():
    with pytest.raises(ValueError):
        subclass.auxiliary_loss(torch.zeros(2, 4), 1.0, "other")


# ---- distillation loss -------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_loss_is_t_squared_soft_target_cross_entropy(temperature):
    teacher, student = logits(7, 20, seed=1), logits(7, 20, seed=2)
    p = softmax(teacher / temperature, axis=1)
    ce = -(p * log_softmax(student / temperature, axis=1)).sum(1).mean()
    got = subclass.distillation_loss(torch.tensor(teacher), torch.tensor(student), temperature).item()
    assert got == pytest.approx(temperature**2 * ce, rel=1e-10)
    # cross-entropy = KL + the teacher's entropy (a constant in the student)
    kl = rel_entr(p, softmax(student / temperature, axis=1)).sum(1).mean()
    assert got == pytest.approx(temperature**2 * (kl + entr(p).sum(1).mean()), rel=1e-10)


# ---- subclass metrics --------------------------------------------------------------------------------------

def one_hot_logits(labels: np.ndarray, subclass_within: np.ndarray, classes: int, subclasses: int):
    """Logits whose argmax within each example's class is the given subclass (another class's logit is
    larger, to check that the argmax is taken within the true class only)."""
    z = np.zeros((len(labels), classes * subclasses))
    z[np.arange(len(labels)), labels * subclasses + subclass_within] = 1.0
    z[np.arange(len(labels)), ((labels + 1) % classes) * subclasses] = 5.0
    return torch.tensor(z)


def brute_force_matching(sub: np.ndarray, fine: np.ndarray, coarse: np.ndarray, subclasses: int) -> float:
    """Best one-to-one subclass -> original-label matching per superclass, by trying every injective map."""
    matched = 0
    for c in np.unique(coarse):
        s, f = sub[coarse == c], fine[coarse == c]
        values = np.unique(f)
        best = 0
        for image in itertools.permutations(list(values) + [None] * subclasses, subclasses):
            hits = sum(int(np.sum((s == k) & (f == v))) for k, v in enumerate(image) if v is not None)
            best = max(best, hits)
        matched += best
    return matched / len(coarse)


def test_subclass_recovery_perfect_and_brute_force():
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 10, size=200)
    coarse = fine // 5
    # a relabelled but perfect recovery: subclass = (fine * 3 + 1) % 5 within each superclass
    perfect = one_hot_logits(coarse, (fine * 3 + 1) % 5, 2, 5)
    acc, ami = subclass.subclass_recovery(perfect, torch.tensor(coarse), torch.tensor(fine), 2)
    assert acc == pytest.approx(1.0) and ami == pytest.approx(1.0)
    noisy_sub = np.where(rng.random(200) < 0.4, rng.integers(0, 5, size=200), (fine * 3 + 1) % 5)
    acc, _ = subclass.subclass_recovery(one_hot_logits(coarse, noisy_sub, 2, 5), torch.tensor(coarse),
                                        torch.tensor(fine), 2)
    assert acc == pytest.approx(brute_force_matching(noisy_sub, fine, coarse, 5))
    assert 0.2 < acc < 1.0


def test_subclass_recovery_with_fewer_subclasses_than_labels_and_ami_weighting():
    fine = np.array([0, 1, 2, 3, 4] * 4 + [5, 6, 7, 8, 9] * 2)
    coarse = fine // 5
    sub = np.where(coarse == 0, fine % 2, 0)  # superclass 0: 2 subclasses over 5 labels; superclass 1: one
    acc, ami = subclass.subclass_recovery(one_hot_logits(coarse, sub, 2, 2), torch.tensor(coarse),
                                          torch.tensor(fine), 2)
    assert acc == pytest.approx(brute_force_matching(sub, fine, coarse, 2))
    from sklearn.metrics import adjusted_mutual_info_score

    n0 = (coarse == 0).sum()
    expected_ami = n0 / len(fine) * adjusted_mutual_info_score(fine[coarse == 0], sub[coarse == 0])  # + n1*0
    assert ami == pytest.approx(expected_ami)
    assert adjusted_mutual_info_score(fine[coarse == 1], sub[coarse == 1]) == pytest.approx(0.0)


def test_subclass_perplexity():
    labels = np.array([0] * 4 + [1] * 4)
    sub = np.array([0, 0, 1, 1, 0, 0, 0, 0])  # class 0 splits evenly over 2 subclasses, class 1 uses one
    got = subclass.subclass_perplexity(one_hot_logits(labels, sub, 2, 2), torch.tensor(labels), 2)
    assert got == pytest.approx(0.5 * math.exp(math.log(2)) + 0.5 * 1.0)


# ---- the method --------------------------------------------------------------------------------------------

def test_roles_pair_the_student_with_the_plain_mlp():
    data = load_dataset("digits")
    cfg = configuration.resolve(Method, "quick", data=data)
    roles = Method().roles(cfg, data)
    assert set(roles) == {"student"}
    assert roles["student"].scratch.overrides(*subclass.STUDENT) == {
        "arch": "subclass_mlp", "view": "flat", "lr": 1e-3, "batch_size": 256, "epochs": cfg.epochs, "patience": None}
    assert not Method().saves_models(cfg)  # nothing loads the student; the teacher stage's checkpoint is kept
    # The teacher is a run of its own, required by the student with the fields that shape it.
    (name, teacher_overrides), = Method().requires(cfg).items()
    assert name == "subclass_kd" and teacher_overrides["stage"] == "teacher"
    teacher_cfg = configuration.resolve(Method, "quick", teacher_overrides, data)
    teacher = Method().roles(teacher_cfg, data)["teacher"]
    assert teacher.scratch is None and (teacher.arch, teacher.view) == subclass.TEACHER
    assert Method().requires(teacher_cfg) == {} and Method().saves_models(teacher_cfg)
    assert Method.ablations == {"subclasses": [1, 2, 4], "beta": [0.0, 0.7, 1.0],
                                "aux": ["official", "as_published"]}


def test_student_and_scratch_student_share_every_layer_but_the_head(tmp_path):
    """Built through the harness for the same repetition, the S = 2 student and its scratch student (a plain C-class
    head) start from the same weights in every layer before the head: the pair is init-paired."""
    run, cfg = run_context(tmp_path, "subclass_kd", "smoke", {"subclasses": 2})
    role = run.roles["student"]
    assert role.options == {"subclasses": 2, "collapse": "logsumexp"} and role.pairing == "init"
    spec = scratch_spec_for(role, METHODS, dataset="digits", rep=0, base_seed=0, preset="smoke", cfg=cfg)
    _, scratch_cfg, _, _, scratch_run = prepare(spec, Settings(store=Store(tmp_path)), METHODS)
    assert scratch_run.seed == run.seed and (scratch_cfg.arch, scratch_cfg.view) == (role.arch, role.view)
    student = run.build(role.arch, role.view, **role.options)
    scratch = scratch_run.build(scratch_cfg.arch, scratch_cfg.view)
    assert hasattr(student, "subclass_logits") and not hasattr(scratch, "subclass_logits")  # wrapped vs plain
    first = [next(m for m in net.modules() if isinstance(m, torch.nn.Linear)) for net in (student, scratch)]
    assert first[0].weight.shape == (784, 64)  # digits: 64 inputs -> 784 hidden units
    assert torch.equal(first[0].weight, first[1].weight) and torch.equal(first[0].bias, first[1].bias)
    ours, theirs = list(student.net.parameters()), list(scratch.parameters())
    assert len(ours) == len(theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours[:-2], theirs[:-2], strict=True))  # every hidden layer
    assert ours[-2].shape == (20, 784) and theirs[-2].shape == (10, 784)  # the head: C*S vs C outputs


def train_all(out, dataset: str, **overrides):
    """Plan and run subclass_kd (its teacher run first) where not stored yet; returns the specs found in the store
    and {stage: record} of this config."""
    specs = plan([INFO], data=[dataset], reps=1, preset="smoke", base_seed=0, methods=METHODS,
                 overrides={"subclass_kd": overrides})
    store = Store(out)
    cached, todo = partition(specs, store, METHODS)
    outcome = run_plan(todo, Settings(store=store, threads=1), backend="inprocess")
    assert not outcome.failed, [r["error"] for r in outcome.failed]
    records = {r["run_id"]: r for r in store.iter_runs()}
    ours = {s.config["stage"]: records[s.run_id] for s in specs if s.method == "subclass_kd"}
    return cached, ours


@pytest.fixture(scope="module")
def superclass_digits():
    return load_dataset("digits:2x5", max_train=600, max_test=500)


def test_training_on_the_superclass_task(tmp_path, superclass_digits):
    data = superclass_digits
    assert data.num_classes == 2 and not torch.equal(data.fine_labels("test"), data.labels("test"))
    _, records = train_all(tmp_path, "digits:2x5", subclasses=5, epochs=1, teacher_epochs=1)
    for stage in ("teacher", "student"):
        rows = {(r, m): v for r, e, m, v in records[stage]["metrics"] if e == -1}
        assert 0.0 <= rows[stage, "subclass_recovery_acc"] <= 1.0
        assert -1.0 <= rows[stage, "subclass_recovery_ami"] <= 1.0
        assert 1.0 <= rows[stage, "test_subclass_perplexity"] <= 5.0
    assert ("student", "test_agreement") in {(r, m) for r, e, m, v in records["student"]["metrics"] if e == -1}
    # drop_last: 540 training examples, batch 256 -> 2 steps per epoch, not 3
    assert records["student"]["timing"]["steps"] == data.size("train") // 256 == 2
    # the teacher is its own run: a student with the same teacher settings reuses it, a new beta trains another
    cached = list((tmp_path / "cache").glob("subclass_kd-*.pt"))
    assert len(cached) == 1 and records["teacher"]["run_id"] in cached[0].name
    cached, again = train_all(tmp_path, "digits:2x5", subclasses=5, epochs=1, teacher_epochs=1, alpha=0.9)
    assert again["teacher"]["run_id"] == records["teacher"]["run_id"]
    assert again["teacher"]["run_id"] in {s.run_id for s in cached}
    assert again["student"]["run_id"] != records["student"]["run_id"]
    train_all(tmp_path, "digits:2x5", subclasses=5, epochs=1, teacher_epochs=1, beta=0.0)
    assert len(list((tmp_path / "cache").glob("subclass_kd-*.pt"))) == 2


def test_student_matches_the_frozen_teachers_subclass_logits(tmp_path, superclass_digits, monkeypatch):
    """The distillation term sees the frozen teacher's subclass logits for exactly the batch's examples."""
    overrides = {"subclasses": 2, "epochs": 1, "teacher_epochs": 1}
    train_all(tmp_path, "digits:2x5", **overrides)
    run, cfg = run_context(tmp_path, "subclass_kd", "smoke", overrides, "digits:2x5")
    seen, loaded = [], []
    real, required = subclass.distillation_loss, RunContext.required

    def spy(teacher_logits, student_logits, temperature):
        seen.append((teacher_logits.clone(), student_logits.shape, temperature))
        return real(teacher_logits, student_logits, temperature)

    def spy_required(self, name, role=None):
        loaded.append(required(self, name, role))
        return loaded[-1]

    monkeypatch.setattr(subclass, "distillation_loss", spy)
    monkeypatch.setattr(RunContext, "required", spy_required)
    Method().train(run, cfg)
    (teacher,) = loaded
    assert not teacher.training and all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    order = next(iter(run.batches(cfg.batch_size, epoch=0, drop_last=True)))
    expected = teacher.subclass_logits(run.view("image", "train")[order])
    assert len(seen) == 2 and seen[0][1] == (256, 4) and seen[0][2] == cfg.temperature
    torch.testing.assert_close(seen[0][0], expected)
    assert not seen[0][0].requires_grad


def test_student_shares_every_layer_but_its_head_with_the_scratch_student(tmp_path):
    run, cfg = run_context(tmp_path, "subclass_kd", "smoke", {"subclasses": 4})
    student = run.build(*subclass.STUDENT, subclasses=4, collapse=cfg.collapse)
    scratch = run.build(*subclass.STUDENT)  # what the scratch student's run builds (same seed, arch and view)
    layers = [m for m in student.net if isinstance(m, torch.nn.Linear)]
    plain = [m for m in scratch if isinstance(m, torch.nn.Linear)]
    assert torch.equal(layers[0].weight, plain[0].weight) and torch.equal(layers[1].weight, plain[1].weight)
    assert layers[-1].out_features == 4 * run.num_classes and plain[-1].out_features == run.num_classes


def test_no_recovery_rows_on_an_ordinary_dataset(tmp_path):
    _, records = train_all(tmp_path, "digits", epochs=1, teacher_epochs=1)
    metrics = {m for r, e, m, v in records["student"]["metrics"]}
    assert "subclass_recovery_acc" not in metrics and "test_subclass_perplexity" in metrics
