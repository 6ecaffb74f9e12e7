#!/usr/bin/env bash
# Prove that two commits behave bit-identically: the same fixed list of small rnncli commands runs
# with each commit's code (in a git worktree of it), then .ci/compare_runs.py compares stdout, exit
# codes and every checkpoint, and the newer code must reproduce what the older code printed from
# the older code's checkpoints.
#
#   bash .ci/same_behaviour.sh OLD_COMMIT NEW_COMMIT      (repo root, the project's venv active)
#
#   OLD_OUT=DIR   the older commit's outputs: reused when DIR holds a finished run of OLD_COMMIT
#                 (a kept baseline), else written there and kept
#   NEW_OUT=DIR   where the newer commit's outputs go (default: under the temporary folder)
#   PYTHON=...    the interpreter (default: python)
#
# Results depend on the machine: thread shares are capped at the usable cores and OpenBLAS picks
# kernels for the CPU, so a baseline is only comparable on the setup recorded in its env.txt
# (compared like everything else).
#
# Exit status: 0 when everything is the same, 1 when something differs, 2 on a usage or setup error.
set -euo pipefail

die() { echo "same_behaviour: $*" >&2; exit 2; }
[ $# -eq 2 ] || die "usage: bash .ci/same_behaviour.sh OLD_COMMIT NEW_COMMIT"
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
COMPARE=$HERE/compare_runs.py  # the invoking checkout's comparer, whatever the trees hold
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
OLD_SHA=$(git -C "$REPO" rev-parse --verify --quiet "$1^{commit}") || die "$1: not a commit"
NEW_SHA=$(git -C "$REPO" rev-parse --verify --quiet "$2^{commit}") || die "$2: not a commit"
"$PY" -c 'import numpy, numba, click' 2>/dev/null || die "$PY lacks the dependencies; activate the venv"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/same-behaviour.XXXXXX")
OLD_OUT=${OLD_OUT:-$WORK/old}
NEW_OUT=${NEW_OUT:-$WORK/new}
TREES=()
cleanup() {
  for t in "${TREES[@]+"${TREES[@]}"}"; do
    git -C "$REPO" worktree remove --force "$t" 2>/dev/null || rm -rf "$t"
  done
  git -C "$REPO" worktree prune 2>/dev/null || true
}
trap cleanup EXIT

# Settings of the caller's shell that rnncli, Numba, OpenBLAS or rich would read: none may leak in.
for v in $(compgen -e); do
  case $v in NUMBA_*|RNN_*|OPENBLAS_*|OMP_*|MKL_*|PMI_SIZE|OMPI_*|FORCE_COLOR|NO_COLOR|TTY_*|CLICOLOR*) unset "$v";; esac
done
export COLUMNS=100 LINES=40 LC_ALL=C.UTF-8 PYTHONIOENCODING=utf-8
unset PYTHONPATH

RUN_ENV=()  # extra VAR=VALUE settings for the next commands

run() {  # run NAME ARGS...: rnncli ARGS with $tree's code; argv, stdout, stderr and exit code kept
  local name=$1; shift
  { for e in "${RUN_ENV[@]+"${RUN_ENV[@]}"}"; do echo "env $e"; done; printf '%s\n' "$@"; } >"$out/cmds/$name.argv"
  local rc=0 t0=$SECONDS
  (cd "$tree" && env "${RUN_ENV[@]+"${RUN_ENV[@]}"}" PYTHONPATH="$tree" "$PY" -m rnncli "$@") \
    >"$out/cmds/$name.stdout" 2>"$out/cmds/$name.stderr" </dev/null || rc=$?
  echo "$rc" >"$out/cmds/$name.rc"
  printf '  %-34s exit %s  %3ss\n' "$name" "$rc" "$((SECONDS - t0))"
}

rundir() {  # rundir OUT NAME: the one run folder a command wrote (a name that fails loudly if none)
  local d
  d=$(find "$1/runs/$2" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort | head -n 1)
  echo "${d:-$1/runs/$2/no-run-folder}"
}
ckpt() { echo "$(rundir "$1" "$2")/$3.npz"; }

