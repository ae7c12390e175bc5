"""An unedited copy of methods/_template passes every automatic test, the tests that parametrise over the discovered
folders, run in a throw-away project that holds the real baselines and the copy (BENCHMARK_PROJECT_ROOT)."""

import os
import re
import shutil
import subprocess
import sys

from tests.conftest import ROOT
from tests.projects import make_project

NAME = "copied_template"
# Each test that parametrises over discover(), and how many cases it has per method folder.
PUBLISHED = "tests/methods/test_as_published.py"
AUTOMATIC = {"tests/test_contract.py::test_contract_declarations": 1,
             "tests/test_contract.py::test_runs_end_to_end_on_smoke": 1,
             f"{PUBLISHED}::test_notebook_defects_are_config_fields_whose_default_is_corrected": 1,
             f"{PUBLISHED}::test_as_published_resolves_and_names_the_notebooks_split": 1,
             "tests/methods/test_pairing.py::test_init_paired_roles_start_from_their_scratch_students_weights": 1,
             "tests/test_presets.py::test_quick_is_the_paper_recipe_on_small_datasets": 3}


def test_an_unedited_copy_of_the_template_passes_the_automatic_tests(tmp_path):
    project = make_project(tmp_path)
    shutil.copytree(ROOT / "methods" / "_template", project / "methods" / NAME,
                    ignore=shutil.ignore_patterns("__pycache__"))
    files = sorted({test.partition("::")[0] for test in AUTOMATIC})
    env = {**os.environ, "BENCHMARK_PROJECT_ROOT": str(project)}
    # -n 0: one process, so that -v prints one "PASSED" line per test
    result = subprocess.run([sys.executable, "-m", "pytest", "-v", "-n", "0", "-p", "no:cacheprovider", "-k", NAME,
                             *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.findall(r"^(\S+)\[(\S*)\] PASSED", result.stdout, flags=re.MULTILINE)
    assert all(NAME in case for _, case in passed)
    counts = {test: sum(1 for t, _ in passed if t == test) for test in AUTOMATIC}
    assert counts == AUTOMATIC, result.stdout[-4000:]
    assert re.search(rf"\b{sum(AUTOMATIC.values())} passed\b", result.stdout)
