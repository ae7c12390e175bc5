"""An unedited copy of methods/_template passes every automatic test, the tests that parametrise over the discovered
folders, run in a throw-away project that holds the real baselines and the copy (BENCHMARK_PROJECT_ROOT)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

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


# The distillation template's golden-test scaffold, copied where its README says (tests/methods/test_<name>.py),
# and how many tests it holds.
GOLDEN = {"tests/methods/test_golden.py::test_loss_matches_its_formula": 4,
          "tests/methods/test_golden.py::test_a_student_equal_to_its_teacher_has_no_soft_target_loss": 1}


@pytest.mark.parametrize("template", ["_template", "_template_distillation"])
def test_an_unedited_copy_of_the_template_passes_the_automatic_tests(template, tmp_path):
    project = make_project(tmp_path)
    shutil.copytree(ROOT / "methods" / template, project / "methods" / NAME,
                    ignore=shutil.ignore_patterns("__pycache__"))
    files = sorted({test.partition("::")[0] for test in AUTOMATIC})
    golden = []
    if (ROOT / "methods" / template / "golden_test.py").is_file():
        golden = [tmp_path / "tests" / "methods" / f"test_{NAME}.py"]
        golden[0].parent.mkdir(parents=True)
        shutil.copyfile(ROOT / "methods" / template / "golden_test.py", golden[0])
    env = {**os.environ, "BENCHMARK_PROJECT_ROOT": str(project)}
    # -n 0: one process, so that -v prints one "PASSED" line per test
    result = subprocess.run([sys.executable, "-m", "pytest", "-v", "-n", "0", "-p", "no:cacheprovider", "-k", NAME,
                             *files, *map(str, golden)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.findall(r"^(\S+)\[(\S*)\] PASSED", result.stdout, flags=re.MULTILINE)
    automatic = [(t, case) for t, case in passed if t in AUTOMATIC]
    assert all(NAME in case for _, case in automatic)
    counts = {test: sum(1 for t, _ in automatic if t == test) for test in AUTOMATIC}
    assert counts == AUTOMATIC, result.stdout[-4000:]
    expected = sum(AUTOMATIC.values())
    if golden:
        # a file outside the root directory is shown without its path
        ran = re.findall(rf"^(?:\S*test_{NAME}\.py)?::(\w+)\S* PASSED", result.stdout, flags=re.MULTILINE)
        assert {name: ran.count(name) for name in set(ran)} == {k.partition("::")[2]: v for k, v in GOLDEN.items()}
        expected += sum(GOLDEN.values())
    assert re.search(rf"\b{expected} passed\b", result.stdout)
