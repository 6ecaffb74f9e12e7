#!/usr/bin/env python
"""Validation loss by training step, rnncli against PyTorch with the same recipe.

Both sides read tiny Shakespeare the way `rnn train` does (B contiguous streams, T characters at
a time, state carried between chunks), score the last --val-fraction whole at every --eval-every
steps with the state carried (rnncli.lm.score.evaluate; the PyTorch side mirrors it), and stop after
--steps. Steps, not seconds, so a busy machine does not change the curve.

    python benchmarks/learning/lm_curves.py --side torch  --seed 1 --steps 2000 --out torch-s1.json
    python benchmarks/learning/lm_curves.py --side rnncli --seed 1 --steps 2000 --out rnncli-s1.json
    python benchmarks/learning/lm_curves.py --table torch-s*.json rnncli-s*.json     # side by side

--init zero gives the rnncli side zero biases with the LSTM forget gate at 1; --init torch PyTorch's, drawn here (both bias vectors U(±1/√H), summed into rnncli's
single bias; no opened forget gate), which `rnn train` now uses too. --data offset starts each epoch's streams at a
random offset; --reset-prob resets each stream's state with that probability per chunk; these map
to TrainConfig fields when the installed rnncli has them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPEED = HERE.parent / "speed"  # torch_lm.py
SHAKESPEARE = HERE.parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def torch_curve(a) -> list:
    import torch
    import torch.nn.functional as F
    from torch import nn

    sys.path.insert(0, str(SPEED))
    import torch_lm

    from rnncli.data.chars import StreamBatches, split_train_val
    from rnncli.data.corpus import load_corpus

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    corpus = load_corpus([a.corpus])
    split = split_train_val(len(corpus), a.val_fraction)
    tr, va = corpus.ids[:split], corpus.ids[split:]
    V = corpus.vocab.size
    model = torch_lm.CharLM("lstm", V, a.embedding, a.hidden, a.layers)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    batches = StreamBatches(tr, a.batch, a.seq_len)
    rng = np.random.default_rng(a.seed)

    def evaluate() -> float:
        vb = StreamBatches(va, a.batch, a.seq_len)
        state = torch_lm.zero_state(model, a.batch)
        total = 0.0
        with torch.no_grad():
            for k in range(vb.chunks):
                x, y = (torch.from_numpy(z).long() for z in vb.chunk(k))
                logits, state = model(x, state)
                total += F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)).item()
        return total / vb.chunks

    curve, step, t0 = [], 0, time.perf_counter()
    while step < a.steps:
        state = torch_lm.zero_state(model, a.batch)
        offset = int(rng.integers(0, a.seq_len)) if a.data == "offset" else 0
        eb = StreamBatches(tr[offset:], a.batch, a.seq_len)
        for k in range(eb.chunks):
            if step >= a.steps:
                break
            x, y = (torch.from_numpy(z).long() for z in eb.chunk(k))
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            state = torch_lm.detach(state)
            step += 1
            if step % a.eval_every == 0:
                curve.append([step, evaluate(), time.perf_counter() - t0])
                print(f"torch seed {a.seed} step {step} val {curve[-1][1]:.4f}", file=sys.stderr, flush=True)
    del batches
    return curve


def rnncli_curve(a) -> list:
    from dataclasses import fields, replace

    from rnncli.config import ModelConfig, OptimConfig, TrainConfig
    from rnncli.engine import model as M
    from rnncli.lm import train as TR

    if a.init == "torch":
        def torch_init(cfg, shapes, rng, dtype, **_):
            H = cfg.hidden_size
            k = 1.0 / math.sqrt(H)
            out = {}
            for name, shape in shapes.items():
                leaf = name.rsplit(".", 1)[-1]
                if leaf == "embed":
                    x = rng.standard_normal(shape)
                elif leaf == "b":  # b_ih + b_hh
                    x = rng.uniform(-k, k, shape) + rng.uniform(-k, k, shape)
                else:
                    x = rng.uniform(-k, k, shape)
                out[name] = np.ascontiguousarray(x, dtype=dtype)
            return out
        M.init_params = torch_init
    elif a.init == "zero":  # zero biases, LSTM forget gate at 1
        original = M.init_params
        M.init_params = lambda cfg, shapes, rng, dtype, **_: original(cfg, shapes, rng, dtype, biases="zero")
    if a.bias_lr != 1.0:  # PyTorch's two LSTM bias vectors get the same gradient: Adam moves their sum 2×
        from rnncli.engine import optim as O
        step = O.Optimizer.step

        def scaled_step(self, params, grads, lr):
            biases = {k for k in params if k.rsplit(".", 1)[-1] == "b"}
            rest = {k: v for k, v in params.items() if k not in biases}
            step(self, rest, grads, lr)
            self.steps -= 1
            step(self, {k: params[k] for k in biases}, grads, lr * a.bias_lr)
        O.Optimizer.step = scaled_step
    extra = {}
    names = {f.name for f in fields(TrainConfig)}
    # the same recipe as the PyTorch side: no weight averaging (--set '{"ema": 0.995}' adds it)
    for key, value in (("data_order", a.data), ("state_reset", a.reset_prob or 0.0), ("patience", 0), ("ema", 0.0)):
        if key in names and value is not None:
            extra[key] = value
    oextra = {"schedule": "constant"} if "schedule" in {f.name for f in fields(OptimConfig)} else {}
    mextra = {}
    if a.init in ("torch-model", "zero") and "init" in {f.name for f in fields(ModelConfig)}:
        mextra["init"] = a.init
    cfg = TrainConfig(
        model=ModelConfig(cell="lstm", hidden_size=a.hidden, num_layers=a.layers, embedding_size=a.embedding,
                          dropout=a.dropout, **mextra),
        optim=OptimConfig(lr=a.lr, lr_decay=1.0, clip=a.clip, **oextra),
        seq_len=a.seq_len, batch_size=a.batch, epochs=10_000, max_steps=a.steps, max_time=0,
        val_fraction=a.val_fraction, eval_every=a.eval_every, eval_chars=0, seed=a.seed, threads=a.threads,
        out_dir=a.runs, **extra)
    for k, v in json.loads(a.set or "{}").items():  # "name", or "optim.name" / "model.name"
        part, _, leaf = k.rpartition(".")
        cfg = replace(cfg, **({part: replace(getattr(cfg, part), **{leaf: v})} if part else {k: v}))
    t0 = time.perf_counter()

    class Rep(TR.Reporter):
        def evaluate(self, ev):
            print(f"rnncli seed {a.seed} step {ev.step} val {ev.val_loss:.4f}", file=sys.stderr, flush=True)

    res = TR.train(cfg, [a.corpus], reporter=Rep())
    return [[s, v, None] for s, v in res.history["val"]] + [["seconds", time.perf_counter() - t0, None]]


def table(paths: list[str]) -> str:
    groups: dict[str, list] = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        groups.setdefault(d["label"], []).append({s: v for s, v, _ in d["curve"] if s != "seconds"})
    steps = sorted({s for runs in groups.values() for r in runs for s in r})
    head = "| step | " + " | ".join(f"{g} (n={len(r)})" for g, r in groups.items()) + " |"
    lines = [head, "|" + "---:|" * (len(groups) + 1)]
    for s in steps:
        cells = []
        for runs in groups.values():
            vals = [r[s] for r in runs if s in r]
            cells.append(f"{np.mean(vals):.3f} ({min(vals):.3f}–{max(vals):.3f})" if len(vals) > 1 else
                         (f"{vals[0]:.3f}" if vals else "–"))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", choices=["rnncli", "torch"])
    p.add_argument("--corpus", default=str(SHAKESPEARE))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--init", default="default", choices=["default", "torch", "zero"],
                   help="rnncli side: as rnn train does, torch (PyTorch's draws), zero (zero biases, forget gate 1)")
    p.add_argument("--data", default=None, help="streams (fixed) or offset (random per epoch)")
    p.add_argument("--reset-prob", type=float, default=None)
    p.add_argument("--bias-lr", type=float, default=1.0, help="rnncli side: learning-rate factor of the recurrent biases")
    p.add_argument("--set", default=None, help="JSON of further TrainConfig fields (rnncli side)")
    p.add_argument("--runs", default="/tmp/lm_curves_runs")
    p.add_argument("--label", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--table", nargs="*", default=None)
    a = p.parse_args(argv)
    if a.table is not None:
        print(table(a.table))
        return 0
    curve = torch_curve(a) if a.side == "torch" else rnncli_curve(a)
    label = a.label or a.side
    out = {"label": label, "args": vars(a), "curve": curve}
    text = json.dumps(out)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
