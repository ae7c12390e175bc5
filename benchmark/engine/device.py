"""The device a run trains on: its kind (part of the run's identity), the GPU a process is bound to (not), the
numerical settings that make a run repeatable there, and what provenance records of it.

A run's kind is ``cpu`` or ``cuda``; ``--device cuda:N`` only picks which GPU trains it (any of one model gives the
same numbers). MPS is not offered: PyTorch has no deterministic-algorithm guarantee there and it could not be
tested here, so an Apple GPU would give runs that ``reproduce`` cannot vouch for.

On CUDA a run is deterministic: cuBLAS gets a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, which must be set
before cuBLAS is first used: this module sets it when it is imported, and every process that trains imports it
first), cuDNN's benchmark mode is off (it picks kernels by timing them), deterministic algorithms are on, and
float32 products are IEEE float32 unless the run's precision is ``tf32`` (TensorFloat-32 rounds the inputs of a
product to 10 bits of mantissa: faster on the matrix units, different numbers, so it is part of the identity).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass
from functools import cache

import torch

from benchmark.errors import BadInput

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

KINDS = ("cpu", "cuda")
PRECISIONS = ("fp32", "tf32")
# Examples evaluated at a time. On a CPU 128 keeps a CNN's activations in cache (twice as fast as 4,096 at a time);
# a GPU wants large launches. In eval mode a logit does not depend on the chunk on the CPU (tested); on a GPU a
# kernel may be chosen by the batch's size, so the chunk is part of what the code (hashed) fixes.
EVAL_CHUNK = {"cpu": 128, "cuda": 4096}


@dataclass(frozen=True)
class Choice:
    """What ``--device`` asked for: a kind, and the GPUs a suite may use (every visible one for ``cuda``)."""

    kind: str
    gpus: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        return self.kind if self.kind == "cpu" or len(self.gpus) != 1 else f"cuda:{self.gpus[0]}"


def cuda_count() -> int:
    """Visible CUDA devices (0 without CUDA); asks the driver, creates no context."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose(text: str) -> Choice:
    """``auto`` (CUDA where there is one, else the CPU), ``cpu``, ``cuda`` (every visible GPU) or ``cuda:N``;
    BadInput (one line) for anything else or a GPU that is not here."""
    wanted = str(text).strip().lower()
    count = cuda_count()
    if wanted == "auto":
        return Choice("cuda", tuple(range(count))) if count else Choice("cpu")
    if wanted == "cpu":
        return Choice("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", wanted)
    if match is None:
        raise BadInput(f"--device {text!r}: use auto, cpu, cuda or cuda:N")
    if not count:
        raise BadInput(f"--device {wanted}: no CUDA device is available here (torch {torch.__version__}, "
                       f"CUDA {torch.version.cuda or 'not built in'}); use --device cpu or auto")
    if match.group(1) is None:
        return Choice("cuda", tuple(range(count)))
    index = int(match.group(1))
    if index >= count:
        raise BadInput(f"--device {wanted}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return Choice("cuda", (index,))


def check_precision(kind: str, precision: str) -> None:
    if precision not in PRECISIONS:
        raise BadInput(f"precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if precision == "tf32" and kind != "cuda":
        raise BadInput("--tf32 needs a CUDA device (--device cuda): TensorFloat-32 is a GPU's matrix-unit format")


def configure(kind: str, precision: str = "fp32") -> None:
    """The numerical settings of a run of ``kind``, set in the process that trains it (before each run)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    if kind != "cuda":
        return
    torch.backends.cudnn.benchmark = False
    mode = "tf32" if precision == "tf32" else "ieee"
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9; the older flags below are refused once it is used
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"


def bind(kind: str, gpu: int | None) -> torch.device:
    """The device a run of ``kind`` uses in this process: the CPU, or GPU ``gpu`` (None: the current one), made
    current so that ``cuda`` means it from here on."""
    if kind != "cuda":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("this run was planned for CUDA, but no CUDA device is available in this process")
    if gpu is not None:
        torch.cuda.set_device(gpu)
    return torch.device("cuda", torch.cuda.current_device())


def memory_gb(gpu: int) -> float:
    """GPU ``gpu``'s memory in GB."""
    return torch.cuda.get_device_properties(gpu).total_memory / 1e9


def is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator seeded ``seed`` on ``device`` (random numbers drawn on a GPU need the GPU's own)."""
    return torch.Generator(device=device).manual_seed(seed) if is_cuda(device) else torch.Generator().manual_seed(seed)


def synchronize(device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


def describe(kind: str) -> dict[str, object]:
    """Provenance of a run's device: the GPU's name, capability, driver, CUDA and cuDNN versions."""
    if kind != "cuda" or not torch.cuda.is_available():
        return {"device": kind}
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return {"device": kind, "gpu": torch.cuda.get_device_name(index), "gpu_capability": f"{major}.{minor}",
            "gpu_driver": driver_version(), "cuda": torch.version.cuda,
            "cudnn": str(torch.backends.cudnn.version())}


@cache
def driver_version() -> str | None:
    """The NVIDIA driver's version (nvidia-ml-py where installed, else nvidia-smi; None if neither answers)."""
    with contextlib.suppress(Exception):
        import pynvml  # optional (nvidia-ml-py)

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    return None
