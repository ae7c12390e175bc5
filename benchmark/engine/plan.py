"""Planning: the grid (methods x configurations x datasets x repetitions), the runs each one requires, and the paired
scratch students each role needs, as specs whose ids cover the code they execute."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from benchmark import nn as layers
from benchmark.contract import Recipe, Role, required_method
from benchmark.data import load_dataset
from benchmark.engine import config as configuration
from benchmark.engine.code import code_hash, run_code
from benchmark.engine.discovery import MethodInfo, discover
from benchmark.engine.spec import RunSpec, config_to_dict, data_budget
from benchmark.errors import BadInput

SCRATCH = "scratch_student"  # the control baseline every role with a scratch recipe is paired with
SMOOTHING = "label_smoothing"  # the control every distilled role is also paired with (not transfer: regularisation)


def load(names, preset: str, data_root=None, device: str = "cpu") -> dict[str, Any]:
    """Datasets by name at the preset's budget on this kind of device (what planning adapts configurations to)."""
    return {name: load_dataset(name, data_root, **configuration.DATA_PRESETS[device][preset])
            for name in names}


def make_spec(info: MethodInfo, cfg, *, dataset: str, rep: int, base_seed: int, preset: str, data=None,
              methods: dict[str, MethodInfo] | None = None, specs: dict[str, RunSpec] | None = None,
              device: str = "cpu", precision: str = "fp32") -> RunSpec:
    """The spec of one run on a ``device`` kind; the runs it requires are planned too, on the same kind (added to
    ``specs`` when given). ``data``: the dataset loaded at the preset's budget (loaded here when not given)."""
    methods = methods or discover()
    data = data if data is not None else load([dataset], preset, device=device)[dataset]
    method = info.cls()
    roles = method.roles(cfg, data)
    check_roles(info.name, roles, data)
    requires = {}
    for key, overrides in method.requires(cfg).items():
        name = required_method(key)
        if name not in methods or not methods[name].ok:
            raise BadInput(f"{info.name} requires {name!r}, which is not a loadable method or baseline")
        base = methods[name]
        try:
            needed_cfg = configuration.resolve(base.cls, preset, overrides, data)
            needed = make_spec(base, needed_cfg, dataset=dataset, data=data, rep=rep, base_seed=base_seed,
                               preset=preset, methods=methods, specs=specs, device=device, precision=precision)
        except BadInput as exc:
            raise BadInput(f"{info.name} requires {key}: {exc}") from None
        if not base.cls().saves_models(needed_cfg):
            # Found here, not when the run starts: otherwise the required run trains, keeps nothing, and then the
            # run that loads it fails.
            raise BadInput(f"{info.name} requires {key} ({variant_of(base, preset, needed_cfg, data)}), but "
                           f"{name}'s saves_models() is False for that configuration: it keeps no checkpoint to "
                           f"load (set provides_cache = True or override saves_models in {name})")
        requires[key] = needed.run_id
        if specs is not None:
            specs.setdefault(needed.run_id, needed)
    parts = run_code(info, {r.arch for r in roles.values()}, dataset)
    return RunSpec(
        method=info.name, kind=info.kind, dataset=dataset, rep=rep, base_seed=base_seed, preset=preset,
        config=config_to_dict(cfg), data=data_budget(preset, cfg, device),
        variant=configuration.variant_name(info.cls, preset, cfg, data), source_hash=code_hash(parts), code=parts,
        requires=requires, device=device, precision=precision,
    )


def variant_of(info: MethodInfo, preset: str, cfg, data) -> str:
    try:
        return configuration.variant_name(info.cls, preset, cfg, data)
    except Exception:  # noqa: BLE001 - only names the configuration in an error message
        return "its configuration"


def check_roles(where: str, roles: dict[str, Role], data) -> None:
    """Every role's architecture is registered and its view parses and fits the dataset: bad input, found when
    planning (else the run, or the teacher before it, would train and then fail)."""
    for name, role in roles.items():
        if role.arch not in layers.ARCHITECTURES:
            raise BadInput(f"{where} role {name!r}: unknown architecture {role.arch!r} (registered: "
                           f"{', '.join(sorted(layers.ARCHITECTURES))})")
        try:
            data.view_shape(role.view)
        except ValueError as exc:
            raise BadInput(f"{where} role {name!r}: {exc}") from None
        if role.scratch is not None and not isinstance(role.scratch, Recipe):
            raise BadInput(f"{where} role {name!r}: scratch= takes a benchmark.contract.Recipe, "
                           f"got {type(role.scratch).__name__}")


def scratch_config(role: Role, methods: dict[str, MethodInfo], *, preset: str, data, cfg=None):
    """The scratch student's configuration for ``role``: its :class:`~benchmark.contract.Recipe`, with the method's
    validation split and transfer set (so that the pair trains and is selected on the same examples)."""
    return partner_config(SCRATCH, role, methods, preset=preset, data=data, cfg=cfg)


