"""A suite command's grid: which methods, configurations, datasets and repetitions it plans.

The datasets are loaded at the preset's budget before anything is planned (their shapes and sizes adapt the
configurations). A dataset that is missing or corrupt when named is bad input; one not named (every dataset found
here) that turns out corrupt is skipped with one line, like a missing one. One whose module fails in any other way
is left out with one line and its failure is reported at the end, while the other datasets run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmark import data
from benchmark.contract import required_method
from benchmark.engine import budget
from benchmark.engine import config as configuration
from benchmark.engine.discovery import MethodInfo
from benchmark.engine.plan import plan
from benchmark.engine.spec import RunSpec
from benchmark.errors import BadInput, DatasetUnavailable, one_line
from benchmark.suite.request import SuiteRequest


def lookup(methods: dict[str, MethodInfo], name: str) -> MethodInfo:
    """The loadable method or baseline ``name``; BadInput naming the choices or why it does not load."""
    if name not in methods:
        raise BadInput(f"unknown method {name!r}: `python -m benchmark list` shows {', '.join(methods)}")
    info = methods[name]
    if not info.ok:
        raise BadInput(f"{info.kind} {name!r} cannot be loaded: {info.error}")
    return info


def ablation_points(axes: dict[str, list], grid: bool = False) -> list[dict]:
    """The configurations of an ablation: the defaults, then each factor's levels one at a time with every other
    factor at its default (``grid``: the full product of the levels). A level equal to the default is the default
    configuration itself (the planner plans it once)."""
    if grid:
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    return [{}] + [{key: value} for key, values in axes.items() for value in values]


def parse_params(items: list[str]) -> dict[str, list[str]]:
    """``--param KEY=V1,V2`` items -> {KEY: [V1, V2]}; BadInput for a malformed or repeated KEY."""
    axes: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        levels = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not levels:
            raise BadInput(f"--param takes KEY=V1,V2,..., got {item!r}")
        if key in axes:
            raise BadInput(f"--param {key} is given twice: list every level once, --param {key}=V1,V2,...")
        axes[key] = levels
    return axes


def audit_points(info: MethodInfo, request: SuiteRequest, overrides: dict[str, Any], factor: float) -> list[dict]:
    """The default configuration, and the same at ``factor`` times its training budget (its budget fields scaled:
    :mod:`benchmark.engine.budget`); only the default for a configuration without a budget field."""
    longer = budget.scaled(info, configuration.resolve(info.cls, request.preset, overrides), factor)
    return [{}, longer] if longer else [{}]


def required_audit_points(infos: list[MethodInfo], methods: dict[str, MethodInfo], request: SuiteRequest,
                          overrides: dict[str, dict[str, Any]], factor: float) -> dict[str, list[dict]]:
    """{method or baseline: points}: each configuration that the default configuration of one of ``infos``
    requires from another method (attention_transfer's teacher with its own architecture, say) and that is not
    that method's default, with the same at ``factor`` times its budget. The audit scales a method's own default
    configuration; the runs it requires keep theirs (a student is audited against the same teacher), so a required
    variant is audited as a configuration of its own, as the default teacher is. A method's earlier runs of its own
    (born_again's generations) are scaled with it, and a variant without a budget field only runs once."""
    out: dict[str, list[dict]] = {}
    for info in infos:
        cfg = configuration.resolve(info.cls, request.preset, overrides.get(info.name, {}))
        for key, needed in info.cls().requires(cfg).items():
            name = required_method(key)
            base = methods.get(name)
            if name == info.name or base is None or not base.ok:
                continue
            given = {**overrides.get(name, {}), **needed}
            resolved = configuration.resolve(base.cls, request.preset, given)
            default = configuration.resolve(base.cls, request.preset, overrides.get(name, {}))
            if resolved == default:
                continue
            points = out.setdefault(name, [])
            longer = budget.scaled(base, resolved, factor)
            for point in ([dict(needed), {**needed, **longer}] if longer else [dict(needed)]):
                if point not in points:
                    points.append(point)
    return out


def defect_points(info: MethodInfo) -> list[dict]:
    """The default configuration and each declared notebook defect alone."""
    return ablation_points({name: [value] for name, (value, _) in info.cls.notebook_defects.items()})


@dataclass
class Datasets:
    """The datasets of a suite, loaded; and those that could not be, with why (one line each)."""

    loaded: dict[str, data.Dataset] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)


def select_datasets(request: SuiteRequest, warn: Callable[[str], None]) -> Datasets:
    """The datasets of the grid at the preset's budget. Named ones must be known and present (else BadInput);
    unnamed ones are every dataset found here (``warn`` says which were skipped and how to get them)."""
    chosen = Datasets()
    for name in _candidates(request, warn):
        try:
            chosen.loaded[name] = data.load_dataset(name, request.data_root, request.download,
                                                    **configuration.DATA_PRESETS[request.device][request.preset])
        except (DatasetUnavailable, BadInput) as exc:
            if request.datasets is None:  # not asked for, found here but unreadable: skipped, like a missing one
                warn(f"skipping dataset {name}: {exc}")
                continue
            raise BadInput(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a dataset module's own bug: that dataset fails, not the suite
            chosen.unreadable[name] = one_line(exc)
            warn(f"dataset {name} cannot be read ({one_line(exc)}): its runs are left out")
    if not chosen.loaded:
        if chosen.unreadable:
            raise BadInput(f"no dataset could be read: {'; '.join(f'{k}: {v}' for k, v in chosen.unreadable.items())}")
        raise BadInput("no dataset is available: see `python -m benchmark list` for how to get one")
    return chosen


def _candidates(request: SuiteRequest, warn: Callable[[str], None]) -> list[str]:
    if request.datasets is not None:
        names = list(dict.fromkeys(n.strip() for n in request.datasets.split(",") if n.strip()))
        for name in names:
            if not data.is_known(name):
                raise BadInput(f"unknown dataset {name!r}: choose from {', '.join(data.dataset_names())} "
                               "(or a superclass task such as digits:2x5)")
            ok, fix = _availability(name, request)
            if not ok and not request.download:
                raise BadInput(fix)
        return names
    chosen = []
    for name in data.dataset_names():
        ok, fix = _availability(name, request)
        if ok:
            chosen.append(name)
        else:
            warn(f"skipping dataset {name}: {fix}")
    return chosen


def _availability(name: str, request: SuiteRequest) -> tuple[bool, str]:
    try:
        return data.availability(name, request.data_root)
    except Exception as exc:  # noqa: BLE001 - a dataset module whose locate() fails is not available
        return False, f"dataset {name!r} cannot be located ({one_line(exc)})"


def split_overrides(sets, infos: list[MethodInfo]) -> dict[str, dict[str, str]]:
    """``--set`` values per method: ``KEY=V`` goes to every selected method that has KEY, ``METHOD.KEY=V`` to one."""
    per: dict[str, dict[str, str]] = {i.name: {} for i in infos}
    names = {i.name: i for i in infos}
    for key, value in configuration.parse_assignments(list(sets or ())).items():
        scope, dot, name = key.rpartition(".")
        if dot:
            if scope not in names:
                raise BadInput(f"--set {key}: {scope!r} is not among the selected methods ({', '.join(names)})")
            per[scope][name] = value
            continue
        takers = [n for n, i in names.items() if key in configuration.field_types(i.cls.Config)]
        if not takers:
            raise BadInput(f"--set {key}: no selected method has a parameter {key!r}")
        if len(names) == 1:
            takers = list(names)
        for n in takers:
            per[n][key] = value
    return per


@dataclass
class Grid:
    """The methods of a command on its datasets, with their overrides and configuration points."""

    request: SuiteRequest
    infos: list[MethodInfo]
    methods: dict[str, MethodInfo]
    datasets: Datasets
    overrides: dict[str, dict[str, Any]]
    points: dict[str, list[dict]] | None = None  # per method: its ablation or defect configurations

    def specs(self, reps: int, rep_start: int = 0, infos: list[MethodInfo] | None = None,
              points: dict[str, list[dict]] | None = None) -> list[RunSpec]:
        """Every run of ``infos`` (default: the grid's) at repetitions ``rep_start`` .. ``rep_start + reps - 1``,
        with the runs they require and the scratch students they pair with, each after what it needs."""
        r = self.request
        return plan(infos or self.infos, data=self.datasets.loaded, reps=reps, rep_start=rep_start, preset=r.preset,
                    base_seed=r.base_seed, overrides=self.overrides, grids=points or self.points,
                    methods=self.methods, device=r.device, precision=r.precision)


def build_grid(request: SuiteRequest, infos: list[MethodInfo], methods: dict[str, MethodInfo],
               points: dict[str, list[dict]] | None, warn: Callable[[str], None]) -> Grid:
    """The grid of a command, every value checked (BadInput) before anything is written."""
    request.check()
    chosen = select_datasets(request, warn)
    overrides = split_overrides(request.sets, infos)
    if request.as_published:
        overrides = {name: {**methods[name].cls.as_published, **values} for name, values in overrides.items()}
    return Grid(request, infos, methods, chosen, overrides, points)
