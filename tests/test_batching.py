"""Repetitions trained as one batch compute, bit for bit, what each repetition computes alone: the stacked model
against R = 1 and against the plain module, and whole runs with and without --no-batch-reps."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from benchmark import nn as layers
from benchmark.engine.discovery import discover
from benchmark.engine.stacked import Stacked, stackable
from tests.conftest import run_main
from tests.projects import make_project

discover()  # registers the methods' architectures
CASES = [("hinton_student", (64,), 16), ("hinton_teacher", (64,), 16), ("kl_cnn", (1, 8, 8), 8),
         ("kl_mlp", (64,), 8), ("js_cnn", (1, 8, 8), 16), ("js_mlp_b", (20,), 16), ("js_cnn", (1, 40), 8),
         ("subclass_mlp", (64,), 16), ("subclass_cnn", (1, 8, 8), 16)]
R, STEPS = 3, 4


def batches(shape, size, r):
    gen = torch.Generator().manual_seed(100 + r)
    return [(torch.randn(size, *shape, generator=gen), torch.randint(0, 10, (size,), generator=gen))
            for _ in range(STEPS)]


def train_stacked(models, reps, data, generators=True):
    stacked = Stacked(models, [torch.Generator().manual_seed(7 + r) for r in reps] if generators else None)
    stacked.train()
    opt = torch.optim.Adam(list(stacked.parameters()), lr=1e-2, eps=1e-7)
    for s in range(STEPS):
        out = stacked([data[r][s][0] for r in reps])
        loss = sum(F.cross_entropy(out[j], data[r][s][1]) for j, r in enumerate(reps))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return stacked.unstack()


def train_plain(model, data):
    """The plain module, with its convolutions' kernels and inputs channels-last as the stacked model keeps them."""
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-7)
    for x, y in data:
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


pytestmark = pytest.mark.usefixtures("one_thread")  # bits are compared: one torch thread (conftest)


@pytest.mark.parametrize("arch,shape,size", CASES, ids=[f"{a}{s}" for a, s, _ in CASES])
def test_a_repetition_trains_the_same_in_a_batch_alone_and_as_a_plain_module(arch, shape, size):
    models = [layers.build(arch, shape, 10, generator=torch.Generator().manual_seed(r)) for r in range(R)]
    assert all(stackable(m) for m in models)
    data = [batches(shape, size, r) for r in range(R)]
    together = train_stacked([copy.deepcopy(m) for m in models], list(range(R)), data)
    for r in range(R):
        alone = train_stacked([copy.deepcopy(models[r])], [r], data)[0]
        assert same(together[r], alone), f"repetition {r}: batched != alone"
        assert not same(together[r], models[r])  # it did train
    # Without dropout, the stacked path is the plain module's arithmetic.
    plain_models = [layers.build(arch, shape, 10, generator=torch.Generator().manual_seed(r),
                                 **({"dropout": 0.0} if "dropout" in str(models[0]).lower() else {}))
                    for r in range(R)]
    together = train_stacked([copy.deepcopy(m) for m in plain_models], list(range(R)), data)
    for r in range(R):
        assert same(together[r], train_plain(copy.deepcopy(plain_models[r]), data[r]))


def test_which_models_stack():
    assert not stackable(layers.build("ska_stack", (64,), 10))  # updated in place by SKA, without autograd
    assert stackable(layers.build("subclass_mlp", (64,), 10, subclasses=2))  # a wrapper with stack_inner
    assert stackable(layers.build("subclass_mlp", (64,), 10))


def test_a_wrapped_network_gives_both_of_its_outputs_stacked():
    models = [layers.build("subclass_mlp", (64,), 10, subclasses=3, generator=torch.Generator().manual_seed(r))
              for r in range(2)]
    stacked = Stacked(models).eval()
    xs = [torch.randn(5, 64), torch.randn(5, 64)]
    with torch.no_grad():
        for call in (None, "subclass_logits"):
            out = stacked(xs, call)
            for r in range(2):
                expected = models[r].eval()(xs[r]) if call is None else models[r].subclass_logits(xs[r])
                assert torch.equal(out[r], expected)


def _records(out):
    return {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}


