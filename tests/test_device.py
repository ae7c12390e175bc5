"""The device a run trains on, tested on a CPU: --device parsing and its refusals, the device kind in a run's
identity, the data presets per kind, the accelerator backend's placement of workers, the --jobs bound for GPU
workers, the event clock read once, the reporting's pairing by device, and the packed convolutions a GPU uses
computed on the CPU against the CPU's loop. What needs CUDA is in tests/test_cuda.py."""

import copy
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark import nn as layers
from benchmark.cli import main
from benchmark.cli.reproduce import batch_of, gpu_for, stored_run
from benchmark.engine import config as configuration
from benchmark.engine import device as devices
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.engine.stacked import Stacked
from benchmark.engine.timing import StepTimer
from benchmark.errors import BadInput
from benchmark.reporting.frames import load_results
from benchmark.runner.accelerator import AcceleratorBackend, spread
from benchmark.runner.local import LocalBackend
from benchmark.runner.runner import make_backend
from benchmark.store import Store, record_problem, run_id_of
from benchmark.suite import request as requests
from tests.test_tables import StoreBuilder

METHODS = discover()  # registers the methods' architectures
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has ``n`` GPUs of 16 GB (what choose() and the bounds ask)."""
    def pretend(n: int):
        monkeypatch.setattr(devices, "cuda_count", lambda: n)
        monkeypatch.setattr(devices, "memory_gb", lambda gpu: 16.0)
    return pretend


# ---- --device ------------------------------------------------------------------------------------------

def test_auto_is_cuda_when_there_is_a_gpu_else_the_cpu(gpus):
    gpus(0)
    assert devices.choose("auto") == devices.Choice("cpu")
    gpus(2)
    assert devices.choose("auto") == devices.Choice("cuda", (0, 1))
    assert devices.choose("cuda") == devices.Choice("cuda", (0, 1))
    assert devices.choose(" CUDA:1 ") == devices.Choice("cuda", (1,))
    assert devices.choose("cpu") == devices.Choice("cpu")


@pytest.mark.parametrize("text, count, words", [
    ("cuda", 0, "no CUDA device"), ("cuda:0", 0, "no CUDA device"), ("cuda:2", 2, "cuda:0 to cuda:1"),
    ("mps", 1, "use auto, cpu, cuda or cuda:N"), ("cuda:-1", 1, "use auto"), ("gpu", 1, "use auto"),
])
def test_a_device_that_is_not_here_is_refused_in_one_line(gpus, text, count, words):
    gpus(count)
    with pytest.raises(BadInput) as caught:
        devices.choose(text)
    assert words in str(caught.value) and len(str(caught.value).splitlines()) == 1


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("args", [
    ["all", "--datasets", "digits"], ["run", "scratch_student", "--datasets", "digits"],
    ["ablate", "scratch_student", "--param", "epochs=1,2", "--datasets", "digits"],
    ["defects", "--datasets", "digits"], ["profile", "--datasets", "digits"],
])
def test_device_cuda_without_cuda_is_one_line_and_exit_2(args, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*args, "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no CUDA device" in err, err
    assert not out.exists()


def test_tf32_needs_cuda(tmp_path, capsys):
    assert main(["run", "scratch_student", "--datasets", "digits", "--device", "cpu", "--tf32",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--tf32 needs a CUDA device" in capsys.readouterr().err


# ---- identity ------------------------------------------------------------------------------------------

def _specs(device="cpu", precision="fp32", preset="smoke"):
    return plan([METHODS["hinton_kd"]], data=["digits"], reps=1, preset=preset, base_seed=0, methods=METHODS,
                device=device, precision=precision)


def test_the_device_kind_and_precision_change_every_run_id():
    cpu, cuda, tf32 = _specs(), _specs("cuda"), _specs("cuda", "tf32")
    ids = [{s.run_id for s in specs} for specs in (cpu, cuda, tf32)]
    assert len(ids[0] | ids[1] | ids[2]) == 3 * len(cpu)  # no run of one answers another
    assert all(s.device == "cuda" for s in cuda) and all(s.precision == "tf32" for s in tf32)
    student = next(s for s in cuda if s.method == "hinton_kd")
    teacher = next(s for s in cuda if s.method == "teacher")
    assert student.requires["teacher"] == teacher.run_id  # a GPU run loads the GPU teacher
    assert len({s.group for s in cpu} & {s.group for s in cuda}) == 0  # never packed together


def test_a_cpu_run_hashes_as_before_the_device_existed():
    spec = _specs()[0]
    fields = {k: v for k, v in spec.to_dict().items() if k not in ("device", "precision")}
    assert run_id_of(fields) == spec.run_id == run_id_of({**fields, "device": "cpu", "precision": "fp32"})
    assert run_id_of({**fields, "device": "cuda"}) != spec.run_id


def test_a_record_of_an_unknown_device_is_refused():
    spec = _specs()[0]
    record = {**spec.to_dict(), "run_id": spec.run_id, "status": "ok", "metrics": [], "device": "tpu"}
    record["run_id"] = run_id_of(record)
    assert "device 'tpu' is not one of cpu, cuda" in record_problem(record, record["run_id"])


def test_quick_trains_on_more_of_the_large_datasets_on_a_gpu_and_tests_on_the_whole_test_set_on_both():
    presets = configuration.DATA_PRESETS
    assert presets["cpu"]["quick"] == {"max_train": 4_000, "max_test": None}
    assert presets["cuda"]["quick"] == {"max_train": 6_000, "max_test": None}
    assert presets["cuda"]["smoke"] == presets["cpu"]["smoke"] and presets["cuda"]["paper"] == presets["cpu"]["paper"]
    cuda, cpu = _specs("cuda", preset="quick")[0].data, _specs("cpu", preset="quick")[0].data
    assert (cuda["max_train"], cuda["max_test"]) == (6_000, None)
    assert (cpu["max_train"], cpu["max_test"]) == (4_000, None)


def test_reproduce_refuses_another_kind_of_device(gpus):
    cuda = next(s for s in _specs("cuda") if s.method == "teacher")
    gpus(0)
    with pytest.raises(BadInput, match="was trained on CUDA and this machine has no CUDA device"):
        gpu_for(cuda, "auto")
    with pytest.raises(BadInput, match="was trained on cpu"):
        gpus(1)
        gpu_for(_specs()[0], "cuda:0")
    assert gpu_for(cuda, "cuda:0") == 0


def test_a_gpu_run_is_reproduced_with_the_repetitions_it_was_packed_with(tmp_path):
    builder = StoreBuilder(tmp_path)
    records = [_add(builder, "m", rep, device, 0.5, "K") for device in ("cuda", "cpu") for rep in range(3)]
    for group in (records[:3], records[3:]):
        batch = {"reps": [0, 1, 2], "run_ids": [r["run_id"] for r in group], "wall_time_s": 1.0}
        for record in group:
            builder.store.write_run({**record, "batch": batch})
    spec, record = stored_run(builder.store, records[1]["run_id"])
    assert [s.run_id for s in batch_of(spec, record, builder.store)] == [r["run_id"] for r in records[:3]]
    cpu_spec, cpu_record = stored_run(builder.store, records[4]["run_id"])
    assert batch_of(cpu_spec, cpu_record, builder.store) == [cpu_spec]  # a CPU run is the same alone
    builder.store.run_path(records[2]["run_id"]).unlink()
    with pytest.raises(BadInput, match="trained packed with run"):
        batch_of(spec, record, builder.store)


# ---- the accelerator backend and the bounds ------------------------------------------------------------

def test_new_workers_go_to_the_gpu_with_fewest():
    assert spread((0, 1), []) == 0
    assert spread((0, 1), [0]) == 1
    assert spread((0, 1), [0, 1, 0]) == 1
    assert spread((3,), [3, 3]) == 3
    assert spread((0, 1, 2), [0, None, 2]) == 1  # a worker of no GPU counts for none


def test_the_accelerator_backend_binds_each_worker_to_a_gpu(tmp_path, monkeypatch):
    settings = Settings(store=Store(tmp_path))
    backend = make_backend("local", settings, METHODS, jobs=3, gpus=(0, 1))
    assert isinstance(backend, AcceleratorBackend) and backend.slots == 3
    assert type(make_backend("local", settings, METHODS, jobs=3)) is LocalBackend
    spawned = []

    class Worker:
        def __init__(self, gpu):
            self.gpu, self.conn, self.task_id = gpu, type("Conn", (), {"send": lambda *a: None})(), None

    def spawn_with(self, worker_settings):
        spawned.append(worker_settings.gpu)
        return Worker(worker_settings.gpu)

    monkeypatch.setattr(AcceleratorBackend, "_spawn_with", spawn_with)
    for task in range(3):
        backend.start(task, [], None)
    assert spawned == [0, 1, 0]
    del backend.busy[1]  # the worker on GPU 1 died: its replacement goes there
    backend.start(3, [], None)
    assert spawned[-1] == 1


def test_gpu_workers_are_bounded_by_cores_and_gpu_memory(gpus, monkeypatch):
    gpus(1)
    monkeypatch.setattr(requests, "cores", lambda: 16)
    monkeypatch.setattr(requests, "available_memory_gb", lambda: 100.0)
    ok = requests.SuiteRequest(jobs=4, device="cuda", gpus=(0,))
    assert ok.check() is ok
    with pytest.raises(BadInput, match=r"at most 4 GPU workers here .* 16 GB"):
        requests.SuiteRequest(jobs=5, device="cuda", gpus=(0,)).check()
    with pytest.raises(BadInput, match="a GPU worker needs a core"):
        requests.SuiteRequest(jobs=17, device="cuda", gpus=(0,)).check()
    assert requests.default_jobs("cuda", (0,), 1) == requests.WORKERS_PER_GPU
    assert requests.default_jobs("cuda", tuple(range(8)), 1) == 16  # within the cores
    assert requests.default_jobs("cpu", (), 2) == 8


def test_event_times_are_read_once_when_the_summary_asks():
    """The CUDA clock hands the timer spans that wait for the GPU only when read: none is read during training."""
    reads = []

    class Span:
        def __init__(self, seconds):
            self.seconds = seconds

        def __float__(self):
            reads.append(self.seconds)
            return self.seconds

    timer = StepTimer(warmup=1)
    for seconds in (0.5, 1.0, 2.0, 3.0):
        timer.after_step(Span(seconds), 8)
    assert reads == []
    summary = timer.summary()
    assert sorted(reads) == [0.5, 1.0, 2.0, 3.0]
    assert summary["step_median_s"] == 2.0 and summary["train_time_s"] == 6.5


# ---- the reporting pairs by device -------------------------------------------------------------------------

def _add(builder, method, rep, device, value, key):
    record = builder.add(method, rep, roles={"student": key}, metrics=[["student", -1, "test_acc", value]],
                         kind="baseline" if method == "scratch_student" else "method", source=f"code-{device}")
    builder.store.run_path(record["run_id"]).unlink()
    record = {**record, "device": device}
    record["run_id"] = run_id_of(record)
    builder.store.write_run(record)
    return record


def test_a_gpu_run_is_paired_with_the_gpu_scratch_student_and_labelled_apart(tmp_path):
    builder = StoreBuilder(tmp_path)
    for rep in range(3):
        _add(builder, "scratch_student", rep, "cpu", 0.50, "K")
        _add(builder, "scratch_student", rep, "cuda", 0.60 + rep / 100, "K")
        _add(builder, "m", rep, "cuda", 0.70, "K")
        _add(builder, "m", rep, "cpu", 0.55 + rep / 100, "K")
    summary = load_results(builder.store).summary
    rows = summary[(summary.method == "m") & (summary.metric == "test_acc") & (summary.selection == "final")]
    by = rows.set_index("device")
    assert by.loc["cuda", "delta_mean"] == pytest.approx(0.70 - 0.61)  # against the GPU's 0.60, 0.61, 0.62
    assert by.loc["cpu", "delta_mean"] == pytest.approx(0.56 - 0.50)
    assert by.loc["cuda", "label"].endswith("(cuda)") and by.loc["cpu", "label"].endswith("(cpu)")


def test_a_gpu_run_without_a_gpu_scratch_student_is_not_paired(tmp_path):
    builder = StoreBuilder(tmp_path)
    for rep in range(3):
        _add(builder, "scratch_student", rep, "cpu", 0.50, "K")
        _add(builder, "m", rep, "cuda", 0.70, "K")
    summary = load_results(builder.store).summary
    row = summary[(summary.method == "m") & (summary.metric == "test_acc") & (summary.selection == "final")].iloc[0]
    assert row.pair_n == 0 and "no paired scratch_student" in row.note


def test_a_store_of_one_kind_keeps_its_labels(tmp_path):
    builder = StoreBuilder(tmp_path)
    _add(builder, "m", 0, "cpu", 0.5, "K")
    assert load_results(builder.store).summary.label.eq("m").all()


# ---- packed convolutions (a GPU's) against the CPU's loop -------------------------------------------------

CNNS = [("kl_cnn", (1, 8, 8), 8), ("js_cnn", (1, 8, 8), 16), ("js_cnn", (1, 40), 8), ("subclass_cnn", (1, 8, 8), 16)]
R, STEPS = 3, 3


def _train(models, packed, dtype, data):
    models = [copy.deepcopy(m).to(dtype) for m in models]
    stacked = Stacked(models, [torch.Generator().manual_seed(7 + r) for r in range(len(models))], packed=packed)
    stacked.train()
    optimiser = torch.optim.Adam(list(stacked.parameters()), lr=1e-3, eps=1e-7)
    outputs = []
    for xs, ys in data:
        out = stacked([x.to(dtype) for x in xs])
        outputs.append(out.detach())
        loss = sum(F.cross_entropy(out[r], ys[r]) for r in range(len(models)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return outputs, stacked.unstack()


def _data(shape, size, reps=R):
    gen = torch.Generator().manual_seed(11)
    return [([torch.randn(size, *shape, generator=gen) for _ in range(reps)],
             [torch.randint(0, 10, (size,), generator=gen) for _ in range(reps)]) for _ in range(STEPS)]


def _models(arch, shape, reps=R, **options):
    return [layers.build(arch, shape, 10, generator=torch.Generator().manual_seed(r), **options)
            for r in range(reps)]


pytestmark = pytest.mark.usefixtures("one_thread")  # bits are compared: one torch thread (conftest)


def test_the_cpu_keeps_the_loop_and_a_gpu_model_packs():
    assert not Stacked(_models("kl_cnn", (1, 8, 8))).packed


@pytest.mark.parametrize("arch, shape, size", CNNS)
def test_packed_convolutions_compute_the_loops_values(arch, shape, size):
    """In float64 the grouped convolutions give the loop's outputs and trained weights to rounding (1e-10): the
    same arithmetic, summed in another order. In float32 that order shows in the last bits of the first pass
    (later steps grow it: Adam's first updates are lr times the sign of gradients near zero)."""
    models, data = _models(arch, shape), _data(shape, size)
    (loop_out, loop), (packed_out, packed) = (_train(models, p, torch.float64, data) for p in (False, True))
    for a, b in zip(loop_out, packed_out, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    for a, b in zip(loop, packed, strict=True):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(y, x, rtol=1e-10, atol=1e-10, msg=name)
    (loop_out, _), (packed_out, _) = (_train(models, p, torch.float32, data[:1]) for p in (False, True))
    torch.testing.assert_close(packed_out[0], loop_out[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch, shape, size", CNNS)
def test_one_packed_repetition_is_the_plain_module_bit_for_bit(arch, shape, size):
    """R = 1 packed makes the very calls the plain module makes (a convolution of one group); without dropout,
    whose masks the stacked model draws from the run's own generator."""
    (model,), data = _models(arch, shape, 1, **({} if arch == "kl_cnn" else {"dropout": 0.0})), _data(shape, size, 1)
    _, (packed,) = _train([model], True, torch.float32, data)
    plain = copy.deepcopy(model)
    optimiser = torch.optim.Adam(plain.parameters(), lr=1e-3, eps=1e-7)
    for (x,), (y,) in data:
        loss = F.cross_entropy(plain(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), packed.state_dict().values()))


def test_the_packed_layers_around_the_convolutions_are_the_loops_bit_for_bit():
    """Pooling, ReLU, the flattening to rows and the dense layers after it with their dropout: packed, each
    repetition's values are exactly the loop's (a grouped convolution sums in another order, and BatchNorm over
    feature maps reduces in the order of their memory layout, channels-last in the CPU's loop)."""
    def net():
        return nn.Sequential(nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 16), nn.ReLU(),
                             nn.Dropout(0.5), nn.Linear(16, 10))

    models = [net() for _ in range(R)]
    for r, m in enumerate(models):
        layers.keras_init(m, torch.Generator().manual_seed(r))
    data = _data((2, 8, 8), 6)
    (loop_out, loop), (packed_out, packed) = (_train(models, p, torch.float32, data) for p in (False, True))
    assert all(torch.equal(a, b) for a, b in zip(loop_out, packed_out))
    assert all(torch.equal(x, y) for a, b in zip(loop, packed) for x, y in zip(a.state_dict().values(),
                                                                               b.state_dict().values()))


def test_packed_features_are_each_repetitions_own():
    models = _models("js_cnn", (1, 8, 8))
    xs = _data((1, 8, 8), 4)[0][0]
    loop = Stacked([copy.deepcopy(m) for m in models], packed=False).eval()
    packed = Stacked([copy.deepcopy(m) for m in models], packed=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(packed(xs), loop(xs), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(packed(xs)[1], models[1].eval()(xs[1]), rtol=1e-4, atol=1e-5)


def test_the_device_is_in_a_records_provenance_and_identity(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "scratch_student", "--datasets", "digits", "--seeds", "1", "--preset", "smoke",
                 "--set", "epochs=1", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    (path,) = (out / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["device"] == "cpu" and record["precision"] == "fp32"
    assert record["provenance"]["device"] == "cpu"
    assert run_id_of(record) == record["run_id"] != run_id_of({**record, "device": "cuda"})
    assert dataclasses.asdict(devices.choose("cpu")) == {"kind": "cpu", "gpus": ()}
