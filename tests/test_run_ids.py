"""A run's id covers the code it executes: editing a shared architecture, a method's own architecture or a dataset's
module re-runs exactly the runs that execute it, and every other run stays cached.

Each check edits a copy of the whole project (package included) and runs the real command line in it."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SMOKE = ("--preset", "smoke", "--seeds", "1", "--no-progress")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    copy = tmp_path_factory.mktemp("copy") / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".venv", "results", ".git")
    for part in ("benchmark", "baselines", "methods"):
        shutil.copytree(ROOT / part, copy / part, ignore=ignore)
    return copy


def suite(project, out, *args):
    env = {**os.environ, "PYTHONPATH": str(project), "BENCHMARK_PROJECT_ROOT": str(project)}
    res = subprocess.run([sys.executable, "-m", "benchmark", *args, "--out", str(out), *SMOKE], cwd=project,
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def stored(out):
    """{run_id: (method, arch of each role, dataset)} of every record in the store."""
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    return {r["run_id"]: (r["method"], tuple(sorted(v["arch"] for v in r["roles"].values())), r["dataset"])
            for r in records}


def new_runs(before, after):
    return sorted(after[k] for k in set(after) - set(before))


def test_editing_code_reruns_exactly_the_runs_that_execute_it(project, tmp_path):
    out = tmp_path / "out"
    suite(project, out, "run", "hinton_kd", "kl_entanglement", "--datasets", "digits,mnist1d")
    first = stored(out)
    assert len(first) > 10

    # A shared architecture (the Hinton teacher and student live in benchmark/archs.py).
    archs = project / "benchmark" / "archs.py"
    text = archs.read_text()
    edited = text.replace('"""D-300-C with ReLU', '"""D-300-C, ReLU between')
    assert edited != text
    archs.write_text(edited)
    again = suite(project, out, "run", "hinton_kd", "kl_entanglement", "--datasets", "digits,mnist1d")
    second = stored(out)
    retrained = new_runs(first, second)
    users = sorted(v for v in first.values()
                   if {"hinton_student", "hinton_teacher"} & set(v[1]) or v[0] == "hinton_kd")
    assert retrained == users, "exactly the runs that build a Hinton network (or load one) retrain"
    assert {m for m, _, _ in retrained} == {"scratch_student", "teacher", "hinton_kd"}
    assert f"{len(users)} trained, {len(first) - len(users)} cached" in again.stdout

    # A method's own architecture file: that method and the scratch students of its networks.
    models = project / "methods" / "kl_entanglement" / "models.py"
    models.write_text(models.read_text() + "\n# an edit\n")
    suite(project, out, "run", "hinton_kd", "kl_entanglement", "--datasets", "digits,mnist1d")
    third = stored(out)
    retrained = new_runs(second, third)
    assert retrained == sorted(v for v in first.values() if v[0] == "kl_entanglement"
                               or (v[0] == "scratch_student" and v[1][0] in ("kl_cnn", "kl_mlp")))

    # One dataset's module: only that dataset's runs.
    dataset = project / "benchmark" / "data" / "datasets" / "mnist1d.py"
    dataset.write_text(dataset.read_text() + "\n# an edit\n")
    suite(project, out, "run", "hinton_kd", "kl_entanglement", "--datasets", "digits,mnist1d")
    retrained = new_runs(third, stored(out))
    assert retrained == sorted(v for v in first.values() if v[2] == "mnist1d")