make_tree() {  # make_tree SHA DIR: a worktree without Numba caches, whose code Python really imports
  git -C "$REPO" worktree add --detach --quiet "$2" "$1"
  TREES+=("$2")
  (cd "$2" && find . -name '*.nb[ic]' -delete)
  local got
  got=$(cd "$2" && PYTHONPATH="$2" "$PY" -c 'import rnncli;print(rnncli.__file__)') \
    || die "$1: rnncli does not import from $2"
  case $got in "$2"/*) ;; *) die "rnncli imports from $got, not from the worktree $2 (the editable install wins?)";; esac
  # Submodules too: the editable install's finder maps names of /work/main's package, and a
  # module missing from the tree must not be found there.
  (cd "$2" && PYTHONPATH="$2" "$PY" - "$2") <<'EOF' || die "$1: modules load from outside $2"
import os, sys
tree = os.path.realpath(sys.argv[1]) + os.sep
import rnncli, rnncli.cli  # noqa: E401
bad = [f"{n}: {m.__file__}" for n, m in sorted(sys.modules.items())
       if n.split(".")[0] == "rnncli" and getattr(m, "__file__", None)
       and not os.path.realpath(m.__file__).startswith(tree)]
if bad:
    sys.exit("rnncli modules loaded from outside the worktree:\n  " + "\n  ".join(bad))
EOF
}

write_env() {  # what the numbers depend on besides the code
  (cd "$tree" && PYTHONPATH="$tree" "$PY" -) >"$out/env.txt" <<'EOF'
import os, platform
import llvmlite, numba, numpy, scipy
import rnncli  # noqa: F401  (chooses OPENBLAS_CORETYPE on import)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("python", platform.python_version(), "| numpy", numpy.__version__, "| scipy", scipy.__version__,
      "| numba", numba.__version__, "| llvmlite", llvmlite.__version__)
print("machine", platform.machine(), "|", cpu)
print("usable cores", len(os.sched_getaffinity(0)))
print("OPENBLAS_CORETYPE", os.environ.get("OPENBLAS_CORETYPE", ""))
EOF
}

write_data() {  # a small labelled set built from three of the tree's texts, the same every time
  "$PY" - "$tree/corpora" "$out/data" <<'EOF'
import os, re, sys
corpora, data = sys.argv[1:]
os.makedirs(data)
sources = [("story", "en_short_stories.txt"), ("play", "en_lighthouse_play.txt"),
           ("explain", "en_plain_explanations.txt")]
per = {}
for label, name in sources:
    with open(os.path.join(corpora, name), encoding="utf-8") as f:
        text = re.sub(r"\s+", " ", f.read())
    per[label] = [s for s in re.split(r"(?<=[.!?]) ", text) if 5 <= len(s.split()) <= 40][:90]
    if len(per[label]) < 90:
        sys.exit(f"{name}: too few sentences for the classifier data")
rows = lambda lo, hi: [(label, per[label][i]) for i in range(lo, hi) for label, _ in sources]
for name, part in (("train.txt", rows(0, 60)), ("test.txt", rows(60, 90))):
    with open(os.path.join(data, name), "w", encoding="utf-8") as f:
        f.writelines(f"{label}\t{text}\n" for label, text in part)
with open(os.path.join(data, "predict.txt"), "w", encoding="utf-8") as f:
    f.writelines(f"{text}\n" for _, text in rows(60, 90))
EOF
}

consumers() {  # consumers PREFIX SRC: every command that reads a checkpoint, on those SRC's commands wrote
  local p=$1 src=$2 c=$tree/corpora
  run "${p}sample-lstm" sample "$(ckpt "$src" train-lstm-t1 best)" --seed 7 --prime 'The ' --temp 0.8 --top-k 10 -n 300 --threads 1
  run "${p}sample-batch" sample "$(ckpt "$src" train-lstm-t1 best)" --seed 7 --prime 'The ' --temp 0.8 --top-k 10 -n 300 --num-samples 3 --threads 1
  run "${p}sample-gru-t2" sample "$(ckpt "$src" train-gru-t2 best)" --seed 11 --temp 0.8 -n 300 --threads 2
  run "${p}sample-ema" sample "$(ckpt "$src" train-ema best)" --seed 3 --prime 'Le \n' --temp 0.8 -n 300 --num-samples 2 --threads 1
  run "${p}sample-rnn-argmax" sample "$(ckpt "$src" train-rnn-t1 latest)" --argmax --prime 'A' -n 200 --seed 5 --threads 1
  run "${p}eval-lstm" eval "$(ckpt "$src" train-lstm-t1 best)" "$c/en_pear_tree_play.txt" --threads 1
  run "${p}eval-gru-t2" eval "$(ckpt "$src" train-gru-t2 best)" "$c/fr_vendanges_piece.txt" --threads 2
  run "${p}eval-rnn" eval "$(ckpt "$src" train-rnn-t2 latest)" "$c/en_snowbound_train_play.txt" --threads 1
  run "${p}eval-ema" eval "$(ckpt "$src" train-ema best)" "$c/fr_notes_pratiques.txt" --threads 1
  run "${p}eval-streams" eval "$(ckpt "$src" train-streams latest)" "$c/en_pear_tree_play.txt" --threads 2
  run "${p}eval-resumed" eval "$(ckpt "$src" resume-continued latest)" "$c/fr_vendanges_piece.txt" --threads 2
  run "${p}classify-eval" classify eval "$(ckpt "$src" classify-train best)" "$src/data/test.txt"
  run "${p}classify-predict" classify predict "$(ckpt "$src" classify-train best)" "$src/data/predict.txt" --all-probs
  run "${p}classify-predict-labelled" classify predict "$(ckpt "$src" classify-train best)" "$src/data/test.txt" --labelled
  run "${p}classify-eval-rnn" classify eval "$(ckpt "$src" classify-train-rnn best)" "$src/data/test.txt"
  run "${p}classify-predict-rnn" classify predict "$(ckpt "$src" classify-train-rnn best)" "$src/data/predict.txt" --all-probs
}

resume_from() {  # resume_from NAME SRC: continue a copy of SRC's half run (the copy keeps SRC's intact)
  mkdir -p "$out/runs/$1"
  cp -R "$(rundir "$2" resume-half)" "$out/runs/$1/"
  run "$1" train "$tree/corpora/fr_le_moulin_piece.txt" --resume "$(ckpt "$out" "$1" latest)" \
    --max-steps 40 --max-time 0 --eval-every 10 --patience 0 --threads 2
}

commands() {  # the fixed list; every option the recipe would choose from a speed probe is given
  local c=$tree/corpora
  local lm=(--max-time 0 --seed 1234 --weight-decay 0.05)
  run help --help
  run help-train train -h
  run help-sample sample -h
  run help-eval eval -h
  run help-classify-train classify train -h
  run help-gradcheck gradcheck -h
  for t in 1 2; do
    run "train-lstm-t$t" train "$c/en_short_stories.txt" "${lm[@]}" --cell lstm --hidden-size 32 --layers 2 --dropout 0 \
      --lr 0.002 --eval-every 20 --max-steps 40 --threads "$t" --out "$out/runs/train-lstm-t$t"
    run "train-gru-t$t" train "$c/en_short_stories.txt" "${lm[@]}" --cell gru --hidden-size 32 --layers 2 --dropout 0 \
      --lr 0.004 --eval-every 20 --max-steps 40 --threads "$t" --out "$out/runs/train-gru-t$t"
    run "train-rnn-t$t" train "$c/en_short_stories.txt" --max-time 0 --seed 1234 --cell rnn --hidden-size 48 --layers 1 \
      --dropout 0 --optimizer rmsprop --lr 0.002 --weight-decay 0.0001 --eval-every 20 --max-steps 40 --threads "$t" \
      --out "$out/runs/train-rnn-t$t"
  done
  # Threads split by hidden units meet at a barrier every step; rows are preferred, so force it once.
  RUN_ENV=(RNN_SPLIT=units)
  run train-gru-t2-units train "$c/en_short_stories.txt" "${lm[@]}" --cell gru --hidden-size 48 --layers 1 --dropout 0 \
    --lr 0.004 --eval-every 20 --max-steps 40 --threads 2 --out "$out/runs/train-gru-t2-units"
  RUN_ENV=()
  run train-ema train "$c/fr_nouvelles.txt" "${lm[@]}" --cell lstm --hidden-size 24 --layers 1 --dropout 0 \
    --lr 0.003 --ema 0.9 --eval-every 15 --max-steps 30 --threads 1 --out "$out/runs/train-ema"
  run train-streams train "$c/en_lighthouse_play.txt" "${lm[@]}" --cell gru --hidden-size 24 --layers 1 --dropout 0 \
    --lr 0.004 --streams 64 --eval-every 15 --max-steps 30 --threads 2 --out "$out/runs/train-streams"
  run train-dropout train "$c/en_short_stories.txt" "${lm[@]}" --cell lstm --hidden-size 24 --layers 2 --dropout 0.3 \
    --embedding-size 0 --lr 0.002 --eval-every 15 --max-steps 30 --threads 1 --out "$out/runs/train-dropout"
  # The cosine schedule's horizon is --max-steps, so a run stopped early would follow another
  # curve; the epoch-step schedule does not depend on the limit. Patience 0: the count of
  # evaluations without progress is not saved in checkpoints.
  local half=(train "$c/fr_le_moulin_piece.txt" "${lm[@]}" --cell gru --hidden-size 32 --layers 2 --dropout 0.1
              --lr 0.004 --schedule step --lr-decay 0.8 --decay-after 1 --patience 0 --eval-every 10 --threads 2)
  run resume-half "${half[@]}" --max-steps 20 --out "$out/runs/resume-half"
  resume_from resume-continued "$out"
  run resume-full "${half[@]}" --max-steps 40 --out "$out/runs/resume-full"
  local clf=(--layers 1 --dense 16 --embedding-size 16 --min-freq 1 --max-len 40 --batch-size 16 --lr 0.01
             --max-time 0 --seed 7 --threads 1)
  run classify-train classify train "$out/data/train.txt" --test "$out/data/test.txt" "${clf[@]}" --cell gru \
    --hidden-size 24 --dropout 0.2 --epochs 4 --patience 4 --out "$out/runs/classify-train"
  # The n-gram path alone decides the mix above; without it the recurrent network's own
  # predictions are printed (and epoch 4 of 6 is the best, so early stopping's choice counts).
  run classify-train-rnn classify train "$out/data/train.txt" --test "$out/data/test.txt" "${clf[@]}" --ngram 0 \
    --cell lstm --unidirectional --pooling mean --hidden-size 24 --dropout 0.1 --epochs 6 --patience 6 \
    --out "$out/runs/classify-train-rnn"
  consumers "" "$out"
  run gradcheck gradcheck
  run gradcheck-lstm-2 gradcheck --cell lstm --layers 2
}

side() {  # side SHA OUT LABEL [OLD_OUT]: run the list with SHA's code; with OLD_OUT, the cross-loads too
  local sha=$1 label=$3 t0=$SECONDS
  out=$2
  tree=$WORK/tree-$label
  mkdir -p "$out/cmds" "$out/runs"
  make_tree "$sha" "$tree"
  echo "$sha" >"$out/commit"
  printf '{"tree": "%s", "out": "%s", "from": "%s"}\n' "$tree" "$(cd "$out" && pwd)" "${4:-}" >"$out/paths.json"
  echo "$label $sha: code from $tree, outputs in $out"
  write_env
  write_data
  commands
  if [ $# -ge 4 ]; then
    echo "  the newer code on the older commit's checkpoints:"
    consumers cross. "$4"
    resume_from cross.resume-continued "$4"
  fi
  echo "$label done in $((SECONDS - t0)) s"
  touch "$out/complete"
}

if [ -f "$OLD_OUT/complete" ]; then
  [ "$(cat "$OLD_OUT/commit")" = "$OLD_SHA" ] || die "$OLD_OUT holds $(cat "$OLD_OUT/commit"), not $OLD_SHA"
  echo "old $OLD_SHA: reusing $OLD_OUT"
elif [ -e "$OLD_OUT" ] && [ -n "$(ls -A "$OLD_OUT")" ]; then
  die "$OLD_OUT exists but holds no finished run; remove it"
else
  side "$OLD_SHA" "$OLD_OUT" old
fi
[ ! -e "$NEW_OUT" ] || [ -z "$(ls -A "$NEW_OUT")" ] || die "$NEW_OUT exists and is not empty"
side "$NEW_SHA" "$NEW_OUT" new "$(cd "$OLD_OUT" && pwd)"

echo
echo "comparison (old $OLD_SHA, new $NEW_SHA):"
rc=0
"$PY" "$COMPARE" "$OLD_OUT" "$NEW_OUT" | tee "$WORK/compare.txt" || rc=$?

# The comparer must be able to fail: a copy of the new outputs with one float of one checkpoint
# flipped in its last bit, and one byte of one stdout changed, has to show those two and no more.
echo
echo "self-test: the new outputs against a perturbed copy of themselves:"
cp -R "$NEW_OUT" "$WORK/perturbed"
"$PY" - "$WORK/perturbed" <<'EOF'
import glob, sys
import numpy as np
d = sys.argv[1]
path = sorted(glob.glob(f"{d}/runs/train-lstm-t1/*/best.npz"))[0]
with np.load(path, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files}
w = arrays["param/W_hy"].copy()
w.reshape(-1).view(np.uint32)[5] ^= 1
arrays["param/W_hy"] = w
with open(path, "wb") as f:
    np.savez(f, **arrays)
out = f"{d}/cmds/sample-lstm.stdout"
text = open(out, "rb").read()
open(out, "wb").write(text[:10] + bytes([text[10] ^ 1]) + text[11:])
EOF
self_rc=0
"$PY" "$COMPARE" "$NEW_OUT" "$WORK/perturbed" >"$WORK/selftest.txt" || self_rc=$?
grep -v '^same ' "$WORK/selftest.txt"
found=$(grep -c '^DIFFERENT' "$WORK/selftest.txt" || true)
if [ "$self_rc" -ne 1 ] || [ "$found" -ne 2 ] \
   || ! grep -q '^DIFFERENT  file train-lstm-t1/[^ ]*/best.npz: param/W_hy' "$WORK/selftest.txt" \
   || ! grep -q '^DIFFERENT  stdout sample-lstm ' "$WORK/selftest.txt"; then
  echo "self-test FAILED: the comparer missed a perturbation or reported more (exit $self_rc, $found different)"
  rc=2
else
  echo "self-test passed: both perturbations reported DIFFERENT, nothing else"
fi
echo
echo "outputs: old $OLD_OUT, new $NEW_OUT, comparison $WORK/compare.txt"
exit "$rc"
