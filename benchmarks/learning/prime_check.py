#!/usr/bin/env python
"""How a language model starts from the empty state, as `rnn sample --prime` does.

    python benchmarks/learning/prime_check.py runs/.../best.npz [--prime "ROMEO:\\n"] [--text tinyshakespeare.txt]

Prints the likeliest next characters after the prime, read from the zero state, and, when a text
is given, the cold-start cost on its last --val-fraction: the loss of the first characters read
from the zero state at --starts evenly spaced line starts, against the loss of the same characters
read after --context characters of the text before them (the state training usually carries).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rnncli.data.chars import split_train_val
from rnncli.data.corpus import load_corpus
from rnncli.engine import model as M
from rnncli.lm.sample import decode_escapes, load_lm


def next_chars(lm, prime: str, k: int = 5) -> list:
    ids = lm.vocab.encode(prime).astype(np.int32).reshape(-1, 1)
    state = M.zero_state(lm.cfg, 1, np.float32)
    logits, _, _, _ = M.lm_forward(lm.cfg, lm.params, np.ascontiguousarray(ids), state, M.Workspace(np.float32))
    z = logits[-1].astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    top = np.argsort(-p)[:k]
    return [(lm.vocab.chars[i], float(p[i])) for i in top]


def cold_start(lm, ids: np.ndarray, starts: int, span: int, context: int) -> tuple:
    """Mean loss (nats/char) of `span` characters read from the zero state vs after `context`."""
    nl = lm.vocab.chars.index("\n") if "\n" in lm.vocab.chars else None
    cand = np.flatnonzero(ids[context:-span - 1] == nl) + context + 1 if nl is not None else np.arange(context, len(ids) - span - 1)
    pick = cand[np.linspace(0, len(cand) - 1, starts).astype(int)]
    work = M.Workspace(np.float32)
    res = []
    for pre in (0, context):
        idx = pick[None, :] + np.arange(-pre, span + 1)[:, None]
        block = ids[idx].astype(np.int32)
        x, y = np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[1:])
        state = M.zero_state(lm.cfg, len(pick), np.float32)
        logits, _, _, _ = M.lm_forward(lm.cfg, lm.params, x, state, work)
        z = logits.reshape(x.shape[0], x.shape[1], -1).astype(np.float64)[pre:]
        z -= z.max(axis=2, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
        nll = -np.take_along_axis(logp, y[pre:, :, None].astype(np.int64), axis=2)[..., 0]
        res.append(nll.mean(axis=1))  # per position after the start
    return res[0], res[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--prime", default="ROMEO:\\n")
    p.add_argument("--text", default=None)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--starts", type=int, default=400)
    p.add_argument("--span", type=int, default=40)
    p.add_argument("--context", type=int, default=300)
    a = p.parse_args(argv)
    lm = load_lm(a.checkpoint)
    prime = decode_escapes(a.prime)
    shown = ", ".join(f"{c!r} {q:.2f}" for c, q in next_chars(lm, prime))
    print(f"after {prime!r} from the zero state: {shown}")
    if a.text:
        corpus = load_corpus([a.text], vocab=lm.vocab)
        ids = corpus.ids[split_train_val(len(corpus), a.val_fraction):]
        cold, warm = cold_start(lm, ids, a.starts, a.span, a.context)
        print(f"cold start on {a.starts} validation line starts, nats/char by position "
              f"(zero state | after {a.context} chars of context):")
        for lo, hi in ((0, 1), (1, 5), (5, 10), (10, 20), (20, a.span)):
            print(f"  chars {lo + 1:>2}-{hi:<2}: {cold[lo:hi].mean():.3f} | {warm[lo:hi].mean():.3f}")
        print(f"  all {a.span}: {cold.mean():.3f} | {warm.mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
