"""js_entanglement: its losses against their formulas (numpy/scipy), the λ schedules' golden values, the
gradient each model receives, the input views, and the claim that the notebook's phase 2 changes nothing."""

import math
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax, softmax
from scipy.stats import entropy

from benchmark.data import load_dataset
from benchmark.engine import budget
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.errors import BadInput
from tests.projects import run_context

js = sys.modules[discover()["js_entanglement"].cls.__module__]


def logits_pair(seed=0, n=32, k=10, scale=4.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, (n, k)), rng.normal(0, scale, (n, k))


# ---- divergences -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.1, 4.0, 40.0])
def test_js_equals_scipy_jensenshannon_squared(scale):
    a, b = logits_pair(scale=scale)
    ours = js.js_divergence(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    expected = jensenshannon(softmax(a, axis=1), softmax(b, axis=1), base=math.e, axis=1) ** 2
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)


def test_js_matches_the_notebooks_clipped_formula_on_ordinary_logits():
    a, b = logits_pair(seed=1, scale=2.0)
    p, q = softmax(a, axis=1), softmax(b, axis=1)
    m = 0.5 * (p + q)
    kl_pm = (p * np.log(np.clip(p / m, 1e-7, 1e7))).sum(1)
    kl_qm = (q * np.log(np.clip(q / m, 1e-7, 1e7))).sum(1)
    notebook = np.mean(0.5 * (kl_pm + kl_qm))
    ours = js.js_divergence(torch.from_numpy(a), torch.from_numpy(b)).mean().item()
    assert ours == pytest.approx(notebook, rel=1e-9)