def partner_config(name: str, role: Role, methods: dict[str, MethodInfo], *, preset: str, data, cfg=None):
    """The configuration of baseline ``name`` that trains ``role``'s recipe alone (the scratch student, or the
    label-smoothing control), with the method's data fields (:data:`~benchmark.engine.config.DATA_FIELDS`)."""
    info = methods[name]
    recipe = role.scratch.overrides(role.arch, role.view)
    if role.init is not None:  # the role's own initialisation stream: the pair still starts from the same weights
        recipe["init"] = role.init
    for key in configuration.DATA_FIELDS:
        if cfg is not None and key in configuration.field_types(info.cls.Config) and hasattr(cfg, key):
            recipe.setdefault(key, getattr(cfg, key))
    return configuration.resolve(info.cls, preset, recipe, data)


def smoothed(role: Role, info: MethodInfo, methods: dict[str, MethodInfo]) -> bool:
    """Whether ``role`` of method ``info`` gets a label-smoothing partner: a method's role that receives a
    distillation signal and has a scratch recipe (a baseline's never does)."""
    return (info.kind == "method" and role.scratch is not None and role.distilled and SMOOTHING in methods
            and methods[SMOOTHING].ok)


def scratch_spec_for(role: Role, methods: dict[str, MethodInfo], *, dataset: str, rep: int, base_seed: int,
                     preset: str, data=None, cfg=None, device: str = "cpu", precision: str = "fp32") -> RunSpec:
    data = data if data is not None else load([dataset], preset, device=device)[dataset]
    scfg = scratch_config(role, methods, preset=preset, data=data, cfg=cfg)
    return make_spec(methods[SCRATCH], scfg, dataset=dataset, data=data, rep=rep, base_seed=base_seed,
                     preset=preset, methods=methods, device=device, precision=precision)


def plan(infos: Iterable[MethodInfo], *, data: dict[str, Any] | list[str], reps: int, preset: str, base_seed: int,
         overrides: dict[str, dict[str, Any]] | None = None, grids: dict[str, list[dict[str, Any]]] | None = None,
         methods: dict[str, MethodInfo] | None = None, rep_start: int = 0, device: str = "cpu",
         precision: str = "fp32") -> list[RunSpec]:
    """Specs for every (method, configuration, dataset, repetition), the runs they require, and the scratch
    students their roles pair with; required runs come before the runs that need them.

    ``data`` maps each dataset name to the loaded dataset (its shape and sizes adapt configurations and roles), or
    lists the names (loaded here at the preset's budget). ``device``, ``precision``: where every run trains.
    ``overrides`` maps a method name to its ``--set`` values; ``grids`` maps a method name to a list of parameter
    dicts (an ablation), each applied on top of the overrides. Every value is validated here, before anything runs.
    """
    methods = methods or discover()
    if not isinstance(data, dict):
        data = load(data, preset, device=device)
    specs: dict[str, RunSpec] = {}
    for info in infos:
        points = (grids or {}).get(info.name) or [{}]
        for point, (dataset, loaded), rep in itertools.product(points, data.items(),
                                                               range(rep_start, rep_start + reps)):
            cfg = configuration.resolve(info.cls, preset, {**(overrides or {}).get(info.name, {}), **point},
                                        loaded)
            on = {"device": device, "precision": precision}
            spec = make_spec(info, cfg, dataset=dataset, data=loaded, rep=rep, base_seed=base_seed, preset=preset,
                             methods=methods, specs=specs, **on)
            specs.setdefault(spec.run_id, spec)
            for role in info.cls().roles(cfg, loaded).values():
                if role.scratch is not None and SCRATCH in methods:
                    s = scratch_spec_for(role, methods, dataset=dataset, data=loaded, rep=rep, base_seed=base_seed,
                                         preset=preset, cfg=cfg, **on)
                    specs.setdefault(s.run_id, s)
                if smoothed(role, info, methods):
                    scfg = partner_config(SMOOTHING, role, methods, preset=preset, data=loaded, cfg=cfg)
                    s = make_spec(methods[SMOOTHING], scfg, dataset=dataset, data=loaded, rep=rep,
                                  base_seed=base_seed, preset=preset, methods=methods, **on)
                    specs.setdefault(s.run_id, s)
    return order(list(specs.values()))


def levels(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """The specs in phases, in their given order within a phase: each phase needs only runs of earlier phases
    (or runs outside the list)."""
    by_id = {s.run_id: s for s in specs}
    depth: dict[str, int] = {}

    def level(spec: RunSpec) -> int:
        if spec.run_id not in depth:
            needed = [by_id[r] for r in spec.requires.values() if r in by_id]
            depth[spec.run_id] = 1 + max((level(s) for s in needed), default=-1)
        return depth[spec.run_id]

    phases: list[list[RunSpec]] = []
    for spec in specs:
        d = level(spec)
        phases.extend([] for _ in range(d + 1 - len(phases)))
        phases[d].append(spec)
    return phases


def order(specs: list[RunSpec]) -> list[RunSpec]:
    """Every spec after the specs it requires (that are in the list)."""
    return [spec for phase in levels(specs) for spec in phase]
