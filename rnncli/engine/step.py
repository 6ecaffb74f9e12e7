"""The one training step every trainer takes: zero the gradients, loss and gradients, clip,
update. Language models, the classifier and the benchmarks differ only in the loss they pass.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Any, Callable

from rnncli.engine import threads
from rnncli.engine.optim import Optimizer, clip_global_norm

# Per training run (its optimizer): all the worker threads or one for the whole step, whichever
# has been faster lately (threads.Choice). Quiet, the threads win; beside a busy process, threads
# that hand work to each other dozens of times a step can together be slower than one alone,
# and a user must never be better off asking for fewer. The weights do not depend on the choice.
_thread_choices: "weakref.WeakKeyDictionary[Optimizer, threads.Choice]" = weakref.WeakKeyDictionary()


def train_step(params: dict, grads: dict, opt: Optimizer, lr: float, clip: float,
               loss_and_grads: Callable[[dict], tuple[float, Any]],
               reduce: Callable[[dict, float, Any], tuple[float, Any]] | None = None,
               work: float = 1.0) -> tuple[float, float, Any]:
    """One update of `params` (all of a model's parameters, or the trainable ones of them).

    loss_and_grads(grads) accumulates into the zeroed grads and returns (loss, extra), extra
    being whatever the model carries on (a recurrent state, say); reduce(grads, loss, extra),
    when given, combines them across processes before clipping (the mean over MPI ranks).
    The global norm is clipped over the gradients of `params` only. A non-finite loss or norm
    leaves the parameters untouched: what that means (stop, raise) is the caller's.
    work: how much the step computes (tokens, say) where steps differ, for timing them.
    Returns (loss, norm before clipping, extra).
    """
    n = threads.workers()
    if n <= 1:
        return _step(params, grads, opt, lr, clip, loss_and_grads, reduce)
    choice = _thread_choices.get(opt)
    if choice is None or choice.ways[0] != n:
        choice = _thread_choices[opt] = threads.Choice([n, 1])
    use = choice.pick()
    started = time.perf_counter()
    with threads.limited(use):
        out = _step(params, grads, opt, lr, clip, loss_and_grads, reduce)
    choice.record(use, time.perf_counter() - started, work)
    return out


def _step(params, grads, opt, lr, clip, loss_and_grads, reduce):
    for g in grads.values():
        g.fill(0)
    loss, extra = loss_and_grads(grads)
    if reduce is not None:
        loss, extra = reduce(grads, loss, extra)
    norm = clip_global_norm(grads if params.keys() == grads.keys() else {k: grads[k] for k in params}, clip)
    if math.isfinite(loss) and math.isfinite(norm):
        opt.step(params, grads, lr)
    return loss, norm, extra
