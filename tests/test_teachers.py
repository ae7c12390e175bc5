"""The shared teacher: a CNN on the image view by default, the student on its own view. Every method that loads it
asks the teacher baseline for the view its Config names, computes the teacher's logits and features on that view,
and keeps the Hinton notebook's MLP teacher (flat view) in its as-published row."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark import nn as layers
from benchmark.contract import NOTEBOOK_TEACHER, TEACHER, TeacherFields, shared_teacher
from benchmark.engine import config as configuration
from benchmark.engine.context import RunContext
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.store import Store

METHODS = discover()
SHARING = sorted(n for n, i in METHODS.items() if i.ok and issubclass(i.cls.Config, TeacherFields))


def test_every_method_that_loads_the_teacher_is_found():
    assert {"hinton_kd", "dkd", "fitnets", "rkd", "born_again"} <= set(SHARING)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (1, 40)], ids=["digits", "28x28", "mnist1d"])
def test_the_cnn_teacher_fits_images_and_signals_and_names_flat_hidden_layers(shape):
    model = layers.build("cnn_teacher", shape, 10, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randn(5, *shape)
    assert model(x).shape == (5, 10)
    assert model.features(x, "hidden1").shape == (5, 256) and model.features(x, "hidden2").shape == (5, 128)
    side = [s // 2 for s in shape[1:]]  # block2 is the second conv's map, after the first pool
    assert model.features(x, "block2").shape == (5, 64, *side)
    assert not isinstance(model[-1], torch.nn.Dropout)  # the logits come last


def test_the_cnn_teacher_refuses_a_flat_view_in_one_line():
    with pytest.raises(ValueError, match="image view"):
        layers.build("cnn_teacher", (64,), 10)


@pytest.mark.parametrize("name", SHARING)
def test_the_teacher_trains_on_the_view_its_config_names(name):
    cls = METHODS[name].cls
    cfg = configuration.resolve(cls, "quick")
    teacher = shared_teacher(cfg)[TEACHER]
    assert (teacher["arch"], teacher["view"]) == (cfg.teacher_arch, cfg.teacher_view)
    assert cfg.teacher_view == "image" and cfg.teacher_arch == ("at_teacher" if name == "attention_transfer"
                                                                else "cnn_teacher")  # its own CNN, for its maps
    other = dataclasses.replace(cfg, teacher_view="flat", teacher_arch="hinton_teacher",
                                **({"view": "flat"} if name == "born_again" else {}))
    assert shared_teacher(other)[TEACHER]["view"] == "flat"


def test_the_default_teacher_is_the_baselines_and_the_as_published_one_the_notebooks():
    """One cached teacher run serves every method at its defaults, and one the as-published rows."""
    teacher_cls = METHODS["teacher"].cls
    for preset in ("smoke", "quick"):
        default = configuration.resolve(METHODS["hinton_kd"].cls, preset)
        assert configuration.resolve(teacher_cls, preset, shared_teacher(default)[TEACHER]) == \
            configuration.resolve(teacher_cls, preset)
        published = configuration.resolve(METHODS["hinton_kd"].cls, preset, METHODS["hinton_kd"].cls.as_published)
        assert (published.teacher_arch, published.teacher_view, published.view) == ("hinton_teacher", "flat", "flat")
        assert configuration.resolve(teacher_cls, preset, shared_teacher(published)[TEACHER]) == \
            configuration.resolve(teacher_cls, preset, teacher_cls.as_published)
    assert {k: METHODS["hinton_kd"].cls.as_published[k] for k in NOTEBOOK_TEACHER} == NOTEBOOK_TEACHER


def test_born_again_refuses_a_student_view_other_than_its_teachers():
    cls = METHODS["born_again"].cls
    with pytest.raises(configuration.BadInput, match="teacher_view"):
        configuration.resolve(cls, "smoke", {"view": "flat"})


def test_each_method_reads_the_teacher_on_its_view_and_the_student_on_its_own(tmp_path, monkeypatch):
    """Every logits and features call made on the frozen teacher names the view it was built for, end to end on
    digits (smoke) for each method that loads it; the students keep the flat view."""
    calls = []
    logits, features = RunContext.logits, RunContext.features

    def spy_logits(self, model, view, split):
        calls.append((model.build_args["arch"], model.build_args["view"], view))
        return logits(self, model, view, split)

    def spy_features(self, model, view, split, name):
        calls.append((model.build_args["arch"], model.build_args["view"], view))
        return features(self, model, view, split, name)

    monkeypatch.setattr(RunContext, "logits", spy_logits)
    monkeypatch.setattr(RunContext, "features", spy_features)
    names = [n for n in SHARING if n in ("hinton_kd", "fitnets", "rkd", "dkd")]
    specs = plan([METHODS[n] for n in names], data=["digits"], reps=1, preset="smoke", base_seed=0,
                 methods=METHODS)
    outcome = run_plan(specs, Settings(store=Store(tmp_path), threads=1), backend="inprocess")
    assert [r["error"] for r in outcome.records if r["status"] != "ok"] == []
    store = Store(tmp_path)
    for spec in specs:
        roles = store.read_run(spec.run_id)["roles"]
        if spec.method == "teacher":
            assert {(r["arch"], r["view"]) for r in roles.values()} == {("cnn_teacher", "image")}
        elif spec.method in names:
            assert {r["view"] for r in roles.values()} == {"flat"}
    on_teacher = [c for c in calls if c[0] == "cnn_teacher"]
    assert on_teacher and all(built == asked == "image" for _, built, asked in on_teacher)
