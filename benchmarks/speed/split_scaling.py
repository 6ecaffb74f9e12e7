#!/usr/bin/env python
"""Two threads against one where few batch rows leave little to split: LSTM 1x512 and
2x512 training at batch 2, 4 and 8, and sampling a 2x512 model (batch 1), in one process,
alternating 1 and 2 threads repetition by repetition; median chars/s of --reps each.

    python benchmarks/speed/split_scaling.py [--reps 5] [--min-rep-seconds 0.5]

Prints one markdown table: chars/s at 1 and 2 threads, the speed-up, and the split
(rows × unit shares) that rnncli.engine.threads chose at 2 threads. Nothing is written.
"""

from __future__ import annotations

import argparse
import statistics

from rnncli.engine import threads as engine_threads
from rnncli.tools import bench


def cases():
    out = [bench.BenchCase(f"lstm-{L}x512-b{B}", "lstm", 512, L, batch=B, seq_len=64)
           for L in (1, 2) for B in (2, 4, 8)]
    out.append(bench.BenchCase("sample-lstm-2x512", "lstm", 512, 2, batch=1, seq_len=0, task="sample", chars=500))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--min-rep-seconds", type=float, default=0.5)
    opts = p.parse_args(argv)
    print("| configuration | 1 thread chars/s | 2 threads chars/s | speed-up | split at 2 threads |")
    print("| --- | ---: | ---: | ---: | --- |")
    for case in cases():
        run = bench.make_run(case)
        speeds = {1: [], 2: []}
        units = None
        for _ in range(opts.reps):
            for threads in (1, 2):
                engine_threads.set_threads(threads)
                if units is None:
                    units = bench.units_per_rep(bench.warm_up(run, 1), opts.min_rep_seconds)
                speeds[threads].append(units * case.chars_per_unit / run.run(units))
        one, two = statistics.median(speeds[1]), statistics.median(speeds[2])
        if case.task == "sample":
            split = f"{run.generator.parties()} threads share each character (2 × units)"
        else:
            split = "{} × {}".format(*engine_threads.split_shape(case.batch, case.hidden, 2))
        print(f"| {case.name} | {one:,.0f} | {two:,.0f} | {two / one:.2f}x | {split} |", flush=True)
    engine_threads.set_threads(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
