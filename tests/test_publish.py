"""The publish step replaces its outputs as one set: ``<out>/published/`` (REPORT.md, reference/, tables/,
figures/) is written whole in a staging folder and swapped in with one rename. A failure or a kill before the swap
leaves the old set whole; a staging folder left by a killed publish is removed by the next one."""

import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from benchmark.reporting.publish import publish
from benchmark.store import Store
from benchmark.store import io as store_io
from tests.conftest import ROOT
from tests.test_report import small_store


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class Killed(BaseException):
    """Stands for a kill arriving between the writing of the new set and the swap."""


@pytest.fixture
def published_once(tmp_path):
    """A store published whole (report, reference, tables, figures), then given a new run: the next publish
    changes runs.csv, the summary and the report."""
    b = small_store(tmp_path)
    publish(Store(tmp_path), ("report",))
    old = _files(tmp_path / "published")
    assert {"REPORT.md", "tables/runs.csv", "tables/summary.md", "reference/summary.md"} <= set(old)
    assert any(name.startswith("figures/") for name in old)
    b.add("kd", 2, roles={"student": "K1"}, metrics=[["student", -1, "test_acc", 0.9]])
    return tmp_path, old


def test_a_failure_before_the_swap_leaves_the_old_set_whole(published_once, monkeypatch):
    out, old = published_once

    def killed(new, target):
        assert {"REPORT.md", "tables/runs.csv"} <= set(_files(new))  # the new set was written in full
        raise Killed

    monkeypatch.setattr(store_io, "swap_folders", killed)
    with pytest.raises(Killed):
        publish(Store(out), ("report",))
    assert _files(out / "published") == old  # every file old, none missing, none new
    assert not list(out.glob(".publish-*"))


def test_a_publish_swaps_in_the_whole_new_set(published_once):
    out, old = published_once
    done = publish(Store(out), ("report",))
    new = _files(out / "published")
    assert set(new) == set(old) and done.report == out / "published" / "REPORT.md"
    assert len(pd.read_csv(out / "published" / "tables" / "runs.csv")) == 5  # the new run is in
    assert all(new[name] != old[name] for name in ("REPORT.md", "tables/runs.csv", "tables/summary.md"))
    assert not list(out.glob(".publish-*"))


def test_a_part_not_asked_for_is_carried_into_the_new_set_as_it_was(published_once):
    out, old = published_once
    publish(Store(out), ("tables",))
    new = _files(out / "published")
    assert set(new) == set(old) and new["tables/runs.csv"] != old["tables/runs.csv"]
    assert {name: data for name, data in new.items() if not name.startswith("tables/")} == \
        {name: data for name, data in old.items() if not name.startswith("tables/")}


@pytest.mark.timeout(120)
def test_a_killed_publish_leaves_the_old_set_and_the_next_removes_its_staging_folder(published_once):
    out, old = published_once
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys\n"
        "from benchmark.reporting.publish import publish\n"
        "from benchmark.store import Store, io\n"
        "io.swap_folders = lambda *a: os._exit(9)  # dies between the new set's writing and the swap\n"
        "publish(Store(sys.argv[1]), ('tables',))"), str(out)], cwd=ROOT)
    assert killed.returncode == 9
    assert _files(out / "published") == old
    (left,) = out.glob(".publish-*")
    assert "tables/runs.csv" in _files(left)
    host = socket.gethostname()
    alive = out / f".publish-{host}-{os.getpid()}-0a1b"  # a live publish's, and another host's: not touched
    elsewhere = out / f".publish-elsewhere-{_dead_pid()}-0a1b"
    for folder in (alive, elsewhere):
        folder.mkdir()
    publish(Store(out), ("tables",))
    assert set(out.glob(".publish-*")) == {alive, elsewhere}
    assert len(pd.read_csv(out / "published" / "tables" / "runs.csv")) == 5


def test_a_staging_folder_of_a_dead_publish_is_removed_when_a_suite_opens_the_store(tmp_path):
    left = tmp_path / f".publish-{socket.gethostname()}-{_dead_pid()}-0a1b"
    (left / "tables").mkdir(parents=True)
    (left / "tables" / "runs.csv").write_text("run_id\n")
    Store(tmp_path).open()
    assert not left.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_two_folders_are_exchanged_in_one_step(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "name").write_text(folder.name)
    assert store_io.exchange(a, b)
    assert (a / "name").read_text() == "b" and (b / "name").read_text() == "a"
    with pytest.raises(FileNotFoundError):
        store_io.exchange(a, tmp_path / "absent")


def test_without_an_atomic_exchange_the_set_is_still_replaced_whole(published_once, monkeypatch):
    out, old = published_once
    monkeypatch.setattr(store_io, "exchange", lambda a, b: False)  # not Linux, or a file system without it
    publish(Store(out), ("report",))
    new = _files(out / "published")
    assert set(new) == set(old) and new["REPORT.md"] != old["REPORT.md"]
    assert not list(out.glob(".publish-*"))


def test_the_first_publish_creates_the_set_and_outputs_of_the_earlier_layout_are_named(tmp_path):
    small_store(tmp_path)
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "runs.csv").write_text("old\n")
    done = publish(Store(tmp_path), ("tables",))
    assert (tmp_path / "published" / "tables" / "runs.csv").is_file() and not list(tmp_path.glob(".publish-*"))
    (line,) = [w for w in done.warnings if "earlier version" in w]
    assert "tables" in line and str(tmp_path / "published") in line
    assert (tmp_path / "tables" / "runs.csv").read_text() == "old\n"  # left as it was


def test_a_link_in_the_old_set_is_not_carried_nor_followed(published_once, tmp_path_factory):
    out, old = published_once
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "secret.md"
    elsewhere.write_text("outside the store")
    (out / "published" / "planted.md").symlink_to(elsewhere)
    publish(Store(out), ("tables",))
    assert not (out / "published" / "planted.md").exists() and elsewhere.read_text() == "outside the store"
