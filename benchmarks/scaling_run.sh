#!/bin/bash
# Issue 18's scaling run on a many-core machine, as one prepared command (the device machine a
# session may be lent has 16 cores and no package registry: numba, scipy, torch come from it).
#
#   OUT=/tmp/scaling bash benchmarks/scaling_run.sh
#
# Writes under $OUT: machine.txt (lscpu, versions), auto/ (compare_torch.py at 1, 4 and 16
# threads, rnncli's default split, against PyTorch), rows/ and units/ (rnncli alone at the most
# threads with the recurrent loops split over batch rows only / hidden units first), auto.log.
set -u
OUT=${OUT:-/tmp/scaling}
PY=${PYTHON:-python3}
THREADS=${THREADS:-1,4,16}
MOST=${THREADS##*,}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{
  lscpu
  echo "usable cores: $($PY -c 'import os; print(len(os.sched_getaffinity(0)))')"
  $PY -c 'import numba, numpy, scipy, torch; print("numba", numba.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__, "torch", torch.__version__)'
} >"$OUT/machine.txt" 2>&1
head -30 "$OUT/machine.txt"

# Compile every kernel once, in this process, so the measuring processes load Numba's cache
# instead of compiling side by side.
start=$(date +%s)
$PY - <<'EOF'
from rnncli import bench
for cell in ("lstm", "gru", "rnn"):
    for task in ("train", "sample"):
        case = bench.BenchCase(f"warm-{cell}-{task}", cell, 64, 2, batch=8, seq_len=8, task=task, chars=50)
        bench.measure(case, reps=1, warmup=1, min_rep_seconds=0.01)
print("kernels compiled")
EOF
echo "compile: $(( $(date +%s) - start )) s"

timeout 400 $PY benchmarks/compare_torch.py --threads "$THREADS" --reps 3 --min-rep-seconds 0.5 --warmup 2 \
  --skip loss,startup --only c1,c2,c3,c2-gru,l512-b16,c2-b128,r1024,c3-sample --out "$OUT/auto" 2>&1 | tee "$OUT/auto.log"

for split in rows units; do
  RNN_SPLIT=$split timeout 60 $PY benchmarks/compare_torch.py --no-torch --threads "$MOST" --reps 3 \
    --min-rep-seconds 0.3 --warmup 1 --skip loss,startup --only c2,c3,l512-b16,c2-b128 --out "$OUT/$split" 2>&1 |
    grep -E "chars/s" | sed "s/^/[$split] /"
done
echo "total: $(( $(date +%s) - start )) s"
