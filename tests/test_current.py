"""A record names the CPU that made it, and `reproduce` tells another CPU's rounding from another result (issue 27)."""

import json
import os
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


def test_one_test_example_is_the_limit():
    n = 359
    assert reproduce.within_one_example({"test_acc": 1 / n, "test_nll": 5.0}, n)
    assert reproduce.within_one_example({}, n)
    assert not reproduce.within_one_example({"test_acc": 1 / n + 1e-9}, n)
    assert not reproduce.within_one_example({"test_acc": 0.0}, 0)
    stored = [["a", -1, "test_acc", 0.5], ["b", -1, "test_acc", 0.7], ["a", 3, "test_acc", 0.1]]
    again = [["a", -1, "test_acc", 0.52], ["b", -1, "test_acc", 0.6], ["a", 3, "test_acc", 0.9]]
    deltas = reproduce.final_deltas(stored, again)
    assert deltas == {"test_acc": pytest.approx(0.1)}  # the largest over roles, final epoch only


def test_reproduce_documents_its_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for code in reproduce.STATUSES:
        assert f"{code} " in text
    assert "another CPU" in text


# ---- the tables answer for the current code ---------------------------------------------------------------------

TINY = '''
from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.contract import MethodBase, Role


@dataclass
class Config:
    lr: float = 1e-3  # Adam's learning rate


class Method(MethodBase):
    name = "{name}"
    Config = Config

    def roles(self, cfg, data):
        return {{"student": Role("hinton_student", "flat")}}

    def train(self, run, cfg):
        def step(b):
            b.update({{"student": {{"loss": F.cross_entropy(b.forward("student"), b.y)}}}})

        return run.fit({{"student": run.build("hinton_student", "flat")}}, step, epochs=1, batch_size=64, lr=cfg.lr)
'''


