"""The budget audit's 3x plan (benchmark.engine.budget): which fields are a method's training budget, and the
overrides that multiply them; the overrides resolve to a configuration whose budget is that many times longer."""

import dataclasses
from dataclasses import dataclass

import pytest

from benchmark.contract import MethodBase
from benchmark.engine import budget
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover

METHODS = discover()


def resolved(name, preset="quick", overrides=None):
    return configuration.resolve(METHODS[name].cls, preset, overrides or {})


@pytest.mark.parametrize("name, fields", [
    ("scratch_student", ("epochs",)),  # patience is not a budget: early stopping's maximum is what scales
    ("teacher", ("epochs",)),
    ("hinton_kd", ("epochs",)),  # teacher_* are the shared teacher baseline's own run
    ("subclass_kd", ("epochs", "teacher_epochs")),  # its teacher is a stage of its own
    ("ska", ("steps",)),
])
def test_budget_fields_of_the_shipped_methods(name, fields):
    assert set(fields) <= set(budget.budget_fields(METHODS[name]))
    assert budget.budget_fields(METHODS[name]) == budget.budget_fields(METHODS[name].cls)
    if name == "hinton_kd":
        assert not any(f.startswith("teacher_") for f in budget.budget_fields(METHODS[name]))


@pytest.mark.parametrize("name", sorted(n for n, info in METHODS.items() if info.ok))
@pytest.mark.parametrize("factor", [3, 2.5])
def test_scaled_multiplies_every_budget_field_and_nothing_else(name, factor):
    info = METHODS[name]
    cfg = resolved(name)
    overrides = budget.scaled(info, cfg, factor)
    fields = budget.budget_fields(info)
    values = dataclasses.asdict(cfg)
    assert set(overrides) == {f for f in fields if values[f] is not None}
    for field, value in overrides.items():
        assert isinstance(value, int) and value == max(1, round(values[field] * factor))
    longer = resolved(name, overrides={k: str(v) for k, v in overrides.items()})
    changed = {k for k, v in dataclasses.asdict(longer).items() if v != values[k]}
    assert changed <= set(fields)
    assert budget.scaled(info, values, factor) == overrides  # a stored config (a dict) works the same


def test_the_quick_presets_scale_to_three_times_their_epochs():
    sub, hinton = resolved("subclass_kd"), resolved("hinton_kd")
    assert budget.scaled(METHODS["subclass_kd"], sub, 3) == {"epochs": 3 * sub.epochs,
                                                             "teacher_epochs": 3 * sub.teacher_epochs}
    assert budget.scaled(METHODS["hinton_kd"], hinton, 3) == {"epochs": 3 * hinton.epochs}  # not teacher_epochs
    assert budget.scaled(METHODS["ska"], resolved("ska"), 3) == {"steps": 150}
    assert budget.set_arguments(METHODS["ska"], resolved("ska"), 3) == ["--set", "ska.steps=150"]


def test_the_naming_rule_and_a_declaration():
    @dataclass
    class Config:
        epochs: int = 10
        warmup_epochs: int = 2
        min_steps: int | None = None
        steps: int = 7
        epochsish: int = 5  # not a budget by its name
        patience: int = 3

    class ByName(MethodBase):
        name = "by_name"

    ByName.Config = Config

    class Declared(ByName):
        name = "declared"
        budget_fields = ("epochs",)

    class Wrong(ByName):
        name = "wrong"
        budget_fields = ("epoch",)

    assert budget.budget_fields(ByName) == ("epochs", "warmup_epochs", "min_steps", "steps")
    assert budget.scaled(ByName, Config(), 3) == {"epochs": 30, "warmup_epochs": 6, "steps": 21}  # None: left out
    assert budget.scaled(ByName, Config(min_steps=100), 0.1) == {"epochs": 1, "warmup_epochs": 1, "min_steps": 10,
                                                                 "steps": 1}
    assert budget.scaled(Declared, Config(), 3) == {"epochs": 30}
    with pytest.raises(ValueError, match="epoch"):
        budget.budget_fields(Wrong)
    for factor in (0, -1, float("nan"), float("inf"), "3"):
        with pytest.raises(ValueError):
            budget.scaled(ByName, Config(), factor)


def test_the_audit_also_scales_the_variants_that_default_configurations_require():
    """attention_transfer's teacher (its own architecture) and the knowledge-free control's teacher are teacher
    variants that no default configuration of the teacher covers: the audit plans each, and each at 3x its budget.
    The default teacher (hinton_kd's) is the teacher's own default point, and born_again's earlier generations and
    subclass_kd's teacher stage are runs of their own method, scaled with it."""
    from benchmark.suite import grid
    from benchmark.suite.request import SuiteRequest

    infos = [i for i in METHODS.values() if i.ok]
    request = SuiteRequest(preset="quick")
    points = grid.required_audit_points(infos, METHODS, request, {i.name: {} for i in infos}, 3)
    assert set(points) == {"teacher"}
    at_teacher = METHODS["attention_transfer"].cls().requires(resolved("attention_transfer"))["teacher"]
    untrained = METHODS["knowledge_free_teacher"].cls().requires(resolved("knowledge_free_teacher"))["teacher"]
    assert at_teacher["arch"] == "at_teacher" and untrained["knowledge"] == "untrained"
    expected = []
    for needed in (at_teacher, untrained):
        epochs = 3 * configuration.resolve(METHODS["teacher"].cls, "quick", needed).epochs
        expected += [needed, {**needed, "epochs": epochs}]
    assert sorted(map(str, points["teacher"])) == sorted(map(str, expected))
    # a --set that makes hinton_kd's teacher another variant adds that variant too
    overrides = {i.name: {} for i in infos}
    overrides["hinton_kd"] = {"teacher_lr": 0.01}
    more = grid.required_audit_points(infos, METHODS, request, overrides, 3)["teacher"]
    assert len(more) == len(expected) + 2 and any(p["lr"] == 0.01 for p in more)
