"""The classifier core: gradients, masking of padded steps, metrics, the split, words and GloVe.

Masking is the classifier's one subtle claim (rnncli/classify.py docstring): padding never
changes a prediction and padded steps receive exactly zero gradient. A finite-difference check
cannot see a masking bug (it differentiates whatever forward pass it is given), so masking is
tested directly: a text alone must score exactly as it does inside a padded batch, and the
gradient of a padded batch must equal the weighted sum of each text's gradient alone.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnncli.classify import train as C
from rnncli.tools import gradcheck as G
from rnncli.engine import model as M
from rnncli.config import CELLS, POOLINGS, ClassifyConfig, GradcheckConfig
from rnncli.errors import CorpusError
from rnncli.data.words import PAD, UNK, TokenVocab, tokenize
from rnncli.data.vectors import load_glove
from rnncli.classify import model as CM
from rnncli.engine.kernels import linear as k_lin
from rnncli.engine.kernels import pool as k_pool

TOL, EPS = 1e-6, 1e-5
ALL = 10**9  # compare_gradients samples: every entry is checked
V, N_CLASSES = 9, 3


def tiny(cell="gru", pooling="max", bidirectional=True, dense=(4,), layers=2, dtype=np.float64, seed=0):
    """A tiny classifier (H=4, E=3) with random biases, so no ReLU sits dead or on its kink."""
    cfg = ClassifyConfig(cell=cell, hidden_size=4, num_layers=layers, bidirectional=bidirectional,
                         pooling=pooling, dense=dense, dropout=0.0, embedding_size=3).validate()
    rng = np.random.default_rng(seed)
    params = C.init_classifier(cfg, C.classifier_shapes(cfg, V, N_CLASSES), rng, np.float64)
    for name in params:
        if name.endswith((".b", ".b_hn")):
            params[name][:] = rng.uniform(-0.5, 0.5, size=params[name].shape)
    params["out.W"] *= 3.0  # logits spread enough that probabilities are not all ~1/3
    return cfg, {k: np.ascontiguousarray(v, dtype=dtype) for k, v in params.items()}


def texts(lengths, seed=1) -> list:
    """Token ids in 1..V-1 (1 is <unk>; 0 is only ever padding)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, V, size=n).astype(np.int32) for n in lengths]


def probabilities(cfg, params, seqs, inference=False, tables=None) -> np.ndarray:
    """(B, C) float64 softmax of the logits of one padded batch (forward's arguments)."""
    ids, rev, lens = C.pad_batch(seqs)
    logits, _ = CM.forward(cfg, params, ids, rev, lens, M.Workspace(params["embed"].dtype), inference=inference,
                          tables=tables)
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


RTOL = {np.float64: 1e-12, np.float32: 1e-5}


# ---------------------------------------------------------------- gradient check

@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_rows_pass(cell, dropout):
    rows = G.classifier_rows(GradcheckConfig(cells=(cell,)), dropout)
    assert {r.model.rsplit(" ", 1)[-1] for r in rows} == set(POOLINGS)
    names = {r.name for r in rows}
    assert {"embed", "fw.l0.W_hh", "bw.l1.W_xh", "d0.W", "d1.b", "out.W", "out.b"} <= names
    failed = [r for r in rows if not r.passed]
    assert not failed, failed
    assert all(r.max_rel_err <= TOL for r in rows)


