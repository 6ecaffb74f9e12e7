"""Finite differences agree with every analytic gradient, and a planted bug is caught.

rnncli.tools.gradcheck measures rel_err = |analytic - numeric| / max(|analytic|, |numeric|, FLOOR).
An analytic gradient scaled by (1 + δ) has rel_err ≈ δ / (1 + δ) at every entry with
|g| ≥ FLOOR, far above tol = 1e-6 for δ = 0.01; a flipped sign gives 2.
"""

import numpy as np
import pytest

from rnncli.tools import gradcheck as G
from rnncli.engine import model as M
from rnncli.config import CELLS, GradcheckConfig, ModelConfig

TOL, EPS = 1e-6, 1e-5
ALL = 10**9  # compare_gradients samples: more than any tensor has, so every entry is checked


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_every_parameter_passes(cell, layers):
    cfg = GradcheckConfig(cells=(cell,), layers=(layers,), classifier=False)
    result = G.run_gradcheck(cfg)
    mcfg = ModelConfig(cell=cell, hidden_size=cfg.hidden_size, num_layers=layers,
                       embedding_size=cfg.embedding_size)
    assert [r.name for r in result.rows] == list(M.lm_shapes(mcfg, cfg.vocab_size))
    for r in result.rows:
        assert r.checked == min(int(np.prod(r.shape)), cfg.samples)
        assert r.passed and r.max_rel_err <= cfg.tol, r
    assert result.passed


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_vanilla_rnn_other_activations_pass(activation):
    result = G.run_gradcheck(GradcheckConfig(cells=("rnn",), activation=activation, classifier=False))
    assert result.passed, [r for r in result.rows if not r.passed]


def test_one_hot_input_passes():
    result = G.run_gradcheck(GradcheckConfig(embedding_size=0, classifier=False))
    assert "embed" not in {r.name for r in result.rows}
    assert result.passed, [r for r in result.rows if not r.passed]


def test_without_dropout_passes():
    result = G.run_gradcheck(GradcheckConfig(layers=(2,), classifier=False), dropout=0.0)
    assert result.passed, [r for r in result.rows if not r.passed]


# ---------------------------------------------------------------- planted bugs

def problem(cell="lstm", layers=1, seed=0):
    cfg = ModelConfig(cell=cell, hidden_size=4, num_layers=layers, embedding_size=3, dropout=0.0)
    rng = np.random.default_rng(seed)
    params, grads, loss = G.lm_problem(cfg.validate(), 5, 3, 2, rng)
    return params, grads, loss, rng


def verdicts(params, grads, loss, rng) -> dict:
    rows = G.compare_gradients(params, grads, loss, EPS, TOL, ALL, rng, "planted")
    return {r.name: r.passed for r in rows}


def test_untouched_gradients_pass():
    params, grads, loss, rng = problem()
    assert all(verdicts(params, grads, loss, rng).values())


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_scaled_by_1_01_fails_only_that_row(cell):
    params, grads, loss, rng = problem(cell)
    grads["l0.W_hh"] *= 1.01
    ok = verdicts(params, grads, loss, rng)
    assert ok.pop("l0.W_hh") is False
    assert all(ok.values()), ok


def test_one_flipped_sign_fails_only_that_row():
    params, grads, loss, rng = problem("gru")
    g = grads["W_hy"].reshape(-1)
    g[np.argmax(np.abs(g))] *= -1
    ok = verdicts(params, grads, loss, rng)
    assert ok.pop("W_hy") is False
    assert all(ok.values()), ok


@pytest.mark.parametrize("cell", CELLS)
def test_doubled_bias_update_in_kernel_fails_the_bias_rows(cell, monkeypatch):
    """A bug inside a kernel call: add_column_sums adds its column sums twice. Every bias whose
    gradient goes through it (each layer's b and the output b_y) must fail; the rest (weights,
    embedding, GRU's b_hn, which model.py sums with numpy) must still pass."""
    original = M.products.add_column_sums

    def doubled(dY, db):
        once = np.zeros_like(db)
        original(dY, once)
        db += 2 * once

    monkeypatch.setattr(M.products, "add_column_sums", doubled)
    params, grads, loss, rng = problem(cell, layers=2)
    ok = verdicts(params, grads, loss, rng)
    biases = {name for name in params if name == "b_y" or name.endswith(".b")}
    assert biases == {"l0.b", "l1.b", "b_y"}
    assert {name for name, passed in ok.items() if not passed} == biases
