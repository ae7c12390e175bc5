"""summary.md of scripts/gpu/measure.sh: every target of the GPU work with what was measured and whether it is met.

    python3 scripts/gpu/summarise.py OUT_FOLDER > OUT_FOLDER/summary.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(value, spec: str) -> str:
    """``value`` formatted, or "-" where it is missing (JSON holds NaN as null)."""
    return "-" if value is None or value != value else format(value, spec)


def _verdict(met) -> str:
    return "met" if met else "NOT met"


def main(folder: Path) -> int:
    lines = ["# GPU measurements (scripts/gpu/measure.sh)", ""]
    env = folder / "env.txt"
    if env.is_file():
        lines += ["```", env.read_text().strip(), "```", ""]
    tests = folder / "cuda_tests.txt"
    tail = tests.read_text().strip().splitlines()[-2:] if tests.is_file() else ["not run"]
    lines += ["## CUDA tests (`pytest -m cuda`)", "", *[f"    {line}" for line in tail], ""]
    suite = _read(folder / "all.json")
    lines += ["## `all` at quick, 5 repetitions, --device auto (target: within 3 minutes)", ""]
    if suite:
        lines.append(f"{', '.join(suite['datasets'])}: {suite['wall_s']:.0f} s, exit status {suite['exit_status']}"
                     f"{' (stopped at its time limit)' if suite['timed_out'] else ''}, runs {suite['runs']}, "
                     f"devices {suite['devices']}: {_verdict(suite['met'])}")
    else:
        lines.append("not measured (all.json missing)")
    steps = _read(folder / "steps.json")
    lines += ["", "## The table's steps: ms per repetition at R = 1, 8, 64 (targets: <= 2x the table's; CNNs at "
              "R = 8 >= 3x R = 1's throughput)", ""]
    if steps:
        reps = sorted({int(r) for measured in steps["rows"].values() for r in measured["per_rep_ms"]})
        lines += ["| step | " + " | ".join(f"R={r}" for r in reps) + " |", "|---" * (len(reps) + 1) + "|"]
        for row, measured in steps["rows"].items():
            cells = [_num(measured["per_rep_ms"].get(str(r)), ".3f") for r in reps]
            lines.append(f"| {row} | {' | '.join(cells)} |")
        lines.append("")
        met = [c for c in steps["checks"] if c["met"]]
        lines.append(f"{len(met)} of {len(steps['checks'])} step targets met; not met:")
        lines += [f"- {c['target']}: {_num(c.get('measured_ms', c.get('measured')), '.3f')}"
                  for c in steps["checks"] if not c["met"]] or ["- none"]
        if steps["missing"]:
            lines.append(f"rows not found: {', '.join(steps['missing'])}")
    else:
        lines.append("not measured (steps.json missing)")
    profile = _read(folder / "profile.json")
    lines += ["", "## Profile (fp32 matmul peak share, kernels, packed R = 8)", ""]
    if profile:
        machine, peaks = profile["machine"], profile["peak_gflops_per_repeat"]
        tf32 = _num(machine.get("tf32_peak_gflops"), ".0f")
        gpu = machine.get("gpu")
        lines.append(f"matmul peak {sum(peaks) / len(peaks):.0f} GFLOP/s fp32, {tf32} TF32, on {gpu}")
        for row in profile["rows"]:
            if row["status"] == "ok":
                lines.append(f"- {row['label']}: {_num(row['step_median_ms'], '.3f')} ms, "
                             f"{_num(row['peak_fraction'], '.1%')} of the peak, R={row.get('batched_reps')} "
                             f"{_num(row.get('batched_ratio'), '.2f')}x one step; kernels: {row.get('top_kernels')}")
            else:
                lines.append(f"- {row['target']}: failed: {row['note']}")
        lines += [f"- target {t['target']}: {_num(t['measured'], '.3f')} ({_verdict(t['met'])})"
                  for t in profile["targets"]]
    else:
        lines.append("not measured (profile.json missing)")
    numerics = folder / "cpu_numerics.txt"
    lines += ["", "## This machine's CPU: default and AVX2-pinned digests (scripts/cpu_numerics.sh)", ""]
    lines += [f"    {line}" for line in numerics.read_text().strip().splitlines()[-6:]] if numerics.is_file() \
        else ["not measured (cpu_numerics.txt missing)"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
