"""Wall time of one small sweep on the local pool and on a Dask LocalCluster (loopback).

    python benchmarks/resources/sweep_local_vs_dask.py CORPUS [--steps 100] [--workers 2]

Runs `rnn sweep CORPUS --grid hidden-size=32,64 --grid dropout=0,0.2` (LSTM, 1 layer, 1 thread
per trial) twice into fresh folders, once with --workers N, once with --address of a
LocalCluster of N one-thread worker processes, and prints both wall times (cluster start-up
excluded) and whether the two ranked tables agree.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time


def sweep(corpus: str, out: str, steps: int, extra: list) -> tuple[float, str]:
    args = [sys.executable, "-m", "rnncli", "sweep", corpus, "--grid", "hidden-size=32,64", "--grid", "dropout=0,0.2",
            "--layers", "1", "--max-steps", str(steps), "--max-time", "0", "--eval-every", str(max(1, steps // 4)),
            "--patience", "0", "--out", out, "-q", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        local, table_local = sweep(a.corpus, os.path.join(tmp, "local"), a.steps, ["--workers", str(a.workers)])
        with LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            dask, table_dask = sweep(a.corpus, os.path.join(tmp, "dask"), a.steps, ["--address", cluster.scheduler_address])
    print(f"local pool ({a.workers} workers): {local:.1f} s")
    print(f"Dask LocalCluster ({a.workers} workers): {dask:.1f} s")
    strip = lambda t: [ln.split("│")[1:5] for ln in t.splitlines() if ln.startswith("│")]  # rank, trial, loss
    print("same ranked losses:", strip(table_local) == strip(table_dask))


if __name__ == "__main__":
    main()
