"""What each training parameter does, measured: one baseline and one change at a time.

Every run trains on the same corpus for the same wall-clock budget (so speed matters as much as
it does for a user with ten minutes), then reports the best validation loss, the training speed
and a line of text sampled at temperature 0.8. Temperature is studied on the baseline model.

    python benchmarks/learning/param_study.py ../shared/data/tinyshakespeare.txt --budget 60s --machine zen1-2core

A wall-clock budget makes the answer depend on the machine, so it is written under that machine's
results: benchmarks/results/<machine>/param-study/study.json and study.md (the table), or to
--out DIR. The training runs themselves go to a temporary folder (--runs to keep them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: machines.py
import machines  # noqa: E402

BASELINE = {"--cell": "lstm", "--hidden-size": "256", "--layers": "2", "--seq-len": "100",
            "--lr": "0.002", "--dropout": "0"}
CHANGES = [
    ("hidden size", "--hidden-size", ["128", "512"]),
    ("layers", "--layers", ["1", "3"]),
    ("sequence length", "--seq-len", ["25", "200"]),
    ("learning rate", "--lr", ["0.0005", "0.01"]),
    ("dropout", "--dropout", ["0.3"]),
]
TEMPERATURES = ["0.2", "0.8", "1.2"]


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    return done.stdout


def train(corpus: str, options: dict, budget: str, out: str) -> dict:
    args = [sys.executable, "-m", "rnncli", "train", corpus, "--max-time", budget, "--out", out,
            "--eval-every", "100", "--quiet"]
    for k, v in options.items():
        args += [k, v]
    best = run(args).strip().splitlines()[-1].split("\t")[0]  # the result line: path, TAB, the loss
    import numpy as np

    with np.load(best, allow_pickle=False) as ck:
        meta = json.loads(str(ck["meta"]))
    progress = meta["progress"]
    chars = progress["step"] * meta["batch_size"] * meta["seq_len"]
    return {"best": best, "val": progress["best_val"], "steps": progress["step"],
            "chars_per_sec": chars / progress["step_seconds"] if progress["step_seconds"] else 0.0}


def sample(ckpt: str, temp: str) -> str:
    text = run([sys.executable, "-m", "rnncli", "sample", ckpt, "--temp", temp, "-n", "300",
                "--seed", "11", "--prime", "\\n"])
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
    return (lines[0] if lines else text.strip().replace("\n", " / "))[:90]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--budget", default="60s")
    ap.add_argument("--machine", default=None, help="write to benchmarks/results/MACHINE/param-study/")
    ap.add_argument("--out", default=None, help="write study.json and study.md to this directory instead")
    ap.add_argument("--runs", default=None, help="folder for the training runs [a temporary one, removed after]")
    a = ap.parse_args()
    if not a.machine and not a.out:
        ap.error(machines.missing_machine())
    out = a.out or str(machines.RESULTS / a.machine / "param-study")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        study(a, out, a.runs or scratch)


def study(a, out: str, runs: str) -> None:
    rows = []
    started = time.time()
    base = train(a.corpus, BASELINE, a.budget, runs)
    rows.append({"parameter": "baseline", "value": "lstm 2×256, seq 100, lr 0.002, dropout 0", **base,
                 "sample": sample(base["best"], "0.8")})
    for label, flag, values in CHANGES:
        for value in values:
            r = train(a.corpus, {**BASELINE, flag: value}, a.budget, runs)
            rows.append({"parameter": label, "value": f"{flag} {value}", **r, "sample": sample(r["best"], "0.8")})
    temps = [{"temperature": t, "sample": sample(base["best"], t)} for t in TEMPERATURES]
    result = {"corpus": os.path.basename(a.corpus), "budget": a.budget, "rows": rows, "temperatures": temps,
              "seconds": time.time() - started}
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"Corpus `{result['corpus']}`, {a.budget} of training per run, 2 threads; validation = last 5% of the text.",
             "", "| change | best val loss (nats/char) | chars/s | steps | sample at temperature 0.8 |",
             "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['value']} | {r['val']:.3f} | {r['chars_per_sec']:,.0f} | {r['steps']} | "
                     f"`{r['sample'].replace('|', '/')}` |")
    lines += ["", "| temperature (baseline model) | sample |", "| ---: | --- |"]
    lines += [f"| {t['temperature']} | `{t['sample'].replace('|', '/')}` |" for t in temps]
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
