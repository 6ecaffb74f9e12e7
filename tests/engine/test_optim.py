"""Optimizers train a tiny model; clipping and Adam's first step do what their formulas say."""

import numpy as np
import pytest

from rnncli.engine import model as M
from rnncli.engine import optim as O
from rnncli.config import CELLS, OPTIMIZERS, ModelConfig, OptimConfig

LR = {"sgd": 0.1, "adagrad": 0.1, "rmsprop": 0.01, "adam": 0.01}
STEPS = 80


def abc_batch(T=6, B=2):
    """'abcabc…' as token ids: each next character follows from the current one alone."""
    tokens = np.array([ord(c) - ord("a") for c in "abc" * (T + B + 1)], np.int32)
    inputs = np.stack([tokens[o:o + T] for o in range(B)], axis=1)
    targets = np.stack([tokens[o + 1:o + T + 1] for o in range(B)], axis=1)
    return inputs, targets


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("cell", CELLS)
def test_loss_halves_on_a_repeating_sequence(cell, optimizer):
    cfg = ModelConfig(cell=cell, hidden_size=8, num_layers=1, embedding_size=4, dropout=0.0).validate()
    params = M.init_params(cfg, M.lm_shapes(cfg, 3), np.random.default_rng(0), np.float32)
    opt = O.Optimizer(OptimConfig(optimizer=optimizer, lr=LR[optimizer]), params)
    inputs, targets = abc_batch()
    state = M.zero_state(cfg, inputs.shape[1], np.float32)
    work = M.Workspace(np.float32)
    losses = []
    for _ in range(STEPS):
        grads = M.zeros_like_params(params)
        loss, _ = M.lm_loss_and_grads(cfg, params, grads, inputs, targets, state, work)
        losses.append(loss)
        O.clip_global_norm(grads, 5.0)
        opt.step(params, grads, LR[optimizer])
    assert np.isfinite(losses).all()
    assert abs(losses[0] - np.log(3)) < 0.3  # small random init: near-uniform over 3 symbols
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert all(p.dtype == np.float32 for p in params.values())


def random_grads(rng):
    shapes = {"W": (3, 4), "b": (5,), "E": (2, 2, 2)}
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def global_norm(grads):
    return np.sqrt(sum(np.sum(g * g) for g in grads.values()))


def test_clip_scales_to_exactly_max_norm_when_above(rng):
    grads = random_grads(rng)
    before = {k: g.copy() for k, g in grads.items()}
    norm = global_norm(before)
    max_norm = norm / 3
    assert O.clip_global_norm(grads, max_norm) == pytest.approx(norm, rel=1e-12)
    assert global_norm(grads) == pytest.approx(max_norm, rel=1e-12)
    for k in grads:  # one common factor: the direction is kept
        np.testing.assert_allclose(grads[k], before[k] * (max_norm / norm), rtol=1e-12)


@pytest.mark.parametrize("slack", [1.5, 0.0])  # below max_norm, and max_norm = 0 (off)
def test_clip_leaves_gradients_alone_when_below_or_off(rng, slack):
    grads = random_grads(rng)
    before = {k: g.copy() for k, g in grads.items()}
    norm = global_norm(before)
    assert O.clip_global_norm(grads, slack * norm) == pytest.approx(norm, rel=1e-12)
    for k in grads:
        np.testing.assert_array_equal(grads[k], before[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_first_step_moves_each_parameter_by_lr_against_its_gradient(rng, dtype):
    """Bias correction makes m̂ = g and v̂ = g² after one step, so Δp = -lr g / (|g| + ε)."""
    lr = 1e-3
    params = {"W": rng.standard_normal((4, 3)).astype(dtype), "b": rng.standard_normal(6).astype(dtype)}
    # |g| ≥ 0.1 ≫ eps = 1e-8, random signs; two entries exactly zero
    grads = {k: rng.uniform(0.1, 2.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
             for k, p in params.items()}
    grads["b"][[1, 4]] = 0.0
    grads = {k: g.astype(dtype) for k, g in grads.items()}
    before = {k: p.copy() for k, p in params.items()}
    O.Optimizer(OptimConfig(optimizer="adam", lr=lr), params).step(params, grads, lr)
    rtol = 1e-3 if dtype == np.float32 else 1e-6  # float32 spacing near |p| ~ 1 is ~1e-7 = 1e-4 lr
    for k in params:
        step = params[k].astype(np.float64) - before[k]
        moved = grads[k] != 0
        np.testing.assert_allclose(step[moved], -lr * np.sign(grads[k][moved]), rtol=rtol)
        np.testing.assert_array_equal(step[~moved], 0.0)


def test_norm_and_adam_on_worker_threads_match_one_thread(monkeypatch, rng):
    """Gradients larger than one part go to the worker threads in fixed pieces: the clipping norm
    and Adam's update come out bit for bit as on one thread, and the norm is the true one."""
    from rnncli.engine import threads as blas

    monkeypatch.setattr(blas, "usable_cores", lambda: 3)
    monkeypatch.setattr(O, "ELEMENTS_PER_PART", 1000)
    shapes = {"W": (70, 101), "b": (999,)}
    grads0 = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    params0 = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    results = []
    try:
        for threads in (1, 3):
            blas.set_threads(threads)
            grads = {k: g.copy() for k, g in grads0.items()}
            params = {k: p.copy() for k, p in params0.items()}
            norm = O.clip_global_norm(grads, 50.0)
            opt = O.Optimizer(OptimConfig(optimizer="adam", lr=0.01), params)
            for _ in range(3):
                opt.step(params, grads, 0.01)
            results.append((norm, grads, params))
    finally:
        blas.set_threads(0)
    (n1, g1, p1), (n3, g3, p3) = results
    assert n1 == n3
    assert n1 == pytest.approx(global_norm({k: g.astype(np.float64) for k, g in grads0.items()}), rel=1e-6)  # float32 squares
    for k in shapes:
        np.testing.assert_array_equal(g1[k], g3[k])
        np.testing.assert_array_equal(p1[k], p3[k])
