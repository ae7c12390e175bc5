"""A full disk (ENOSPC, EDQUOT) is one line and exit status 1, wherever the write was: a record written by a
worker process, a checkpoint, a table. Not the traceback of every worker."""

import errno
import os

import pytest

from benchmark.cli import main
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.engine.plan import plan
from benchmark.errors import DiskFull
from benchmark.runner.runner import run_plan
from benchmark.store import Store, io

SMOKE = ("--preset", "smoke", "--no-progress", "--datasets", "digits")


class FullStore(Store):
    """A store whose disk is full when a record is written; importable by name, so a worker process gets one."""

    def write_run(self, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _err_lines(capfd):
    return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_while_writing_is_one_line_and_exit_1(code, tmp_path, capfd, monkeypatch):
    real = io.atomic_write_bytes

    def full(path, data):  # every write of a record or checkpoint in this process fails
        if path.suffix in (".json", ".pt"):
            raise OSError(code, os.strerror(code))
        real(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", full)
    monkeypatch.setattr("benchmark.store.store.atomic_write_bytes", full)
    from benchmark.suite import session
    monkeypatch.setattr(session, "run_plan",  # in this process, where the write is patched
                        lambda todo, settings, **kw: run_plan(todo, settings, **{**kw, "backend": "inprocess"}))
    out = tmp_path / "out"
    code_ = main(["run", "scratch_student", "--seeds", "1", "--out", str(out), *SMOKE])
    lines = _err_lines(capfd)
    assert code_ == 1, lines
    assert len(lines) == 1 and lines[0].startswith("benchmark: error: disk full while writing"), lines
    assert "free space and run the same command again to resume" in lines[0]
    assert not list((out / "runs").glob("*"))


def test_a_worker_whose_disk_fills_stops_the_suite_without_a_traceback(tmp_path, capfd):
    store = FullStore(tmp_path / "out").open()
    methods = discover()
    todo = plan([methods["scratch_student"]], data=["digits"], reps=2, preset="smoke", base_seed=0, methods=methods)
    with pytest.raises(DiskFull) as caught:
        run_plan(todo, Settings(store=store), jobs=1, backend="local")
    assert str(caught.value).startswith("disk full while writing")
    assert "Traceback" not in capfd.readouterr().err  # the worker sent it back; it printed nothing


def test_a_full_disk_names_the_file_it_was_for(tmp_path, monkeypatch):
    def fills(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fills)
    with pytest.raises(DiskFull) as caught:
        io.atomic_write_bytes(tmp_path / "table.csv", b"a,b\n")
    assert caught.value.filename == str(tmp_path / "table.csv") and caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []  # no temporary file left
