"""The controls: transfer sets applied by the harness, the omitted class's bias correction, the label-smoothing
partner, the knowledge-free teacher, and the identities of runs that use none of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data import load_dataset
from benchmark.data.splits import make_splits, parse_transfer, transfer_index
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.plan import SCRATCH, SMOOTHING, plan
from benchmark.engine.spec import config_to_dict, data_budget
from benchmark.errors import BadInput
from benchmark.omitted import BIAS_GRID, omitted_metrics
from benchmark.supervised import smoothed_cross_entropy
from tests.projects import run_context

METHODS = discover()


def _arrays(n_train=400, n_test=200, classes=10, seed=0):
    g = np.random.default_rng(seed)
    y_tr, y_te = np.arange(n_train) % classes, np.arange(n_test) % classes
    return g.normal(size=(n_train, 3)), y_tr, g.normal(size=(n_test, 3)), y_te


def test_an_omitted_class_leaves_the_training_split_only():
    x_tr, y_tr, x_te, y_te = _arrays()
    whole = make_splits(x_tr, y_tr, x_te, y_te, val_fraction=0.1, split_seed=3, max_train=None, max_test=None)
    cut = make_splits(x_tr, y_tr, x_te, y_te, val_fraction=0.1, split_seed=3, max_train=None, max_test=None,
                      transfer="omit:3")
    assert 3 not in cut["train"][1] and 3 in cut["val"][1] and 3 in cut["test"][1]
    keep = whole["train"][1] != 3
    assert np.array_equal(cut["train"][0], whole["train"][0][keep])  # everything else, in order
    for split in ("val", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(cut[split], whole[split], strict=True))


def test_a_fraction_is_stratified_seeded_and_inside_the_training_split():
    x_tr, y_tr, x_te, y_te = _arrays(n_train=1000)
    kwargs = dict(val_fraction=0.1, split_seed=5, max_train=None, max_test=None, transfer="fraction:0.1")
    a, b = make_splits(x_tr, y_tr, x_te, y_te, **kwargs), make_splits(x_tr, y_tr, x_te, y_te, **kwargs)
    assert np.array_equal(a["train"][0], b["train"][0])
    assert len(a["train"][1]) == 90 and set(np.bincount(a["train"][1])) == {9}
    whole = make_splits(x_tr, y_tr, x_te, y_te, val_fraction=0.1, split_seed=5, max_train=None, max_test=None)
    rows = {tuple(r) for r in whole["train"][0]}
    assert all(tuple(r) in rows for r in a["train"][0])
    assert np.array_equal(a["val"][0], whole["val"][0])


@pytest.mark.parametrize("bad", ["omit", "omit:x", "omit:-1", "fraction:0", "fraction:1.5", "some", "all:1"])
def test_a_bad_transfer_set_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="transfer set"):
        parse_transfer(bad)
    with pytest.raises(BadInput):
        configuration.resolve(METHODS["omitted_class"].cls, "smoke", {"transfer": bad})


def test_omitting_a_class_the_data_lacks_is_an_error():
    with pytest.raises(ValueError, match="no class 12"):
        transfer_index(np.arange(20) % 10, "omit:12", 0)


def test_the_student_and_its_scratch_student_get_the_transfer_set_and_the_teacher_does_not():
    data = load_dataset("digits", **configuration.DATA_PRESETS["cpu"]["smoke"])
    specs = plan([METHODS["omitted_class"]], data={"digits": data}, reps=1, preset="smoke", base_seed=0,
                 methods=METHODS)
    by_method = {}
    for s in specs:
        by_method.setdefault(s.method, []).append(s)
    assert by_method["omitted_class"][0].data["transfer"] == "omit:3"
    assert by_method[SCRATCH][0].data["transfer"] == "omit:3"
    assert by_method[SMOOTHING][0].data["transfer"] == "omit:3"
    assert "transfer" not in by_method["teacher"][0].data
    sizes = {m: load_dataset("digits", **{**configuration.DATA_PRESETS["cpu"]["smoke"], "transfer": "omit:3"})
             for m in ("x",)}
    cut = sizes["x"]
    assert 3 not in set(cut.labels("train").tolist()) and 3 in set(cut.labels("test").tolist())
    assert cut.size("test") == data.size("test") and cut.size("val") == data.size("val")


def _accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, 1) == labels)) if len(labels) else float("nan")


def test_the_bias_correction_is_chosen_on_validation_as_a_grid_search_computes_it():
    g = np.random.default_rng(1)
    classes, omitted = 5, 2
    val_y, test_y = g.integers(0, classes, 300), g.integers(0, classes, 200)
    # a student that learned too low a bias for the omitted class: its logit is its true score minus 3
    val_x = g.normal(size=(300, classes)) + 2.5 * np.eye(classes)[val_y]
    test_x = g.normal(size=(200, classes)) + 2.5 * np.eye(classes)[test_y]
    val_x[:, omitted] -= 3.0
    test_x[:, omitted] -= 3.0
    best, best_bias = -1.0, None
    for bias in np.arange(0, 10.0001, 0.05):  # independent: a plain loop, first best kept
        shifted = val_x.copy()
        shifted[:, omitted] += bias
        acc = _accuracy(shifted, val_y)
        if acc > best + 1e-12:
            best, best_bias = acc, round(bias, 2)
    got = omitted_metrics(*(torch.tensor(a) for a in (val_x, val_y, test_x, test_y)), omitted)
    assert got["omitted_bias"] == pytest.approx(best_bias) and 1 < best_bias < 5
    corrected = test_x.copy()
    corrected[:, omitted] += best_bias
    mask = test_y == omitted
    assert got["test_omitted_acc"] == pytest.approx(_accuracy(test_x[mask], test_y[mask]))
    assert got["test_corrected_acc"] == pytest.approx(_accuracy(corrected, test_y))
    assert got["test_omitted_corrected_acc"] == pytest.approx(_accuracy(corrected[mask], test_y[mask]))
    assert got["test_omitted_corrected_acc"] > got["test_omitted_acc"]
    assert BIAS_GRID[0] == 0 and BIAS_GRID[-1] == 10


def test_no_validation_examples_means_no_bias():
    x, y = torch.randn(50, 4), torch.arange(50) % 4
    got = omitted_metrics(x[:0], y[:0], x, y, 1)
    assert got["omitted_bias"] == 0 and got["test_corrected_acc"] == pytest.approx(_accuracy(x.numpy(), y.numpy()))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.37])
def test_label_smoothing_loss_is_its_formula(eps):
    g = np.random.default_rng(2)
    z, y = g.normal(size=(7, 4)) * 3, g.integers(0, 4, 7)
    log_p = z - z.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    target = (1 - eps) * np.eye(4)[y] + eps / 4
    expected = float(np.mean(-(target * log_p).sum(1)))
    got = smoothed_cross_entropy(torch.tensor(z), torch.tensor(y), eps)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_every_distilled_role_gets_a_label_smoothing_partner_keyed_like_its_scratch_student(tmp_path):
    from benchmark.engine.execute import _role_record

    data = load_dataset("digits", **configuration.DATA_PRESETS["cpu"]["smoke"])
    specs = plan([METHODS["hinton_kd"]], data={"digits": data}, reps=1, preset="smoke", base_seed=0,
                 methods=METHODS)
    by = {s.method: s for s in specs}
    assert set(by) == {"hinton_kd", "teacher", SCRATCH, SMOOTHING}
    smoothing, scratch = by[SMOOTHING], by[SCRATCH]
    assert smoothing.config["smoothing"] == 0.1
    assert {k: v for k, v in smoothing.config.items() if k != "smoothing"} == scratch.config
    assert smoothing.data == scratch.data
    run, cfg = run_context(tmp_path, "hinton_kd")
    method_role = _role_record(run.roles["student"], METHODS, by["hinton_kd"], cfg, data)
    info = METHODS[SMOOTHING]
    scfg = configuration.resolve(info.cls, "smoke", smoothing.config, data)
    partner = _role_record(info.cls().roles(scfg, data)["student"], METHODS, smoothing, scfg, data)
    scratch_cfg = configuration.resolve(METHODS[SCRATCH].cls, "smoke", scratch.config, data)
    scratch_role = _role_record(METHODS[SCRATCH].cls().roles(scratch_cfg, data)["student"], METHODS, scratch,
                                scratch_cfg, data)
    assert method_role["label_smoothing_key"] == partner["label_smoothing_key"]
    assert method_role["pair_key"] == partner["pair_key"] == scratch_role["pair_key"]
    assert "label_smoothing_key" not in scratch_role


def test_a_default_run_s_identity_holds_no_new_field():
    for name in ("scratch_student", "teacher", "hinton_kd", "dkd", "fitnets"):
        cfg = configuration.resolve(METHODS[name].cls, "quick")
        stored = config_to_dict(cfg)
        assert not {"transfer", "knowledge", "teacher_knowledge"} & set(stored), name
        assert "transfer" not in data_budget("quick", cfg)
    cfg = configuration.resolve(METHODS["scratch_student"].cls, "quick", {"transfer": "omit:3"})
    assert config_to_dict(cfg)["transfer"] == "omit:3" and data_budget("quick", cfg)["transfer"] == "omit:3"


def test_whole_test_sets_at_every_preset_but_smoke():
    for device, presets in configuration.DATA_PRESETS.items():
        for preset in ("quick", "paper"):
            assert presets[preset]["max_test"] is None, (device, preset)


@pytest.mark.parametrize("knowledge", ["untrained", "shuffled_labels"])
def test_a_knowledge_free_teacher(knowledge, tmp_path, monkeypatch, one_thread):
    from benchmark import supervised

    run, cfg = run_context(tmp_path, "teacher", overrides={"knowledge": knowledge, "epochs": 1})
    seen: dict[int, int] = {}
    plain = supervised.smoothed_cross_entropy

    def recording(logits, targets, smoothing=0.0):  # the targets every training step's loss is computed on
        calls.append(targets.clone())
        return plain(logits, targets, smoothing)

    calls: list[torch.Tensor] = []
    original_fit = run.fit

    def fit(models, step, **options):
        def step_with_index(b):
            before = len(calls)
            step(b)
            seen.update({int(i): int(t) for i, t in zip(b.idx, calls[before], strict=True)})

        return original_fit(models, step_with_index, **options)

    monkeypatch.setattr(supervised, "smoothed_cross_entropy", recording)
    run.fit = fit
    model = supervised.train_supervised(run, cfg, "teacher", knowledge=knowledge)["teacher"]
    initial = run.build(cfg.arch, cfg.view)
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), initial.state_dict().values(),
                                                 strict=True))
    if knowledge == "untrained":
        assert same and not calls
        return
    labels = run.labels("train")
    assert not same and len(seen) == len(labels)
    targets = torch.tensor([seen[i] for i in range(len(labels))])
    assert torch.equal(torch.bincount(targets), torch.bincount(labels))  # a permutation of the labels
    assert (targets != labels).float().mean() > 0.5