def test_gradcheck_rows_catch_a_scaled_unpool(monkeypatch):
    """dL/dtop ×1.01 below the pooling: every gradient under it is 1% off (rel err ≈ 0.0099),
    every gradient above it (dense and output layers) is untouched."""
    real = CM._unpool
    monkeypatch.setattr(CM, "_unpool", lambda *a: real(*a) * 1.01)
    rows = G.classifier_rows(GradcheckConfig(cells=("lstm",)), 0.0)
    for r in rows:
        if r.name.startswith(("d0.", "d1.", "out.")):
            assert r.passed, r
    for pooling in POOLINGS:
        failed = {r.name for r in rows if r.model.endswith(pooling) and not r.passed}
        assert "embed" in failed and "fw.l0.W_xh" in failed and "bw.l0.W_xh" in failed, (pooling, failed)
        assert all(name == "embed" or name.startswith(("fw.", "bw.")) for name in failed)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_rows_reach_every_tensor_below_the_pooling(cell, dropout, monkeypatch):
    """`rnn gradcheck` (dropout 0.25 by default) must actually check the recurrent stacks: with
    dL/dtop ×1.01, every embed / fw.* / bw.* row of every pooling must fail. A row whose
    analytic and numeric gradients are both exactly 0 (every text's path to the loss cut by
    dead ReLUs or dropped dense units, or max pooling at step 0 for the only live text)
    'passes' with rel err 0 while checking nothing."""
    real = CM._unpool
    monkeypatch.setattr(CM, "_unpool", lambda *a: real(*a) * 1.01)
    rows = G.classifier_rows(GradcheckConfig(cells=(cell,)), dropout)
    unchecked = [(r.model, r.name) for r in rows
                 if r.passed and (r.name == "embed" or r.name.startswith(("fw.", "bw.")))]
    assert not unchecked


def problem(cell, pooling, dense=(), bidirectional=True, seed=0):
    """A float64 classifier problem with texts of lengths 4, 2, 1, 3 in one padded batch.
    Without dense ReLUs every text reaches the loss, so every recurrent gradient is non-zero."""
    cfg, params = tiny(cell, pooling, bidirectional, dense, seed=seed)
    rng = np.random.default_rng(seed + 100)
    ids, rev, lens = C.pad_batch(texts([4, 2, 1, 3], seed))
    y = rng.integers(0, N_CLASSES, size=4).astype(np.int32)
    w = rng.uniform(0.5, 1.5, size=4)
    w /= w.sum()
    work = M.Workspace(np.float64)
    grads = M.zeros_like_params(params)
    C.loss_and_grads(cfg, params, grads, ids, rev, lens, y, w, work)

    def loss() -> float:
        logits, _ = CM.forward(cfg, params, ids, rev, lens, work)
        return float(k_lin.softmax_xent(logits, y, w, np.empty_like(logits)))

    return params, grads, loss, rng


def verdicts(params, grads, loss, rng) -> dict:
    return {r.name: r.passed for r in G.compare_gradients(params, grads, loss, EPS, TOL, ALL, rng, "x")}


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", CELLS)
def test_every_entry_passes_without_dense_layers(cell, pooling):
    ok = verdicts(*problem(cell, pooling))
    assert all(ok.values()), ok


@pytest.mark.parametrize("pooling", POOLINGS)
def test_scaled_unpool_fails_every_row_below_the_pooling(pooling, monkeypatch):
    real = CM._unpool
    monkeypatch.setattr(CM, "_unpool", lambda *a: real(*a) * 1.01)
    params, grads, loss, rng = problem("gru", pooling)
    ok = verdicts(params, grads, loss, rng)
    below = {name for name in params if name == "embed" or name.startswith(("fw.", "bw."))}
    assert {name for name, passed in ok.items() if not passed} == below


def test_max_pool_gradient_sent_to_the_wrong_step_fails(monkeypatch):
    real = CM._unpool

    def wrong_step(cfg, d_feat, lengths, arg, T):
        return real(cfg, d_feat, lengths, (arg + 1) % T, T)

    monkeypatch.setattr(CM, "_unpool", wrong_step)
    params, grads, loss, rng = problem("lstm", "max")
    failed = {name for name, passed in verdicts(params, grads, loss, rng).items() if not passed}
    assert {"embed", "fw.l0.W_hh", "fw.l1.W_xh", "bw.l0.W_hh"} <= failed
    assert not failed & {"out.W", "out.b"}


def test_unreversed_backward_input_is_invisible_to_gradcheck(monkeypatch):
    """A masking bug (the backward stack fed the texts unreversed) still passes the gradient
    check, whose finite differences go through the same wrong forward pass. The tests below
    (pad_batch layout, text vs its reverse, padding invariance) are what catch such bugs."""
    real = C.pad_batch

    def unreversed(seqs):
        ids, _, lengths = real(seqs)
        return ids, ids.copy(), lengths

    monkeypatch.setattr(C, "pad_batch", unreversed)
    rows = G.classifier_rows(GradcheckConfig(cells=("rnn",)), 0.0)
    assert all(r.passed for r in rows)


