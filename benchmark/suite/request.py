"""What a suite command asks for (``all``, ``run``, ``ablate``, ``defects``), checked before anything is planned.

Every bound says why it is there: a value past it cannot be honoured on this machine (more workers than its cores
or its memory can hold, more torch threads than cores), or is a typo (an empty ``--datasets``, ``--max-seeds``
without ``--until-ci``). A violation is :class:`~benchmark.errors.BadInput`: one line, exit status 2, nothing
written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.engine import config as configuration
from benchmark.engine import device as devices
from benchmark.errors import BadInput

DEFAULT_SEEDS = 5  # repetitions per configuration: the usual minimum for a claim with an interval
MAX_SEEDS = 100
DEFAULT_MAX_SEEDS = 20  # what --until-ci gives a configuration at most, unless --max-seeds says otherwise
# Resident memory of one local worker process (torch, the datasets of a run, a CNN's activations), measured as
# about 16 GB for the 21 workers of `--jobs 1000` on digits; a worker beyond what the machine can hold is killed
# by the kernel mid-run.
WORKER_MEMORY_GB = 0.8
# A GPU worker (--device cuda) is a process of its own too, bound to one GPU. It needs a core to queue its kernels
# (a small model's step is mostly the host's launch time), so --jobs stays within the cores; its host memory is
# larger (CUDA's runtime and libraries, about 1 GB more); and on its GPU it holds a CUDA context (about 0.5 GB),
# its datasets (CIFAR-10 whole is 0.6 GB a view) and a packed model's activations. These sizes are estimates
# (no GPU was measured when they were set): generous, so that a worker is refused rather than killed mid-run.
GPU_WORKER_MEMORY_GB = 2.0
GPU_WORKER_DEVICE_GB = 4.0
WORKERS_PER_GPU = 4  # default --jobs per GPU: a worker's gaps between kernels are filled by the others' kernels
# Repetitions packed into one task on a GPU (on a CPU: Settings.batch_reps): every repetition of --seeds 5 or of
# an --until-ci round, with the activations of 16 subclass_kd CNNs at batch 256 within a few GB.
GPU_BATCH_REPS = 16
# Default time limit of one run per preset: far above what a healthy run takes on a 2-core machine (the longest quick
# runs take minutes), so that only a hung or runaway run reaches it.
RUN_TIMEOUT_S = {"smoke": 600.0, "quick": 3600.0, "paper": 6 * 3600.0}


def cores() -> int:
    """The cores this process may use (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_jobs(device: str, gpus: tuple[int, ...], threads: int) -> int:
    """--jobs when not given: the cores over --threads; with GPUs, WORKERS_PER_GPU each, within the cores."""
    jobs = max(cores() // threads, 1)
    return max(min(jobs, WORKERS_PER_GPU * len(gpus)), 1) if device == "cuda" else jobs


def available_memory_gb() -> float | None:
    """MemAvailable of /proc/meminfo in GB (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class SuiteRequest:
    """A suite command's options, as the command line parsed them (defaults: the README's)."""

    preset: str = "quick"
    seeds: int = DEFAULT_SEEDS
    base_seed: int = 0
    datasets: str | None = None  # comma-separated names; None: every dataset available here
    sets: tuple[str, ...] = ()  # --set KEY=VALUE or METHOD.KEY=VALUE
    as_published: bool = False
    until_ci: float | None = None  # half-width in pp
    max_seeds: int | None = None
    jobs: int = 1
    threads: int = 1
    backend: str = "local"
    scheduler: str | None = None
    run_timeout: float | None = None
    batch_reps: bool = True
    data_root: Path | None = None
    download: bool = False
    dry_run: bool = False
    progress: bool = True
    device: str = "cpu"  # the kind every run trains on ("cpu" or "cuda"; --device, resolved by the command line)
    gpus: tuple[int, ...] = ()  # the GPUs the suite's workers use (cuda)
    tf32: bool = False  # float32 products in TensorFloat-32 on CUDA (part of each run's identity)
    stop_after: float | None = None  # seconds after which no new run starts (--stop-after); None: no limit
    probe: bool = True  # the forecast may measure a few steps of a kind the store never timed (--no-probe: never)
    report: bool = True  # write the tables, figures and report at the end (--no-report: store the runs only)

    @property
    def precision(self) -> str:
        return "tf32" if self.tf32 else "fp32"

    @property
    def timeout_s(self) -> float:
        return self.run_timeout or RUN_TIMEOUT_S[self.preset]

    @property
    def most_seeds(self) -> int:
        return self.max_seeds if self.max_seeds is not None else max(DEFAULT_MAX_SEEDS, self.seeds)

    def check(self) -> SuiteRequest:
        """Self, or BadInput naming the first value that cannot be honoured."""
        if self.preset not in configuration.PRESETS:
            raise BadInput(f"unknown preset {self.preset!r}: use one of {', '.join(configuration.PRESETS)}")
        if self.scheduler and self.backend != "dask":
            raise BadInput("--scheduler goes with --backend dask")
        devices.check_precision(self.device, self.precision)
        if self.max_seeds is not None and self.until_ci is None:
            raise BadInput("--max-seeds bounds --until-ci's repetitions: give --until-ci W too, or use --seeds N")
        if self.until_ci is not None and self.most_seeds < self.seeds:
            raise BadInput(f"--max-seeds {self.most_seeds} is below --seeds {self.seeds}")
        if self.datasets is not None and not [n for n in self.datasets.split(",") if n.strip()]:
            raise BadInput(f"--datasets {self.datasets!r} names no dataset: give one or more names, e.g. "
                           "--datasets digits,mnist1d (or leave it out for every available dataset)")
        self._check_parallelism()
        if self.data_root is not None and not self.download:
            if not self.data_root.exists():
                raise BadInput(f"--data-root {self.data_root} does not exist: create it and put the datasets there, "
                               "or add --download")
            if not self.data_root.is_dir():
                raise BadInput(f"--data-root {self.data_root} is not a folder")
        return self

    def _check_parallelism(self) -> None:
        n = cores()
        if self.threads > n:
            raise BadInput(f"--threads {self.threads}: at most {n}, the cores this machine gives this process "
                           "(more torch threads than cores wait for each other)")
        if self.backend == "dask" and self.scheduler:
            return  # the cluster's workers are elsewhere: --jobs does not start processes here
        if self.jobs * self.threads > n:
            gpu = " (a GPU worker needs a core to queue its kernels)" if self.device == "cuda" else ""
            raise BadInput(f"--jobs {self.jobs} with --threads {self.threads}: at most {max(n // self.threads, 1)} "
                           f"jobs here ({n} cores; each job takes {self.threads} thread(s)){gpu}")
        per_worker = GPU_WORKER_MEMORY_GB if self.device == "cuda" else WORKER_MEMORY_GB
        memory = available_memory_gb()
        if memory is not None and self.jobs * per_worker > memory:
            most = max(int(memory / per_worker), 1)
            raise BadInput(f"--jobs {self.jobs}: at most {most} here (each worker process needs about "
                           f"{per_worker:g} GB and {memory:.1f} GB is available)")
        if self.device == "cuda":
            on_gpus = sum(devices.memory_gb(g) for g in self.gpus)
            most = max(int(on_gpus / GPU_WORKER_DEVICE_GB), 1)
            if self.jobs > most:
                raise BadInput(f"--jobs {self.jobs}: at most {most} GPU workers here (each needs about "
                               f"{GPU_WORKER_DEVICE_GB:g} GB of GPU memory; {len(self.gpus)} GPU(s) hold "
                               f"{on_gpus:.0f} GB)")
