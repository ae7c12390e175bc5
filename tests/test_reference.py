"""The committed reference results are never lost: their run records are committed under results/runs, and the
tables (here), figures and report (the slow set) they rebuild, under results/published, are the committed files,
byte for byte."""

from __future__ import annotations

import shutil

import pytest

from benchmark.cli import declarations
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


def _committed(folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (RESULTS / Store.PUBLISHED / folder).iterdir() if p.is_file()}


def test_the_committed_tables_are_what_the_committed_records_rebuild(rebuilt):
    publish(Store(rebuilt), parts=("tables",), **declarations())
    committed = _committed(Store.TABLES)
    new = {p.name: p.read_bytes() for p in Store(rebuilt).tables_dir.iterdir() if p.name in committed}
    assert set(new) == set(committed)
    assert [name for name in committed if new[name] != committed[name]] == []


@pytest.mark.slow
def test_the_committed_figures_and_report_are_what_the_committed_records_rebuild(rebuilt):
    publish(Store(rebuilt), parts=("report",), **declarations())
    assert Store(rebuilt).report_path.read_bytes() == Store(RESULTS).report_path.read_bytes()
    committed = _committed(Store.FIGURES)
    drawn = {p.name: p.read_bytes() for p in Store(rebuilt).figures_dir.iterdir()}
    assert set(drawn) == set(committed)
    assert [name for name in committed if drawn[name] != committed[name]] == []
