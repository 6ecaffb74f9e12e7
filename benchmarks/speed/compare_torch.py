#!/usr/bin/env python
"""rnncli against PyTorch on the same CPU: the same models, data, optimizer and threads, measured
side by side in one run. Writes benchmarks/results/<machine>/results.json and renders its
RESULTS.md and docs/speed.md from it (render.py, beside this file).

    python benchmarks/speed/compare_torch.py --machine zen1-2core      # the full run (a few minutes)
    python benchmarks/speed/compare_torch.py --quick --only c1 --out /tmp/smoke    # smoke test

Language-model configurations (vocabulary 65, embedding 64): c1 LSTM 1x128 B32 T64 · c2 LSTM
2x256 B32 T64 · c3 LSTM 2x512 B64 T100 · c2-gru · c2-rnn · c2-sample (2,000 characters, batch 1);
shapes with few rows per thread: l512-b16 LSTM 1x512 B16 T50 · l512-b4 (B4 T64) · c2-b128 ·
r1024 RNN 1x1024 B32 T64 · l768x3-b24 LSTM 3x768 B24 T64; c3-sample (1,000 characters of c3, batch 1); c2-sample16 (16 samples
of 1,000 characters of c2 drawn as one batch, as rnn sample --num-samples 16). With several
--threads, RESULTS.md has a scaling table; thread counts above the cores this process may use
are skipped unless --oversubscribe.

Classifier: cls-gru and cls-lstm train, cls-gru-infer and cls-lstm-infer infer, with the
model of `rnn classify train`: word vocabulary 20k, embedding 128, bidirectional GRU or LSTM 1x256,
max pooling over each text's valid steps, dense 128-64 (ReLU), 4 classes, batch 32, dropout 0,
against the same model in PyTorch as its users write it (torch_classify.py, beside this file: packed
sequences). The data: --cls-texts synthetic texts (rnncli.tools.bench.classify_data, seeded), lengths
log-normal with median 100 tokens and sigma 0.7 clipped to [20, 400], ids Zipf over the
vocabulary; batched as an epoch of rnn classify train batches them (texts of similar length
together, the batches in a seeded random order), built before timing and the same on both sides.
A timed unit is one pass over all the batches: training = per batch forward + backward +
global-norm clip (5) + Adam (lr 2e-3); inference = forward only (torch.inference_mode), rnncli's
as a loaded `rnn classify` model runs it: each text's recurrent loop stops at its length, and
layer 0's input projections are gathered from tables folded once per model (not timed, like
loading the model). Speed is texts/s (tokens/s beside it); both sides start from rnncli's
initial weights.
RNN_SPLIT=rows|units in the environment forces how rnncli splits its recurrent loops.

Method
* Each framework runs in a worker process of its own, started fresh for each thread count, so
  neither one's thread pools (PyTorch's OpenMP, the OpenBLAS pools, Numba) live in the other's
  process, and each runs as a user would run it. The driver interleaves them, one repetition of
  rnncli then one of PyTorch (A B A B ...), so a change in machine load hits both alike, with a
  short pause between runs so the pool that just finished stops spinning before the other starts.
* Training = forward + BPTT + global-norm clip (5) + Adam (lr 2e-3), float32, hidden state carried
  across chunks (detached in PyTorch), the very same random token chunks in both frameworks.
* Warm-up first; a repetition is whole steps lasting at least --min-rep-seconds; the median of
  --reps repetitions each; the ratio is the median of the per-pair ratios rnncli/PyTorch.
* The classifier warms up with one pass (compilation, every batch shape), then two single timed
  passes choose the repetition length.
* Threads: rnncli.engine.threads.set_threads(t) in the rnncli worker, torch.set_num_threads(t) in
  PyTorch's.
* FLOPs from rnncli.engine.flops.train_flops / sample_flops (matrix products only, 2·m·n·k); the
  peak is the best float32 1024³ GEMM seen at that thread count, before and after its cases,
  through rnncli's product path or torch.mm.
* Loss curve: c1 on tiny Shakespeare, both frameworks from rnncli's initial weights and the same
  chunks in the same order (PyTorch's second bias held at zero so the optimisation is the same).
* Start-up: wall time of a fresh `rnn sample -n 200` process from a c2 checkpoint, with a warm
  Numba cache (median) and with NUMBA_CACHE_DIR pointing at an empty directory (cold compile).

PyTorch is optional: without it the script says so and measures rnncli alone.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.metadata
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: machines.py
import machines  # noqa: E402
import render  # noqa: E402  (beside this file)

REPO = render.REPO
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def bench_module():
    from rnncli.tools import bench

    return bench


def all_cases() -> dict:
    B = bench_module().BenchCase
    return {
        "c1": B("c1", "lstm", 128, 1, batch=32, seq_len=64),
        "c2": B("c2", "lstm", 256, 2, batch=32, seq_len=64),
        "c3": B("c3", "lstm", 512, 2, batch=64, seq_len=100),
        "c2-gru": B("c2-gru", "gru", 256, 2, batch=32, seq_len=64),
        "c2-rnn": B("c2-rnn", "rnn", 256, 2, batch=32, seq_len=64),
        "c2-sample": B("c2-sample", "lstm", 256, 2, batch=1, seq_len=0, task="sample", chars=2000),
        # shapes where few rows per thread leave cores idle unless the loops split hidden units
        "l512-b16": B("l512-b16", "lstm", 512, 1, batch=16, seq_len=50),
        "l512-b4": B("l512-b4", "lstm", 512, 1, batch=4, seq_len=64),
        "c2-b128": B("c2-b128", "lstm", 256, 2, batch=128, seq_len=64),
        "r1024": B("r1024", "rnn", 1024, 1, batch=32, seq_len=64),
        # a deep, wide stack whose batch does not divide into 8-row blocks per thread
        "l768x3-b24": B("l768x3-b24", "lstm", 768, 3, batch=24, seq_len=64),
        "c3-sample": B("c3-sample", "lstm", 512, 2, batch=1, seq_len=0, task="sample", chars=1000),
        # 16 samples drawn as one batch (rnn sample --num-samples 16)
        "c2-sample16": B("c2-sample16", "lstm", 256, 2, batch=16, seq_len=0, task="sample", chars=1000),
        **classifier_cases(),
    }


CLS_TEXTS = 256  # texts per timed pass (8 batches of 32), --cls-texts


def classifier_cases(texts: int = CLS_TEXTS) -> dict:
    K = bench_module().ClassifyCase
    return {name: K(name, cell, 256, 1, texts=texts, task=task)
            for cell in ("gru", "lstm") for task, name in (("train", f"cls-{cell}"), ("infer", f"cls-{cell}-infer"))}


def is_classifier(case) -> bool:
    return isinstance(case, bench_module().ClassifyCase)


# The project's targets: the least ratio rnncli / PyTorch each configuration should reach (None: none).
TARGETS = {"c1": 2.0, "c2": 1.3, "c3": 1.1, "c2-gru": 1.3, "c2-rnn": 1.3, "c2-sample": 20.0,
           "l512-b16": 1.3, "l512-b4": 1.3, "c2-b128": 1.3, "r1024": 1.3, "l768x3-b24": 1.0, "c3-sample": None, "c2-sample16": None,
           # the classifier, training and inference
           "cls-gru": 1.5, "cls-lstm": 1.5, "cls-gru-infer": 1.5, "cls-lstm-infer": 1.5}
STARTUP_TARGETS = {"warm": 1.0, "cold": 15.0}  # seconds


# ---------------------------------------------------------------- workers (one process per framework)

def load_text_chunks(path: str, case, steps: int) -> tuple[list, int]:
    """The first `steps` chunks of a text read as rnn train reads it (no validation split)."""
    from rnncli.data.chars import StreamBatches
    from rnncli.data.corpus import load_corpus

    corpus = load_corpus([path])
    batches = StreamBatches(corpus.ids, case.batch, case.seq_len)
    return [batches.chunk(k) for k in range(min(steps, batches.chunks))], corpus.vocab.size


class RnncliWorker:
    def __init__(self, threads: int):
        from rnncli.engine import threads as engine_threads

        self.threads = threads
        engine_threads.set_threads(threads)
        self.run = None

    def peak(self) -> float:
        return bench_module().matmul_peak_gflops(self.threads)

    def openblas(self) -> str:
        from rnncli.engine import openblas

        return openblas.scipy_kernels()

    def prepare(self, case, seed: int, warmup: int) -> float:
        b = bench_module()
        self.run = b.make_run(case, seed)
        return b.warm_up(self.run, warmup)

    def rep(self, units: int) -> float:
        return self.run.run(units)

    def loss_curve(self, case, path: str, steps: int, seed: int) -> list[float]:
        data, vocab_size = load_text_chunks(path, case, steps)
        run = bench_module().TrainingRun(case, seed, vocab_size, data=data)
        return [run.step() for _ in range(steps)]


class TorchWorker:
    def __init__(self, threads: int):
        import torch
        import torch_classify
        import torch_lm

        torch.set_num_threads(threads)
        self.lm = torch_lm
        self.classify = torch_classify
        self.run = None

    def peak(self) -> float:
        return self.lm.matmul_peak_gflops()

    def prepare(self, case, seed: int, warmup: int) -> float:
        self.run = (self.classify if is_classifier(case) else self.lm).make_run(case, seed)
        return bench_module().warm_up(self.run, warmup)

    def rep(self, units: int) -> float:
        return self.run.run(units)

    def loss_curve(self, case, path: str, steps: int, seed: int) -> list[float]:
        data, vocab_size = load_text_chunks(path, case, steps)
        params = bench_module().initial_params(case, vocab_size, seed)
        run = self.lm.TorchTrainingRun(case, seed, vocab_size, data=data, params=params, single_bias=True)
        return [run.step() for _ in range(steps)]


def serve(conn, side: str, threads: int) -> None:
    """Worker process main loop: requests (method, args) in, ("ok", value) or ("error", text) out."""
    try:
        worker = RnncliWorker(threads) if side == "rnncli" else TorchWorker(threads)
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        request = conn.recv()
        if request is None:
            return
        method, args = request
        try:
            conn.send(("ok", getattr(worker, method)(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))


class Worker:
    """The driver's handle on one worker process."""

    def __init__(self, side: str, threads: int):
        self.side = side
        ctx = mp.get_context("spawn")  # a clean interpreter: no thread pool inherited from the driver
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, side, threads), daemon=True)
        self.process.start()
        self._answer()

    def _answer(self):
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.side} worker failed:\n{value}")
        return value

    def call(self, method: str, *args):
        self.conn.send((method, args))
        return self._answer()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()


