"""No hand-typed result in the READMEs: every generated block is what ``report`` would write from the committed
runs, and the Measured/Results sections state no result number outside a block."""

import pytest

from benchmark.cli import declarations
from benchmark.reporting import readme_blocks
from benchmark.reporting.families import Declarations
from benchmark.reporting.frames import load_results
from benchmark.store import Store
from tests.conftest import ROOT

READMES = readme_blocks.readme_paths(ROOT)


@pytest.fixture(scope="module")
def committed():
    d = declarations()
    return load_results(Store(ROOT / "results"), Declarations.of(d["declarations"], d["notebook_defects"]))


def test_every_method_readme_has_a_generated_results_block():
    named = {p.parent.name for p in READMES if "<!-- results:begin method:" in p.read_text()}
    assert {"hinton_kd", "subclass_kd", "kl_entanglement", "ska", "js_entanglement", "dkd", "fitnets"} <= named


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_blocks_are_what_the_committed_runs_generate(path, committed):
    text = path.read_text()
    assert readme_blocks.stale_blocks(text, committed, readme_blocks.link_from(path, ROOT)) == []


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_typed_result_number_in_a_results_section(path):
    assert readme_blocks.typed_results(path.read_text()) == []


def test_a_changed_number_in_a_block_and_a_typed_one_outside_are_caught(committed):
    path = ROOT / "methods" / "hinton_kd" / "README.md"
    text, link = path.read_text(), readme_blocks.link_from(path, ROOT)
    block = readme_blocks.BLOCK.search(text)
    body = block.group("body")
    row = next(line for line in body.splitlines() if line.startswith("| digits"))
    changed = text.replace(row, row.replace("| 5 |", "| 6 |", 1))
    assert changed != text and readme_blocks.stale_blocks(changed, committed, link) == ["method:hinton_kd"]
    typed = text.replace("<!-- results:begin", "The student gets 95.88 % (p (Holm) = 0.65).\n\n<!-- results:begin")
    assert readme_blocks.typed_results(typed) == ["The student gets 95.88 % (p (Holm) = 0.65)."]
    with pytest.raises(ValueError):
        readme_blocks.block_text("nonsense", committed)
