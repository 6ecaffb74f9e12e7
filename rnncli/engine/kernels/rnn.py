"""Vanilla RNN layer:  h_t = act(W_xh x_t + W_hh h_{t-1} + b_h).

Layout: time-major. Hbuf (T+1, B, H): Hbuf[0] is h_0 (the carried state), Hbuf[t+1] is h_t, so
Hbuf[:-1] is the matrix of previous states the weight gradient needs, with no copy. Hbuf[1:]
arrives holding W_xh x_t + b_h for all t (one GEMM or a table gather, done by the caller); each
step adds W_hh h_{t-1} in place and applies the activation there.
"""

from numba import njit

from rnncli.engine.kernels import panel, sync
from rnncli.engine.kernels.activations import RELU, TANH, sigmoid, tanh


@njit(cache=True, error_model="numpy")
def activate_rows(a, code, u0, u1):
    """a[:, u0:u1] = act(a[:, u0:u1]) in place. One loop per activation, so each vectorises."""
    one = a.dtype.type(1.0)
    zero = a.dtype.type(0.0)
    B, H = a.shape
    n = u1 - u0  # loops from 0 over slices: Numba then knows no index is negative, and LLVM vectorises
    for b in range(B):
        row = a[b, u0:u1]
        if code == TANH:
            for j in range(n):
                row[j] = tanh(row[j])
        elif code == RELU:
            for j in range(n):
                row[j] = max(row[j], zero)
        else:
            for j in range(n):
                row[j] = sigmoid(row[j], one)


@njit(cache=True)
def step_forward(h_prev, W_hh, P_hh, code, h, u0, u1):
    """One step for hidden units u0:u1. h (B, H): W_xh x_t + b_h in, h_t out; h_prev (B, H);
    W_hh (H, H) and P_hh = panel.packed(W_hh, True)."""
    panel.product_units_or_gemm(h_prev, W_hh, True, P_hh, h, 1, u0, u1, True)
    activate_rows(h, code, u0, u1)


@njit(cache=True, nogil=True)
def forward(Hbuf, W_hh, P_hh, code, ends, lo, hi, u0, u1, barrier, parties):
    """All T steps for batch rows lo:hi and hidden units u0:u1 (see lstm.forward, also for
    ends); P_hh = panel.packed(W_hh, True). Hbuf (T+1, B, H): h_0 and the input projections
    in, states out."""
    for t in range(Hbuf.shape[0] - 1):
        e = sync.active_rows(ends, t, lo, hi)
        step_forward(Hbuf[t][lo:e], W_hh, P_hh, code, Hbuf[t + 1][lo:e], u0, u1)
        sync.wait(barrier, parties)


@njit(cache=True, error_model="numpy")
def _raw_grad(h, dh_in, dh_next, code, da, u0, u1):
    """da = (dh_in + dh_next) · act'(a), act' from the output h (all (B, H)), for units u0:u1."""
    one = h.dtype.type(1.0)
    zero = h.dtype.type(0.0)
    B, H = h.shape
    n = u1 - u0  # as in activate_rows
    for b in range(B):
        hb, dib, dnb, dab = h[b, u0:u1], dh_in[b, u0:u1], dh_next[b, u0:u1], da[b, u0:u1]
        if code == TANH:  # through tanh: 1 - h²
            for j in range(n):
                dab[j] = (dib[j] + dnb[j]) * (one - hb[j] * hb[j])
        elif code == RELU:
            for j in range(n):
                dab[j] = (dib[j] + dnb[j]) if hb[j] > zero else zero
        else:  # through sigmoid: s(1 - s)
            for j in range(n):
                dab[j] = (dib[j] + dnb[j]) * hb[j] * (one - hb[j])


@njit(cache=True, nogil=True)
def backward(Hbuf, W_hh, P_hh, code, dH, dh_next, dA, lo, hi, u0, u1, barrier, parties):
    """Backprop through time, t = T-1 .. 0, for batch rows lo:hi and hidden units u0:u1 (see
    lstm.backward); P_hh = panel.packed(W_hh, False).

    Hbuf (T+1, B, H) from forward; W_hh (H, H); dH (T, B, H) = dL/dh_t from the layer above.
    dh_next (B, H): gradient arriving from step T (zeros for truncated BPTT); on return, dL/dh_0.
    dA (T, B, H) written: dL/da_t at the pre-activation (dh_raw), from which dW_xh, dW_hh, db_h
    are one GEMM each.
    """
    dh_next = dh_next[lo:hi]
    for t in range(dH.shape[0] - 1, -1, -1):
        da = dA[t][lo:hi]
        _raw_grad(Hbuf[t + 1][lo:hi], dH[t][lo:hi], dh_next, code, da, u0, u1)
        sync.wait(barrier, parties)
        panel.product_units_or_gemm(da, W_hh, False, P_hh, dh_next, 1, u0, u1, False)  # dh_next = W_hhᵀ dh_raw
