import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def one_thread():
    """One torch thread, restored after: multi-threaded reductions need not be bit-reproducible, and bits are what
    many tests compare (a module that needs it everywhere says ``pytestmark = pytest.mark.usefixtures(...)``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Generated data (mnist1d's cache) goes to a per-session temp folder, never the user's home."""
    root = tmp_path_factory.getbasetemp() / "data-root"
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(root))


def run_main(*args: str, env: dict | None = None):
    """``python -m benchmark`` in this process (its workers are processes of their own, as always): what
    ``run_cli`` returns (``returncode``, ``stdout``, ``stderr``) without the seconds a new interpreter spends
    importing torch. ``env`` is set for the call (worker processes inherit it) and restored after."""
    import contextlib
    import io
    import types

    from benchmark.cli import main

    saved = {k: os.environ.get(k) for k in (env or {})}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run ``python -m benchmark`` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
