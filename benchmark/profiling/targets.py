"""What ``python -m benchmark profile`` profiles (:func:`plan_targets`) and how (:class:`Options`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import data as datasets
from benchmark.engine import config as configuration
from benchmark.engine.discovery import MethodInfo
from benchmark.engine.plan import SCRATCH, scratch_spec_for
from benchmark.engine.spec import RunSpec, config_from_dict
from benchmark.profiling.measure import target_spec
from benchmark.profiling.reference import TEXTBOOK, TEXTBOOK_TORCHVISION


@dataclass
class Target:
    name: str
    kind: str  # method | baseline | reference
    spec: RunSpec | None  # None for the textbook loop
    scratch: list[str] = field(default_factory=list)  # targets whose summed step times the ratio divides by
    records: list[dict[str, Any]] = field(default_factory=list)  # timings, one per repeat
    instruments: dict[str, Any] = field(default_factory=dict)  # FLOPs of one step, the trace's top operators
    batched: dict[int, dict[str, Any]] = field(default_factory=dict)  # per R: R packed repetitions against one
    error: str | None = None


@dataclass
class Options:
    out: Path = Path("results")
    datasets: list[str] = field(default_factory=list)
    selected: list[tuple[MethodInfo, dict[str, Any]]] = field(default_factory=list)
    preset: str = "quick"
    warmup: int = 10
    steps: int = 50
    repeats: int = 5
    trace_steps: int = 10
    # Length of a target's turn. Long enough that what the previous turn leaves behind (cold caches, the
    # previous thread's OpenMP workers still spinning for a few ms) touches few of its steps, short enough that
    # the machine's load cannot change much within a round of turns.
    turn_s: float = 0.1
    top_ops: int = 8
    batched_reps: tuple[int, ...] = (5,)  # each R of the batched measurement (none, or (1,): not measured)
    batched_rounds: int = 3  # alternations of one and R repetitions
    reference: bool = True
    data_root: Path | None = None
    progress: bool = True
    device: str = "cpu"  # the kind the targets train on
    gpu: int | None = None  # which GPU (cuda; None: the current one)
    precision: str = "fp32"  # float32 products on CUDA: "fp32" or "tf32"

    def load(self, dataset: str):
        """``dataset`` at the preset's budget on the profiled kind of device."""
        return datasets.load_dataset(dataset, self.data_root, **configuration.DATA_PRESETS[self.device][self.preset])


def _name(spec: RunSpec) -> str:
    return spec.method if spec.variant == "default" else f"{spec.method}[{spec.variant}]"


def label(t: Target) -> str:
    """A short name for the figure: a paired scratch student by its architecture, view and batch size."""
    if t.spec is None or t.spec.method != SCRATCH or t.spec.variant == "default":
        return t.name
    c = t.spec.config
    return f"scratch[{c.get('arch')}, {c.get('view')}, batch {c.get('batch_size')}]"


def plan_targets(selected: list[tuple[MethodInfo, dict[str, Any]]], methods: dict[str, MethodInfo], *,
                 dataset: str, preset: str, reference: bool, device: str = "cpu",
                 precision: str = "fp32") -> dict[str, Target]:
    """The targets on ``dataset``: the selected configurations and the scratch students they pair with, on a
    ``device`` kind; the textbook loops (``reference``) on a CPU only (they measure a CPU's DataLoader)."""
    targets: dict[str, Target] = {}
    on = {"device": device, "precision": precision}

    def add(spec: RunSpec, kind: str) -> str:
        name = _name(spec)
        targets.setdefault(name, Target(name, kind, spec))
        return name

    has_scratch = SCRATCH in methods and methods[SCRATCH].ok
    default_scratch = None
    if has_scratch:
        default_scratch = add(target_spec(methods[SCRATCH], dataset=dataset, preset=preset, methods=methods, **on),
                              "baseline")
    data = datasets.load_dataset(dataset, **configuration.DATA_PRESETS[device][preset])
    for info, overrides in selected:
        spec = target_spec(info, dataset=dataset, preset=preset, overrides=overrides, methods=methods, **on)
        cfg = config_from_dict(info, spec.config)
        name = add(spec, info.kind)
        pairs = []
        for role in info.cls().roles(cfg, data).values():
            if role.scratch is not None and has_scratch:
                pairs.append(add(scratch_spec_for(role, methods, dataset=dataset, data=data, rep=0, base_seed=0,
                                                  preset=preset, cfg=cfg, **on), "baseline"))
        if info.name == SCRATCH:
            pairs = [name]
        elif not pairs and info.kind == "baseline" and default_scratch:
            pairs = [default_scratch]
        targets[name].scratch = pairs
    for t in targets.values():
        if t.spec is not None and t.spec.method == SCRATCH:
            t.scratch = [t.name]
    if reference and device == "cpu":
        pairs = [default_scratch] if default_scratch else []
        targets[TEXTBOOK] = Target(TEXTBOOK, "reference", None, pairs)
        if len(data.view_shape("image")) == 3 and data.view_shape("image")[0] in (1, 3):  # an image PIL can hold
            targets[TEXTBOOK_TORCHVISION] = Target(TEXTBOOK_TORCHVISION, "reference", None, pairs)
    return targets
