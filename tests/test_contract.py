"""Every discovered method and baseline, whatever its folder, runs end to end on digits at the smoke preset and
leaves a complete record. A new folder under methods/ is tested here with no edit to this file."""

import dataclasses
import math

import pytest

from benchmark.data import load_dataset
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, run_plan
from benchmark.engine.plan import plan
from benchmark.store.store import Store

METHODS = discover()


def test_every_folder_imports():
    broken = {n: i.error for n, i in METHODS.items() if not i.ok}
    assert not broken


@pytest.mark.parametrize("name", sorted(METHODS))
def test_contract_declarations(name):
    cls = METHODS[name].cls
    assert dataclasses.is_dataclass(cls.Config)
    assert set(cls.presets) <= set(configuration.PRESETS)
    data = load_dataset("digits")
    for preset in configuration.PRESETS:
        cfg = configuration.resolve(cls, preset, data=data)
        roles = cls().roles(cfg, data)
        assert roles, "a method declares at least one role"
    for key, values in cls.ablations.items():
        assert values, key
        configuration.resolve(cls, "smoke", {key: values[0]})  # every ablated value parses


@pytest.mark.parametrize("name", sorted(METHODS))
def test_runs_end_to_end_on_smoke(name, tmp_path):
    info = METHODS[name]
    specs = plan([info], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS)
    outcome = run_plan(specs, Settings(out=tmp_path, isolate=False))
    assert [r["error"] for r in outcome.records if r["status"] != "ok"] == []
    record = Store(tmp_path).read_run(specs[[s.method for s in specs].index(name)].run_id)
    assert record["status"] == "ok"
    final = {(role, metric) for role, epoch, metric, value in record["metrics"] if epoch == -1}
    for role, decl in record["roles"].items():
        if decl["classifier"]:
            assert (role, "test_acc") in final and (role, "test_auc") in final
            acc = [v for r, e, m, v in record["metrics"] if (r, e, m) == (role, -1, "test_acc")][0]
            assert 0.0 <= acc <= 1.0
        else:
            assert any(r == role or r.startswith(role) for r, _ in final) or final
    assert record["timing"]["steps"] > 0
    assert all(v is None or math.isfinite(v) for *_, v in record["metrics"])


def test_required_runs_are_planned_before_the_runs_that_load_them():
    for name, info in METHODS.items():
        cfg = configuration.resolve(info.cls, "smoke")
        if not info.cls().requires(cfg):
            continue
        specs = plan([info], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS)
        position = {s.run_id: i for i, s in enumerate(specs)}
        for i, spec in enumerate(specs):
            for required, run_id in spec.requires.items():
                assert required in METHODS and position[run_id] < i, (spec.method, required)
        assert any(s.method == name and s.requires for s in specs)


TWO_MODELS = '''
from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.contract import MethodBase, Recipe, Role


@dataclass
class Config:
    epochs: int = 2  # epochs
    weight: float = 0.5  # pull of A toward B's updated prediction


class Method(MethodBase):
    Config = Config

    def roles(self, cfg, data):
        recipe = Recipe(lr=1e-3, batch_size=32, epochs=cfg.epochs)
        return {{"A": Role("hinton_student", "flat", scratch=recipe),
                 "B": Role("hinton_student", "pca:20", scratch=recipe)}}

    def train(self, run, cfg):
        def step(b):  # B first, then A against B's prediction *after* B's update: the method's own order
            b.update({{"B": {{"loss": F.cross_entropy(b.forward("B"), b.y)}}}})
            target = b.predict("B").softmax(-1)
            logits = b.forward("A")
            pull = F.cross_entropy(logits, target)
            b.update({{"A": {{"loss": F.cross_entropy(logits, b.y) + cfg.weight * pull, "pull": pull}}}})

        models = {{"A": run.build("hinton_student", "flat"), "B": run.build("hinton_student", "pca:20")}}
        return run.fit(models, step, epochs=cfg.epochs, batch_size=32, lr=1e-3)
'''


def test_a_new_multi_model_method_is_trained_logged_and_paired_with_no_harness_edit(tmp_path, monkeypatch):
    from tests.projects import make_project

    project = make_project(tmp_path, {"two_models": TWO_MODELS})
    monkeypatch.setenv("BENCHMARK_PROJECT_ROOT", str(project))
    methods = discover(project)
    assert methods["two_models"].ok, methods["two_models"].error
    specs = plan([methods["two_models"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
    assert sorted(s.method for s in specs) == ["scratch_student", "scratch_student", "two_models"]
    out = tmp_path / "out"
    outcome = run_plan(specs, Settings(out=out, isolate=False))
    assert not outcome.failed, [r["error"] for r in outcome.failed]
    records = {r["method"] + r["roles"].get("student", {}).get("view", ""): r for r in Store(out).iter_runs()}
    ours = records["two_models"]
    rows = {(role, epoch, metric) for role, epoch, metric, _ in ours["metrics"]}
    for role in ("A", "B"):
        for epoch in range(2):
            assert {(role, epoch, m) for m in ("train_loss", "val_acc", "val_nll", "test_acc")} <= rows
        assert (role, -1, "test_acc") in rows and (role, -1, "test_auc") in rows
    assert ("A", 1, "train_pull") in rows
    for role, view in (("A", "flat"), ("B", "pca:20")):
        scratch = records["scratch_student" + view]
        assert ours["roles"][role]["pair_key"] == scratch["roles"]["student"]["pair_key"]