# ---------------------------------------------------------------- padding and masking

def test_pad_batch_layout():
    seqs = [np.array([5, 6, 7], np.int32), np.array([8], np.int32), np.array([2, 3], np.int32)]
    ids, rev, lengths = C.pad_batch(seqs)
    assert ids.dtype == rev.dtype == lengths.dtype == np.int32
    assert ids.shape == rev.shape == (3, 3)
    assert lengths.tolist() == [3, 1, 2]
    for b, s in enumerate(seqs):
        n = len(s)
        assert ids[:n, b].tolist() == s.tolist() and rev[:n, b].tolist() == s[::-1].tolist()
        assert not ids[n:, b].any() and not rev[n:, b].any()  # right-padded with 0, both


def mirrored(cell, pooling):
    """A bidirectional model whose backward stack is a copy of the forward one and whose output
    layer reads both halves alike: features [f(s), f(reversed s)] only swap halves when the
    text is reversed, so a text and its reverse must get the same scores."""
    cfg, params = tiny(cell, pooling, dense=())
    for name in [k for k in params if k.startswith("fw.")]:
        params["bw." + name[3:]] = params[name].copy()
    H = cfg.hidden_size
    params["out.W"][:, H:] = params["out.W"][:, :H]
    return cfg, params


def reversal_gaps(cell, pooling) -> tuple:
    """Score differences between a text and its reverse: (alone, inside one padded batch)."""
    cfg, params = mirrored(cell, pooling)
    s = texts([5])[0]
    r = s[::-1].copy()
    others = texts([2, 6, 1], seed=3)
    p = probabilities(cfg, params, [others[0], s, others[1], r, others[2]])
    return (np.abs(probabilities(cfg, params, [s])[0] - probabilities(cfg, params, [r])[0]).max(),
            np.abs(p[1] - p[3]).max())


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", CELLS)
def test_backward_stack_reads_each_text_reversed(cell, pooling):
    assert max(reversal_gaps(cell, pooling)) < 1e-13
    # not vacuous: one direction alone does tell a text from its reverse
    cfg, params = tiny(cell, pooling, bidirectional=False, dense=())
    s = texts([5])[0]
    p = probabilities(cfg, params, [s, s[::-1].copy()])
    assert np.abs(p[0] - p[1]).max() > 1e-4


def test_unreversed_backward_input_breaks_the_reversal_symmetry(monkeypatch):
    real = C.pad_batch

    def unreversed(seqs):
        ids, _, lengths = real(seqs)
        return ids, ids.copy(), lengths

    monkeypatch.setattr(C, "pad_batch", unreversed)
    alone, padded = reversal_gaps("gru", "last")
    assert alone > 1e-4 and padded > 1e-4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", CELLS)
def test_padding_never_changes_a_prediction(cell, pooling, bidirectional, dtype):
    cfg, params = tiny(cell, pooling, bidirectional, dtype=dtype)
    target = texts([3], seed=7)[0]
    alone = probabilities(cfg, params, [target])[0]
    others = texts([6, 1, 3, 5], seed=8)
    for position in range(len(others) + 1):  # first, between longer and shorter ones, last
        batch = others[:position] + [target] + others[position:]
        np.testing.assert_allclose(probabilities(cfg, params, batch)[position], alone, rtol=RTOL[dtype],
                                   err_msg=f"position {position}")
    # the longest text of its batch is not padded, but its neighbours are: still its own scores
    longest = texts([7], seed=9)[0]
    np.testing.assert_allclose(probabilities(cfg, params, [texts([2])[0], longest])[1],
                               probabilities(cfg, params, [longest])[0], rtol=RTOL[dtype])


