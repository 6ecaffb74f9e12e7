"""Every cell's stack (model.stack_forward / stack_backward over kernels/{rnn,lstm,gru}.py) == the
slow reference (reference.py): forward, new state, every gradient, dx and d(initial state).

The LSTM state has two slots (h, c), checked both; the GRU's b_hn gets its own gradient check."""

import numpy as np
import pytest
import reference as ref

from rnncli.engine import model as M
from rnncli.config import ModelConfig

CELLS = ("rnn", "lstm", "gru")
# One-layer cases: each cell, and the vanilla cell with each activation the course lists.
CELL_ACTIVATIONS = [("rnn", "tanh"), ("rnn", "relu"), ("rnn", "sigmoid"), ("lstm", "tanh"), ("gru", "tanh")]
SHAPES = [(1, 1, 2, 3), (3, 2, 3, 4), (5, 3, 2, 1), (6, 2, 4, 5)]  # (T, B, D, H)
RTOL, ATOL = 1e-10, 1e-12


def states(cell):
    """What stack_backward leaves in the workspace: dL/d(initial state), per state slot."""
    return ("dh_next", "dc_next") if cell == "lstm" else ("dh_next",)


def make_problem(rng, cell, T, B, D, H, layers=1, activation="tanh", one_hot=False):
    """Config, float64 params with random biases, a random initial state and d_top (T, B, H).
    D is the input size: the vector size, or the vocabulary for one-hot token input."""
    cfg = ModelConfig(cell=cell, hidden_size=H, num_layers=layers, embedding_size=0 if one_hot else D,
                      activation=activation, dropout=0.0).validate()
    params = M.init_params(cfg, M.stack_shapes(cfg, D), rng, np.float64)
    for name, p in params.items():
        if name.endswith((".b", ".b_hn")):  # init leaves biases at 0 (or 1): make each one count
            p[:] = rng.uniform(-0.5, 0.5, p.shape)
    state = rng.uniform(-0.5, 0.5, M.state_shape(cfg, B))
    d_top = rng.standard_normal((T, B, H))
    return cfg, params, state, d_top


def run_engine(cfg, params, x, state, d_top, d_state=None, grads=None):
    """Forward then backward; returns copies of top, new state, grads, dx, d(initial state)."""
    work = M.Workspace(params["l0.W_xh"].dtype)
    top, new_state = M.stack_forward(cfg, params, x, state, work)
    top = top.copy()
    grads = M.zeros_like_params(params) if grads is None else grads
    dx = M.stack_backward(cfg, params, grads, x, d_top, work, d_state=d_state)
    B, H = x.shape[1], cfg.hidden_size
    d0 = np.array([[work.get(f"l{k}.{s}", (B, H)) for s in states(cfg.cell)] for k in range(cfg.num_layers)])
    return top, new_state, grads, None if dx is None else dx.copy(), d0


def assert_matches(engine, x, cfg, params, state, d_top, d_state=None, rtol=RTOL, atol=ATOL):
    """engine: run_engine's result; x (T, B, D) the input as vectors (one-hot ones for tokens).
    The reference runs in float64 on the same values the engine saw."""
    top, new_state, grads, dx, d0 = engine
    p64 = {name: p.astype(np.float64) for name, p in params.items()}
    x64, s64, d64 = (a.astype(np.float64) for a in (x, state, d_top))
    r_top, r_state = ref.stack_forward(cfg.cell, p64, x64, s64, cfg.activation)
    r_grads, r_dx, r_d0 = ref.stack_backward(cfg.cell, p64, x64, s64, d64, cfg.activation, d_state)
    close = dict(rtol=rtol, atol=atol)
    np.testing.assert_allclose(top, r_top, err_msg="top", **close)
    np.testing.assert_allclose(new_state, r_state, err_msg="new state", **close)
    assert set(grads) == set(r_grads)
    for name in grads:
        np.testing.assert_allclose(grads[name], r_grads[name], err_msg=name, **close)
    if dx is not None:
        np.testing.assert_allclose(dx, r_dx, err_msg="dx", **close)
    np.testing.assert_allclose(d0, r_d0, err_msg="d initial state", **close)


