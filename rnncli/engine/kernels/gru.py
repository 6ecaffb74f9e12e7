"""GRU layer, in the form where the reset gate multiplies the recurrent candidate term after the
matrix product (as cuDNN and PyTorch define it), so all three gates share one GEMM per step.
Gate order of the fused weights: r, z, n as row blocks of W_xh (3H, D), W_hh (3H, H), b (3H,).

    r = σ(a_r)   z = σ(a_z)          a = W_xh x_t + b + W_hh h_{t-1}   (r and z blocks)
    n = tanh(W_xn x_t + b_n + r ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

b_hn (H,) is the one bias that cannot be folded into b, because r multiplies it.

Layout: XP (T, B, 3H) holds W_xh x_t + b for all t (one GEMM or a table gather, by the caller);
each step's recurrent product W_hh h_{t-1} lands in that step's gates row block, which leaves
holding r, z, n for the backward pass. Elementwise work runs gate block by gate block over
contiguous rows, one short loop each, which is what LLVM vectorises.
"""

import numpy as np
from numba import njit

from rnncli.engine.kernels import panel, sync
from rnncli.engine.kernels.activations import sigmoid, tanh


@njit(cache=True, error_model="numpy")
def cell_forward(xp, h_prev, b_hn, gates, hn, h, u0, u1):
    """For hidden units u0:u1: gates (B, 3H): W_hh h_{t-1} in, activated r, z, n out. xp (B, 3H);
    h_prev, h (B, H) (h written); hn (B, H) receives W_hn h_{t-1} + b_hn, which the backward
    pass needs."""
    B, H = h.shape
    one = h.dtype.type(1.0)
    m = u1 - u0  # the loops run over 0..m on slices: from 0, Numba knows no index is negative and LLVM vectorises
    for b in range(B):
        xrow, grow = xp[b], gates[b]
        x_r, x_z, x_n = xrow[u0:u1], xrow[H + u0:H + u1], xrow[2 * H + u0:2 * H + u1]
        r, z, n = grow[u0:u1], grow[H + u0:H + u1], grow[2 * H + u0:2 * H + u1]
        hnb, hp, hb, bn = hn[b, u0:u1], h_prev[b, u0:u1], h[b, u0:u1], b_hn[u0:u1]
        for j in range(m):
            r[j] = sigmoid(x_r[j] + r[j], one)
        for j in range(m):
            z[j] = sigmoid(x_z[j] + z[j], one)
        for j in range(m):
            hnb[j] = n[j] + bn[j]
        for j in range(m):
            n[j] = tanh(x_n[j] + r[j] * hnb[j])
        for j in range(m):
            hb[j] = (one - z[j]) * n[j] + z[j] * hp[j]


@njit(cache=True)
def step_forward(xp, h_prev, W_hh, P_hh, b_hn, gates, hn, h, u0, u1):
    """One step for hidden units u0:u1. xp (B, 3H); h_prev, h (B, H); W_hh (3H, H),
    P_hh = panel.packed_gates(W_hh, 3); b_hn (H,); gates (B, 3H) and hn (B, H) written (see
    cell_forward)."""
    panel.product_units_or_gemm(h_prev, W_hh, True, P_hh, gates, 3, u0, u1, False)
    cell_forward(xp, h_prev, b_hn, gates, hn, h, u0, u1)


@njit(cache=True, nogil=True)
def forward(XP, Hbuf, W_hh, P_hh, b_hn, gates, HN, ends, lo, hi, u0, u1, barrier, parties):
    """All T steps for batch rows lo:hi and hidden units u0:u1 (see lstm.forward, also for
    ends); P_hh = panel.packed_gates(W_hh, 3). gates (T, B, 3H), HN (T, B, H) written;
    Hbuf[0] = h_0 set by the caller."""
    for t in range(XP.shape[0]):
        e = sync.active_rows(ends, t, lo, hi)
        step_forward(XP[t][lo:e], Hbuf[t][lo:e], W_hh, P_hh, b_hn, gates[t][lo:e], HN[t][lo:e],
                     Hbuf[t + 1][lo:e], u0, u1)
        sync.wait(barrier, parties)


@njit(cache=True, error_model="numpy")
def cell_backward(gates, hn, h_prev, dh_in, dh_next, dh, dxp, dhp, u0, u1):
    """One step back, for hidden units u0:u1. gates (B, 3H) activated; hn, h_prev, dh_in (B, H). dh (B, H) scratch.
    dh_next (B, H): in, from step t+1; out: the direct part dh·z of dL/dh_{t-1} (the caller
    adds W_hhᵀ dhp). dxp, dhp (B, 3H) written (see backward)."""
    B, H = dh_in.shape
    one = dh_in.dtype.type(1.0)
    m = u1 - u0  # as in cell_forward
    for b in range(B):
        grow, dxrow, dhrow = gates[b], dxp[b], dhp[b]
        r, z, n = grow[u0:u1], grow[H + u0:H + u1], grow[2 * H + u0:2 * H + u1]
        dx_r, dx_z, dx_n = dxrow[u0:u1], dxrow[H + u0:H + u1], dxrow[2 * H + u0:2 * H + u1]
        dh_r, dh_z, dh_n = dhrow[u0:u1], dhrow[H + u0:H + u1], dhrow[2 * H + u0:2 * H + u1]
        d, dib, dnb, hnb, hp = dh[b, u0:u1], dh_in[b, u0:u1], dh_next[b, u0:u1], hn[b, u0:u1], h_prev[b, u0:u1]
        for j in range(m):
            d[j] = dib[j] + dnb[j]
        for j in range(m):
            dx_n[j] = d[j] * (one - z[j]) * (one - n[j] * n[j])
        for j in range(m):
            dx_z[j] = d[j] * (hp[j] - n[j]) * z[j] * (one - z[j])
        for j in range(m):
            dx_r[j] = dx_n[j] * hnb[j] * r[j] * (one - r[j])
        for j in range(m):
            dh_r[j] = dx_r[j]
        for j in range(m):
            dh_z[j] = dx_z[j]
        for j in range(m):
            dh_n[j] = dx_n[j] * r[j]
        for j in range(m):
            dnb[j] = d[j] * z[j]  # through h_t = ... + z ⊙ h_{t-1}


@njit(cache=True, nogil=True)
def backward(Hbuf, gates, HN, W_hh, P_hh, dH, dh_next, dXP, dHP, lo, hi, u0, u1, barrier, parties):
    """Backprop through time, t = T-1 .. 0, for batch rows lo:hi and hidden units u0:u1 (see
    lstm.backward); P_hh = panel.packed(W_hh, False).

    dH (T, B, H) = dL/dh_t from above; dh_next (B, H) in: from step T, out: dL/dh_0.
    dXP (T, B, 3H) written: gradient at the input projection (for W_xh, b).
    dHP (T, B, 3H) written: gradient at W_hh h_{t-1} (+ b_hn for the n block), for W_hh and b_hn.
    They differ only in the n block, where the recurrent term is scaled by r.
    """
    dh_next = dh_next[lo:hi]
    dh = np.empty_like(dh_next)
    for t in range(dH.shape[0] - 1, -1, -1):
        dhp = dHP[t][lo:hi]
        cell_backward(gates[t][lo:hi], HN[t][lo:hi], Hbuf[t][lo:hi], dH[t][lo:hi], dh_next, dh, dXP[t][lo:hi], dhp,
                      u0, u1)
        sync.wait(barrier, parties)
        panel.product_units_or_gemm(dhp, W_hh, False, P_hh, dh_next, 1, u0, u1, True)