@settings(max_examples=40)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=5), cell=st.sampled_from(CELLS),
       pooling=st.sampled_from(POOLINGS), bidirectional=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_padding_invariance_for_any_batch(lengths, cell, pooling, bidirectional, dtype, seed):
    cfg, params = tiny(cell, pooling, bidirectional, layers=1, dtype=dtype, seed=seed)
    seqs = texts(lengths, seed)
    together = probabilities(cfg, params, seqs)
    # inference stops each text at its length and may gather its inputs from the folded tables
    skipping = probabilities(cfg, params, seqs, inference=True)
    folded = probabilities(cfg, params, seqs, inference=True, tables=CM.input_tables(cfg, params))
    for b, s in enumerate(seqs):
        alone = probabilities(cfg, params, [s])[0]
        np.testing.assert_allclose(together[b], alone, rtol=RTOL[dtype])
        np.testing.assert_allclose(skipping[b], alone, rtol=RTOL[dtype])
        np.testing.assert_allclose(folded[b], alone, rtol=RTOL[dtype])


@pytest.mark.parametrize("cell", CELLS)
def test_inference_skips_the_padded_steps(cell):
    """With inference=True the recurrent loop stops each text at its length: states of padded
    steps are never written (a NaN left there stays), yet the scores are those of each text
    alone, whatever the order of the rows (forward sorts them longest first and back)."""
    cfg, params = tiny(cell, "max", True, layers=2, dtype=np.float32)
    seqs = texts([2, 6, 1, 4], seed=5)
    ids, rev, lens = C.pad_batch(seqs)
    work = M.Workspace(np.float32)
    T, B, H = 6, 4, cfg.hidden_size
    for prefix in ("fw.", "bw."):
        for k in range(2):
            work.get(f"{prefix}l{k}.Hbuf", (T + 1, B, H))[...] = np.nan
    logits, _ = CM.forward(cfg, params, ids, rev, lens, work, inference=True)
    assert np.isfinite(logits).all()
    # rows in the order forward ran them: longest first (6, 4, 2, 1). (The vanilla RNN's Hbuf
    # first receives every step's input projection, padded ones too, so layer 1's input is
    # finite there.)
    hbuf = work.get("fw.l1.Hbuf", (T + 1, B, H))
    for row, n in enumerate([6, 4, 2, 1]):
        assert np.isfinite(hbuf[1:n + 1, row]).all(), (row, n)
        if cell != "rnn":
            assert np.isnan(hbuf[n + 1:, row]).all(), (row, n)
    for b, s in enumerate(seqs):
        z = logits[b].astype(np.float64)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose(p, probabilities(cfg, params, [s])[0], rtol=1e-5)


def test_max_pool_kernel_matches_numpy():
    """kernels/pool.py against numpy's argmax over each text's valid steps, ties to the first."""
    rng = np.random.default_rng(3)
    T, B, H = 7, 5, 6
    top = rng.integers(-3, 4, size=(T, B, H)).astype(np.float32)  # small integers: many ties
    lengths = np.array([7, 1, 3, 5, 2], np.int32)
    feat, arg = np.empty((B, H), np.float32), np.empty((B, H), np.intp)
    k_pool.max_over_valid(top, lengths, feat, arg)
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(arg[b], top[:n, b].argmax(axis=0))
        np.testing.assert_array_equal(feat[b], top[:n, b].max(axis=0))


def test_input_tables_only_when_they_pay():
    """A pass over fewer tokens than the vocabulary projects them directly; over more, it
    gathers from tables made for that pass, or kept from the last pass if the model is frozen
    (loaded for use), never while it trains."""
    cfg, params = tiny("lstm", "max", dtype=np.float32)
    vocab = TokenVocab((PAD, UNK) + tuple("abcdefg"))
    assert CM.tables_for_pass(cfg, params, V - 1) is None
    tables = CM.tables_for_pass(cfg, params, V)
    assert set(tables) == {"fw.", "bw."} and tables["fw."].shape == (V, 4 * cfg.hidden_size)
    np.testing.assert_allclose(tables["bw."][5], params["bw.l0.W_xh"] @ params["embed"][5] + params["bw.l0.b"],
                               rtol=1e-5)
    training = C.Classifier(cfg, vocab, ("x", "y", "z"), params)
    assert training.input_tables(100) is not training.input_tables(100)
    loaded = C.Classifier(cfg, vocab, ("x", "y", "z"), params, frozen=True)
    assert loaded.input_tables(3) is None and loaded.input_tables(100) is loaded.input_tables(3)


