"""What runs when: the plan's runs as tasks, each after the runs it requires, longest expected first.

A task is one run, or the repetitions of one configuration trained together (see :func:`tasks`). Its expected time
comes from the store (the median wall time of earlier runs of the same method, configuration, dataset and data
budget, whatever their code version) or, for a kind never run here, its steps times a step time measured before
the plan (:mod:`benchmark.runner.probe`: the method's real step, its loss included), else a FLOP estimate of its
models times its steps. Tasks are handed out by *bottom level*: a task's own expected time plus the longest chain
of tasks waiting on it, so the shared teacher starts first and the longest runs do not end up alone at the tail with
idle cores.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark import nn as layers
from benchmark.engine.execute import dataset_budget
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.engine.stacked import stackable
from benchmark.runner.probe import Measured

# A step's cost in seconds for a FLOP estimate: FLOPs / THROUGHPUT + OVERHEAD per model (one torch thread; the
# small models of the notebooks are dominated by per-operator overhead).
THROUGHPUT = 15e9
OVERHEAD_S = 1.5e-3
UNKNOWN_S = 30.0  # a run whose cost cannot be estimated


@dataclass
class Task:
    specs: list[RunSpec]
    expected_s: float = UNKNOWN_S
    needs: set[str] = field(default_factory=set)  # run ids (outside this task) that must finish first
    priority: float = 0.0  # bottom level, seconds

    @property
    def ids(self) -> list[str]:
        return [s.run_id for s in self.specs]

    def label(self) -> str:
        s = self.specs[0]
        reps = ",".join(str(x.rep) for x in self.specs)
        return f"{s.method}/{s.dataset}/r{reps}"


def kind(spec: RunSpec) -> str:
    """Runs of the same kind cost about the same: method, configuration, dataset, preset, data budget and device
    (a CPU run's time says nothing of a GPU run's)."""
    fields = [spec.method, spec.config, spec.dataset, spec.preset, spec.data]
    if spec.device != "cpu":
        fields.append(spec.device)
    return json.dumps(fields, sort_keys=True)


def history(records: Iterable[dict]) -> dict[str, float]:
    """Median wall time per kind over the ok runs in the store."""
    times: dict[str, list[float]] = {}
    for r in records:
        if r.get("status") == "ok" and isinstance(r.get("wall_time_s"), (int, float)):
            try:
                spec = RunSpec.from_dict(r)
            except (KeyError, TypeError):
                continue
            times.setdefault(kind(spec), []).append(float(r["wall_time_s"]))
    return {k: statistics.median(v) for k, v in times.items()}


def stopping_fractions(records: Iterable[dict]) -> dict[str, float]:
    """Per method, the median fraction of its epoch cap that its early-stopped runs in the store trained (epochs
    with a learning curve over the config's ``epochs``), over the ok runs whose config has a ``patience``: what an
    early-stopped run of that method, never timed here, is expected to train of its cap."""
    fractions: dict[str, list[float]] = {}
    for r in records:
        config = r.get("config") or {}
        cap, patience = config.get("epochs"), config.get("patience")
        if r.get("status") != "ok" or patience is None or not isinstance(cap, int) or cap <= 0:
            continue
        epochs = [m[1] for m in r.get("metrics") or () if isinstance(m, list) and len(m) == 4
                  and isinstance(m[1], int) and m[1] >= 0]
        if epochs:
            fractions.setdefault(r.get("method"), []).append(min((max(epochs) + 1) / cap, 1.0))
    return {method: statistics.median(v) for method, v in fractions.items()}


def tasks(specs: list[RunSpec], expected: dict[str, float], group=lambda spec: 1) -> list[Task]:
    """The specs as tasks with their dependencies and priorities. ``group(spec) > 1`` puts up to that many
    repetitions of the spec's configuration in one task, by repetition number (repetitions 0-4, 5-9, ... for 5),
    so that the same repetitions are batched together whatever else is planned; ``expected`` maps a run id to its
    expected seconds."""
    planned = {s.run_id for s in specs}  # a required run outside the list has finished before
    by_group: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_group.setdefault(spec.group, []).append(spec)
    out: list[Task] = []
    for members in by_group.values():
        size = max(int(group(members[0])), 1)
        chunks: dict[int, list[RunSpec]] = {}
        for spec in sorted(members, key=lambda s: s.rep):
            chunks.setdefault(spec.rep // size, []).append(spec)
        for chunk in chunks.values():
            own = {s.run_id for s in chunk}
            needs = ({r for s in chunk for r in s.requires.values()} & planned) - own
            out.append(Task(chunk, sum(expected.get(s.run_id, UNKNOWN_S) for s in chunk), needs))
    _prioritise(out)
    return out


def _prioritise(all_tasks: list[Task]) -> None:
    owner = {run_id: t for t in all_tasks for run_id in t.ids}
    waiting: dict[int, list[Task]] = {id(t): [] for t in all_tasks}
    for t in all_tasks:
        for run_id in t.needs:
            if run_id in owner:
                waiting[id(owner[run_id])].append(t)
    done: dict[int, float] = {}

    def level(t: Task) -> float:
        if id(t) not in done:
            done[id(t)] = math.inf  # a cycle cannot happen (ids hash what they require); guard anyway
            done[id(t)] = t.expected_s + max((level(w) for w in waiting[id(t)]), default=0.0)
        return done[id(t)]

    for t in all_tasks:
        t.priority = level(t)


class Queue:
    """Tasks handed out when every run they need has finished, highest bottom level first."""

    def __init__(self, all_tasks: list[Task]):
        self.pending = sorted(all_tasks, key=lambda t: -t.priority)
        self.finished: set[str] = set()
        self.failed: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.pending)

    def finish(self, run_id: str, ok: bool) -> None:
        (self.finished if ok else self.failed).add(run_id)

    def blocked(self) -> list[tuple[Task, list[str]]]:
        """Tasks that can never run (a run they need failed), removed from the queue with the failed ids."""
        out = []
        for t in list(self.pending):
            broken = sorted(t.needs & self.failed)
            if broken:
                self.pending.remove(t)
                out.append((t, broken))
        return out

    def pop_ready(self, accept: Callable[[Task], bool] | None = None) -> Task | None:
        """The first ready task (every run it needs finished) that ``accept`` takes (default: any), removed."""
        for t in self.pending:
            if t.needs <= self.finished and (accept is None or accept(t)):
                self.pending.remove(t)
                return t
        return None

    def has_ready(self) -> bool:
        """Whether a task is ready (every run it needs finished)."""
        return any(t.needs <= self.finished for t in self.pending)

    def push(self, task: Task) -> None:
        self.pending.append(task)
        self.pending.sort(key=lambda t: -t.priority)

    def drain(self) -> list[Task]:
        """Every task still waiting, removed from the queue."""
        out, self.pending = self.pending, []
        return out


def expected_seconds(specs: list[RunSpec], seen: dict[str, float], methods, data_root=None,
                     prober=None, fractions: dict[str, float] | None = None) -> dict[str, float]:
    """Run id -> expected seconds: the store's median for the spec's kind (``history``), else (once per kind) its
    steps times a step time measured by ``prober`` (:class:`benchmark.runner.probe.Prober`: the method's real step,
    its loss included), else the FLOP estimate, else UNKNOWN_S when even that cannot be made (a method that does not
    load, say). A run that stops early (its config has a ``patience``) is estimated at its method's ``fractions``
    of its cap (``stopping_fractions``), or at its whole cap when its method has none. ``measured`` and ``at_cap``
    (attributes of the result) hold the kinds whose step was measured and the early-stopped kinds estimated at
    their cap."""
    by_kind: dict[str, float] = dict(seen)
    out = Expected()
    for spec in specs:
        k = kind(spec)
        if k not in by_kind:
            try:
                method, cfg, data = _resolve(spec, methods[spec.method], data_root)
                measured = prober.measure(spec) if prober is not None else Measured()
                by_kind[k] = flop_estimate(spec, method, cfg, data, method.roles(cfg, data), step_s=measured.step_s,
                                           eval_s=measured.eval_s)
                if getattr(cfg, "patience", None) is not None:
                    fraction = (fractions or {}).get(spec.method)
                    if fraction is None:
                        out.at_cap.add(k)
                    else:
                        by_kind[k] *= fraction
                if measured.step_s is not None:
                    out.measured.add(k)
            except Exception:  # noqa: BLE001 - an estimate only orders runs; the run itself reports the error
                by_kind[k] = UNKNOWN_S
        out[spec.run_id] = by_kind[k]
    return out


class Expected(dict):
    """Run id -> expected seconds, and which kinds' steps were measured rather than estimated from FLOPs."""

    def __init__(self):
        super().__init__()
        self.measured: set[str] = set()
        self.at_cap: set[str] = set()


def _resolve(spec: RunSpec, info, data_root):
    """(method, cfg, dataset) of a spec, for estimating its cost."""
    return info.cls(), config_from_dict(info, spec.config), dataset_budget(spec, data_root)


def _model(role, data):
    return layers.build(role.arch, data.view_shape(role.view), data.num_classes, **role.options)


def forward_flops(model, data, view: str) -> float:
    """FLOPs of ``model``'s forward pass on one test example in ``view`` (eval mode, no gradient)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(data.view(view, "test")[:1])
    return float(counter.get_total_flops())


def flop_estimate(spec: RunSpec, method, cfg, data, roles, step_s: float | None = None,
                  eval_s: float | None = None) -> float:
    """Seconds a run should take from its budget (``Method.budget``): its steps times ``step_s``, a measured step
    time, or else times a step's cost from its models' FLOPs per example (a rough figure, blind to what the loss
    costs), plus evaluation each epoch: ``eval_s``, one epoch's evaluation measured here, or else from the FLOPs;
    used only for runs never timed here before."""
    epochs, batch_size = method.budget(cfg, data)
    n = data.size("train")
    steps = epochs * math.ceil(n / (batch_size or n))
    flops = sum(forward_flops(_model(role, data), data, role.view) for role in roles.values())
    evaluated = epochs * (data.size("val") + data.size("test"))
    evaluation = epochs * eval_s if eval_s is not None else flops * evaluated / THROUGHPUT
    if step_s is not None:
        return steps * step_s + evaluation
    # forward + backward = 3x the forward's FLOPs, per example of every step, plus evaluation each epoch
    return steps * OVERHEAD_S * max(len(roles), 1) + 3 * flops * epochs * n / THROUGHPUT + evaluation


# A configuration is trained with its repetitions batched when its models are stackable and a step is small:
# below this many forward FLOPs per repetition and step, a step's time on a CPU is mostly per-operator overhead,
# which a batch of repetitions shares; above it, a step is arithmetic and R repetitions cost R times one. A GPU
# packs every stackable configuration: one repetition's step is far from filling it (README, GPU section).
BATCH_MAX_FLOPS = 20e6


class Batching:
    """Decides, per configuration, how many repetitions train as one batch (the same answer for every run of the
    configuration, whatever is planned with it)."""

    def __init__(self, reps: int, methods, data_root=None):
        self.reps, self.methods, self.data_root = reps, methods, data_root
        self._flops: dict[tuple, float | None] = {}
        self._answers: dict[str, int] = {}

    def __call__(self, spec: RunSpec) -> int:
        if self.reps <= 1:
            return 1
        if spec.group not in self._answers:
            self._answers[spec.group] = self.reps if self._small(spec) else 1
        return self._answers[spec.group]

    def _small(self, spec: RunSpec) -> bool:
        info = self.methods.get(spec.method)
        if info is None or not info.ok:
            return False
        method, cfg, data = _resolve(spec, info, self.data_root)
        _, batch_size = method.budget(cfg, data)
        total = 0.0
        for role in method.roles(cfg, data).values():
            per_example = self._per_example(role, data)
            if per_example is None:
                return False
            total += per_example * (batch_size or data.size("train"))
        return spec.device == "cuda" or total < BATCH_MAX_FLOPS

    def _per_example(self, role, data) -> float | None:
        """Forward FLOPs of one example, or None when the role's model cannot be stacked."""
        key = (role.arch, role.view, data.name, json.dumps(role.options, sort_keys=True, default=list))
        if key not in self._flops:
            model = _model(role, data)
            self._flops[key] = forward_flops(model, data, role.view) if stackable(model) else None
        return self._flops[key]