# ---------------------------------------------------------------- measurements

def interleaved(workers: dict, case, warmup: int, opts) -> tuple[dict, dict]:
    """Warm both sides up, then interleave their repetitions: (units per repetition, the
    seconds of each repetition) by side."""
    b = bench_module()
    units = {}
    for side, w in workers.items():
        per_unit = w.call("prepare", case, opts.seed, warmup)
        units[side] = b.units_per_rep(per_unit, opts.min_rep_seconds)
    seconds = {side: [] for side in workers}
    for _ in range(opts.reps):
        for side, w in workers.items():
            time.sleep(opts.pause)
            seconds[side].append(w.call("rep", units[side]))
    return units, seconds


def add_ratio(result: dict, speeds: dict) -> dict:
    if "torch" in speeds:
        ratios = [r / t for r, t in zip(speeds["rnncli"], speeds["torch"])]
        result["ratios"] = ratios
        result["ratio"] = statistics.median(ratios)
        result["target"] = TARGETS.get(result["name"])
        result["met"] = None if result["target"] is None else result["ratio"] >= result["target"]
    return result


def compare_case(workers: dict, case, threads: int, peak: float, opts) -> dict:
    """One result dict of a language-model case: chars/s, GFLOP/s and the ratio."""
    if is_classifier(case):
        return compare_classifier(workers, case, threads, opts)
    b = bench_module()
    units, seconds = interleaved(workers, case, opts.warmup, opts)
    speeds = {side: [units[side] * case.chars_per_unit / t for t in ts] for side, ts in seconds.items()}
    result = {"name": case.name, "case": asdict(case), "threads": threads, "units_per_rep": units}
    for side, s in speeds.items():
        row = b.make_row(case, s, threads, peak)
        result[side] = {"chars_per_sec": row.chars_per_sec, "gflops": row.gflops,
                        "fraction_of_peak": row.fraction_of_peak, "reps": s}
    return add_ratio(result, speeds)