def test_rnn_log_proba_puts_each_row_back_in_input_order():
    cfg, params = tiny("gru", "mean", dtype=np.float32)
    clf = C.Classifier(cfg, TokenVocab((PAD, UNK) + tuple("abcdefg")), ("x", "y", "z"), params)
    seqs = texts([5, 1, 3, 6, 2, 3, 4], seed=4)
    probs = np.exp(clf.rnn_log_proba(seqs, batch_size=3))
    assert probs.shape == (7, 3)
    for b, s in enumerate(seqs):
        np.testing.assert_allclose(probs[b], probabilities(cfg, params, [s])[0], rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_invariance_test_catches_planted_masking_bugs(bidirectional, monkeypatch):
    """The padding-invariance check is sharp: reversing each padded column whole (padding
    first), or mean-pooling over padded steps, changes a padded text's scores."""
    cfg, params = tiny("gru", "mean", bidirectional)
    target, others = texts([2], seed=7)[0], texts([6, 5], seed=8)
    alone = probabilities(cfg, params, [target])[0]
    assert np.allclose(probabilities(cfg, params, [others[0], target, others[1]])[1], alone, rtol=1e-12)

    real_pool = CM._pool

    def pool_over_padding(cfg_, top, lengths):
        return real_pool(cfg_, top, np.full_like(lengths, top.shape[0]))

    with monkeypatch.context() as m:
        m.setattr(CM, "_pool", pool_over_padding)
        assert not np.allclose(probabilities(cfg, params, [others[0], target, others[1]])[1], alone, rtol=1e-6)
    if bidirectional:
        real_pad = C.pad_batch

        def padding_first(seqs):
            ids, _, lengths = real_pad(seqs)
            return ids, np.ascontiguousarray(ids[::-1]), lengths

        with monkeypatch.context() as m:
            m.setattr(C, "pad_batch", padding_first)
            assert not np.allclose(probabilities(cfg, params, [others[0], target, others[1]])[1], alone,
                                   rtol=1e-6)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", CELLS)
def test_padding_gets_zero_gradient(cell, pooling, bidirectional):
    """Σ_b w_b CE_b is linear in the weights, so the padded batch's gradient must equal the sum
    of each text's gradient alone with weight w_b, and the padding token's embedding row
    (id 0, used only for padding) must get exactly nothing."""
    cfg, params = tiny(cell, pooling, bidirectional)
    seqs = texts([5, 2, 1, 4, 3], seed=11)
    rng = np.random.default_rng(12)
    y = rng.integers(0, N_CLASSES, size=len(seqs)).astype(np.int32)
    w = rng.uniform(0.2, 1.0, size=len(seqs))
    w /= w.sum()
    batch = M.zeros_like_params(params)
    ids, rev, lens = C.pad_batch(seqs)
    loss = C.loss_and_grads(cfg, params, batch, ids, rev, lens, y, w, M.Workspace(np.float64))
    summed = M.zeros_like_params(params)
    total = 0.0
    for b, s in enumerate(seqs):
        ids1, rev1, lens1 = C.pad_batch([s])
        total += C.loss_and_grads(cfg, params, summed, ids1, rev1, lens1, y[b:b + 1], w[b:b + 1],
                                  M.Workspace(np.float64))
    assert loss == pytest.approx(total, rel=1e-12)
    assert not batch["embed"][0].any()
    # not vacuous (W_hh may be exactly 0 where max pooling picks every text's first step)
    for name in ("embed", "fw.l0.W_xh", "fw.l0.b", "out.W"):
        assert np.abs(summed[name]).max() > 1e-6, name
    for name in params:
        np.testing.assert_allclose(batch[name], summed[name], rtol=1e-9, atol=1e-13, err_msg=name)


def test_zero_gradient_test_catches_gradient_sent_into_padding(monkeypatch):
    """A planted bug: mean pooling's backward spreads dL/dfeat over every step, padding too."""
    real = CM._unpool

    def unmasked(cfg, d_feat, lengths, arg, T):
        return real(cfg, d_feat, np.full_like(lengths, T), arg, T) * (T / lengths)[None, :, None]

    monkeypatch.setattr(CM, "_unpool", unmasked)
    cfg, params = tiny("rnn", "mean", bidirectional=False)
    grads = M.zeros_like_params(params)
    ids, rev, lens = C.pad_batch(texts([4, 1], seed=2))
    C.loss_and_grads(cfg, params, grads, ids, rev, lens, np.array([0, 1], np.int32), np.array([0.5, 0.5]),
                     M.Workspace(np.float64))
    assert grads["embed"][0].any()


# ---------------------------------------------------------------- metrics

def test_metrics_from_the_definitions():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    y_pred = np.array([0, 1, 0, 1, 0, 2, 1, 2, 2, 0])
    K = 3
    m = C.score_predictions(y_true, y_pred, K)
    confusion = [[sum(1 for t, p in zip(y_true, y_pred) if t == i and p == j) for j in range(K)] for i in range(K)]
    assert m["confusion"] == confusion  # rows true, columns predicted
    assert m["n"] == len(y_true)
    assert m["accuracy"] == pytest.approx(sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true))
    f1s = []
    for c in range(K):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        f1 = 2 * precision * recall / (precision + recall)
        f1s.append(f1)
        assert m["precision"][c] == pytest.approx(precision)
        assert m["recall"][c] == pytest.approx(recall)
        assert m["f1"][c] == pytest.approx(f1)
        assert m["support"][c] == tp + fn
    assert m["macro_f1"] == pytest.approx(sum(f1s) / K)


