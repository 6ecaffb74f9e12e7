"""Dense pieces shared by every model: projections, their gradients, gathers, softmax cross-entropy.

These are the large, time-independent matrix products: input projections of all T steps at once
and weight gradients summed over time, as single GEMMs on (T*B, D) matrices.
"""

import numpy as np
from numba import njit

from rnncli.engine.kernels.gemm import gemm


@njit(cache=True)
def linear_forward(X, W, b, Y):
    """Y = X Wᵀ + b.  X (N, D), W (M, D), b (M,), Y (N, M)."""
    for n in range(Y.shape[0]):
        Y[n, :] = b
    gemm(X, W, Y, False, True, 1.0, 1.0)


@njit(cache=True)
def linear_weight_grad(X, dY, dW):
    """dW += dYᵀ X.  X (N, D), dY (N, M), dW (M, D)."""
    gemm(dY, X, dW, True, False, 1.0, 1.0)


# The same products on a block of the output, for engine/products.py's worker threads (nogil).
# A block is a range of rows of Y, dW or dX; each element sums over the same k in the same
# order as the whole product does (OpenBLAS splits only k into blocks, by k's length alone),
# so blocks give the same bits as one call wherever the product is not small (tested).


@njit(cache=True, nogil=True)
def linear_forward_rows(X, W, b, Y, r0, r1):
    """Rows r0:r1 of linear_forward."""
    for n in range(r0, r1):
        Y[n, :] = b
    gemm(X[r0:r1], W, Y[r0:r1], False, True, 1.0, 1.0)


@njit(cache=True, nogil=True)
def linear_weight_grad_rows(X, dY, dW, r0, r1):
    """Rows r0:r1 of linear_weight_grad: dW[r0:r1] += dY[:, r0:r1]ᵀ X."""
    gemm(dY[:, r0:r1], X, dW[r0:r1], True, False, 1.0, 1.0)


@njit(cache=True, nogil=True)
def linear_weight_grad_cols(X, dY, dW, c0, c1):
    """Columns c0:c1 of linear_weight_grad: dW[:, c0:c1] += dYᵀ X[:, c0:c1]."""
    gemm(dY, X[:, c0:c1], dW[:, c0:c1], True, False, 1.0, 1.0)


@njit(cache=True, nogil=True)
def linear_input_grad_rows(dY, W, dX, r0, r1):
    """Rows r0:r1 of linear_input_grad."""
    gemm(dY[r0:r1], W, dX[r0:r1], False, False, 1.0, 0.0)


@njit(cache=True, nogil=True)
def add_column_sums_cols(dY, db, c0, c1):
    """Columns c0:c1 of add_column_sums (each column summed over n in the same order)."""
    N = dY.shape[0]
    for n in range(N):
        row = dY[n, c0:c1]
        out = db[c0:c1]
        for m in range(c1 - c0):
            out[m] += row[m]


@njit(cache=True)
def add_column_sums(dY, db):
    """db += Σ_n dY[n]: the bias gradient.  dY (N, M), db (M,)."""
    N, M = dY.shape
    for n in range(N):
        for m in range(M):
            db[m] += dY[n, m]


@njit(cache=True)
def linear_input_grad(dY, W, dX):
    """dX = dY @ W.  dY (N, M), W (M, D), dX (N, D) written."""
    gemm(dY, W, dX, False, False, 1.0, 0.0)


@njit(cache=True, nogil=True)
def gather_rows(table, idx, out):
    """out[n] = table[idx[n]].  table (V, D), idx (N,) int32, out (N, D)."""
    D = table.shape[1]
    for n in range(idx.shape[0]):
        r = idx[n]
        for d in range(D):
            out[n, d] = table[r, d]


@njit(cache=True, nogil=True)
def scatter_add_rows(d_table, idx, d_rows, c0, c1):
    """d_table[idx[n], c0:c1] += d_rows[n, c0:c1]: the gradient of gather_rows, on columns c0:c1
    (threads that split the columns add to each element in the same order as one thread)."""
    for n in range(idx.shape[0]):
        src = d_rows[n, c0:c1]
        dst = d_table[idx[n], c0:c1]
        for d in range(c1 - c0):
            dst[d] += src[d]


@njit(cache=True, error_model="numpy")
def _exp_shifted(row, out):
    """out[v] = exp(row[v] - m) with m = max(row); returns (m, Σ_v out[v]).
    Subtracting the row max keeps exp from overflowing."""
    V = row.shape[0]
    m = row[0]
    for v in range(1, V):
        if row[v] > m:
            m = row[v]
    s = row[0] * 0
    for v in range(V):
        e = np.exp(row[v] - m)
        out[v] = e
        s += e
    return m, s


@njit(cache=True, error_model="numpy")
def softmax_xent(logits, targets, weights, dlogits):
    """Weighted softmax cross-entropy.  logits, dlogits (N, V); targets (N,) int32; weights (N,).

    Returns Σ_n w_n · (-log p_n[target_n]) and writes dlogits[n] = w_n · (p_n - onehot(target_n)).
    A mean over N is weights = 1/N. -log p_t is taken as log Σ exp - (l_t - m), which stays
    finite where p_t itself underflows.
    """
    N, V = logits.shape
    total = 0.0
    for n in range(N):
        m, s = _exp_shifted(logits[n], dlogits[n])
        w = weights[n]
        t = targets[n]
        total += w * (np.log(s) - (logits[n, t] - m))
        scale = w / s
        for v in range(V):
            dlogits[n, v] *= scale
        dlogits[n, t] -= w
    return total


@njit(cache=True, error_model="numpy")
def softmax_rows(logits, probs):
    """probs[n] = softmax(logits[n]), numerically stable."""
    N, V = logits.shape
    for n in range(N):
        _, s = _exp_shifted(logits[n], probs[n])
        for v in range(V):
            probs[n, v] /= s
