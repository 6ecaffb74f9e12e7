"""Finite-difference check of every analytic gradient, in float64.

For each parameter tensor, entries (all of them for small tensors, a seeded random sample for
larger ones) are nudged by ±eps and the centered difference (L(p+eps) - L(p-eps)) / 2eps is
compared with the analytic gradient through

    rel_err = |analytic - numeric| / max(|analytic|, |numeric|, FLOOR)

FLOOR keeps the ratio from blowing up where both are ~0: a centered difference of a float64
loss has an absolute error near 1e-10 (rounding of L ~ 1e-16 over 2eps, plus eps² L'''), so below
|g| ≈ 1e-4 the ratio would measure that noise, not the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rnncli.classify.model import (
    classifier_shapes,
    draw_masks,
    forward,
    init_classifier,
    loss_and_grads,
    pad_batch,
)
from rnncli.config import ClassifyConfig, GradcheckConfig, ModelConfig
from rnncli.engine import model as M
from rnncli.engine.kernels import linear as k_lin

FLOOR = 1e-4


@dataclass(frozen=True)
class GradcheckRow:
    model: str  # e.g. "lstm ×2" or "classifier gru ×1 bi"
    name: str
    shape: tuple
    checked: int
    max_rel_err: float
    passed: bool


@dataclass(frozen=True)
class GradcheckResult:
    rows: list
    dropout: float
    eps: float
    tol: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)


def rel_error(analytic: float, numeric: float) -> float:
    return abs(analytic - numeric) / max(abs(analytic), abs(numeric), FLOOR)


def compare_gradients(params: dict, analytic: dict, loss_of_params: Callable[[], float],
                      eps: float, tol: float, samples: int, rng: np.random.Generator,
                      label: str) -> list[GradcheckRow]:
    """Check analytic[name] against centered differences of loss_of_params(), which must read
    the arrays in params (they are nudged in place and restored)."""
    rows = []
    for name, p in params.items():
        flat = p.reshape(-1)
        if flat.size <= samples:
            idx = np.arange(flat.size)
        else:
            idx = rng.choice(flat.size, size=samples, replace=False)
        g = analytic[name].reshape(-1)
        worst = 0.0
        signal = 0.0  # a tensor whose checked entries are all exactly 0 both ways proves nothing
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            plus = loss_of_params()
            flat[i] = old - eps
            minus = loss_of_params()
            flat[i] = old
            numeric = (plus - minus) / (2 * eps)
            worst = max(worst, rel_error(float(g[i]), numeric))
            signal = max(signal, abs(float(g[i])), abs(numeric))
        if signal == 0.0:
            worst = float("nan")  # shown as not checked, and failed
        rows.append(GradcheckRow(label, name, tuple(p.shape), len(idx), worst, worst <= tol))
    return rows


def lm_problem(cfg: ModelConfig, vocab_size: int, seq_len: int, batch_size: int,
               rng: np.random.Generator) -> tuple:
    """A tiny float64 language model with random tokens, a random carried state and fixed
    dropout masks. Returns (params, analytic grads, loss function)."""
    dtype = np.float64
    params = M.init_params(cfg, M.lm_shapes(cfg, vocab_size), rng, dtype)
    inputs = rng.integers(0, vocab_size, size=(seq_len, batch_size)).astype(np.int32)
    targets = rng.integers(0, vocab_size, size=(seq_len, batch_size)).astype(np.int32)
    # A non-zero carried state checks the first step's use of h_{-1} (and c_{-1}).
    state = rng.uniform(-0.5, 0.5, size=M.state_shape(cfg, batch_size))
    masks = M.dropout_masks(cfg, seq_len, batch_size, rng, dtype)
    work = M.Workspace(dtype)
    grads = M.zeros_like_params(params)
    M.lm_loss_and_grads(cfg, params, grads, inputs, targets, state, work, masks)

    def loss() -> float:
        logits, _, _, _ = M.lm_forward(cfg, params, inputs, state, work, masks)
        N = logits.shape[0]
        return float(M.k_lin.softmax_xent(logits, targets.reshape(N), np.full(N, 1.0 / N),
                                          np.empty_like(logits)))

    return params, grads, loss


def run_gradcheck(cfg: GradcheckConfig, dropout: float = 0.25) -> GradcheckResult:
    """Check the language model for each cell and layer count (and, if asked, the classifier)."""
    cfg.validate()
    rows = []
    for cell in cfg.cells:
        for layers in cfg.layers:
            rng = np.random.default_rng([cfg.seed, layers, ("rnn", "lstm", "gru").index(cell)])
            mcfg = ModelConfig(cell=cell, hidden_size=cfg.hidden_size, num_layers=layers,
                               embedding_size=cfg.embedding_size, activation=cfg.activation,
                               dropout=dropout).validate()
            params, grads, loss = lm_problem(mcfg, cfg.vocab_size, cfg.seq_len, cfg.batch_size, rng)
            label = f"{cell} ×{layers}" + (f" {cfg.activation}" if cell == "rnn" else "")
            rows += compare_gradients(params, grads, loss, cfg.eps, cfg.tol, cfg.samples, rng, label)
    if cfg.classifier:
        rows += classifier_rows(cfg, dropout)
    return GradcheckResult(rows, dropout, cfg.eps, cfg.tol)


def classifier_rows(gcfg: GradcheckConfig, dropout: float) -> list:
    """Finite-difference rows for tiny float64 classifiers: each cell, each pooling,
    bidirectional, texts of different lengths in one padded batch, fixed dropout masks."""

    rows = []
    for cell in gcfg.cells:
        for p_index, pooling in enumerate(("last", "mean", "max")):
            rng = np.random.default_rng([gcfg.seed, 7, ("rnn", "lstm", "gru").index(cell), p_index])
            cfg = ClassifyConfig(cell=cell, hidden_size=gcfg.hidden_size, num_layers=max(gcfg.layers),
                                 bidirectional=True, pooling=pooling, dense=(4, 3), dropout=dropout,
                                 embedding_size=max(1, gcfg.embedding_size), batch_size=3)
            n_classes, V = 3, gcfg.vocab_size
            # Redraw until every tensor receives some gradient: dead or dropped ReLUs can cut
            # every path to the recurrent layers, and a check of zeros against zeros proves nothing.
            for _attempt in range(50):
                params = init_classifier(cfg, classifier_shapes(cfg, V, n_classes), rng, np.float64)
                for name in params:
                    if name.endswith((".b", ".b_hn")):  # zero biases would sit ReLUs on their kink
                        params[name][:] = rng.uniform(-0.5, 0.5, size=params[name].shape)
                lengths = [gcfg.seq_len, max(1, gcfg.seq_len - 2), 1]
                seqs = [rng.integers(2, V, size=n).astype(np.int32) for n in lengths]
                ids, rev, lens = pad_batch(seqs)
                y = rng.integers(0, n_classes, size=len(seqs)).astype(np.int32)
                w = rng.uniform(0.5, 1.5, size=len(seqs))
                w /= w.sum()
                masks = draw_masks(cfg, ids.shape[0], ids.shape[1], rng, np.float64)
                work = M.Workspace(np.float64)
                grads = M.zeros_like_params(params)
                loss_and_grads(cfg, params, grads, ids, rev, lens, y, w, work, masks)
                if all(np.abs(g).max() > 1e-6 for g in grads.values()):
                    break

            def loss() -> float:
                logits, _ = forward(cfg, params, ids, rev, lens, work, masks)
                return float(k_lin.softmax_xent(logits, y, w, np.empty_like(logits)))

            label = f"classifier {cell} ×{cfg.num_layers} bi {pooling}"
            rows += compare_gradients(params, grads, loss, gcfg.eps, gcfg.tol, gcfg.samples, rng, label)
    return rows
