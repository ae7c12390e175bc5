"""Times the issue's table of training steps on this GPU and checks it against the issue's targets.

For each of the table's eight steps (a role of a method, at the notebook's batch, on mnist_5k's 28x28 images at
the quick preset, trained as `all` trains it), the median step of R repetitions packed into one model, for R = 1,
8 and 64 (``benchmark.profiling.measure.measure_batched``: the suite's own fit loop, each step timed between GPU
synchronisations), and the time per repetition (step / R). Targets: no step more than 2x the table's time per
repetition at the same R (R = 1 against the table's "CUDA eager"), and the convolutional steps at R = 8 at least
3x the per-repetition throughput of R = 1.

    python3 scripts/gpu/step_table.py OUT_JSON [--dataset mnist_5k] [--reps 1,8,64] [--steps 30]

Run from the repository's root (scripts/gpu/measure.sh does). Needs CUDA (``--device cpu`` runs the same code on
the CPU, to try the script where there is no GPU: its numbers are then no GPU's).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmark.engine import device as devices
from benchmark.engine.discovery import discover
from benchmark.engine.execute import Settings
from benchmark.profiling.measure import measure_batched, train_requirements
from benchmark.profiling.targets import label, plan_targets
from benchmark.store import Store

# The table (torch 2.11, one H200): ms per repetition on a CPU thread, CUDA eager (R = 1), R = 8, R = 64.
TABLE = {
    "subclass_kd CNN teacher (256)": (161.6, 2.00, 0.53, 0.45),
    "js CNN A (128)": (81.5, 2.16, 0.62, 0.37),
    "kl CNN A (8)": (2.01, 1.11, 0.30, 0.040),
    "hinton teacher MLP (64)": (23.3, 1.18, 0.30, 0.064),
    "hinton student MLP (64)": (2.10, 0.80, 0.25, 0.032),
    "subclass student MLP (256)": (18.3, 1.43, 0.34, 0.072),
    "js MLP B (128)": (0.76, 1.27, 0.32, 0.042),
    "kl MLP B (8)": (1.12, 0.90, 0.47, 0.037),
}
CONVOLUTIONAL = ("subclass_kd CNN teacher (256)", "js CNN A (128)", "kl CNN A (8)")
TABLE_REPS = (1, 8, 64)


def which(t) -> str | None:
    """The table's row a profile target is, if any."""
    spec = t.spec
    if spec is None:
        return None
    if spec.method == "subclass_kd" and spec.config.get("stage") == "teacher":
        return "subclass_kd CNN teacher (256)"
    if spec.method == "teacher" and spec.variant == "default":
        return "hinton teacher MLP (64)"
    if spec.method == "scratch_student" and spec.variant == "default":
        return "hinton student MLP (64)"
    text = label(t)
    for prefix, row in (("scratch[js_cnn, image, batch 128]", "js CNN A (128)"),
                        ("scratch[kl_cnn, image, batch 8]", "kl CNN A (8)"),
                        ("scratch[subclass_mlp, flat, batch 256]", "subclass student MLP (256)"),
                        ("scratch[js_mlp_b,", "js MLP B (128)"), ("scratch[kl_mlp, flat, batch 8]", "kl MLP B (8)")):
        if text.startswith(prefix):
            return row
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="mnist_5k")
    parser.add_argument("--reps", default="1,8,64")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not devices.cuda_count():
        print("step_table: no CUDA device", file=sys.stderr)
        return 2
    reps = tuple(int(r) for r in args.reps.split(","))
    methods = discover()
    selected = [(methods[n], {}) for n in ("scratch_student", "teacher", "js_entanglement", "kl_entanglement",
                                           "subclass_kd")]
    selected.append((methods["subclass_kd"], {"stage": "teacher"}))
    targets = plan_targets(selected, methods, dataset=args.dataset, preset="quick", reference=False,
                           device=args.device)
    chosen = {row: t for t in targets.values() if (row := which(t)) is not None}
    torch.set_num_threads(1)
    on = devices.bind(args.device, None)
    result = {"gpu": devices.describe(args.device), "torch": torch.__version__, "dataset": args.dataset,
              "steps": args.steps, "rows": {}, "missing": sorted(set(TABLE) - set(chosen))}
    with tempfile.TemporaryDirectory(prefix="step-table-") as tmp:
        settings = Settings(store=Store(tmp), gpu=on.index if on.type == "cuda" else None)
        train_requirements([t.spec for t in chosen.values()], settings, methods)
        for row, t in chosen.items():
            began = time.time()
            steps = {r: measure_batched(t.spec, r, settings, methods, warmup=args.warmup, steps=args.steps)
                     for r in reps}
            result["rows"][row] = {"target": t.name, "label": label(t),
                                   "per_rep_ms": {r: (s / r * 1e3 if s else None) for r, s in steps.items()},
                                   "seconds": time.time() - began}
            print(f"{row}: " + ", ".join(f"R={r} {v:.3f} ms" for r, v in result["rows"][row]["per_rep_ms"].items()
                                         if v is not None), flush=True)
    result["checks"] = checks(result["rows"])
    args.out.write_text(json.dumps(result, indent=1))
    return 0


def checks(rows: dict) -> list[dict]:
    out = []
    for row, measured in rows.items():
        per_rep = measured["per_rep_ms"]
        for r, table_ms in zip(TABLE_REPS, TABLE[row][1:], strict=True):
            if per_rep.get(r) is not None:
                out.append({"target": f"{row}: R={r} per repetition <= 2x the table's {table_ms} ms",
                            "measured_ms": per_rep[r], "limit_ms": 2 * table_ms, "met": per_rep[r] <= 2 * table_ms})
        if row in CONVOLUTIONAL and per_rep.get(1) and per_rep.get(8):
            gain = per_rep[1] / per_rep[8]
            out.append({"target": f"{row}: R=8 per-repetition throughput >= 3x R=1's", "measured": gain,
                        "limit": 3.0, "met": gain >= 3.0})
    return out


if __name__ == "__main__":
    sys.exit(main())
