"""Throw-away project roots for tests: the real baselines plus method folders written by the test."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from tests.conftest import ROOT

METHOD_HEADER = '''
from dataclasses import dataclass
import os
import signal
import sys
import time

import torch
import torch.nn.functional as F

from benchmark.contract import MethodBase, Role
'''

# A small method whose training behaviour is set by its config: it can sleep per epoch, raise, or produce NaN.
FAULTY = METHOD_HEADER + '''

@dataclass
class Config:
    epochs: int = 2  # training epochs
    sleep: float = 0.0  # seconds slept per epoch, to make a run slow enough to be killed mid-way
    fail: bool = False  # raise inside train
    nan: bool = False  # multiply the loss by NaN
    exit: bool = False  # call sys.exit(0) inside train
    kill_rep: int = -1  # the repetition whose run SIGKILLs its own process (as an out-of-memory kill would)
    hang_rep: int = -1  # the repetition whose run sleeps for 1000 s


class Method(MethodBase):
    name = "{name}"
    Config = Config

    def roles(self, cfg, data):
        return {{"student": Role("hinton_student", "flat")}}

    def train(self, run, cfg):
        if cfg.fail:
            raise ValueError("this method failed on purpose")
        if cfg.exit:
            sys.exit(0)
        if run.rep == cfg.kill_rep:
            os.kill(os.getpid(), signal.SIGKILL)
        if run.rep == cfg.hang_rep:
            time.sleep(1000)
        model = run.build("hinton_student", "flat")

        def step(b):
            value = F.cross_entropy(b.forward("student"), b.y)
            b.update({{"student": {{"loss": value * float("nan") if cfg.nan else value}}}})

        for epoch in range(cfg.epochs):
            time.sleep(cfg.sleep)
            run.fit({{"student": model}}, step, epochs=1, batch_size=64, lr=1e-3)
        return {{"student": model}}
'''


def make_project(tmp_path: Path, methods: dict[str, str] | None = None) -> Path:
    """A project root with the real baselines and the given ``{name: method.py source}`` (``{name}`` filled)."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "baselines", project / "baselines", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "methods").mkdir()
    for name, source in (methods or {}).items():
        folder = project / "methods" / name
        folder.mkdir()
        (folder / "method.py").write_text(textwrap.dedent(source).format(name=name))
    return project


def run_context(out: Path, method: str, preset: str = "smoke", overrides: dict | None = None,
                dataset: str = "digits"):
    """(run context, config) of one planned run, as the executor builds it (required runs must be in ``out``)."""
    from benchmark.engine import config as configuration
    from benchmark.engine.discovery import discover
    from benchmark.engine.execute import Settings, prepare
    from benchmark.engine.plan import load, make_spec
    from benchmark.store import Store

    methods = discover()
    info = methods[method]
    data = load([dataset], preset)[dataset]
    cfg = configuration.resolve(info.cls, preset, overrides or {}, data)
    spec = make_spec(info, cfg, dataset=dataset, data=data, rep=0, base_seed=0, preset=preset, methods=methods)
    _, cfg, _, _, run = prepare(spec, Settings(store=Store(out)), methods)
    return run, cfg
