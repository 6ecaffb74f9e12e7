"""Properties of the dense kernels that hold for any input (hypothesis)."""

import numpy as np
import reference as ref
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rnncli.engine.kernels import linear as k_lin


def matrices(rows=st.integers(1, 5), cols=st.integers(1, 7), bound=30.0):
    shapes = st.tuples(rows, cols)
    return shapes.flatmap(lambda s: arrays(np.float64, s, elements=st.floats(-bound, bound)))


@given(matrices(bound=300.0))
def test_softmax_rows_sum_to_one(logits):
    probs = np.empty_like(logits)
    k_lin.softmax_rows(logits, probs)
    assert (probs >= 0).all() and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probs, ref.softmax(logits), rtol=1e-12, atol=1e-300)


@given(matrices(), st.data())
def test_softmax_rows_ignores_a_constant_per_row(logits, data):
    shift = data.draw(arrays(np.float64, (logits.shape[0], 1), elements=st.floats(-50, 50)))
    probs, shifted = np.empty_like(logits), np.empty_like(logits)
    k_lin.softmax_rows(logits, probs)
    k_lin.softmax_rows(np.ascontiguousarray(logits + shift), shifted)
    # logits + shift is rounded to ~1e-14 absolute; exp turns that into a relative error
    np.testing.assert_allclose(shifted, probs, rtol=1e-11, atol=1e-300)


def xent_case(data, bound=30.0):
    logits = data.draw(matrices(cols=st.integers(2, 6), bound=bound))
    N, V = logits.shape
    targets = np.array(data.draw(st.lists(st.integers(0, V - 1), min_size=N, max_size=N)), np.int32)
    return logits, targets


@given(st.data())
def test_softmax_xent_with_mean_weights_is_the_mean_cross_entropy(data):
    logits, targets = xent_case(data)
    N = logits.shape[0]
    dlogits = np.empty_like(logits)
    loss = k_lin.softmax_xent(logits, targets, np.full(N, 1.0 / N), dlogits)
    assert np.isclose(loss, ref.mean_cross_entropy(logits, targets), rtol=1e-12, atol=1e-12)
    # d/dlogits of the mean: (softmax - onehot) / N, so each row sums to zero
    expected = (ref.softmax(logits) - np.eye(logits.shape[1])[targets]) / N
    np.testing.assert_allclose(dlogits, expected, rtol=1e-10, atol=1e-14)


@given(st.data())
def test_softmax_xent_gradient_matches_finite_differences(data):
    logits, targets = xent_case(data, bound=5.0)
    N = logits.shape[0]
    weights = np.full(N, 1.0 / N)
    dlogits = np.empty_like(logits)
    k_lin.softmax_xent(logits, targets, weights, dlogits)
    eps, scratch = 1e-5, np.empty_like(logits)
    numeric = np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (k_lin.softmax_xent(plus, targets, weights, scratch)
                        - k_lin.softmax_xent(minus, targets, weights, scratch)) / (2 * eps)
    # centered differences: error ~ eps²·|L'''| + rounding ~1e-15 / eps, both far below 1e-8
    np.testing.assert_allclose(dlogits, numeric, atol=1e-8)


@given(st.data())
def test_gather_and_scatter_add_are_adjoint(data):
    """<gather(table), r> == <table, scatter(r)>: scatter_add_rows is gather_rows transposed."""
    V, D, N = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8))
    floats = st.floats(-10, 10)
    table = data.draw(arrays(np.float64, (V, D), elements=floats))
    r = data.draw(arrays(np.float64, (N, D), elements=floats))
    idx = np.array(data.draw(st.lists(st.integers(0, V - 1), min_size=N, max_size=N)), np.int32)
    out = np.empty((N, D))
    k_lin.gather_rows(table, idx, out)
    d_table = np.zeros_like(table)
    k_lin.scatter_add_rows(d_table, idx, r, 0, d_table.shape[1])
    lhs, rhs = np.sum(out * r), np.sum(table * d_table)
    assert np.isclose(lhs, rhs, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(out, table[idx])
