"""A distilled role and its scratch student stop by the same rule: the same cap on epochs, the same patience, on
the same measure (the role's own validation NLL, or none). Every discovered method's default configuration at the
``quick`` preset on digits is planned (:func:`benchmark.engine.plan.plan`, which makes the scratch specs) and
executed with a fit that records what it is asked and trains nothing, so the rule compared is the one each run's
code hands to the harness's fit loop, not the one its Config declares."""

from __future__ import annotations

import pytest

from benchmark.engine import config as configuration
from benchmark.engine import fit as fitting
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, execute
from benchmark.engine.plan import load, plan, scratch_spec_for
from benchmark.engine.spec import config_to_dict
from benchmark.store import Store

METHODS = discover()
NAMES = sorted(n for n, i in METHODS.items() if i.ok and i.kind == "method")


def stopping(call: dict, role: str) -> tuple:
    """(epochs cap, patience, the role whose validation NLL is watched) of one recorded fit, for ``role``."""
    options = call["options"]
    patience = options.get("patience")
    monitor = options.get("monitor") or (call["roles"][0] if len(call["roles"]) == 1 else None)
    return options["epochs"], patience, (monitor if patience is not None else None)


@pytest.mark.parametrize("name", NAMES)
def test_each_distilled_role_stops_by_its_scratch_students_rule(name, tmp_path, monkeypatch):
    calls: dict[str, list[dict]] = {}

    def recording_fit(run, models, step, **options):
        calls.setdefault(run.spec.run_id, []).append({"roles": list(models), "options": options})
        return models  # untrained: only the rule is compared

    monkeypatch.setattr(fitting, "fit", recording_fit)
    data = load(["digits"], "quick")
    info = METHODS[name]
    specs = plan([info], data=data, reps=1, preset="quick", base_seed=0, methods=METHODS)
    settings = Settings(store=Store(tmp_path))
    for spec in specs:  # a method that reads its own curves after fit may fail here: its fit calls are recorded
        execute(spec, settings, METHODS)
    cfg = configuration.resolve(info.cls, "quick", {}, data["digits"])
    (method_spec,) = [s for s in specs if s.method == name and s.config == config_to_dict(cfg)]
    roles = {r: role for r, role in info.cls().roles(cfg, data["digits"]).items()
             if role.scratch is not None and role.distilled}
    if not roles:
        pytest.skip(f"{name} has no distilled role with a scratch student")
    assert method_spec.run_id in calls, f"{name} never reached the fit loop (its required runs failed?)"
    ours = calls[method_spec.run_id]
    for role_name, role in roles.items():
        scratch = scratch_spec_for(role, METHODS, dataset="digits", rep=0, base_seed=0, preset="quick",
                                   data=data["digits"], cfg=cfg)
        (theirs,) = calls[scratch.run_id]
        mine = [c for c in ours if role_name in c["roles"]][-1]  # the fit that ends its training
        assert stopping(mine, role_name) == stopping(theirs, "student"), f"{name} {role_name}"
