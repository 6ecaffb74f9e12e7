"""GRU layer, in the form where the reset gate multiplies the recurrent candidate term after the
matrix product (as cuDNN and PyTorch define it), so all three gates share one GEMM per step.
Gate order of the fused weights: r, z, n as row blocks of W_xh (3H, D), W_hh (3H, H), b (3H,).

    r = σ(a_r)   z = σ(a_z)          a = W_xh x_t + b + W_hh h_{t-1}   (r and z blocks)
    n = tanh(W_xn x_t + b_n + r ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

b_hn (H,) is the one bias that cannot be folded into b, because r multiplies it.
"""

import numpy as np
from numba import njit

from rnncli.kernels.activations import sigmoid, tanh


@njit(cache=True, error_model="numpy")
def step_forward(xp, h_prev, W_hhT, b_hn, gates, hn, h):
    """One step. xp (B, 3H); h_prev, h (B, H); W_hhT (H, 3H); b_hn (H,).

    gates (B, 3H) receives the activated r, z, n; hn (B, H) receives W_hn h_{t-1} + b_hn.
    """
    np.dot(h_prev, W_hhT, gates)
    one = h.dtype.type(1.0)
    B, H = h.shape
    for b in range(B):
        for j in range(H):
            r = sigmoid(xp[b, j] + gates[b, j], one)
            z = sigmoid(xp[b, H + j] + gates[b, H + j], one)
            hn_j = gates[b, 2 * H + j] + b_hn[j]
            n = tanh(xp[b, 2 * H + j] + r * hn_j)
            h[b, j] = (one - z) * n + z * h_prev[b, j]
            gates[b, j] = r
            gates[b, H + j] = z
            gates[b, 2 * H + j] = n
            hn[b, j] = hn_j


@njit(cache=True)
def forward(XP, Hbuf, W_hhT, b_hn, gates, HN):
    """All T steps. gates (T, B, 3H), HN (T, B, H) written; Hbuf[0] = h_0 set by the caller."""
    for t in range(XP.shape[0]):
        step_forward(XP[t], Hbuf[t], W_hhT, b_hn, gates[t], HN[t], Hbuf[t + 1])


@njit(cache=True, error_model="numpy")
def backward(Hbuf, gates, HN, W_hh, dH, dh_next, dXP, dHP):
    """Backprop through time, t = T-1 .. 0.

    dH (T, B, H) = dL/dh_t from above; dh_next (B, H) in: from step T, out: dL/dh_0.
    dXP (T, B, 3H) written: gradient at the input projection (for W_xh, b).
    dHP (T, B, 3H) written: gradient at W_hh h_{t-1} (+ b_hn for the n block), for W_hh and b_hn.
    They differ only in the n block, where the recurrent term is scaled by r.
    """
    T, B, H = dH.shape
    one = dH.dtype.type(1.0)
    direct = np.empty_like(dh_next)  # dL/dh_{t-1} through h_t = ... + z ⊙ h_{t-1}
    for t in range(T - 1, -1, -1):
        gt = gates[t]
        h_prev = Hbuf[t]
        for b in range(B):
            for j in range(H):
                r = gt[b, j]
                z = gt[b, H + j]
                n = gt[b, 2 * H + j]
                dh = dH[t, b, j] + dh_next[b, j]
                dn_raw = dh * (one - z) * (one - n * n)
                dz_raw = dh * (h_prev[b, j] - n) * z * (one - z)
                dr_raw = dn_raw * HN[t, b, j] * r * (one - r)
                dXP[t, b, j] = dr_raw
                dXP[t, b, H + j] = dz_raw
                dXP[t, b, 2 * H + j] = dn_raw
                dHP[t, b, j] = dr_raw
                dHP[t, b, H + j] = dz_raw
                dHP[t, b, 2 * H + j] = dn_raw * r
                direct[b, j] = dh * z
        np.dot(dHP[t], W_hh, dh_next)
        dh_next += direct
