#!/usr/bin/env python
"""Speed beside a busy neighbour: training (LSTM 1x512, batch 8, seq 50: steps/s) and sampling
(LSTM 2x512, batch 1: chars/s) at 1 and 2 threads, quiet and with one process spinning
(`while :; do :; done`, as a browser tab might), for rnncli and, where installed, PyTorch.

    python benchmarks/speed/under_load.py --machine epyc-avx512-2core [--reps 3] [--seconds 3]
    python benchmarks/speed/under_load.py --reps 1 --seconds 1 --no-torch     # a smoke test, printed only

Each measurement is a fresh worker process (one framework, one thread count) that warms up,
runs for --seconds untimed (rnncli times its ways of running as it goes and settles on the
fastest within that: rnncli.engine.threads.Choice), then counts whole units for --seconds; the busy process, when there is one, starts before the
worker and stops after it. The order of runs is interleaved rep by rep (quiet and loaded, 1 and
2 threads, rnncli and PyTorch), and each cell of the table is the median of --reps runs. Prints
one markdown table; with --machine NAME (or --out DIR) it also writes it, with the command, the
machine and the versions, to benchmarks/results/NAME/under-load.md (and the rates of every run to
under-load.json beside it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/: machines.py
import machines  # noqa: E402

TASKS = {"train": ("lstm", 512, 1, 8, 50), "sample": ("lstm", 512, 2, 1, 0)}
SAMPLE_CHARS = 500


def case_for(task: str):
    from rnncli.tools import bench

    cell, hidden, layers, batch, seq_len = TASKS[task]
    if task == "sample":
        return bench.BenchCase(task, cell, hidden, layers, batch=batch, seq_len=0, task="sample", chars=SAMPLE_CHARS)
    return bench.BenchCase(task, cell, hidden, layers, batch=batch, seq_len=seq_len)


def worker(side: str, task: str, threads: int, seconds: float) -> None:
    """Measure one side at one thread count; print {"rate": units per second} as JSON."""
    sys.path.insert(0, str(HERE))
    case = case_for(task)
    if side == "rnncli":
        from rnncli.engine import threads as engine_threads
        from rnncli.tools import bench

        engine_threads.set_threads(threads)
        run = bench.make_run(case)
    else:
        import torch
        import torch_lm

        torch.set_num_threads(threads)
        run = torch_lm.make_run(case)
    run.run(2)  # compile, fill the caches, settle the thread pools
    settle = time.perf_counter() + seconds  # as long again: a run adapts to the load within it
    while time.perf_counter() < settle:
        run.run(1)
    units, spent = 0, 0.0
    while spent < seconds:
        spent += run.run(1)
        units += 1
    per_unit = SAMPLE_CHARS if task == "sample" else 1  # chars/s for sampling, steps/s for training
    print(json.dumps({"rate": units * per_unit / spent}))


def measure(side: str, task: str, threads: int, seconds: float, loaded: bool) -> float:
    busy = subprocess.Popen(["sh", "-c", "while :; do :; done"]) if loaded else None
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", side, task, str(threads), str(seconds)],
                             capture_output=True, text=True, check=True, cwd=REPO)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    time.sleep(0.3)
    return json.loads(out.stdout.strip().splitlines()[-1])["rate"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per run [3]")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--only", default="train,sample")
    p.add_argument("--machine", default=None, help="write the table to benchmarks/results/NAME/")
    p.add_argument("--out", default=None, help="write the table to this directory instead")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        side, task, threads, seconds = opts.worker
        worker(side, task, int(threads), float(seconds))
        return 0
    sides = ["rnncli"]
    if not opts.no_torch:
        try:
            import torch  # noqa: F401

            sides.append("torch")
        except ImportError:
            print("PyTorch is not installed: rnncli alone")
    tasks = [t for t in opts.only.split(",") if t]
    runs = [(side, task, threads, loaded) for task in tasks for side in sides for loaded in (False, True)
            for threads in (1, 2)]
    rates = {run: [] for run in runs}
    for _ in range(opts.reps):
        for run in runs:
            rates[run].append(measure(*run[:3], opts.seconds, run[3]))
    lines = table(tasks, sides, rates)
    print("\n".join(lines), flush=True)
    if opts.machine or opts.out:
        out = Path(opts.out) if opts.out else machines.RESULTS / opts.machine
        out.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/speed/under_load.py " + " ".join(a for a in (argv or sys.argv[1:]))
        described = machines.describe()
        head = [f"# Beside a busy process: {opts.machine or out.name}", "",
                "Written by `benchmarks/speed/under_load.py`; do not edit by hand.", "",
                f"- Command: `{command}`",
                f"- Machine: {described['cpu']}, {described['cores']} cores ({', '.join(described['isa'])}); "
                f"{described['platform']}",
                f"- Measured: {datetime.date.today().isoformat()}, Python {platform.python_version()}",
                "- Method: one fresh worker process per cell (one framework, one thread count), warmed up, then as "
                "long again untimed, then whole units counted for --seconds; the busy process is "
                "`while :; do :; done`; cells are the median of --reps runs, taken in interleaved order.", ""]
        (out / "under-load.md").write_text("\n".join(head + lines) + "\n", encoding="utf-8")
        (out / "under-load.json").write_text(json.dumps(
            {"command": command, "machine": described,
             "rates": [{"side": r[0], "task": r[1], "threads": r[2], "loaded": r[3], "rates": v}
                       for r, v in rates.items()]}, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out / 'under-load.md'}")
    return 0


def table(tasks: list, sides: list, rates: dict) -> list[str]:
    units = {"train": "steps/s", "sample": "chars/s"}
    lines = ["| run | quiet, 1 thread | quiet, 2 threads | one busy process, 1 thread | one busy process, 2 threads |"
             " loaded 2 thr / loaded 1 thr | loaded 2 thr / quiet 2 thr |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for task in tasks:
        cell, hidden, layers, batch, seq_len = TASKS[task]
        for side in sides:
            m = {(loaded, threads): statistics.median(rates[(side, task, threads, loaded)])
                 for loaded in (False, True) for threads in (1, 2)}
            shape = f"{cell.upper()} {layers}x{hidden}, batch {batch}" + (f", seq {seq_len}" if seq_len else "")
            digits = 1 if task == "train" else 0
            cells = " | ".join(f"{m[k]:,.{digits}f}" for k in ((False, 1), (False, 2), (True, 1), (True, 2)))
            lines.append(f"| {side} {task} {shape} ({units[task]}) | {cells} | {m[(True, 2)] / m[(True, 1)]:.2f}x |"
                         f" {m[(True, 2)] / m[(False, 2)]:.2f} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
