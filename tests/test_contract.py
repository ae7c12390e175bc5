"""Every discovered method and baseline, whatever its folder, runs end to end on digits at the smoke preset and
leaves a complete record. A new folder under methods/ is tested here with no edit to this file."""

import dataclasses
import math

import pytest

from benchmark import config as configuration
from benchmark.discovery import discover
from benchmark.runner import Settings, plan, run_plan
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
    for preset in configuration.PRESETS:
        cfg = configuration.resolve(cls, preset)
        roles = cls().roles(cfg)
        assert roles, "a method declares at least one role"
    for key, values in cls.ablations.items():
        assert values, key
        configuration.resolve(cls, "smoke", {key: values[0]})  # every ablated value parses


@pytest.mark.parametrize("name", sorted(METHODS))
def test_runs_end_to_end_on_smoke(name, tmp_path):
    info = METHODS[name]
    specs = plan([info], datasets_=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS)
    outcome = run_plan(specs, Settings(out=tmp_path))
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


def test_required_baselines_are_planned_before_the_method():
    for name, info in METHODS.items():
        cfg = configuration.resolve(info.cls, "smoke")
        needed = info.cls().requires(cfg)
        if not needed:
            continue
        specs = plan([info], datasets_=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS)
        order = [s.method for s in specs]
        for baseline in needed:
            assert baseline in order and order.index(baseline) < order.index(name)