def compare_classifier(workers: dict, case, threads: int, opts) -> dict:
    """One result dict of a classifier case (kind "classifier"): texts/s, tokens/s and the ratio."""
    tokens = int(sum(b.lengths.sum() for b in bench_module().classify_batches(case, opts.seed)))
    units, seconds = interleaved(workers, case, min(opts.warmup, 1), opts)
    speeds = {side: [units[side] * case.texts / t for t in ts] for side, ts in seconds.items()}
    result = {"name": case.name, "kind": "classifier", "case": asdict(case), "threads": threads,
              "units_per_rep": units, "texts_per_pass": case.texts, "tokens_per_pass": tokens}
    for side, s in speeds.items():
        texts_per_sec = statistics.median(s)
        result[side] = {"texts_per_sec": texts_per_sec, "tokens_per_sec": texts_per_sec * tokens / case.texts,
                        "reps": s}
    return add_ratio(result, speeds)


def run_throughput(cases: list, sides: list[str], opts) -> tuple[list, dict, str]:
    results, peaks, openblas = [], {}, ""
    from rnncli.engine.threads import usable_cores

    cores = usable_cores()
    for threads in opts.threads:
        if threads > cores and not opts.oversubscribe:
            say(f"threads={threads}: skipped, this process may use {cores} cores (more threads than cores "
                "measures the scheduler, not the frameworks; --oversubscribe to run it anyway)")
            continue
        workers = {}
        try:
            for side in sides:
                workers[side] = Worker(side, threads)
            peaks[str(threads)] = {side: w.call("peak") for side, w in workers.items()}
            openblas = workers["rnncli"].call("openblas")
            peak = max(peaks[str(threads)].values())
            say(f"threads={threads}: float32 GEMM peak " +
                ", ".join(f"{s} {g:.0f}" for s, g in peaks[str(threads)].items()) + " GFLOP/s")
            rows = []
            for case in cases:
                r = compare_case(workers, case, threads, peak, opts)
                rows.append(r)
                say(describe(r))
            # the peak again after the cases: a host whose speed wanders may have been slow at the
            # first look, and a peak is the best the machine was seen to do
            again = {side: w.call("peak") for side, w in workers.items()}
            peaks[str(threads)] = {side: max(g, again[side]) for side, g in peaks[str(threads)].items()}
            best = max(peaks[str(threads)].values())
            if best > peak:
                say(f"threads={threads}: float32 GEMM peak after the cases " +
                    ", ".join(f"{s} {g:.0f}" for s, g in again.items()) + " GFLOP/s; % of peak against the best")
                for r in rows:
                    for side in sides:
                        if isinstance(r.get(side), dict) and "gflops" in r[side]:
                            r[side]["fraction_of_peak"] = r[side]["gflops"] / best
            results.extend(rows)
        finally:
            for w in workers.values():
                w.close()
    return results, peaks, openblas


