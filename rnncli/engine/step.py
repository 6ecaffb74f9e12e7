"""The one training step every trainer takes: zero the gradients, loss and gradients, clip,
update. Language models, the classifier and the benchmarks differ only in the loss they pass.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from rnncli.engine.optim import Optimizer, clip_global_norm


def train_step(params: dict, grads: dict, opt: Optimizer, lr: float, clip: float,
               loss_and_grads: Callable[[dict], tuple[float, Any]],
               reduce: Callable[[dict, float, Any], tuple[float, Any]] | None = None) -> tuple[float, float, Any]:
    """One update of `params` (all of a model's parameters, or the trainable ones of them).

    loss_and_grads(grads) accumulates into the zeroed grads and returns (loss, extra), extra
    being whatever the model carries on (a recurrent state, say); reduce(grads, loss, extra),
    when given, combines them across processes before clipping (the mean over MPI ranks).
    The global norm is clipped over the gradients of `params` only. A non-finite loss or norm
    leaves the parameters untouched: what that means (stop, raise) is the caller's.
    Returns (loss, norm before clipping, extra).
    """
    for g in grads.values():
        g.fill(0)
    loss, extra = loss_and_grads(grads)
    if reduce is not None:
        loss, extra = reduce(grads, loss, extra)
    norm = clip_global_norm(grads if params.keys() == grads.keys() else {k: grads[k] for k in params}, clip)
    if math.isfinite(loss) and math.isfinite(norm):
        opt.step(params, grads, lr)
    return loss, norm, extra
