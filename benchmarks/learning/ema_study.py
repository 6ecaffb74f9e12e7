#!/usr/bin/env python
"""Validation loss with and without weight averaging, at equal steps, in one run.

One `rnn train` run (rnncli.lm.train.train, so the recipe is the real one) with --ema set to the first
of --decays; at every evaluation the raw weights and an average for each further decay (kept here,
updated after every optimizer step exactly as the run's own) are scored on the same validation
text. Averaging only watches training, so every column is the same run's weights.

    python benchmarks/learning/ema_study.py CORPUS --seed 1 --steps 800 --decays 0.995 0.99 0.998 \\
        --train '{"val_fraction": 0.1, "eval_chars": 0, "model.hidden_size": 256}' --out s1.json
    python benchmarks/learning/ema_study.py --table s1.json s2.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np


def study(a) -> dict:
    from rnncli.config import ModelConfig, TrainConfig
    from rnncli.engine import optim as O
    from rnncli.lm import train as TR
    from rnncli.lm.checkpoint import config_dict

    cfg = TrainConfig(model=ModelConfig(), max_time=0, max_steps=a.steps, eval_every=a.eval_every, patience=0,
                      seed=a.seed, threads=a.threads, out_dir=a.runs, ema=a.decays[0])
    for k, v in json.loads(a.train or "{}").items():  # "name", or "optim.name" / "model.name"
        part, _, leaf = k.rpartition(".")
        cfg = replace(cfg, **({part: replace(getattr(cfg, part), **{leaf: v})} if part else {k: v}))
    live = {"params": None, "extra": {}, "t": 0}
    step = O.Optimizer.step

    def watched(self, params, grads, lr):
        step(self, params, grads, lr)
        live["params"], live["t"] = params, live["t"] + 1
        for d in a.decays[1:]:
            live["extra"].setdefault(d, O.WeightAverage(d, params)).update(params, live["t"])

    O.Optimizer.step = watched
    evaluate = TR.evaluate  # the name the training loop calls (rnncli.lm.score.evaluate)
    rows = []

    def scored(mcfg, weights, ids, B, T, max_chars):
        main = evaluate(mcfg, weights, ids, B, T, max_chars)
        row = {"step": live["t"], f"ema {a.decays[0]:g}": main,
               "raw": evaluate(mcfg, live["params"], ids, B, T, max_chars)}
        for d, avg in live["extra"].items():
            row[f"ema {d:g}"] = evaluate(mcfg, avg.params, ids, B, T, max_chars)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        return main

    TR.evaluate = scored
    res = TR.train(cfg, [a.corpus])
    return {"corpus": a.corpus, "seed": a.seed, "config": config_dict(cfg), "rows": rows,
            "stop_reason": res.stop_reason}


def table(paths: list[str]) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    cols = [k for k in runs[0]["rows"][0] if k != "step"]
    cols = ["raw"] + [c for c in cols if c != "raw"]
    steps = sorted({r["step"] for run in runs for r in run["rows"]})
    lines = ["| step | " + " | ".join(f"{c} (n={len(runs)})" for c in cols) + " | best EMA − raw |",
             "|" + "---:|" * (len(cols) + 2)]
    for s in steps:
        at = [r for run in runs for r in run["rows"] if r["step"] == s]
        cells = []
        for c in cols:
            v = [r[c] for r in at]
            cells.append(f"{np.mean(v):.4f}" + (f" ({min(v):.4f}–{max(v):.4f})" if len(v) > 1 else ""))
        gain = np.mean([min(r[c] for c in cols if c != "raw") - r["raw"] for r in at])
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {gain:+.4f} |")
    best = {c: [min(r[c] for r in run["rows"]) for run in runs] for c in cols}  # per run, any step
    lines.append("| best | " + " | ".join(f"{np.mean(v):.4f}" + (f" ({min(v):.4f}–{max(v):.4f})" if len(v) > 1 else "")
                                          for v in best.values())
                 + f" | {np.mean([min(best[c][i] for c in cols if c != 'raw') - best['raw'][i] for i in range(len(runs))]):+.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("corpus", nargs="?")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--decays", type=float, nargs="+", default=[0.995, 0.99, 0.998])
    p.add_argument("--train", default=None, help="JSON of TrainConfig fields (model.x, optim.x for nested ones)")
    p.add_argument("--runs", default="/tmp/ema_study_runs")
    p.add_argument("--out", default=None)
    p.add_argument("--table", nargs="*", default=None)
    a = p.parse_args(argv)
    if a.table is not None:
        print(table(a.table))
        return 0
    out = json.dumps(study(a))
    if a.out:
        Path(a.out).write_text(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
