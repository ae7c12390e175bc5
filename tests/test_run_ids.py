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


def planned_again(project, out, first) -> list:
    """What a dry run of the same command would train now, as (method, archs, dataset) of the stored runs it
    replaces (matched by method, dataset, repetition and variant)."""
    res = suite(project, out, "run", "hinton_kd", "kl_entanglement", "--datasets", "digits,mnist1d", "--dry-run")
    by_slot = {(r["method"], r["dataset"], r["rep"], r["variant"]): first[r["run_id"]]
               for r in (json.loads(p.read_text()) for p in (out / "runs").glob("*.json"))}
    todo = [line.split() for line in res.stdout.splitlines() if line.startswith("to run")]
    return sorted(by_slot[(m, d, int(rep.removeprefix("rep=")), v)] for _, _, _, m, d, rep, v in todo)


def edited(path, change):
    """Apply ``change`` to the file's text (it must change it); returns a function that restores the file."""
    text = path.read_text()
    new = change(text)
    assert new != text
    path.write_text(new)
    return lambda: path.write_text(text)


@pytest.mark.slow  # half a minute or more of the default run on a 2-core machine: tox -e slow
def test_editing_code_reruns_exactly_the_runs_that_execute_it(project, tmp_path):
    out = tmp_path / "out"
    suite(project, out, "run", "hinton_kd", "kl_entanglement", "--datasets", "digits,mnist1d")
    first = stored(out)
    assert len(first) > 10

    # A method's own architecture file: that method and the scratch students (and label-smoothing controls) of its
    # networks (a dry run: the plan says what would train, and nothing is written).
    restore = edited(project / "methods" / "kl_entanglement" / "models.py", lambda t: t + "\n# an edit\n")
    assert planned_again(project, out, first) == sorted(
        v for v in first.values() if v[0] == "kl_entanglement" or (v[0] in ("scratch_student", "label_smoothing")
                                                                    and v[1][0] in ("kl_cnn", "kl_mlp")))
    restore()

    # One dataset's module: only that dataset's runs.
    restore = edited(project / "benchmark" / "data" / "datasets" / "mnist1d.py", lambda t: t + "\n# an edit\n")
    assert planned_again(project, out, first) == sorted(v for v in first.values() if v[2] == "mnist1d")
    restore()
    assert planned_again(project, out, first) == []  # restored: every run is the stored one again

    # A shared architecture (the default CNN teacher and the Hinton networks live in benchmark/archs.py): exactly
    # the runs that build one of them (or load one).
    edited(project / "benchmark" / "archs.py", lambda t: t.replace('"""D-300-C with ReLU', '"""D-300-C, ReLU between'))
    users = sorted(v for v in first.values()
                   if {"hinton_student", "hinton_teacher", "cnn_teacher"} & set(v[1]) or v[0] == "hinton_kd")
    assert planned_again(project, out, first) == users
    assert {m for m, _, _ in users} == {"scratch_student", "label_smoothing", "teacher", "hinton_kd"}
