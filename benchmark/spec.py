"""A run's identity: what it is (method, resolved config, dataset, repetition, data budget, source) and the ids and
seeds derived from it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from benchmark import config as configuration
from benchmark.discovery import MethodInfo


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=list, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


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
    source_hash: str = ""

    @property
    def seed(self) -> int:
        """Derived from (base seed, dataset, repetition) only, so every method sees the same initialisation and
        batch order for repetition r: comparisons with the scratch student are paired."""
        return derive_seed(self.base_seed, self.dataset, self.rep)

    @property
    def run_id(self) -> str:
        return stable_hash({
            "method": self.method, "kind": self.kind, "dataset": self.dataset, "rep": self.rep,
            "base_seed": self.base_seed, "config": self.config, "data": self.data, "source": self.source_hash,
        })

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def config_to_dict(cfg) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=list))


def config_from_dict(info: MethodInfo, values: dict[str, Any]):
    """Rebuild a Config from its stored dict (JSON lists become the annotated tuples again)."""
    return configuration.apply_overrides(info.cls.Config(), values, where=info.name)


def make_spec(info: MethodInfo, cfg, *, dataset: str, rep: int, base_seed: int, preset: str) -> RunSpec:
    return RunSpec(
        method=info.name, kind=info.kind, dataset=dataset, rep=rep, base_seed=base_seed, preset=preset,
        config=config_to_dict(cfg), data=dict(configuration.DATA_PRESETS[preset]),
        variant=configuration.variant_name(info.cls, preset, cfg), source_hash=info.source_hash,
    )


def pair_key(scratch_config: dict[str, Any]) -> str:
    """Key that joins a method's role with the scratch-student run of the same architecture, view and recipe."""
    return stable_hash(scratch_config, 12)
