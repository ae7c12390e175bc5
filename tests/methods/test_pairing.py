"""Every role a method pairs with a scratch student, built through the harness for the same repetition: a role
declared ``pairing="init"`` starts from its scratch student's weights, bit for bit, in every layer before the head
(a head sized by a build option, as subclass_kd's C*S outputs, may differ), and sees the same batch order; a role
that cannot must declare ``pairing="order"``."""

from __future__ import annotations

import pytest
import torch

from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, prepare
from benchmark.engine.plan import scratch_spec_for
from benchmark.store import Store
from tests.projects import run_context

METHODS = discover()
PAIRED = sorted(n for n, i in METHODS.items() if i.ok and i.kind == "method")


def tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers in registration order (a wrapped net's keys carry a prefix, its order is the same)."""
    return list(model.state_dict().values())


@pytest.mark.parametrize("name", PAIRED)
def test_init_paired_roles_start_from_their_scratch_students_weights(name, tmp_path):
    run, cfg = run_context(tmp_path, name, "smoke")
    paired = {role: r for role, r in run.roles.items() if r.scratch is not None}
    for role, declared in paired.items():
        spec = scratch_spec_for(declared, METHODS, dataset="digits", rep=0, base_seed=0, preset="smoke", cfg=cfg)
        _, scratch_cfg, _, _, scratch = prepare(spec, Settings(store=Store(tmp_path)), METHODS)
        assert scratch.seed == run.seed and scratch.data.size("train") == run.data.size("train")
        for epoch in (0, 1):  # the same batch order
            ours, theirs = (list(r.batches(64, epoch=epoch, timed=False)) for r in (run, scratch))
            assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
        if declared.pairing == "order":
            continue
        ours = tensors(run.build(declared.arch, declared.view, init=declared.init, **declared.options))
        theirs = tensors(scratch.build(scratch_cfg.arch, scratch_cfg.view, init=scratch_cfg.init))
        assert len(ours) == len(theirs), role
        body = len(ours) - 2 if declared.options else len(ours)  # an option-sized head: weight and bias
        for i, (a, b) in enumerate(zip(ours[:body], theirs[:body], strict=True)):
            assert a.shape == b.shape and torch.equal(a, b), f"{name} {role}: tensor {i} differs from the scratch's"
