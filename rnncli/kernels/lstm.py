"""LSTM layer. Gate order of the fused weights, stated once: i, f, g, o as row blocks of
W_xh (4H, D), W_hh (4H, H) and b (4H,).

    i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o),   a = W_xh x_t + W_hh h_{t-1} + b
    c_t = f ⊙ c_{t-1} + i ⊙ g          h_t = o ⊙ tanh(c_t)

Layout as in rnn.py: XP (T, B, 4H) precomputed; Hbuf, Cbuf (T+1, B, H) with index 0 = carried state.
"""

import numpy as np
from numba import njit

from rnncli.kernels.activations import sigmoid, tanh


@njit(cache=True, error_model="numpy")
def step_forward(xp, h_prev, c_prev, W_hhT, gates, c, h):
    """One step. xp (B, 4H); h_prev, c_prev, c, h (B, H); W_hhT (H, 4H).

    gates (B, 4H) receives the activated i, f, g, o (kept for the backward pass).
    """
    np.dot(h_prev, W_hhT, gates)
    one = h.dtype.type(1.0)
    B, H = h.shape
    for b in range(B):
        for j in range(H):
            i = sigmoid(xp[b, j] + gates[b, j], one)
            f = sigmoid(xp[b, H + j] + gates[b, H + j], one)
            g = tanh(xp[b, 2 * H + j] + gates[b, 2 * H + j])
            o = sigmoid(xp[b, 3 * H + j] + gates[b, 3 * H + j], one)
            c_new = f * c_prev[b, j] + i * g
            c[b, j] = c_new
            h[b, j] = o * tanh(c_new)
            gates[b, j] = i
            gates[b, H + j] = f
            gates[b, 2 * H + j] = g
            gates[b, 3 * H + j] = o


@njit(cache=True)
def forward(XP, Hbuf, Cbuf, W_hhT, gates):
    """All T steps. gates (T, B, 4H) written; Hbuf[0], Cbuf[0] = carried state set by the caller."""
    for t in range(XP.shape[0]):
        step_forward(XP[t], Hbuf[t], Cbuf[t], W_hhT, gates[t], Cbuf[t + 1], Hbuf[t + 1])


@njit(cache=True, error_model="numpy")
def backward(Cbuf, gates, W_hh, dH, dh_next, dc_next, dG):
    """Backprop through time, t = T-1 .. 0.

    dH (T, B, H) = dL/dh_t from above. dh_next, dc_next (B, H): gradients arriving from step T
    (zeros for truncated BPTT); on return dL/dh_0 and dL/dc_0. dG (T, B, 4H) written: gradients
    at the gate pre-activations, in i, f, g, o order.
    """
    T, B, H = dH.shape
    one = dH.dtype.type(1.0)
    for t in range(T - 1, -1, -1):
        gt = gates[t]
        dg_t = dG[t]
        for b in range(B):
            for j in range(H):
                i = gt[b, j]
                f = gt[b, H + j]
                g = gt[b, 2 * H + j]
                o = gt[b, 3 * H + j]
                tc = tanh(Cbuf[t + 1, b, j])
                dh = dH[t, b, j] + dh_next[b, j]
                # through h = o tanh(c): the cell gets dh·o·(1 - tanh²c) on top of what c_{t+1} sent
                dc = dc_next[b, j] + dh * o * (one - tc * tc)
                dg_t[b, j] = dc * g * i * (one - i)
                dg_t[b, H + j] = dc * Cbuf[t, b, j] * f * (one - f)
                dg_t[b, 2 * H + j] = dc * i * (one - g * g)
                dg_t[b, 3 * H + j] = dh * tc * o * (one - o)
                dc_next[b, j] = dc * f
        np.dot(dg_t, W_hh, dh_next)
