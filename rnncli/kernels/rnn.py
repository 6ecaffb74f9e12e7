"""Vanilla RNN layer:  h_t = act(W_xh x_t + W_hh h_{t-1} + b_h).

Layout: time-major. XP (T, B, H) holds W_xh x_t + b_h for all t (one GEMM, done by the caller).
Hbuf (T+1, B, H): Hbuf[0] is h_0 (the carried state), Hbuf[t+1] is h_t, so Hbuf[:-1] is the
matrix of previous states the weight gradient needs, with no copy.
"""

import numpy as np
from numba import njit

from rnncli.kernels.activations import activate, activation_grad


@njit(cache=True, error_model="numpy")
def step_forward(xp, h_prev, W_hhT, code, h):
    """One step. xp, h_prev, h (B, H); W_hhT (H, H) = W_hhᵀ contiguous; h written."""
    np.dot(h_prev, W_hhT, h)
    one = h.dtype.type(1.0)
    B, H = h.shape
    for b in range(B):
        for j in range(H):
            h[b, j] = activate(xp[b, j] + h[b, j], code, one)


@njit(cache=True)
def forward(XP, Hbuf, W_hhT, code):
    """All T steps. XP (T, B, H); Hbuf (T+1, B, H) with Hbuf[0] = h_0 set by the caller."""
    for t in range(XP.shape[0]):
        step_forward(XP[t], Hbuf[t], W_hhT, code, Hbuf[t + 1])


@njit(cache=True, error_model="numpy")
def backward(Hbuf, W_hh, code, dH, dh_next, dA):
    """Backprop through time, t = T-1 .. 0.

    Hbuf (T+1, B, H) from forward; W_hh (H, H); dH (T, B, H) = dL/dh_t from the layer above.
    dh_next (B, H): gradient arriving from step T (zeros for truncated BPTT); on return, dL/dh_0.
    dA (T, B, H) written: dL/da_t at the pre-activation (dh_raw), from which dW_xh, dW_hh, db_h
    are one GEMM each.
    """
    T, B, H = dH.shape
    one = dH.dtype.type(1.0)
    for t in range(T - 1, -1, -1):
        h = Hbuf[t + 1]
        da = dA[t]
        dh = dH[t]
        for b in range(B):
            for j in range(H):
                da[b, j] = (dh[b, j] + dh_next[b, j]) * activation_grad(h[b, j], code, one)
        # dh_next = W_hhᵀ dh_raw, written in row form
        np.dot(da, W_hh, dh_next)