def _runs(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_after_a_reverted_edit_the_tables_show_the_current_codes_runs_and_list_the_others_as_stale(tmp_path):
    """The issue's repro: change a method's default, run, revert, run again (nothing trains): every table shows
    the current code's runs, the other code's are listed as stale and kept on disk."""
    import pandas as pd

    from benchmark.reporting.frames import load_results
    from benchmark.store import Store
    from tests.conftest import run_main
    from tests.projects import make_project

    project = make_project(tmp_path, {"tiny": TINY})
    method = project / "methods" / "tiny" / "method.py"
    env = {"BENCHMARK_PROJECT_ROOT": str(project)}
    out = tmp_path / "out"
    args = ("run", "tiny", "--seeds", "2", "--jobs", "1", "--out", str(out), *SMOKE)
    assert run_main(*args, env=env).returncode == 0
    first = set(_runs(out))
    original = method.read_text()
    method.write_text(original.replace("lr: float = 1e-3", "lr: float = 1e-2"))
    assert run_main(*args, env=env).returncode == 0
    edited = set(_runs(out)) - first
    assert len(edited) == 2  # the edited default's two repetitions, which finished last
    method.write_text(original)
    again = run_main(*args, env=env)
    assert again.returncode == 0 and set(_runs(out)) == first | edited  # all cached: nothing trained
    assert run_main("tables", "--out", str(out), env=env).returncode == 0

    saved = os.environ.get("BENCHMARK_PROJECT_ROOT")
    os.environ["BENCHMARK_PROJECT_ROOT"] = str(project)
    try:
        results = load_results(Store(out, read_only=True))
    finally:
        os.environ.pop("BENCHMARK_PROJECT_ROOT") if saved is None else os.environ.update(BENCHMARK_PROJECT_ROOT=saved)
    assert set(results.current.run_id) == first
    assert not set(results.metrics.run_id) & edited and not results.superseded
    summary = (out / "published" / "tables" / "summary.md").read_text()
    stale = summary[summary.index("## Stale: from other code"):]
    assert "2 stored runs were made by other code" in stale and all(run_id in stale for run_id in edited)
    assert not any(run_id in stale for run_id in first)
    runs = pd.read_csv(out / "published" / "tables" / "runs.csv")
    assert dict(zip(runs.run_id, runs.code, strict=True)) == {**dict.fromkeys(first, "current"),
                                                             **dict.fromkeys(edited, "stale")}
    tiny = pd.read_csv(out / "published" / "tables" / "summary.csv").query("method == 'tiny'")
    assert set(tiny.n) == {2}  # one row per role and selection, from the two current repetitions only
    assert all((out / "runs" / f"{run_id}.json").is_file() for run_id in edited)  # kept on disk

    # Where the method folder is not on the machine reading the store, its runs cannot be judged: kept, and said.
    (project / "methods" / "tiny").rename(tmp_path / "tiny-elsewhere")
    assert run_main("tables", "--out", str(out), env=env).returncode == 0
    summary = (out / "published" / "tables" / "summary.md").read_text()
    assert "4 stored runs could not be judged here" in summary and "method tiny is not on this machine" in summary


def test_timestamps_are_compared_as_instants():
    from benchmark.reporting.current import instant
    from benchmark.reporting.failures import current_failures

    assert instant("2026-01-02T08:30:51-0800") > instant("2026-01-02T16:07:10+0000")
    assert instant("2026-01-02T16:07:10") == instant("2026-01-02T16:07:10+0000")  # no offset: UTC
    assert instant("not a time") < instant("1971-01-01T00:00:00+0000")
    slot = {"method": "m", "variant": "default", "preset": "smoke", "dataset": "digits", "rep": 0}
    failed = {**slot, "status": "failed", "finished_at": "2026-01-02T16:07:10+0000"}
    fixed = {**slot, "status": "ok", "finished_at": "2026-01-02T08:30:51-0800"}  # 16:30:51 UTC: after the failure
    assert current_failures([failed, fixed]) == []
    assert current_failures([failed, {**fixed, "finished_at": "2026-01-02T08:30:51+0000"}]) == [failed]


# ---- a retrained checkpoint's other numbers, explained ----------------------------------------------------------

def test_a_retrained_runs_message_says_whether_accuracies_agree_and_whether_the_cpu_differs():
    from benchmark.engine.execute import why_different

    here = {"cpu": "X", "cpu_capability": "AVX512"}

    def rec(acc, provenance, device="cpu"):
        return {"metrics": [["student", -1, "test_acc", acc], ["student", -1, "test_nll", acc]],
                "provenance": provenance, "device": device}

    n = 400
    close = why_different(rec(0.5, {"cpu": "X", "cpu_capability": "AVX2"}), rec(0.5 + 1 / n, here), n)
    assert "agree within one test example" in close and "another CPU" in close and "AVX2" in close
    assert f"{100 / n:.3g} pp" in close
    far = why_different(rec(0.5, dict(here)), rec(0.5 + 2 / n, here), n)
    assert "differ by more than one test example" in far and "on the same CPU" in far
    assert "another CPU (stored: an unrecorded CPU" in why_different(rec(0.5, {}), rec(0.5, here), n)
    assert "CPU" not in why_different(rec(0.5, {}, "cuda"), rec(0.5, here, "cuda"), n)
    assert "\n" not in close + far


# ---- a variant is named against the current presets -------------------------------------------------------------

def _committed(method, variant, dataset="digits"):
    from tests.conftest import ROOT

    for path in sorted((ROOT / "results" / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        if (record["method"], record["variant"], record["dataset"]) == (method, variant, dataset):
            return record
    pytest.skip(f"no committed {method} {variant} run on {dataset}")


def test_a_runs_variant_is_named_against_the_presets_of_today_not_of_its_planning(tmp_path):
    """A run planned with --set before a preset made that value the default is the default configuration now (the
    same id): the tables group it by the name the current presets give it. A method that adapts its configuration
    to the data keeps its stored name (naming it would need the dataset); a stale run keeps its own."""
    from benchmark.engine.config import variant_name
    from benchmark.engine.discovery import discover
    from benchmark.engine.spec import config_from_dict
    from benchmark.reporting.current import CURRENT, STALE, judge

    methods = discover()
    scratch = _committed("scratch_student", "epochs=300,patience=None")
    info = methods["scratch_student"]
    named = variant_name(info.cls, scratch["preset"], config_from_dict(info, scratch["config"]))
    assert named == "epochs=300,patience=None"  # what the planner names it today
    planned_earlier = {**scratch, "variant": "patience=None"}  # named against older presets
    adapted = {**_committed("js_entanglement", "default"), "variant": "named=earlier"}
    other_code = {**scratch, "run_id": "0" * 16, "variant": "named=earlier"}
    judged = judge([planned_earlier, adapted, other_code], methods)
    assert judged.of(scratch["run_id"]) == CURRENT and judged.variant(planned_earlier) == named
    assert judged.of(adapted["run_id"]) == CURRENT and judged.variant(adapted) == "named=earlier"
    assert judged.of(other_code["run_id"]) == STALE and judged.variant(other_code) == "named=earlier"

    from benchmark.reporting.frames import load_results
    from benchmark.store import Store

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{scratch['run_id']}.json").write_text(json.dumps(planned_earlier))
    results = load_results(Store(tmp_path, read_only=True))
    assert list(results.current.variant) == [named] and set(results.metrics.variant) == {named}
