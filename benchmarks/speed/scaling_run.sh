#!/bin/bash
# The comparison with PyTorch at 1, 4 and 16 threads on a many-core machine, as one prepared
# command (numba, scipy and torch must be installed there; nothing is downloaded). Run it from
# the repository root:
#
#   MACHINE=xeon16 bash benchmarks/speed/scaling_run.sh
#
# Writes benchmarks/results/$MACHINE/ (or $OUT): machine.txt (lscpu, usable cores, versions),
# and compare_torch.py's results.json at $THREADS threads, rnncli's default split against
# PyTorch, with its RESULTS.md (and docs/speed.md when the folder is under benchmarks/results/).
# Then prints rnncli alone at the most threads with the recurrent loops split over batch rows
# only and over hidden units first (RNN_SPLIT=rows|units; those runs go to a temporary folder).
set -u
PY=${PYTHON:-python3}
THREADS=${THREADS:-1,4,16}
MOST=${THREADS##*,}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ -n "${OUT:-}" ]; then
  WHERE=(--out "$OUT")
elif [ -n "${MACHINE:-}" ]; then
  OUT=benchmarks/results/$MACHINE
  WHERE=(--machine "$MACHINE")
else
  echo "scaling_run.sh: set MACHINE (its folder under benchmarks/results/) or OUT" >&2
  exit 2
fi
mkdir -p "$OUT"
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
from rnncli.tools import bench
for cell in ("lstm", "gru", "rnn"):
    for task in ("train", "sample"):
        case = bench.BenchCase(f"warm-{cell}-{task}", cell, 64, 2, batch=8, seq_len=8, task=task, chars=50)
        bench.measure(case, reps=1, warmup=1, min_rep_seconds=0.01)
print("kernels compiled")
EOF
echo "compile: $(( $(date +%s) - start )) s"

timeout 400 $PY benchmarks/speed/compare_torch.py --threads "$THREADS" --reps 3 --min-rep-seconds 0.5 --warmup 2 \
  --skip loss,startup --only c1,c2,c3,c2-gru,l512-b16,c2-b128,r1024,c3-sample "${WHERE[@]}" 2>&1

SPLITS=$(mktemp -d)
for split in rows units; do
  RNN_SPLIT=$split timeout 60 $PY benchmarks/speed/compare_torch.py --no-torch --threads "$MOST" --reps 3 \
    --min-rep-seconds 0.3 --warmup 1 --skip loss,startup --only c2,c3,l512-b16,c2-b128 --out "$SPLITS/$split" 2>&1 |
    grep -E "chars/s" | sed "s/^/[$split] /"
done
rm -rf "$SPLITS"
echo "total: $(( $(date +%s) - start )) s"
