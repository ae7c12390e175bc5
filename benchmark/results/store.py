"""The results store: one JSON file per finished run, written atomically, and the model cache.

Layout under the output folder (default ``results/``)::

    runs/<run_id>.json      one finished run (status ok / failed / skipped)
    cache/<tag>-<key>.pt    cached models (state dicts; loaded with weights_only=True)
    tables/ figures/ profiles/ REPORT.md

A file is written to a temporary name in the same folder, flushed to disk and renamed over the target, so a killed
process never leaves a half-written result under a name that is read; readers ignore the temporary names.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

TMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _json_default(value):
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite_or_none(obj):
    """JSON has no NaN/inf: store them as null (tables drop them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_finite_or_none(obj), indent=1, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.cache_dir = self.root / "cache"
        self.tables_dir = self.root / "tables"
        self.figures_dir = self.root / "figures"
        self.profiles_dir = self.root / "profiles"

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def write_run(self, record: dict) -> None:
        atomic_write_json(self.run_path(record["run_id"]), record)

    def read_run(self, run_id: str) -> dict | None:
        """The stored record, or None if absent or unreadable (a corrupt file is reported and will be rerun)."""
        path = self.run_path(run_id)
        if not path.exists():
            return None
        return _read_record(path)

    def is_done(self, run_id: str) -> bool:
        record = self.read_run(run_id)
        return record is not None and record.get("status") in ("ok", "skipped")

    def iter_runs(self) -> Iterator[dict]:
        if not self.runs_dir.is_dir():
            return
        for path in sorted(self.runs_dir.glob("*.json")):
            record = _read_record(path)
            if record is not None:
                yield record

    def cache_path(self, tag: str, key: str) -> Path:
        return self.cache_dir / f"{tag}-{key}.pt"


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "run_id" not in record or "status" not in record:
            raise ValueError("not a run record")
        return record
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable run file {path} ({exc}); the run will be redone", stacklevel=3)
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


_PROVENANCE: dict | None = None


def provenance() -> dict[str, Any]:
    """Where and with what a run was made (computed once per process)."""
    global _PROVENANCE
    if _PROVENANCE is None:
        import torchvision

        status = _git("status", "--porcelain")
        _PROVENANCE = {
            "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(status) if status is not None else None,
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
