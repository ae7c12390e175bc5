"""A record names the CPU that made it, and `reproduce` tells another CPU's rounding from another result (issue 27)."""

import json
import re
import shutil

import pytest
import torch

from benchmark.cli import main, reproduce
from benchmark.store import provenance
from benchmark.store.provenance import cpu_kernels, describe_cpu, same_cpu

SMOKE = ("--preset", "smoke", "--no-progress", "--datasets", "digits")
CONFIG = """PyTorch built with:
  - Intel(R) oneAPI Math Kernel Library Version 2099.1-Product Build 20990101 for Intel(R) 64 architecture applications
  - Intel(R) MKL-DNN v9.8.7 (Git Hash 0123)
  - CPU capability usage: AVX2
"""


# ---- provenance --------------------------------------------------------------------------------------------------

def test_provenance_names_the_cpu_and_its_kernels(monkeypatch):
    record = provenance()
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 None)
    if model:
        assert record["cpu"] == model
    monkeypatch.setattr(torch.__config__, "show", lambda: CONFIG)
    kernels = cpu_kernels()
    assert kernels["mkl"] == ("2099.1-Product Build 20990101" if torch.backends.mkl.is_available() else None)
    assert kernels["onednn"] == ("9.8.7" if torch.backends.mkldnn.is_available() else None)
    monkeypatch.setattr(torch.__config__, "show", lambda: "PyTorch built with:\n")
    assert cpu_kernels()["mkl"] is None and cpu_kernels()["onednn"] is None


def test_same_cpu_needs_both_the_model_and_the_capability_recorded():
    here = {"cpu": "X", "cpu_capability": "AVX512"}
    assert same_cpu(dict(here), here)
    assert not same_cpu({"cpu": "X", "cpu_capability": "AVX2"}, here)
    assert not same_cpu({"cpu": "Y", "cpu_capability": "AVX512"}, here)
    assert not same_cpu({"processor": ""}, here)  # an older record: unknown is not the same
    assert not same_cpu(None, here)
    assert describe_cpu({}) == "an unrecorded CPU"


# ---- reproduce on another CPU ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("stored") / "out"
    assert main(["run", "scratch_student", "--seeds", "1", "--jobs", "1", "--out", str(out), *SMOKE]) == 0
    return out


def _edited(stored, tmp_path, edit):
    out = tmp_path / "out"
    shutil.copytree(stored, out)
    (path,) = (out / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert {"cpu", "cpu_capability", "mkl", "onednn"} <= set(record["provenance"])  # a new record has them
    edit(record)
    path.write_text(json.dumps(record))
    return out, path.stem, record


def _final(record, metric):
    return next(i for i, row in enumerate(record["metrics"]) if row[1:3] == [-1, metric])


def _other_cpu(record):
    record["provenance"]["cpu_capability"] = "SOMETHING_ELSE"


def test_reproduce_on_another_cpu_says_so_first_and_exits_0_when_identical(stored, tmp_path, capsys):
    out, run_id, _ = _edited(stored, tmp_path, _other_cpu)
    assert main(["reproduce", run_id, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "SOMETHING_ELSE" in lines[0] and "this machine is" in lines[0]
    assert "identical, bit for bit" in lines[-1]


def test_reproduce_of_an_older_record_says_its_cpu_is_unrecorded(stored, tmp_path, capsys):
    def older(record):
        for key in ("cpu", "cpu_capability", "mkl", "onednn"):
            del record["provenance"][key]

    out, run_id, _ = _edited(stored, tmp_path, older)
    assert main(["reproduce", run_id, "--out", str(out)]) == 0
    assert "an unrecorded CPU" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("cpu, examples, status", [("other", 0.5, 3), ("other", 2, 1), ("same", 0.5, 1)])
def test_reproduce_tells_another_cpus_rounding_from_another_result(stored, tmp_path, capsys, cpu, examples,
                                                                   status):
    """A final test accuracy moved by half a test example on another CPU is status 3; by two examples, or by any
    amount on the same CPU, status 1. The largest difference of each final metric is given, accuracies in pp."""
    from benchmark.data import load_dataset
    from benchmark.engine.config import DATA_PRESETS

    n_test = load_dataset("digits", **DATA_PRESETS["cpu"]["smoke"]).size("test")
    nll_shift = 0.25

    def edit(record):
        if cpu == "other":
            _other_cpu(record)
        record["metrics"][_final(record, "test_acc")][3] += examples / n_test
        record["metrics"][_final(record, "test_nll")][3] += nll_shift

    out, run_id, record = _edited(stored, tmp_path, edit)
    assert main(["reproduce", run_id, "--out", str(out)]) == status
    said = capsys.readouterr().out
    lines = said.splitlines()
    assert ("SOMETHING_ELSE" in lines[0]) == (cpu == "other")
    largest = next(line for line in lines if line.startswith("largest difference"))
    acc = float(re.search(r"test_acc ([0-9.e+-]+) pp", largest).group(1))
    assert acc == pytest.approx(100 * examples / n_test, rel=1e-2)
    assert float(re.search(r"test_nll ([0-9.e+-]+)", largest).group(1)) == pytest.approx(nll_shift, rel=1e-2)
    assert f"1/{n_test}" in said
    assert "2 of" in said


def test_reproduce_documents_its_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for code in reproduce.STATUSES:
        assert f"{code} " in text
    assert "another CPU" in text
