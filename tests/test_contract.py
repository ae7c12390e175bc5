"""Every discovered method and baseline, whatever its folder, runs end to end on digits at the smoke preset and
leaves a complete record. A new folder under methods/ is tested here with no edit to this file."""

import dataclasses
import math

import pytest

from benchmark.data import load_dataset
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.runner.status import partition
from benchmark.store import Store

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
    outcome = run_plan(specs, Settings(store=Store(tmp_path)), backend="inprocess")
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
    assert sorted(s.method for s in specs) == ["label_smoothing", "label_smoothing", "scratch_student",
                                                "scratch_student", "two_models"]
    out = tmp_path / "out"
    outcome = run_plan(specs, Settings(store=Store(out)), backend="inprocess")
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


# ---- the contract's smaller parts: name, recipe, shared teacher, speed.toml --------------------------------------

# hinton_kd as a researcher copies it to share the teacher (the README's "Adding a method"): under 60 lines.
MINIMAL_KD = '''"""Hinton, Vinyals & Dean 2015: a student distilled from the shared teacher's soft targets."""

from dataclasses import dataclass

from benchmark.contract import (LearningRate, MethodBase, PositiveFloat, PositiveInt, Recipe, Role, TeacherFields,
                                UnitInterval, Validation, shared_teacher)
from benchmark.losses import SoftTargetLoss
from benchmark.supervised import DISTILLATION_PRESETS


@dataclass
class Config(TeacherFields):  # the shared teacher (cnn_teacher on the image view)
    arch: str = "hinton_student"  # student architecture (benchmark.archs)
    view: str = "flat"  # input view of student and teacher
    temperature: PositiveFloat = 10.0  # T, divides both models' logits in the soft-target term
    alpha: UnitInterval = 0.1  # weight of the hard-label CE; the soft targets get (1 - alpha)·T²
    lr: LearningRate = 1e-3  # student's Adam learning rate
    batch_size: PositiveInt = 64  # student's batch size
    epochs: PositiveInt = 50  # upper bound on the student's epochs
    patience: PositiveInt | None = 10  # early-stopping patience on validation NLL
    validation: Validation = "stratified"  # training/validation split of student, teacher and scratch student


class Method(MethodBase):
    Config = Config
    presets = DISTILLATION_PRESETS

    def roles(self, cfg, data):
        return {"student": Role(cfg.arch, cfg.view, scratch=Recipe.of(cfg))}

    def requires(self, cfg):
        return shared_teacher(cfg)

    def train(self, run, cfg):
        teacher = run.required("teacher")
        criterion = SoftTargetLoss(run.logits(teacher, run.view_of(teacher), "train"), temperature=cfg.temperature,
                                   alpha=cfg.alpha)

        def step(b):
            b.update({"student": criterion(b.forward("student"), b.y, b.idx)})

        return run.fit({"student": run.build(cfg.arch, cfg.view)}, step, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience)
'''


def _project_with(tmp_path, folders: dict[str, dict[str, str]]):
    """A throw-away project: the real baselines and ``{folder: {file name: text}}`` under methods/."""
    from tests.projects import make_project

    project = make_project(tmp_path)
    for name, files in folders.items():
        (project / "methods" / name).mkdir()
        for file, text in files.items():
            (project / "methods" / name / file).write_text(text)
    return project