@pytest.mark.parametrize("cell, activation", CELL_ACTIVATIONS)
@pytest.mark.parametrize("T, B, D, H", SHAPES)
def test_one_layer_matches_reference(rng, cell, activation, T, B, D, H):
    cfg, params, state, d_top = make_problem(rng, cell, T, B, D, H, activation=activation)
    x = rng.standard_normal((T, B, D))
    assert_matches(run_engine(cfg, params, x, state, d_top), x, cfg, params, state, d_top)


@pytest.mark.parametrize("cell, activation", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
def test_two_layers_match_chained_reference(rng, cell, activation):
    T, B, D, H = 4, 2, 3, 5
    cfg, params, state, d_top = make_problem(rng, cell, T, B, D, H, layers=2, activation=activation)
    x = rng.standard_normal((T, B, D))
    assert_matches(run_engine(cfg, params, x, state, d_top), x, cfg, params, state, d_top)


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_at_final_state_flows_back(rng, cell):
    T, B, D, H = 3, 2, 3, 4
    cfg, params, state, d_top = make_problem(rng, cell, T, B, D, H, layers=2)
    x = rng.standard_normal((T, B, D))
    d_state = rng.standard_normal(state.shape)
    engine = run_engine(cfg, params, x, state, d_top, d_state=d_state)
    assert_matches(engine, x, cfg, params, state, d_top, d_state=d_state)


@pytest.mark.parametrize("cell", CELLS)
def test_one_hot_tokens_match_reference_on_one_hot_vectors(rng, cell):
    T, B, V, H = 5, 3, 6, 4
    cfg, params, state, d_top = make_problem(rng, cell, T, B, V, H, one_hot=True)
    tokens = rng.integers(0, V, size=(T, B)).astype(np.int32)
    top, new_state, grads, dx, d0 = run_engine(cfg, params, tokens, state, d_top)
    assert dx is None
    x = np.eye(V)[tokens]
    assert_matches((top, new_state, grads, None, d0), x, cfg, params, state, d_top)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_accumulate(rng, cell):
    T, B, D, H = 3, 2, 3, 4
    cfg, params, state, d_top = make_problem(rng, cell, T, B, D, H)
    x = rng.standard_normal((T, B, D))
    _, _, fresh, _, _ = run_engine(cfg, params, x, state, d_top)
    start = {name: np.full_like(p, 0.25) for name, p in params.items()}
    _, _, summed, _, _ = run_engine(cfg, params, x, state, d_top, grads=start)
    for name in fresh:
        np.testing.assert_allclose(summed[name], fresh[name] + 0.25, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_matches_float64_reference(rng, cell):
    T, B, D, H = 5, 2, 3, 4
    cfg, params, state, d_top = make_problem(rng, cell, T, B, D, H)
    p32 = {name: p.astype(np.float32) for name, p in params.items()}
    x, state, d_top = (a.astype(np.float32) for a in (rng.standard_normal((T, B, D)), state, d_top))
    top, new_state, grads, dx, d0 = engine = run_engine(cfg, p32, x, state, d_top)
    assert all(a.dtype == np.float32 for a in (top, new_state, dx, *grads.values()))
    assert_matches(engine, x, cfg, p32, state, d_top, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_engine_at_block_edges_matches_reference(rng, cell):
    """float32 runs the panel micro-kernel: B = 19 rows are two full 8-row blocks and a partial
    one, G·H columns (H = 20) two full 32-column panels and a masked partial one, in both
    directions (forward K = H, backward K = G·H), over two layers."""
    T, B, D, H = 4, 19, 3, 20
    cfg, params, state, d_top = make_problem(rng, cell, T, B, D, H, layers=2)
    p32 = {name: p.astype(np.float32) for name, p in params.items()}
    x, state, d_top = (a.astype(np.float32) for a in (rng.standard_normal((T, B, D)), state, d_top))
    assert_matches(run_engine(cfg, p32, x, state, d_top), x, cfg, p32, state, d_top, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("threads, split, shape", [(2, "rows", (2, 1)), (2, "units", (1, 2)), (4, "auto", (2, 2))])
def test_split_over_threads_changes_nothing(rng, monkeypatch, cell, threads, split, shape):
    """Worker threads that split the time loops over batch rows, over hidden units (meeting at
    every step), or both, give bit-for-bit what one thread gives: each element of each product
    sums over k in the same order whoever computes it. H = 40 units are a full panel of 32 and
    a partial one; OpenBLAS stays at one thread, since its own threading rounds differently
    (see rnncli/blas.py)."""
    from rnncli.engine import threads as blas

    T, B, D, H = 6, 24, 5, 40
    cfg, params, state, d_top = make_problem(rng, cell, T, B, D, H, layers=2)
    p32 = {name: p.astype(np.float32) for name, p in params.items()}
    x, state, d_top = (a.astype(np.float32) for a in (rng.standard_normal((T, B, D)), state, d_top))
    monkeypatch.setattr(blas, "usable_cores", lambda: threads)
    monkeypatch.setenv("RNN_SPLIT", split)
    assert blas.split_shape(B, H, threads) == shape
    results = []
    try:
        for workers in (1, threads):
            blas.set_threads(1)
            blas._workers = workers  # the loop's threads alone; OpenBLAS at one
            results.append(run_engine(cfg, p32, x, state, d_top))
    finally:
        blas.set_threads(0)
    one, many = results
    for a, b in zip(one[:2] + one[3:], many[:2] + many[3:]):
        np.testing.assert_array_equal(a, b)
    for name in one[2]:
        np.testing.assert_array_equal(one[2][name], many[2][name], err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_sampling_split_over_threads_draws_the_same_text(monkeypatch, cell):
    """Two threads sharing each character's products (units of every layer, columns of the
    output) draw exactly the text one thread draws, and leave the same state."""
    from rnncli.engine import threads as blas
    from rnncli.engine import model as M
    from rnncli.lm import sample as S
    from rnncli.config import ModelConfig
    from rnncli.data.chars import Vocab

    cfg = ModelConfig(cell=cell, hidden_size=40, num_layers=2, embedding_size=8)
    vocab = Vocab("".join(sorted(set("abcdefghij\n .,;:!?'ABCDEFGHIJKLMNOPQRSTUVWXYZéèàçù-klmnopqrst"))))
    params = M.init_params(cfg, M.lm_shapes(cfg, vocab.size), np.random.default_rng(3), np.float32)
    gen = S.Generator(S.LanguageModel(cfg, vocab, params, {}))
    monkeypatch.setattr(blas, "usable_cores", lambda: 2)
    monkeypatch.setattr(S, "SPLIT_MIN_BYTES", 0)
    texts, states = [], []
    try:
        for threads in (1, 2):
            blas.set_threads(threads)
            assert gen.parties() == threads
            state = np.zeros(M.state_shape(cfg, 1), np.float32)
            out = np.empty((150, 1), np.int32)
            gen.generate(state, np.array([[1], [2], [3]], np.int32), 1.0, 0,
                         np.random.default_rng(5).random((150, 1)), out)
            texts.append(out.copy())
            states.append(state)
    finally:
        blas.set_threads(0)
    np.testing.assert_array_equal(texts[0], texts[1])
    np.testing.assert_array_equal(states[0], states[1])
    assert len(np.unique(texts[0])) > 5  # a real draw, not one repeated character


@pytest.mark.parametrize("cell", CELLS)
def test_batched_samples_are_the_samples_drawn_alone(cell):
    """Samples drawn together (one batch, weights read once per step for all) are each the text
    drawn alone from the same random stream, with and without a stop text."""
    from rnncli.engine import model as M
    from rnncli.lm import sample as S
    from rnncli.config import ModelConfig
    from rnncli.data.chars import Vocab

    cfg = ModelConfig(cell=cell, hidden_size=24, num_layers=2, embedding_size=6)
    vocab = Vocab("".join(sorted(set(" abcdefghijklmnopqrstuvwxyzé\n"))))
    params = M.init_params(cfg, M.lm_shapes(cfg, vocab.size), np.random.default_rng(4), np.float32)
    gen = S.Generator(S.LanguageModel(cfg, vocab, params, {}), threads=1)
    prime = np.array([3, 1], np.int32)
    for stop in ("", "e"):
        alone = ["".join(gen.stream(prime, 150, 1.2, 0, np.random.default_rng([9, i]), stop)) for i in range(5)]
        texts = [""] * 5
        for pieces in gen.stream_batch(prime, 150, 1.2, 0, [np.random.default_rng([9, i]) for i in range(5)], stop):
            texts = [t + p for t, p in zip(texts, pieces)]
        assert texts == alone
        assert len(set(alone)) == 5  # five different texts, not one repeated
    assert all(t.endswith("e") for t in alone if len(t) < 150)
