#!/usr/bin/env bash
# Do two CPUs train the same run to the same bits when torch's CPU kernels are pinned to one instruction set?
#
# A CPU run's last bits depend on the kernels torch, MKL and oneDNN pick for the CPU they run on (README, "Results
# are bit-identical on the same machine"): a teacher trained again on another CPU comes out slightly different, and
# the runs that learned from the stored one keep its numbers. This script trains one teacher and one scratch student
# (digits, quick, repetition 0: a convolutional network, so oneDNN's kernels, and an MLP, so MKL's) twice, once as
# the harness does and once with every kernel choice pinned to AVX2 (torch's CPU capability, MKL's conditional
# numerical reproducibility, oneDNN's instruction-set cap), and prints a digest of each run's metrics, the CPU and
# its kernels. Run it on two CPUs (an AMD EPYC and an Intel Xeon, say) at the same commit: where the pinned digests
# agree and the default ones differ, pinning makes a CPU run reproducible across them. About 2 minutes on 2 cores.
#
# Reference, torch 2.14.1 on an AMD EPYC (AVX512), runs 694f999febba9063 (scratch_student) and e6335b176dbb47aa
# (teacher): default digests 00fd9457afcf169f and cbd7e465f361c6d1, pinned 709bb8c87a987aa9 and f5285f5d2b16e835
# (the same in two sessions). A digest is of the metrics, so it moves only when the training code changes a
# number: compare digests of the same run ids.
#
# Usage: scripts/cpu_numerics.sh [OUT]   (default OUT: a temporary folder; nothing is written to results/)
set -euo pipefail
out=${1:-$(mktemp -d)}
mkdir -p "$out"
python=${PYTHON:-python}
run() {  # $1: a name, then environment assignments
    local name=$1; shift
    rm -rf "$out/$name"
    env "$@" "$python" -m benchmark run teacher scratch_student --datasets digits --seeds 1 --jobs 1 --threads 1 \
        --device cpu --out "$out/$name" --no-progress > "$out/$name.log" 2>&1
}
run pinned ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2,STRICT ONEDNN_MAX_CPU_ISA=AVX2  # first: the one to compare
run default
"$python" - "$out" <<'EOF'
import glob, hashlib, json, sys

for mode in ("pinned", "default"):
    for path in sorted(glob.glob(f"{sys.argv[1]}/{mode}/runs/*.json")):
        record = json.load(open(path))
        digest = hashlib.sha256(json.dumps(record["metrics"]).encode()).hexdigest()[:16]
        p = record["provenance"]
        print(f"{mode:8} {record['method']:16} {record['run_id']} metrics sha256 {digest}  "
              f"{p.get('cpu')} ({p.get('cpu_capability')}; MKL {p.get('mkl')}; oneDNN {p.get('onednn')}) "
              f"commit {str(p.get('git_commit'))[:12]}")
EOF
