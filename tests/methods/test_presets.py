"""The distilled students' presets (benchmark.budgets.DISTILLED_PRESETS), for every method that uses them: at each
preset the teacher a method asks for trains by the teacher baseline's recipe (for the methods of the default shared
teacher it is the very configuration the baseline resolves to: one cached teacher serves them all), and each
distilled role's scratch student is the scratch baseline with the student's architecture, view and budget: at
``quick`` and ``paper`` every one of DISTILLED_STUDENT_EPOCHS epochs (dkd: DKD_STUDENT_EPOCHS, raised by the budget
audit) with no early stopping (the final weights kept), at ``smoke`` the baseline's own."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from benchmark import budgets
from benchmark.budgets import DISTILLED_STUDENT_EPOCHS
from benchmark.contract import shared_teacher
from benchmark.data import load_dataset
from benchmark.engine import config as configuration
from benchmark.engine.discovery import discover

METHODS = discover()
# The students' budget of each method whose module builds its presets from budgets.py: DISTILLED_STUDENT_EPOCHS,
# unless the audit raised one method's.
BUDGETS = {"DISTILLED_PRESETS": DISTILLED_STUDENT_EPOCHS, "DKD_PRESETS": budgets.DKD_STUDENT_EPOCHS}
EPOCHS = {name: epochs for name, info in METHODS.items() if info.ok for presets, epochs in BUDGETS.items()
          if getattr(sys.modules[info.cls.__module__], presets, None) is getattr(budgets, presets)}
USERS = sorted(EPOCHS)


def test_the_distilled_students_presets_are_used_by_the_distillation_methods():
    assert {"hinton_kd", "dkd", "fitnets", "rkd", "attention_transfer", "knowledge_free_teacher"} <= set(USERS)
    assert METHODS["dkd"].cls.presets is budgets.DKD_PRESETS and budgets.DKD_STUDENT_EPOCHS == 600
    assert METHODS["hinton_kd"].cls.presets is budgets.DISTILLED_PRESETS and DISTILLED_STUDENT_EPOCHS == 300


@pytest.mark.parametrize("preset", configuration.PRESETS)
@pytest.mark.parametrize("name", USERS)
def test_presets_share_the_baselines_runs(name, preset):
    method = METHODS[name].cls
    cfg = configuration.resolve(method, preset)
    teacher_cls, scratch_cls = METHODS["teacher"].cls, METHODS["scratch_student"].cls
    teacher = configuration.resolve(teacher_cls, preset, shared_teacher(cfg)["teacher"])
    recipe = ("lr", "batch_size", "epochs", "patience", "validation")  # arch, view, knowledge: the method's choice
    assert [getattr(teacher, f) for f in recipe] == [getattr(configuration.resolve(teacher_cls, preset), f)
                                                     for f in recipe]
    if name in ("hinton_kd", "dkd", "fitnets", "rkd"):  # the default shared teacher itself
        assert teacher == configuration.resolve(teacher_cls, preset)
    baseline = configuration.resolve(scratch_cls, preset)
    expected = (baseline.epochs, baseline.patience) if preset == "smoke" else (EPOCHS[name], None)
    assert (cfg.epochs, cfg.patience) == expected
    roles = {r: role for r, role in method().roles(cfg, load_dataset("digits")).items()
             if role.distilled and role.scratch is not None}
    assert roles, name
    for role in roles.values():
        scratch = configuration.resolve(scratch_cls, preset, role.scratch.overrides(role.arch, role.view))
        assert scratch == dataclasses.replace(baseline, arch=scratch.arch, view=scratch.view, epochs=cfg.epochs,
                                              patience=cfg.patience)
        assert (scratch.arch, scratch.view) == (role.arch, role.view)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_the_omitted_class_control_and_its_partners_train_the_budget_budgets_names(preset):
    """omitted_class reads its epochs from benchmark.budgets (a raise changes its runs' configuration, not its
    code): every one of OMITTED_CLASS_EPOCHS epochs, no early stopping, and its scratch student the same."""
    method = METHODS["omitted_class"].cls
    cfg = configuration.resolve(method, preset)
    assert (cfg.epochs, cfg.patience) == (budgets.OMITTED_CLASS_EPOCHS, None)
    role = method().roles(cfg, load_dataset("digits"))["student"]
    scratch = configuration.resolve(METHODS["scratch_student"].cls, preset,
                                    role.scratch.overrides(role.arch, role.view))
    assert (scratch.epochs, scratch.patience) == (budgets.OMITTED_CLASS_EPOCHS, None)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_the_small_transfer_control_and_its_partners_train_the_budget_budgets_names(preset):
    """small_transfer reads its epochs from benchmark.budgets as omitted_class does: every one of
    SMALL_TRANSFER_EPOCHS epochs, no early stopping, and its scratch student the same."""
    method = METHODS["small_transfer"].cls
    cfg = configuration.resolve(method, preset)
    assert (cfg.epochs, cfg.patience, cfg.transfer) == (budgets.SMALL_TRANSFER_EPOCHS, None, "fraction:0.05")
    role = method().roles(cfg, load_dataset("digits"))["student"]
    scratch = configuration.resolve(METHODS["scratch_student"].cls, preset,
                                    role.scratch.overrides(role.arch, role.view))
    assert (scratch.epochs, scratch.patience) == (budgets.SMALL_TRANSFER_EPOCHS, None)
