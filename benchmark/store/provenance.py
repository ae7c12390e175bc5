"""Where and with what a run was made: the git commit (and whether the checkout's code differs from it), the
library versions, the machine, the CPU and its kernels, and the thread settings.

The CPU's model and the kernels torch picks on it (its CPU capability, the MKL and oneDNN versions) are what decide
the last bits of a CPU run: the same run on another of them can round differently, so ``reproduce`` and a retrained
checkpoint's message compare them (:func:`cpu_of`)."""

from __future__ import annotations

import os
import platform
import re
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


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``'s, else the platform's; None when neither says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_kernels() -> dict[str, str | None]:
    """torch's CPU capability (the instruction set its kernels were picked for, e.g. AVX2, AVX512) and the MKL and
    oneDNN versions it was built with (from ``torch.__config__.show()``; None where it does not say)."""
    capability = None
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        pass
    try:
        config = torch.__config__.show()
    except (AttributeError, RuntimeError):
        config = ""
    mkl = re.search(r"Math Kernel Library Version (.+?) for ", config)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([^\s]+)", config)
    return {"cpu_capability": capability,
            "mkl": mkl.group(1) if mkl and torch.backends.mkl.is_available() else None,
            "onednn": onednn.group(1) if onednn and torch.backends.mkldnn.is_available() else None}


CPU_FIELDS = ("cpu", "cpu_capability")  # what tells two CPUs' kernels apart (the library versions come with torch's)


def cpu_of(provenance: dict | None) -> dict[str, str | None]:
    """The CPU a record's provenance names: its model and torch's CPU capability (None where unrecorded)."""
    provenance = provenance or {}
    return {key: provenance.get(key) or None for key in CPU_FIELDS}


def same_cpu(recorded: dict | None, here: dict | None) -> bool:
    """Whether a record's CPU is known and is this one: the same model and CPU capability."""
    a, b = cpu_of(recorded), cpu_of(here)
    return all(a[key] is not None and a[key] == b[key] for key in CPU_FIELDS)


def describe_cpu(provenance: dict | None) -> str:
    cpu = cpu_of(provenance)
    if cpu["cpu"] is None and cpu["cpu_capability"] is None:
        return "an unrecorded CPU"
    return f"{cpu['cpu'] or 'an unnamed CPU'} ({cpu['cpu_capability'] or 'capability unrecorded'})"


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
            "cpu": cpu_model(),
            **cpu_kernels(),
        }
    return dict(_PROVENANCE, threads=torch.get_num_threads(),
                deterministic_algorithms=torch.are_deterministic_algorithms_enabled())