@pytest.mark.slow  # whole runs, about 25 s; the arithmetic it rests on is checked per architecture above
def test_batched_and_unbatched_runs_store_identical_metrics(tmp_path):
    args = ("run", "kl_entanglement", "hinton_kd", "--datasets", "digits", "--preset", "smoke", "--seeds", "2",
            "--no-progress", "--jobs", "1")
    batched, alone = tmp_path / "batched", tmp_path / "alone"
    assert run_main(*args, "--out", str(batched)).returncode == 0
    assert run_main(*args, "--out", str(alone), "--no-batch-reps").returncode == 0
    a, b = _records(batched), _records(alone)
    assert a.keys() == b.keys()  # the same runs: batching is not part of a run's identity
    trained_together = [r for r in a.values() if "batch" in r]
    assert {r["method"] for r in trained_together} >= {"kl_entanglement", "hinton_kd", "scratch_student"}
    assert all(len(r["batch"]["reps"]) == 2 for r in trained_together)
    assert not any("batch" in r for r in b.values())
    for run_id in a:
        assert a[run_id]["metrics"] == b[run_id]["metrics"], a[run_id]["method"]


UNORDERED = '''
from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.contract import MethodBase, Role


@dataclass
class Config:
    epochs: int = 2  # epochs


class Method(MethodBase):
    name = "{name}"
    Config = Config

    def roles(self, cfg, data):
        return {{"student": Role("hinton_student", "flat")}}

    def train(self, run, cfg):
        def step(b):  # two updates of one model in a step: the second forward needs the first update applied
            b.update({{"student": {{"loss": F.cross_entropy(b.forward("student"), b.y)}}}})
            b.update({{"student": {{"loss": F.cross_entropy(b.forward("student"), b.y)}}}})

        return run.fit({{"student": run.build("hinton_student", "flat")}}, step, epochs=cfg.epochs,
                       batch_size=64, lr=1e-3)
'''


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_a_step_that_needs_its_own_order_trains_one_repetition_at_a_time(tmp_path):
    project = make_project(tmp_path, {"twice": UNORDERED})
    env = {"BENCHMARK_PROJECT_ROOT": str(project)}
    args = ("run", "twice", "--datasets", "digits", "--preset", "smoke", "--seeds", "2", "--no-progress", "--jobs", "1")
    assert run_main(*args, "--out", str(tmp_path / "a"), env=env).returncode == 0
    assert run_main(*args, "--out", str(tmp_path / "b"), "--no-batch-reps", env=env).returncode == 0
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert all(r["status"] == "ok" and "batch" not in r for r in a.values())
    assert {k: r["metrics"] for k, r in a.items()} == {k: r["metrics"] for k, r in b.items()}


# No test compares the logits of two batch shapes bit for bit: a CPU's kernels may block a product by the batch's
# shape (AVX-512 and AMX machines do), so a batch evaluated whole and in chunks can differ in the last bits. The
# harness instead evaluates every split in one chunking, checked here.

def _sizes_seen(model):
    seen = []
    model[0].register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))  # features() too
    return seen


def test_every_evaluation_of_a_split_uses_one_chunking(tmp_path):
    from tests.projects import run_context

    run, _ = run_context(tmp_path, "scratch_student")
    chunk = run.eval_chunk
    model = layers.build("hinton_student", (64,), 10, generator=torch.Generator().manual_seed(3))
    seen = _sizes_seen(model)
    n = run.data.size("train")
    assert n > 2 * chunk  # the split needs several chunks and a remainder for the check to mean anything
    expected = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    logits = run.logits(model, "flat", "train")
    assert seen == expected
    seen.clear()
    hidden = run.features(model, "flat", "train", "hidden1")
    assert seen == expected
    seen.clear()
    run.evaluate(model, "flat", "train")
    assert seen == expected
    # The same shapes give the same bits: each chunk on its own, joined, is what the harness returns.
    x = run.view("flat", "train")
    with torch.no_grad():
        by_hand = torch.cat([model.eval()(x[i:i + chunk]) for i in range(0, n, chunk)])
    assert torch.equal(logits, by_hand) and hidden.shape == (n, hidden.shape[1])
    # A probe's per-layer outputs (a list) are joined layer by layer, in the same chunks.
    pieces = run.in_chunks(lambda v: [v[:, :2], v[:, 2:5]], x)
    assert [tuple(p.shape) for p in pieces] == [(n, 2), (n, 3)]
    assert torch.equal(pieces[0], x[:, :2]) and torch.equal(pieces[1], x[:, 2:5])

