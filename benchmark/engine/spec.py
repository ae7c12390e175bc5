"""A run's identity: what it is (method, resolved config, dataset, repetition, data budget, the runs it requires,
the code it executes) and the ids and seeds derived from it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from benchmark.contract import WHEN_SET
from benchmark.engine import config as configuration
from benchmark.engine.discovery import MethodInfo
from benchmark.store.records import run_id_of, stable_hash


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any JSON-able parts; the same parts give the same seed in every process."""
    return int(stable_hash([str(p) for p in parts], 15), 16) % (2**31 - 1)


@dataclass(frozen=True)
class RunSpec:
    method: str
    kind: str
    dataset: str
    rep: int
    base_seed: int
    preset: str
    config: dict[str, Any] = field(hash=False)
    data: dict[str, Any] = field(hash=False)
    variant: str = "default"
    # Hash of every source file the run executes that can change its result (see benchmark.engine.code), and
    # the parts it is made of.
    source_hash: str = ""
    code: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # The runs whose trained models this run loads: {method or baseline name: run id}.
    requires: dict[str, str] = field(default_factory=dict, hash=False)
    # Where it trains: "cpu" or "cuda" (which GPU is not identity), and the precision of float32 products on
    # CUDA ("fp32", or "tf32" when asked for): a CPU result never answers a CUDA run, nor the reverse.
    device: str = "cpu"
    precision: str = "fp32"

    @property
    def seed(self) -> int:
        """Derived from (base seed, dataset, repetition) only, so every method sees the same initialisation and
        batch order for repetition r: comparisons with the scratch student are paired."""
        return derive_seed(self.base_seed, self.dataset, self.rep)

    @property
    def run_id(self) -> str:
        """The hash of the fields that define the run (the store checks it again in every record it reads)."""
        return run_id_of(vars(self))

    @property
    def group(self) -> str:
        """What a run has in common with its other repetitions (its id without the repetition)."""
        return stable_hash({
            "method": self.method, "dataset": self.dataset, "base_seed": self.base_seed, "config": self.config,
            "data": self.data, "source": self.source_hash, "preset": self.preset, "device": self.device,
            "precision": self.precision,
        })

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def config_to_dict(cfg) -> dict[str, Any]:
    """The configuration as stored and hashed; a field declared ``identity_when_set`` (one added after runs were
    recorded) is left out at its default, so a default run's identity keeps the fields it always had."""
    values = dataclasses.asdict(cfg)
    for f in dataclasses.fields(cfg):
        if f.metadata.get(WHEN_SET) and values[f.name] == f.default:
            del values[f.name]
    return json.loads(json.dumps(values, default=list))


def config_from_dict(info: MethodInfo, values: dict[str, Any]):
    """Rebuild a Config from its stored dict (JSON lists become the annotated tuples again)."""
    return configuration.apply_overrides(info.cls.Config(), values, where=info.name)


def data_budget(preset: str, cfg, device: str = "cpu") -> dict[str, Any]:
    """What a run trains and is tested on: the preset's caps on this kind of device, the configuration's validation
    split and, unless it is the whole training split, its transfer set."""
    budget = {**configuration.DATA_PRESETS[device][preset], "validation": configuration.validation_mode(cfg)}
    if configuration.transfer_mode(cfg) != "all":
        budget["transfer"] = configuration.transfer_mode(cfg)
    return budget


def pair_key(scratch_config: dict[str, Any]) -> str:
    """Key that joins a method's role with the scratch-student run of the same architecture, view and recipe."""
    return stable_hash(scratch_config, 12)
