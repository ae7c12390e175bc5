"""The suite on a GPU: what only CUDA can show. Every test here carries the ``cuda`` marker and is skipped without
a GPU; ``tox -e gpu`` (or ``python -m pytest -m cuda``) runs them, and scripts/gpu/measure.sh runs them first.

They check what the README promises for a GPU: a run starts from the CPU's initial weights and batch order, two
runs of one seed on the GPU are bit-identical (and ``reproduce`` says so), no step waits for the GPU on the host,
packed convolutions compute the loop's values, the accelerator backend trains a suite with several workers, and
the profile reports the GPU's kernels."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from benchmark import nn as layers
from benchmark.cli import main
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings, execute, prepare
from benchmark.engine.plan import plan
from benchmark.engine.stacked import Stacked
from benchmark.engine.timing import StepTimer
from benchmark.store import Store

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (tox -e gpu)")]
METHODS = discover()


def _spec(method: str, device: str):
    specs = plan([METHODS[method]], data=["digits"], reps=1, preset="smoke", base_seed=0, methods=METHODS,
                 device=device)
    return next(s for s in specs if s.method == method)


def _suite(out, *extra):
    args = ["run", "hinton_kd", "--datasets", "digits", "--preset", "smoke", "--seeds", "2", "--device", "cuda",
            "--out", str(out), "--no-progress", *extra]
    assert main(args) == 0


def _metrics(out) -> dict:
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    return {r["run_id"]: r["metrics"] for r in records}


def test_a_gpu_run_starts_from_the_cpus_weights_and_batches(tmp_path):
    runs = {}
    for device in ("cpu", "cuda"):
        spec = _spec("scratch_student", device)
        *_, run = prepare(spec, Settings(store=Store(tmp_path / device)), METHODS)
        model = run.build(spec.config["arch"], spec.config["view"])
        order = [idx.cpu() for idx in run.batches(64, epoch=3, timed=False)]
        runs[device] = (model, order, run)
    (cpu_model, cpu_order, _), (gpu_model, gpu_order, gpu_run) = runs["cpu"], runs["cuda"]
    assert next(gpu_model.parameters()).is_cuda and gpu_run.view("flat", "train").is_cuda
    for a, b in zip(cpu_model.state_dict().values(), gpu_model.state_dict().values(), strict=True):
        assert torch.equal(a, b.cpu())
    assert all(torch.equal(a, b) for a, b in zip(cpu_order, gpu_order, strict=True))


def test_two_runs_of_one_seed_are_bit_identical_whatever_the_workers_and_reproduce(tmp_path, capsys):
    """Three GPU workers of the accelerator backend, then one: the same numbers, bit for bit; and reproduce."""
    _suite(tmp_path / "a", "--jobs", "3")
    _suite(tmp_path / "b", "--jobs", "1")
    first, second = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert first == second and len(first) == 6  # teacher, student, scratch student, x 2 repetitions
    records = [json.loads(p.read_text()) for p in (tmp_path / "a" / "runs").glob("*.json")]
    assert all(r["status"] == "ok" and r["device"] == "cuda" for r in records)
    assert all(r.get("batch") for r in records)  # the 2 repetitions of each configuration packed
    record = next(r for r in records if r["method"] == "hinton_kd")
    assert record["provenance"]["gpu"] and record["provenance"]["cuda"]
    capsys.readouterr()
    assert main(["reproduce", record["run_id"], "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "identical, bit for bit" in out and "packed with" in out
    assert (tmp_path / "a" / "published" / "tables" / "summary.csv").is_file()


class NoSyncTimer(StepTimer):
    """Makes any host synchronisation inside a step an error (torch's sync debug mode, on between the hooks)."""

    def before_step(self):
        torch.cuda.set_sync_debug_mode("error")

    def after_step(self, seconds, samples):
        torch.cuda.set_sync_debug_mode("default")
        super().after_step(seconds, samples)

    def abort_step(self):
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("method", ["scratch_student", "hinton_kd", "js_entanglement", "kl_entanglement"])
def test_no_step_waits_for_the_gpu(tmp_path, method):
    spec = _spec(method, "cuda")
    settings = Settings(store=Store(tmp_path))
    for needed in (s for s in plan([METHODS[method]], data=["digits"], reps=1, preset="smoke", base_seed=0,
                                   methods=METHODS, device="cuda") if s.run_id in spec.requires.values()):
        assert execute(needed, settings, METHODS)["status"] == "ok"
    method_obj, cfg, _, _, run = prepare(spec, settings, METHODS)
    run.timer = NoSyncTimer(warmup=0, clock=run.timer.clock)
    try:
        method_obj.train(run, cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert run.timer.summary()["steps"] > 0


@pytest.mark.parametrize("arch, shape, size", [("js_cnn", (1, 28, 28), 128), ("subclass_cnn", (1, 28, 28), 256),
                                               ("kl_cnn", (1, 28, 28), 8), ("js_cnn", (1, 40), 64)])
def test_packed_convolutions_on_the_gpu_compute_the_loops_values(arch, shape, size):
    models = [layers.build(arch, shape, 10, generator=torch.Generator().manual_seed(r)).double().cuda()
              for r in range(4)]
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(size, *shape, generator=gen, dtype=torch.float64).cuda() for _ in models]
    ys = [torch.randint(0, 10, (size,), generator=gen).cuda() for _ in models]
    grads = {}
    for packed in (False, True):
        stacked = Stacked([copy.deepcopy(m) for m in models], packed=packed).train()
        out = stacked(xs)
        sum(F.cross_entropy(out[r], ys[r]) for r in range(len(models))).backward()
        grads[packed] = (out.detach(), [p.grad for p in stacked.parameters()])
    torch.testing.assert_close(grads[True][0], grads[False][0], rtol=1e-9, atol=1e-9)
    loop = torch.cat([g.flatten() for g in grads[False][1]])
    packed = torch.cat([g.flatten() for g in grads[True][1]])
    torch.testing.assert_close(packed, loop, rtol=1e-9, atol=1e-9)
    assert Stacked(models).packed  # what the harness uses on a GPU


def test_the_profile_reports_gpu_kernels_and_packed_steps(tmp_path, capsys):
    assert main(["profile", "--methods", "scratch_student", "--datasets", "digits", "--preset", "smoke",
                 "--repeats", "1", "--steps", "10", "--warmup", "3", "--batched-reps", "8", "--device", "cuda",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    doc = json.loads((tmp_path / "profiles" / "profile.json").read_text())
    (row,) = [r for r in doc["rows"] if r["target"] == "scratch_student"]
    assert row["status"] == "ok" and row["kernels"] and row["per_rep_ms_R8"] > 0
    assert doc["machine"]["gpu"] and doc["machine"]["tf32_peak_gflops"] > 0
