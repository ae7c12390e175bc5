"""Every method's and baseline's notebook declarations: each ``notebook_defects`` field is a Config field whose
notebook value parses and differs from the default (the default is the corrected version), ``as_published`` holds
every defect's notebook value and the notebook's data split, and the ``as_published`` configuration trains end to
end on digits at the smoke preset, with its scratch students and required runs, on the split it asks for. A method
that copies no notebook (the template, a method written from a paper) declares neither, and has nothing to check."""

from __future__ import annotations

import dataclasses

import pytest

from benchmark.contract import Validation
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.runner.runner import run_plan
from benchmark.store import Store

METHODS = discover()
NAMES = sorted(n for n, i in METHODS.items() if i.ok)
PUBLISHED = [n for n in NAMES if METHODS[n].cls.as_published]  # the folders that copy a notebook

# The split each notebook trained on (read in the notebooks): 000 (js), 001 (kl), 004 (ska) and the subclass
# notebook fit on the whole training split; 003 (Hinton: teacher, distiller and scratch student) passes Keras's
# validation_split=0.1, the last 10% of the training arrays.
NOTEBOOK_SPLIT = {"js_entanglement": "none", "kl_entanglement": "none", "ska": "none", "subclass_kd": "none",
                  "hinton_kd": "keras_last", "scratch_student": "keras_last", "teacher": "keras_last"}


def defaults(name):
    return METHODS[name].cls.Config()


@pytest.mark.parametrize("name", NAMES)
def test_notebook_defects_are_config_fields_whose_default_is_corrected(name):
    cls = METHODS[name].cls
    types = configuration.field_types(cls.Config)
    for field, declared in cls.notebook_defects.items():
        assert field in types, f"{name}: notebook defect {field!r} is not a Config field"
        notebook, what = declared
        assert isinstance(what, str) and what.strip() and "\n" not in what
        assert configuration.parse_value(types[field], notebook) == notebook
        assert getattr(defaults(name), field) != notebook, f"{name}: the default of {field!r} is the defect"
        assert cls.as_published.get(field) == notebook, f"{name}: as_published lacks the notebook's {field!r}"


@pytest.mark.parametrize("name", NAMES)
def test_as_published_resolves_and_names_the_notebooks_split(name):
    cls = METHODS[name].cls
    types = configuration.field_types(cls.Config)
    assert set(cls.as_published) <= set(types)
    for preset in configuration.PRESETS:
        cfg = configuration.resolve(cls, preset, cls.as_published)
        assert {k: getattr(cfg, k) for k in cls.as_published} == cls.as_published
    if not cls.as_published:  # no notebook: nothing published to reproduce, and no defect it corrects
        assert not cls.notebook_defects
        return
    assert cls.as_published.get("validation") in Validation.__args__, f"{name}: as_published names no split"


def test_the_notebooks_splits_are_the_ones_read_in_the_notebooks():
    for name, split in NOTEBOOK_SPLIT.items():
        if name in METHODS:  # (a throw-away project holds only the baselines and its own folders)
            assert METHODS[name].cls.as_published["validation"] == split, name


@pytest.mark.parametrize("name", PUBLISHED)
def test_as_published_trains_end_to_end_on_smoke(name, tmp_path):
    cls = METHODS[name].cls
    specs = plan([METHODS[name]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS,
                 overrides={name: dict(cls.as_published)})
    outcome = run_plan(specs, Settings(store=Store(tmp_path), threads=1), backend="inprocess")
    assert [r["error"] for r in outcome.records if r["status"] != "ok"] == []
    split = cls.as_published["validation"]
    store = Store(tmp_path)
    for spec in specs:  # the method, the runs it requires and its scratch students: all on the notebook's split
        assert spec.data["validation"] == split, spec.method
        assert store.read_run(spec.run_id)["status"] == "ok"
    ours = store.read_run(next(s for s in specs if s.method == name).run_id)
    assert {k: ours["config"][k] for k in cls.as_published} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in cls.as_published.items()}
    final = {metric for _, epoch, metric, _ in ours["metrics"] if epoch == -1}
    held_out = any(m.startswith("val_") for m in final)
    assert held_out == (split != "none")


def test_hinton_kd_trains_without_a_validation_split_once_nothing_early_stops(tmp_path):
    cls = METHODS["hinton_kd"].cls
    with pytest.raises(configuration.BadInput, match="patience=none"):  # refused when planned, in one line
        configuration.resolve(cls, "quick", {"validation": "none"})
    overrides = {"validation": "none", "patience": "none", "teacher_patience": "none"}
    assert dataclasses.asdict(configuration.resolve(cls, "quick", overrides))["validation"] == "none"
    specs = plan([METHODS["hinton_kd"]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS,
                 overrides={"hinton_kd": overrides})
    outcome = run_plan(specs, Settings(store=Store(tmp_path), threads=1), backend="inprocess")
    assert [r["error"] for r in outcome.records if r["status"] != "ok"] == []
    assert {s.method: s.data["validation"] for s in specs} == dict.fromkeys(("teacher", "scratch_student",
                                                                           "label_smoothing", "hinton_kd"), "none")
