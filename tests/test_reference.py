"""The committed reference results are never lost: their run records are committed under results/runs, and the
tables (here), figures and report (the slow set) they rebuild, under results/published, are the committed files,
byte for byte (a parquet table by its content). No hand-typed result in the READMEs either: every generated block
is what ``report`` would write from the committed runs, and the Measured/Results sections state no result number
outside a block. The records are read once, for the tables and the READMEs alike."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest

from benchmark.cli import declarations
from benchmark.reporting import readme_blocks, tables
from benchmark.reporting.families import Declarations
from benchmark.reporting.frames import load_results
from benchmark.reporting.publish import publish
from benchmark.store import Store
from tests.conftest import ROOT

RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """A copy of results/ with only its run records, and what publishing them writes."""
    assert sorted((RESULTS / Store.RUNS).glob("*.json")), "no committed run records under results/runs"
    copy = tmp_path_factory.mktemp("reference") / "results"
    shutil.copytree(RESULTS / Store.RUNS, copy / Store.RUNS)
    return copy


@pytest.fixture(scope="module")
def committed(rebuilt):
    """The committed records as the tables and the README blocks read them (read once for both)."""
    d = declarations()
    return load_results(Store(rebuilt), Declarations.of(d["declarations"], d["notebook_defects"]))


# What .gitignore keeps out of results/published (the CSV copy of metrics.parquet, hundreds of MB): a file a
# local report wrote there is not a committed one, and rebuilding it would only cost the test run time.
IGNORED = {line for line in (ROOT / ".gitignore").read_text().splitlines() if line.startswith("results/published/")}


def _committed(folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (RESULTS / Store.PUBLISHED / folder).iterdir()
            if p.is_file() and p.relative_to(ROOT).as_posix() not in IGNORED}


def _same_table(name: str, new: bytes, committed: bytes) -> bool:
    """Byte for byte; a parquet file by its content (its footer stamps the pandas and pyarrow versions that wrote
    it, which a fresh install may not share)."""
    if not name.endswith(".parquet"):
        return new == committed
    a, b = (pd.read_parquet(io.BytesIO(data)) for data in (new, committed))
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError:
        return False
    return True


def test_the_committed_tables_are_what_the_committed_records_rebuild(committed):
    files = _committed(Store.TABLES)
    new = tables.table_files(committed, names=files)  # what publish writes, less the uncommitted CSV copy
    assert set(new) == set(files)
    assert [name for name in files if not _same_table(name, new[name], files[name])] == []
    with pytest.raises(ValueError, match="no table named"):
        tables.table_files(committed, names=["REPORT.md"])


def test_only_the_csv_copy_of_the_metrics_is_left_uncommitted():
    assert IGNORED == {f"results/{Store.PUBLISHED}/{Store.TABLES}/metrics.csv"}
    assert "metrics.parquet" in _committed(Store.TABLES)


def test_a_changed_table_is_caught():
    frame = pd.DataFrame({"run_id": ["a", "b"], "value": [0.5, 0.25]})
    same, changed = frame.to_parquet(index=False), frame.assign(value=[0.5, 0.2500001]).to_parquet(index=False)
    assert _same_table("m.parquet", same, frame.to_parquet(index=False))
    assert not _same_table("m.parquet", changed, same)
    assert not _same_table("m.parquet", frame.iloc[::-1].to_parquet(index=False), same)
    assert not _same_table("s.csv", b"a,1\n", b"a,2\n") and _same_table("s.csv", b"a,1\n", b"a,1\n")


@pytest.mark.slow
def test_the_committed_figures_and_report_are_what_the_committed_records_rebuild(rebuilt):
    publish(Store(rebuilt), parts=("report",), **declarations())
    assert Store(rebuilt).report_path.read_bytes() == Store(RESULTS).report_path.read_bytes()
    committed = _committed(Store.FIGURES)
    drawn = {p.name: p.read_bytes() for p in Store(rebuilt).figures_dir.iterdir()}
    assert set(drawn) == set(committed)
    assert [name for name in committed if drawn[name] != committed[name]] == []


# ---- the README blocks ---------------------------------------------------------------------------

READMES = readme_blocks.readme_paths(ROOT)


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
