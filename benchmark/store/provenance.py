"""Where and with what a run was made: the git commit (and whether the checkout's code differs from it), the
library versions, the machine and the thread settings."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd or Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_dirty(cwd: Path | None = None) -> bool | None:
    """Whether the checkout's code differs from its commit (None outside git). The top-level results/ folder is
    left out: it is what a suite writes (the default --out), and its committed files change with every suite."""
    status = _git("status", "--porcelain", "--", ":(top)", ":(top,exclude)results", cwd=cwd)
    return bool(status) if status is not None else None


def committed_files(folder: Path) -> set[str]:
    """Names of the files in ``folder`` that its git checkout tracks at HEAD (empty outside git): in the project's
    own results/, the committed reference records."""
    if not folder.is_dir():
        return set()
    listed = _git("ls-files", "--full-name", "--", ".", cwd=folder)
    return {Path(line).name for line in listed.splitlines()} if listed else set()


_PROVENANCE: dict | None = None


def provenance() -> dict[str, Any]:
    """Where and with what a run was made (computed once per process)."""
    global _PROVENANCE
    if _PROVENANCE is None:
        import torchvision

        _PROVENANCE = {
            "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": code_dirty(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "machine": platform.machine(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        }
    return dict(_PROVENANCE, threads=torch.get_num_threads(),
                deterministic_algorithms=torch.are_deterministic_algorithms_enabled())
