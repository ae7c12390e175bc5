"""``--stop-after DURATION``: no new run starts once the time is up, the running ones finish, the tables and report
are written from what is stored, and the same command resumes from there (inprocess backend, smoke preset)."""

import json

import pytest

from benchmark.cli import _duration, main
from benchmark.engine.discovery import discover
from benchmark.runner import runner as queue_loop
from benchmark.store import Store
from benchmark.suite import grid as grids
from benchmark.suite.request import SuiteRequest
from benchmark.suite.session import run_suite


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("150m", 9000), ("2h", 7200), ("1h30m", 5400),
                                           ("0.5h", 1800), ("1h0m30s", 3630)])
def test_durations_parse(text, seconds):
    assert _duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "2d", "h", "-5m", "0s", "1m1h", "abc"])
def test_a_bad_duration_is_one_line_and_exit_2(capsys, text):
    assert main(["run", "hinton_kd", "--datasets", "digits", "--stop-after", text, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stop-after" in err[0]


def _hinton_grid(stop_after: float | None = None):
    """hinton_kd on digits at the smoke preset, one repetition, in this process."""
    methods = discover()
    request = SuiteRequest(preset="smoke", seeds=1, datasets="digits", backend="inprocess", progress=False,
                           stop_after=stop_after)
    return grids.build_grid(request, [methods["hinton_kd"]], methods, None, print)


def _stored(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]


def test_stop_after_finishes_the_running_run_writes_the_report_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "store"
    # A clock that advances 1000 s with every stored run: the deadline (1 s) passes once the first run is stored.
    monkeypatch.setattr(queue_loop, "clock", lambda: 1000.0 * len(list((out / "runs").glob("*.json")))
                        if (out / "runs").is_dir() else 0.0)
    grid = _hinton_grid(stop_after=1.0)
    planned = grid.specs(1)
    assert run_suite(grid, Store(out)) == 0
    first = _stored(out)
    assert len(first) == 1 and first[0]["status"] == "ok"  # the run that had started finished; no other started
    assert first[0]["method"] == "teacher"  # the queue's order: what the others require comes first
    said = capsys.readouterr().out
    assert f"stopped by --stop-after: {len(planned) - 1} planned runs not started" in said
    assert "run the same command again to resume" in said
    assert (out / "published" / "REPORT.md").is_file() and (out / "published" / "tables" / "summary.csv").is_file()
    # The same command without the limit trains only what is left.
    grid = _hinton_grid()
    assert run_suite(grid, Store(out)) == 0
    runs = _stored(out)
    assert sorted(r["run_id"] for r in runs) == sorted(s.run_id for s in planned)
    assert all(r["status"] == "ok" for r in runs)
    said = capsys.readouterr().out
    assert f"{len(planned)} runs: {len(planned) - 1} trained, 1 cached" in said and "stopped" not in said
    # Every report has the budget audit: without 3x runs, each role's own curves, and the command that adds them.
    report = (out / "published" / "REPORT.md").read_text()
    assert "## Budget audit" in report and "[the whole audit](reference/audit.md)" in report
    every_role = (out / "published" / "reference" / "audit.md").read_text()
    assert "| hinton_kd | default | student |" in every_role
    assert "`python -m benchmark audit --datasets digits --preset smoke` adds them" in report


def test_a_run_expected_to_end_after_the_deadline_is_not_started_and_one_longer_than_the_window_is_named(
        tmp_path, monkeypatch, capsys):
    """The forecast expects hinton_kd's teacher to take a day and every other run a second: with --stop-after 1h
    the teacher does not start, nor its student (which waits on it); the runs that need no teacher (the scratch
    student, the label-smoothing control) are trained, and the run longer than the window itself is named."""
    from benchmark.suite import session

    real = session.forecast

    def slow_teacher(cached, todo, *args, **kwargs):
        result = real(cached, todo, *args, **kwargs)
        for spec in todo:
            result.seconds[spec.run_id] = 86400.0 if spec.method == "teacher" else 1.0
        return result

    monkeypatch.setattr(session, "forecast", slow_teacher)
    out = tmp_path / "store"
    grid = _hinton_grid(stop_after=3600.0)
    planned = grid.specs(1)
    assert run_suite(grid, Store(out)) == 0
    stored = _stored(out)
    assert sorted(r["method"] for r in stored) == ["label_smoothing", "scratch_student"] and len(planned) == 4
    said = capsys.readouterr().out
    assert "stopped by --stop-after: 2 planned runs not started (1 hinton_kd, 1 teacher)" in said
    assert "1 of them (1 teacher) are expected to take longer than --stop-after itself (60 min)" in said