def test_a_class_never_predicted_scores_zero_not_nan():
    y_true = np.array([0, 1, 2, 2])
    y_pred = np.array([0, 1, 0, 1])  # class 2 is never predicted: precision 0/0
    m = C.score_predictions(y_true, y_pred, 3)
    assert m["precision"][2] == 0.0 and m["recall"][2] == 0.0 and m["f1"][2] == 0.0
    for key in ("precision", "recall", "f1"):
        assert all(np.isfinite(m[key])), key
    # class 0: 1 of 2 predictions right (precision 1/2), its one text found (recall 1): F1 2/3
    assert m["precision"][0] == 0.5 and m["recall"][0] == 1.0 and m["f1"][0] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["accuracy"] == 0.5


def test_metrics_of_nothing_are_zero():
    m = C.score_predictions(np.zeros(0, np.int64), np.zeros(0, np.int64), 2)
    assert m["accuracy"] == 0.0 and m["macro_f1"] == 0.0 and m["n"] == 0


# ---------------------------------------------------------------- stratified split

def test_stratified_split():
    counts = {0: 20, 1: 7, 2: 2, 3: 1, 4: 3}
    labels = np.random.default_rng(0).permutation(np.repeat(list(counts), list(counts.values())))
    fraction = 0.25
    train, val = C.stratified_split(labels, fraction, np.random.default_rng(5))
    assert not set(train) & set(val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())
    for c, n in counts.items():
        in_val, in_train = int((labels[val] == c).sum()), int((labels[train] == c).sum())
        if n >= 2:
            assert in_val >= 1 and in_train >= 1, c
            assert abs(in_val - fraction * n) <= 1, (c, in_val)
        else:
            assert (in_train, in_val) == (1, 0)  # a lone text can only train
    assert int((labels[val] == 0).sum()) == round(fraction * 20)


