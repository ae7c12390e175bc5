"""Options several commands share."""

from __future__ import annotations


def add_device_option(p) -> None:
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N",
                   help="where runs train: auto (CUDA when available, else the CPU; default), cpu, cuda (every "
                        "visible GPU) or cuda:N. The kind is part of each run's identity; MPS is not supported")