def test_js_is_finite_with_finite_gradients_on_extreme_logits():
    a = torch.tensor([[300.0, -300.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    b = torch.tensor([[-300.0, 300.0, 0.0], [1e4, 0.0, 0.0]])
    value = js.js_divergence(a, b)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(a.grad).all()
    assert value[0].item() == pytest.approx(math.log(2), abs=1e-6)  # disjoint supports: JS = ln 2


def test_kl_is_target_to_self_and_equals_scipy_entropy():
    target, own = logits_pair(seed=2)
    ours = js.kl_divergence(torch.from_numpy(target), torch.from_numpy(own)).numpy()
    expected = entropy(softmax(target, axis=1), softmax(own, axis=1), axis=1)  # KL(target ‖ self)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)


# ---- λ schedules (golden values at the first, middle and last of 30 epochs) --------------------------------

GOLDEN = {  # epoch 0, 15, 29; λ_max = 0.1. log: 0.1·log10(1 + 9·15/29) = 0.1·log10(5.6551724...)
    "log": (0.0, 0.0752445850, 0.1),
    "linear": (0.0, 0.0517241379, 0.1),  # 0.1·15/29
    "constant": (0.1, 0.1, 0.1),
    "zero": (0.0, 0.0, 0.0),
}


@pytest.mark.parametrize("schedule", sorted(GOLDEN))
def test_lambda_schedules_golden(schedule):
    got = [js.lambda_at(e, 30, schedule, 0.1) for e in (0, 15, 29)]
    np.testing.assert_allclose(got, GOLDEN[schedule], atol=1e-10)


def test_log_schedule_is_the_notebooks_formula_at_every_epoch():
    epochs = 30
    notebook = [0.1 * np.log10(1 + 9 * (epoch / (epochs - 1))) for epoch in range(epochs)]
    np.testing.assert_allclose([js.lambda_at(e, epochs) for e in range(epochs)], notebook, rtol=1e-12)


def test_phase2_starts_at_epoch_20_of_30_and_scales_with_epochs():
    assert js.phase2_epoch(js.Config()) == 20
    assert js.phase2_epoch(js.Config(epochs=10)) == 7
    assert js.phase2_epoch(js.Config(epochs=3)) == 2


# ---- phase 2 terms -----------------------------------------------------------------------------------------

def test_phase2_terms():
    a, b = logits_pair(seed=3, n=64)
    own = torch.from_numpy(a).requires_grad_(True)
    target = torch.from_numpy(b)
    hard = js.alignment(own, target, js.Config(phase2="hard_labels"), late=True)
    expected_ce = -log_softmax(a, axis=1)[np.arange(len(a)), b.argmax(1)].mean()
    assert hard.item() == pytest.approx(expected_ce, rel=1e-12)
    assert hard.requires_grad
    mismatch = js.alignment(own, target, js.Config(phase2="argmax_as_published"), late=True)
    assert mismatch.item() == pytest.approx(np.mean(a.argmax(1) != b.argmax(1)))
    assert not mismatch.requires_grad  # the notebook's label imitation has no gradient
    assert js.alignment(own, target, js.Config(phase2="none"), late=True).item() == 0.0
    early = js.alignment(own, target, js.Config(phase2="none"), late=False)  # phase 1 ignores phase2
    assert early.item() == pytest.approx(np.mean(jensenshannon(softmax(a, 1), softmax(b, 1), axis=1) ** 2))


# ---- the gradient each model receives, and the reported losses ---------------------------------------------

def _np_js(x, y):
    return jensenshannon(softmax(x, axis=1), softmax(y, axis=1), axis=1) ** 2


def test_gradients_and_reported_losses_follow_the_notebook():
    rng = np.random.default_rng(4)
    raw = {r: rng.normal(0, 2, (16, 10)) for r in "ABC"}
    labels = torch.from_numpy(rng.integers(0, 10, 16))
    lam = 0.07
    logits = {r: torch.from_numpy(v).requires_grad_(True) for r, v in raw.items()}
    objective, parts = js.entangled_losses(logits, labels, lam, js.Config(), late=False)
    grads = dict(zip("ABC", torch.autograd.grad(objective, [logits[r] for r in "ABC"]), strict=True))

    # The notebook: loss_X = CE + λ·JS(X, sg A) + mutual_loss, mutual_loss = λ·JS(B, sg C) + λ·JS(C, sg B),
    # each differentiated with respect to its own model only (tape.gradient(loss_X, model_X.variables)).
    def notebook_losses(x):
        ce = {r: torch.nn.functional.cross_entropy(x[r], labels) for r in "ABC"}
        mutual = lam * js.js_divergence(x["B"], x["C"].detach()).mean() \
            + lam * js.js_divergence(x["C"], x["B"].detach()).mean()
        return {"A": ce["A"],
                "B": ce["B"] + lam * js.js_divergence(x["B"], x["A"].detach()).mean() + mutual,
                "C": ce["C"] + lam * js.js_divergence(x["C"], x["A"].detach()).mean() + mutual}

    fresh = {r: torch.from_numpy(v).requires_grad_(True) for r, v in raw.items()}
    notebook = notebook_losses(fresh)
    for role in "ABC":
        (expected,) = torch.autograd.grad(notebook[role], [fresh[role]], retain_graph=True)
        torch.testing.assert_close(grads[role], expected, rtol=1e-12, atol=1e-15)

    # Reported values, recomputed with numpy/scipy only.
    y = labels.numpy()
    ce = {r: -log_softmax(v, axis=1)[np.arange(16), y].mean() for r, v in raw.items()}
    mutual = lam * (_np_js(raw["B"], raw["C"]).mean() + _np_js(raw["C"], raw["B"]).mean())
    assert parts["A"]["loss"].item() == pytest.approx(ce["A"], rel=1e-12)
    for role in "BC":
        expected = ce[role] + lam * _np_js(raw[role], raw["A"]).mean() + mutual
        assert parts[role]["loss"].item() == pytest.approx(expected, rel=1e-12)
        assert parts[role]["teacher"].item() == pytest.approx(_np_js(raw[role], raw["A"]).mean(), rel=1e-12)


def test_argmax_phase2_reports_a_single_mutual_mismatch():
    rng = np.random.default_rng(5)
    raw = {r: rng.normal(0, 2, (50, 10)) for r in "ABC"}
    labels = rng.integers(0, 10, 50)
    lam = 0.1
    logits = {r: torch.from_numpy(v) for r, v in raw.items()}
    cfg = js.Config(phase2="argmax_as_published")
    _, parts = js.entangled_losses(logits, torch.from_numpy(labels), lam, cfg, late=True)
    top = {r: v.argmax(1) for r, v in raw.items()}
    ce_b = -log_softmax(raw["B"], axis=1)[np.arange(50), labels].mean()
    expected = ce_b + lam * np.mean(top["B"] != top["A"]) + lam * np.mean(top["B"] != top["C"])
    assert parts["B"]["loss"].item() == pytest.approx(expected, rel=1e-12)


# ---- input views -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=600, max_test=200)


def test_halves_views_read_disjoint_rows_and_match_sklearn(digits):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    views = js.mlp_views(configuration.resolve(js.Method, "smoke", {"views": "halves", "pca_components": 16}))
    assert views == {"B": "pca:16:seed=42:part=0/2", "C": "pca:16:seed=123:part=1/2"}
    flat_train, flat_test = digits.view("flat", "train").numpy(), digits.view("flat", "test").numpy()
    top, bottom = slice(0, 32), slice(32, 64)  # rows 0-3 and 4-7 of a row-major 8x8 image
    for view, rows, seed in ((views["B"], top, js.PCA_SEED_B), (views["C"], bottom, js.PCA_SEED_C)):
        # Independently: the notebook's pipeline on that half's pixels.
        pca = PCA(n_components=16, svd_solver="randomized", random_state=seed).fit(flat_train[:, rows])
        scaler = StandardScaler().fit(pca.transform(flat_train[:, rows]))
        expected = scaler.transform(pca.transform(flat_test[:, rows]))
        np.testing.assert_allclose(digits.view(view, "test").numpy(), expected, atol=2e-4)


def _abs_corr(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """|Pearson correlation| of every component of view b with every component of view c."""
    k = b.shape[1]
    return np.abs(np.corrcoef(b.T, c.T)[:k, k:])


def test_as_published_views_are_nearly_the_same_projection(digits):
    # The notebook's two "views" (PCA random_state 42 vs 123) agree up to the sign of each component.
    views = js.mlp_views(configuration.resolve(js.Method, "smoke", {"views": "as_published"}, digits))
    assert views == {"B": "pca:20:seed=42", "C": "pca:20:seed=123"}
    b, c = (digits.view(views[r], "train").numpy() for r in "BC")
    corr = np.abs([np.corrcoef(b[:, i], c[:, i])[0, 1] for i in range(10)])
    assert corr.min() > 0.99


@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_default_views_are_two_different_views(dataset):
    # The default (halves): no component of B's view is close to any component of C's, where the notebook's pair
    # matches component for component (|r| > 0.99, above).
    data = load_dataset(dataset, max_train=600, max_test=200)
    cfg = configuration.resolve(js.Method, "smoke", data=data)
    assert cfg.views == "halves"
    views = js.mlp_views(cfg)
    b, c = (data.view(views[r], "train").numpy() for r in "BC")
    assert _abs_corr(b, c).max() < 0.6  # measured: 0.49 on digits, 0.47 on mnist1d
    published = js.mlp_views(configuration.resolve(js.Method, "smoke", {"views": "as_published"}, data))
    pb, pc = (data.view(published[r], "train").numpy() for r in "BC")
    assert np.diag(_abs_corr(pb, pc))[:10].min() > 0.99


def test_as_published_scaler_refits_on_the_test_split(digits):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    view = js.mlp_views(configuration.resolve(js.Method, "smoke", {"scaler": "as_published",
                                                                   "views": "as_published"}))["B"]
    assert view == "pca:20:seed=42:scaler=split"
    ours = digits.view(view, "test").numpy()
    # The notebook: PCA fitted on train, then a StandardScaler fitted on the *test* scores.
    pca = PCA(n_components=20, svd_solver="randomized", random_state=42)
    pca.fit(digits.view("flat", "train").numpy())
    notebook = StandardScaler().fit_transform(pca.transform(digits.view("flat", "test").numpy()))
    np.testing.assert_allclose(ours, notebook, atol=2e-4)
    train_scaled = digits.view("pca:20:seed=42", "test").numpy()
    assert np.abs(ours - train_scaled).max() > 0.01  # and it is not the train-fitted standardisation


# ---- roles, adaptation -------------------------------------------------------------------------------------

def test_roles_pair_each_model_with_its_scratch_recipe(digits):
    cfg = configuration.resolve(js.Method, "smoke", data=digits)
    roles = js.Method().roles(cfg, digits)
    scratch = {role: r.scratch.overrides(r.arch, r.view) for role, r in roles.items()}
    assert scratch["A"] == {"arch": "js_cnn", "view": "image", "lr": 5e-4, "batch_size": 128, "epochs": 3,
                            "patience": None}
    assert (roles["B"].arch, roles["B"].view, scratch["B"]["view"]) == ("js_mlp_b", "pca:20:seed=42:part=0/2",
                                                                        "pca:20:seed=42:part=0/2")
    assert (roles["C"].arch, roles["C"].view) == ("js_mlp_c", "pca:20:seed=123:part=1/2")
    one_view = js.Method().roles(configuration.resolve(js.Method, "smoke", {"views": "as_published"}, digits), digits)
    b = one_view["B"]
    assert b.view == b.scratch.overrides(b.arch, b.view)["view"] == "pca:20:seed=42"
    assert one_view["C"].view == "pca:20:seed=123"
    published = js.Method().roles(configuration.resolve(js.Method, "smoke", {"scaler": "as_published"}), digits)
    assert published["B"].classifier and published["B"].view.endswith(":scaler=split")
    assert all(role.pairing == "init" for role in roles.values())  # same architecture and view as the scratch


def centred_rank(x):
    return np.linalg.matrix_rank(x - x.mean(0))


def test_k_adapts_to_the_features_and_rank_each_view_reads(digits):
    flat = digits.view("flat", "train").numpy()
    top, bottom, whole = centred_rank(flat[:, :32]), centred_rank(flat[:, 32:]), centred_rank(flat)
    assert max(top, bottom) <= 31 and whole < 63  # constant pixels: the features alone would allow more
    paper = configuration.resolve(js.Method, "paper", data=digits)
    assert paper.pca_components == min(31, top, bottom)  # the notebook's 100 on the 32 pixels of each half
    one_view = configuration.resolve(js.Method, "paper", {"views": "as_published"}, digits)
    assert one_view.pca_components == whole  # 64 pixels, not all of them varying
    assert all(digits.view_shape(v) == (k,) for k, views in ((paper.pca_components, js.mlp_views(paper)),
                                                             (whole, js.mlp_views(one_view))) for v in views.values())
    assert configuration.resolve(js.Method, "paper", {"pca_components": 10}, digits).pca_components == 10
    mnist1d = load_dataset("mnist1d", max_train=600, max_test=200)
    assert configuration.resolve(js.Method, "paper", data=mnist1d).pca_components == 19
    # The adapted value is the default on that dataset, not a variant.
    assert configuration.variant_name(js.Method, "paper", paper, digits) == "default"


class CifarSized:
    """What adapt reads of a CIFAR-10-sized dataset at the paper preset (45,000 / 5,000 / 10,000)."""

    input_shape = (3, 32, 32)

    def size(self, split):
        return {"train": 45_000, "val": 5_000, "test": 10_000}[split]

    def pca_rank(self, part=None):
        return 1536


def test_min_steps_raises_the_epochs_on_small_data_only(digits):
    for validation in ("stratified", "none"):
        cfg = configuration.resolve(js.Method, "quick", {"validation": validation}, digits)
        examples = digits.size("train") + (digits.size("val") if validation == "none" else 0)
        per_epoch = -(-examples // 128)  # the last batch may be incomplete
        assert js.steps_per_epoch(digits, cfg) == per_epoch
        assert cfg.epochs == max(30, -(-js.MIN_STEPS // per_epoch)) > 30  # the floor binds on digits...
        assert (cfg.epochs - 1) * per_epoch < js.MIN_STEPS <= cfg.epochs * per_epoch
    paper = configuration.resolve(js.Method, "paper", data=CifarSized())
    assert paper.epochs == 30 and paper.pca_components == 100  # ...not on CIFAR-10: the notebook's recipe
    assert configuration.resolve(js.Method, "quick", {"min_steps": 0}, digits).epochs == 30
    assert configuration.resolve(js.Method, "quick", js.Method.as_published, digits).epochs == 30  # the notebook's
    floor = configuration.resolve(js.Method, "quick", data=digits).epochs
    assert configuration.resolve(js.Method, "quick", {"epochs": floor + 7}, digits).epochs == floor + 7  # not a cap
    assert configuration.resolve(js.Method, "smoke", data=digits).epochs == 3
    with pytest.raises(BadInput):
        configuration.resolve(js.Method, "quick", {"min_steps": -1}, digits)


def test_the_adapted_epochs_drive_the_schedule_the_switch_and_the_scratch_students(digits):
    cfg = configuration.resolve(js.Method, "quick", data=digits)
    assert configuration.variant_name(js.Method, "quick", cfg, digits) == "default"
    assert js.phase2_epoch(cfg) == round(20 / 30 * cfg.epochs)
    assert js.lambda_at(cfg.epochs - 1, cfg.epochs) == pytest.approx(0.1)  # λ_max reached at the adapted last epoch
    roles = js.Method().roles(cfg, digits)
    assert {r.scratch.epochs for r in roles.values()} == {cfg.epochs}
    longer = configuration.resolve(js.Method, "quick", budget.scaled(js.Method, configuration.resolve(
        js.Method, "quick"), 3), digits)  # 3x the budget, as the audit plans it
    assert longer.epochs / cfg.epochs == pytest.approx(3, rel=0.02)


# ---- training ----------------------------------------------------------------------------------------------

def train(tmp_path, dataset, **overrides):
    run, cfg = run_context(tmp_path, "js_entanglement", "smoke", overrides, dataset.name)
    return run, js.Method().train(run, cfg)


def state(models):
    return {(r, k): v for r, m in models.items() for k, v in m.state_dict().items()}


def test_published_phase2_trains_bit_identically_to_no_phase2(tmp_path, digits, one_thread):
    # constant λ so phase 1 has a real pull; the smoke preset's 3 epochs switch at epoch 2.
    run, argmax = train(tmp_path, digits, phase2="argmax_as_published", schedule="constant")
    _, none = train(tmp_path, digits, phase2="none", schedule="constant")
    _, hard = train(tmp_path, digits, phase2="hard_labels", schedule="constant")
    phases = [row["value"] for row in run.rows if (row["role"], row["metric"]) == ("B", "phase")]
    assert phases == [1, 1, 2]  # the run crosses the switch
    a, n, h = state(argmax), state(none), state(hard)
    assert a.keys() == n.keys()
    assert all(torch.equal(a[k], n[k]) for k in a)
    # ...while the differentiable phase 2 does change the students (so this comparison can fail).
    assert not all(torch.equal(a[k], h[k]) for k in a if k[0] in "BC")
    assert all(torch.equal(a[k], h[k]) for k in a if k[0] == "A")  # A trains on CE alone


def test_training_logs_lambda_per_epoch_and_final_metrics_for_the_published_scaler(tmp_path, digits,
                                                                                     one_thread):
    run, models = train(tmp_path, digits, scaler="as_published", views="halves")
    logged = {(r["role"], r["epoch"], r["metric"]): r["value"] for r in run.rows}
    for epoch in range(3):
        assert logged["B", epoch, "lambda"] == pytest.approx(js.lambda_at(epoch, 3))
        assert ("A", epoch, "test_auc") in logged and ("C", epoch, "train_loss") in logged
    assert run.roles["B"].view == "pca:20:seed=42:part=0/2:scaler=split"
    assert models["B"](run.view(run.roles["B"].view, "test")[:5]).shape == (5, 10)


def test_b_and_c_agreement_with_a_matches_numpy(tmp_path, digits, one_thread):
    run, models = train(tmp_path, digits)
    logged = {(r["role"], r["metric"]): r["value"] for r in run.rows if r["epoch"] == -1}
    assert ("A", "test_agreement") not in logged  # A is the reference, not compared with itself
    for split in ("val", "test"):
        predictions = {}
        for role, model in models.items():  # eval mode, each model on its own view, then argmax in numpy
            model.eval()
            with torch.no_grad():
                predictions[role] = model(run.view(run.roles[role].view, split)).numpy().argmax(1)
        for role in "BC":
            expected = np.mean(predictions[role] == predictions["A"])
            assert logged[role, f"{split}_agreement"] == pytest.approx(expected, abs=1e-12)


def test_without_a_validation_split_agreement_is_logged_on_test_only(tmp_path, one_thread):
    run, cfg = run_context(tmp_path, "js_entanglement", "smoke", {"validation": "none", "epochs": 1})
    assert run.data.size("val") == 0 and run.data.size("train") == 600  # the smoke budget, nothing held out
    js.Method().train(run, cfg)
    final = {(r["role"], r["metric"]) for r in run.rows if r["epoch"] == -1}
    assert {("B", "test_agreement"), ("C", "test_agreement")} <= final
    assert not any(metric.startswith("val_") for _, metric in final)