def test_stratified_split_is_deterministic_per_seed():
    labels = np.repeat([0, 1, 2], [10, 8, 6])
    a = C.stratified_split(labels, 0.3, np.random.default_rng(1))
    b = C.stratified_split(labels, 0.3, np.random.default_rng(1))
    c = C.stratified_split(labels, 0.3, np.random.default_rng(2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_a_large_fraction_still_leaves_every_class_in_training():
    labels = np.repeat([0, 1], [2, 5])
    train, val = C.stratified_split(labels, 0.9, np.random.default_rng(0))
    assert set(labels[train]) == {0, 1} and set(labels[val]) == {0, 1}


# ---------------------------------------------------------------- words

def test_words_are_lower_cased_runs_of_letters_and_digits():
    # The rule: lower-case, then runs of letters and digits; an apostrophe (' or ’) between two
    # such runs stays inside the word; everything else (punctuation, '_', spaces) separates.
    assert tokenize("Élève d'été", "word") == ["élève", "d'été"]
    assert tokenize("L’HÔPITAL, où? Ça-va!", "word") == ["l’hôpital", "où", "ça", "va"]
    assert tokenize("Hello, World! 42x snake_case", "word") == ["hello", "world", "42x", "snake", "case"]
    assert tokenize("'quoted' rock'n'roll dogs'", "word") == ["quoted", "rock'n'roll", "dogs"]
    assert tokenize("naïve cœur straße ÆON", "word") == ["naïve", "cœur", "straße", "æon"]
    assert tokenize(" ...\t! ", "word") == []


def test_characters_keep_case_and_drop_only_line_breaks():
    assert tokenize("Ab é\r\n,\tZ", "char") == ["A", "b", " ", "é", ",", "\t", "Z"]


def test_token_vocab_build():
    lists = [["b", "a", "c", "a"], ["b", "d", "a"], ["e", "c"]]  # a 3, b 2, c 2, d 1, e 1
    assert TokenVocab.build(lists, 1, 100).tokens == (PAD, UNK, "a", "b", "c", "d", "e")
    assert TokenVocab.build(lists, 2, 100).tokens == (PAD, UNK, "a", "b", "c")
    assert TokenVocab.build(lists, 1, 5).tokens == (PAD, UNK, "a", "b", "c")  # b, c tie: by token
    assert TokenVocab.build(lists, 1, 6).tokens == (PAD, UNK, "a", "b", "c", "d")
    assert TokenVocab.build(lists, 4, 100).tokens == (PAD, UNK)
    shuffled = [list(reversed(t)) for t in reversed(lists)]
    assert TokenVocab.build(shuffled, 1, 6).tokens == TokenVocab.build(lists, 1, 6).tokens
    vocab = TokenVocab.build(lists, 1, 100)
    assert vocab.tokens.index(PAD) == 0 and vocab.tokens.index(UNK) == 1
    index = vocab.index()
    assert vocab.encode(["a", "zzz", "e"], index, 10).tolist() == [2, 1, 6]
    assert vocab.encode(["a", "b", "c"], index, 2).tolist() == [2, 3]
    assert vocab.encode([], index, 5).tolist() == [1]


# ---------------------------------------------------------------- GloVe

def glove_file(tmp_path, body: str):
    path = tmp_path / "glove.txt"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_glove_coverage(tmp_path):
    vocab = TokenVocab((PAD, UNK, "apple", "été", "pear", "kiwi"))
    path = glove_file(tmp_path, "apple 0.5 -1 2\nzebra 1 1 1\n<unk> 9 9 9\nété 3 4 5 \napple 7 7 7\nkiwi 0 0 0\n")
    vectors, dim, found = load_glove(path, vocab)
    assert dim == 3 and found == 3  # apple, été, kiwi; not <unk>, nor the second apple
    assert vectors.shape == (6, 3)
    np.testing.assert_array_equal(vectors[2], [0.5, -1, 2])  # the first vector of a word wins
    np.testing.assert_array_equal(vectors[3], [3, 4, 5])
    np.testing.assert_array_equal(vectors[5], [0, 0, 0])
    assert np.isnan(vectors[[0, 1, 4]]).all()


def test_glove_wrong_dimension_names_the_line(tmp_path):
    path = glove_file(tmp_path, "apple 1 2 3\n\npear 1 2\nkiwi 1 2 3\n")
    with pytest.raises(CorpusError) as info:
        load_glove(path, TokenVocab((PAD, UNK, "apple", "pear")))
    message = str(info.value)
    assert "glove.txt" in message and re.search(r"\bline 3\b", message), message


def test_glove_value_that_is_not_a_number(tmp_path):
    path = glove_file(tmp_path, "apple 1 2 3\npear 1 x 3\n")
    with pytest.raises(CorpusError) as info:
        load_glove(path, TokenVocab((PAD, UNK, "apple", "pear")))
    assert "line 2" in str(info.value) and "number" in str(info.value)


def test_glove_without_vectors(tmp_path):
    with pytest.raises(CorpusError):
        load_glove(glove_file(tmp_path, "\n\n"), TokenVocab((PAD, UNK, "a")))
    with pytest.raises(CorpusError) as info:
        load_glove(glove_file(tmp_path, "apple\n"), TokenVocab((PAD, UNK, "apple")))
    assert "line 1" in str(info.value)
