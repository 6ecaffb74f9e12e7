"""Optimizer state and the update step; the arithmetic is in kernels/optim.py."""

from __future__ import annotations

import numpy as np

from rnncli.engine import threads as blas
from rnncli.config import OptimConfig
from rnncli.engine.kernels import optim as k_opt

ELEMENTS_PER_PART = 1 << 16  # the update and the gradient norm go to the worker threads in parts of this size

# State arrays each optimizer keeps per parameter, saved in checkpoints as opt/<slot>/<name>.
SLOTS = {"sgd": ("velocity",), "adagrad": ("sum_sq",), "rmsprop": ("mean_sq",), "adam": ("m", "v")}


def clip_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most max_norm (0 = off).
    Returns the norm before clipping."""
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        sums = np.zeros(-(-flat.size // ELEMENTS_PER_PART), np.float64)
        blas.over_parts(lambda c0, c1: k_opt.sum_squares(flat, ELEMENTS_PER_PART, sums, c0, c1), sums.size, 1)
        total += float(sums.sum())
    norm = float(np.sqrt(total))
    if max_norm > 0 and norm > max_norm:
        for g in grads.values():
            k_opt.scale(g.reshape(-1), max_norm / norm)
    return norm


class Optimizer:
    """Holds per-parameter state; step() updates params in place from grads."""

    def __init__(self, cfg: OptimConfig, params: dict, state: dict | None = None, steps: int = 0):
        self.cfg = cfg.validate()
        self.steps = steps
        self.state = {}
        for slot in SLOTS[cfg.optimizer]:
            for name, p in params.items():
                key = f"{slot}/{name}"
                self.state[key] = np.zeros_like(p) if state is None else np.ascontiguousarray(state[key], p.dtype)

    def step(self, params: dict, grads: dict, lr: float) -> None:
        c = self.cfg
        self.steps += 1
        for name, p in params.items():
            pf, gf = p.reshape(-1), grads[name].reshape(-1)
            s = self.state
            if c.optimizer == "sgd":
                k_opt.sgd(pf, gf, s[f"velocity/{name}"].reshape(-1), lr, c.momentum, c.weight_decay)
            elif c.optimizer == "adagrad":
                k_opt.adagrad(pf, gf, s[f"sum_sq/{name}"].reshape(-1), lr, c.eps, c.weight_decay)
            elif c.optimizer == "rmsprop":
                k_opt.rmsprop(pf, gf, s[f"mean_sq/{name}"].reshape(-1), lr, c.rho, c.eps, c.weight_decay)
            else:
                m, v = s[f"m/{name}"].reshape(-1), s[f"v/{name}"].reshape(-1)
                blas.over_parts(lambda lo, hi: k_opt.adam(pf[lo:hi], gf[lo:hi], m[lo:hi], v[lo:hi], lr, c.momentum,
                                                          c.beta2, c.eps, self.steps, c.weight_decay),
                                pf.size, ELEMENTS_PER_PART)


class WeightAverage:
    """Exponential moving average of the parameters, bias-corrected as Adam's moments are: after t
    updates it holds Σ_i (1-d)·d^(t-i)·p_i / (1 - d^t), the weights after step i weighted by how
    recent they are. Kept as that corrected average, so the update after step t moves it towards
    the parameters by (1-d)/(1-d^t): all the way at t = 1, then a share falling to 1-d."""

    def __init__(self, decay: float, params: dict, average: dict | None = None):
        self.decay = decay
        self.params = {k: np.array(p if average is None else average[k], dtype=p.dtype, order="C")
                       for k, p in params.items()}

    def update(self, params: dict, t: int) -> None:
        """Fold in the parameters after step t (1, 2, …)."""
        share = (1.0 - self.decay) / (1.0 - self.decay ** t) if t > 0 else 1.0
        for k, p in params.items():
            a = self.params[k]
            if share >= 1.0:
                np.copyto(a, p)
            else:
                a += (p - a) * a.dtype.type(share)  # in the parameters' dtype