def test_a_copy_of_hinton_kd_shares_the_teacher_in_under_60_lines_and_trains_the_same(tmp_path, monkeypatch):
    assert len(MINIMAL_KD.splitlines()) < 60
    out = tmp_path / "out"
    real = plan([METHODS["hinton_kd"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS)
    assert not run_plan(real, Settings(store=Store(out)), backend="inprocess").failed
    project = _project_with(tmp_path, {"my_kd": {"method.py": MINIMAL_KD}})
    monkeypatch.setenv("BENCHMARK_PROJECT_ROOT", str(project))
    methods = discover(project)
    assert methods["my_kd"].ok and methods["my_kd"].cls.name == "my_kd", methods["my_kd"].error
    ours = plan([methods["my_kd"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
    teacher = {s.method: s.requires.get("teacher") for s in real + ours if s.requires}
    assert teacher["my_kd"] == teacher["hinton_kd"]  # the same teacher run: trained once, shared
    cached, todo = partition(ours, Store(out), methods)
    # the teacher, the scratch student and its label-smoothing partner are there
    assert len(cached) == 3 and [s.method for s in todo] == ["my_kd"]
    assert not run_plan(todo, Settings(store=Store(out)), backend="inprocess").failed
    records = {r["method"]: r for r in Store(out).iter_runs()}
    assert records["my_kd"]["metrics"] == records["hinton_kd"]["metrics"]  # the same defaults: the same numbers


def test_the_folder_names_the_method_and_a_different_declared_name_is_refused(tmp_path):
    declared = MINIMAL_KD.replace("    Config = Config\n", '    name = "other"\n    Config = Config\n', 1)
    project = _project_with(tmp_path, {"kd_a": {"method.py": MINIMAL_KD}, "kd_b": {"method.py": declared}})
    methods = discover(project)
    assert methods["kd_a"].cls.name == "kd_a"
    assert not methods["kd_b"].ok and "Method.name is 'other' but the folder is 'kd_b'" in methods["kd_b"].error


def test_speed_toml_declares_targets_variants_and_budget_fields(tmp_path):
    good = 'variants = ["temperature=4"]\n[targets]\nmin_peak_fraction = 0.4\n[budget."alpha=0.5"]\nepochs = "lr"\n'
    bad_key = "[targets]\nmax_speed = 3\n"
    bad_field = '[budget]\nepochs = "steps"\n'
    moved = MINIMAL_KD.replace("    Config = Config\n", "    Config = Config\n    speed_targets = {}\n", 1)
    project = _project_with(tmp_path, {"a": {"method.py": MINIMAL_KD, "speed.toml": good},
                                       "b": {"method.py": MINIMAL_KD, "speed.toml": bad_key},
                                       "c": {"method.py": MINIMAL_KD, "speed.toml": bad_field},
                                       "d": {"method.py": moved}})
    methods = discover(project)
    cls = methods["a"].cls
    assert (cls.speed_targets, cls.profile_variants) == ({"min_peak_fraction": 0.4}, ("temperature=4",))
    data = load_dataset("digits")
    assert cls().budget(configuration.resolve(cls, "quick"), data) == (150, 64)  # DISTILLATION_PRESETS' epochs
    assert cls().budget(configuration.resolve(cls, "quick", {"alpha": 0.5}), data) == (0, 64)  # int(lr=1e-3)
    assert "bad targets ['max_speed']" in methods["b"].error
    assert "speed.toml names ['steps'], which are not Config fields" in methods["c"].error
    assert "they go in speed.toml" in methods["d"].error
    # The folders of this project: SKA's steps are its epochs, subclass_kd's teacher stage trains teacher_epochs.
    ska, subclass = METHODS["ska"].cls, METHODS["subclass_kd"].cls
    assert ska().budget(configuration.resolve(ska, "quick"), data) == (50, None)
    teacher_stage = configuration.resolve(subclass, "quick", {"stage": "teacher"})
    assert subclass().budget(teacher_stage, data) == (400, 256)  # its quick preset's teacher_epochs
    assert subclass().budget(configuration.resolve(subclass, "quick"), data) == (600, 256)  # 3x the notebook's


def test_which_runs_keep_their_models_is_derived():
    teacher, hinton, subclass = (METHODS[n].cls for n in ("teacher", "hinton_kd", "subclass_kd"))
    assert teacher().saves_models(teacher.Config()) and not hinton().saves_models(hinton.Config())
    assert subclass().saves_models(subclass.Config(stage="teacher"))  # the stage the student loads
    assert not subclass().saves_models(subclass.Config())


def test_a_scratch_recipe_is_a_recipe(tmp_path):
    as_dict = MINIMAL_KD.replace("scratch=Recipe.of(cfg)", 'scratch={"lr": 1e-3}')
    project = _project_with(tmp_path, {"dict_kd": {"method.py": as_dict}})
    methods = discover(project)
    with pytest.raises(configuration.BadInput, match="scratch= takes a benchmark.contract.Recipe, got dict"):
        plan([methods["dict_kd"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=methods)