def run_loss_curve(sides: list[str], opts) -> dict | None:
    if not SHAKESPEARE.is_file():
        say(f"loss curve skipped: {SHAKESPEARE} not found")
        return None
    case = all_cases()["c1"]
    threads = max(opts.threads)
    curves = {}
    for side in sides:
        w = Worker(side, threads)
        try:
            curves[side] = w.call("loss_curve", case, str(SHAKESPEARE), opts.loss_steps, opts.seed)
        finally:
            w.close()
    marks = [opts.loss_steps * k // 3 for k in (1, 2, 3)]
    window = max(1, opts.loss_steps // 30)

    def smoothed(curve, step):  # mean of the `window` steps ending at `step` (1-based)
        return statistics.fmean(curve[max(0, step - window):step])

    table = [{"step": 1, **{s: c[0] for s, c in curves.items()}}]
    table += [{"step": m, **{s: smoothed(c, m) for s, c in curves.items()}} for m in marks]
    out = {"case": asdict(case), "corpus": SHAKESPEARE.name, "threads": threads, "window": window,
           "table": table, "curves": curves}
    for row in table:
        say(f"loss at step {row['step']}: " + ", ".join(f"{s} {row[s]:.4f}" for s in curves))
    return out


def rnn_command() -> list[str]:
    script = Path(sys.executable).with_name("rnn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rnncli"]


def make_checkpoint(directory: str, seed: int = 0) -> str:
    """A c2 language-model checkpoint (freshly initialised weights: start-up does not depend on
    training), with tiny Shakespeare's vocabulary when it is there."""
    from rnncli.engine import npz

    b = bench_module()
    case = all_cases()["c2"]
    if SHAKESPEARE.is_file():
        from rnncli.data.corpus import load_corpus

        chars = load_corpus([str(SHAKESPEARE)]).vocab.chars
    else:
        chars = "".join(chr(32 + k) for k in range(b.VOCAB_SIZE))
    params = b.initial_params(case, len(chars), seed)
    path = os.path.join(directory, "c2.npz")
    npz.save(path, {f"param/{k}": v for k, v in params.items()},
                    {"kind": "lm", "model": asdict(case.model_config()), "vocab": chars})
    return path


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return seconds, proc


def run_startup(opts) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(tmp, opts.seed)
        cmd = rnn_command() + ["sample", "-n", "200", "--seed", "0", ckpt]
        timed(cmd)  # fills (or refreshes) the normal cache
        warm = [timed(cmd)[0] for _ in range(opts.startup_reps)]
        cold_dir = os.path.join(tmp, "numba-cache")
        os.mkdir(cold_dir)
        env = dict(os.environ, NUMBA_CACHE_DIR=cold_dir)
        cold, proc = timed(cmd, env)
        # Numba honours NUMBA_CACHE_DIR for cache=True functions if their index files land there.
        index_files = glob.glob(os.path.join(cold_dir, "**", "*.nbi"), recursive=True)
        rewarmed, _ = timed(cmd, env)
    out = {"command": "rnn sample -n 200 --seed 0 <c2 checkpoint>",
           "warm_seconds": statistics.median(warm), "warm_reps": warm,
           "cold_seconds": cold, "cold_then_warm_seconds": rewarmed,
           "numba_cache_dir_honoured": bool(index_files), "cold_cache_index_files": len(index_files),
           "said_compiling": "compil" in proc.stderr.lower(),
           "targets": STARTUP_TARGETS}
    say(f"start-up: warm {out['warm_seconds']:.2f} s (median of {len(warm)}), cold {cold:.2f} s "
        f"({len(index_files)} cache index files written to NUMBA_CACHE_DIR; CLI said compiling: "
        f"{out['said_compiling']}), then warm again {rewarmed:.2f} s")
    return out


# ---------------------------------------------------------------- versions, progress lines

def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("numpy", "numba", "scipy", "torch", "rnncli"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def describe(r: dict) -> str:
    c = r["case"]
    if r.get("kind") == "classifier":
        key, unit, spec, name = "texts_per_sec", "texts/s", "8,.1f", f"{r['name']:<14}"
        shape = f"{c['cell']} bi 1x{c['hidden']}, {c['texts']} texts"
    else:
        key, unit, spec, name = "chars_per_sec", "chars/s", "10,.0f", f"{r['name']:<10}"
        shape = f"{c['cell']} {c['layers']}x{c['hidden']}"
    text = f"{name} threads={r['threads']}  rnncli {r['rnncli'][key]:>{spec}} {unit}"
    if "torch" in r:
        text += f"  torch {r['torch'][key]:>{spec}} {unit}  ratio {r['ratio']:.2f}x"
        if r.get("target"):
            text += f" (target {r['target']:g}x: {'met' if r['met'] else 'NOT met'})"
    return text + f"  [{shape}]"


def say(text: str) -> None:
    print(text, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer and shorter repetitions, a short loss curve (smoke test)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts [1,2]")
    p.add_argument("--reps", type=int, default=None, help="repetitions per framework and case [5; 2 with --quick]")
    p.add_argument("--only", default="", help="comma-separated configurations, e.g. c1,c2 [all: " +
                   ",".join(TARGETS) + "]")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: loss, startup")
    p.add_argument("--cls-texts", type=int, default=None,
                   help=f"texts per timed pass of the classifier rows [{CLS_TEXTS}; 64 with --quick]")
    p.add_argument("--min-rep-seconds", type=float, default=None, help="shortest repetition [1.0; 0.1 with --quick]")
    p.add_argument("--warmup", type=int, default=None, help="untimed units before timing [3; 1 with --quick]")
    p.add_argument("--pause", type=float, default=0.25, help="seconds between runs, so thread pools go idle [0.25]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch", action="store_true", help="measure rnncli only")
    p.add_argument("--machine", default=None,
                   help="write to benchmarks/results/MACHINE/ (e.g. zen1-2core); this or --out is needed")
    p.add_argument("--out", default=None, help="write results.json and RESULTS.md to this directory instead")
    p.add_argument("--oversubscribe", action="store_true", help="also run thread counts above this process's cores")
    opts = p.parse_args(argv)
    if not opts.machine and not opts.out:
        p.error(machines.missing_machine())
    opts.threads = [int(t) for t in opts.threads.split(",") if t.strip()]
    if not opts.threads or min(opts.threads) < 1:
        p.error("--threads: give positive thread counts, e.g. 1,2")
    opts.only = [n.strip() for n in opts.only.split(",") if n.strip()]
    unknown = sorted(set(opts.only) - set(TARGETS))
    if unknown:
        p.error(f"--only: unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    opts.skip = {n.strip() for n in opts.skip.split(",") if n.strip()}
    if opts.skip - {"loss", "startup"}:
        p.error("--skip: choose from loss, startup")
    quick = opts.quick
    opts.reps = opts.reps or (2 if quick else 5)
    opts.min_rep_seconds = opts.min_rep_seconds if opts.min_rep_seconds is not None else (0.1 if quick else 1.0)
    opts.warmup = opts.warmup if opts.warmup is not None else (1 if quick else 3)
    opts.cls_texts = opts.cls_texts if opts.cls_texts is not None else (64 if quick else CLS_TEXTS)
    if opts.cls_texts < 1:
        p.error("--cls-texts: give a positive number of texts")
    opts.loss_steps = 30 if quick else 300
    opts.startup_reps = 2 if quick else 5
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    out = Path(opts.out) if opts.out else machines.RESULTS / opts.machine
    sides = ["rnncli"]
    if opts.no_torch:
        say("--no-torch: measuring rnncli only")
    elif importlib.util.find_spec("torch") is None:
        say("PyTorch is not installed (pip install torch==2.13.0 into this venv to compare); "
            "measuring rnncli only")
    else:
        sides.append("torch")
    chosen = {**all_cases(), **classifier_cases(opts.cls_texts)}
    cases = [c for name, c in chosen.items() if not opts.only or name in opts.only]
    started = time.perf_counter()
    rows, peaks, openblas = run_throughput(cases, sides, opts)
    throughput = [r for r in rows if r.get("kind") != "classifier"]
    classifier = [r for r in rows if r.get("kind") == "classifier"]
    loss = None if "loss" in opts.skip else run_loss_curve(sides, opts)
    startup = None if "startup" in opts.skip else run_startup(opts)
    results = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machines.describe(), "versions": versions(), "openblas": openblas,
        "settings": {"quick": opts.quick, "only": opts.only, "threads": opts.threads, "reps": opts.reps,
                     "warmup": opts.warmup, "min_rep_seconds": opts.min_rep_seconds, "pause": opts.pause,
                     "seed": opts.seed, "frameworks": sides, "cls_texts": opts.cls_texts,
                     "skip": sorted(opts.skip), "oversubscribe": opts.oversubscribe},
        "peak_gflops": peaks, "throughput": throughput, "classifier": classifier,
        "loss_curve": loss, "startup": startup,
        "seconds": time.perf_counter() - started,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    tmp = path.with_name("results.json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    say(f"wrote {path} ({results['seconds']:.0f} s)")
    inside = out.resolve().is_relative_to(machines.RESULTS)
    render.write(render.outputs([] if inside else [out]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
