"""LSTM layer. Gate order of the fused weights, stated once: i, f, g, o as row blocks of
W_xh (4H, D), W_hh (4H, H) and b (4H,).

    i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o),   a = W_xh x_t + W_hh h_{t-1} + b
    c_t = f ⊙ c_{t-1} + i ⊙ g          h_t = o ⊙ tanh(c_t)

Layout: Gates (T, B, 4H) arrives holding the input projections W_xh x_t + b of all T steps (one
GEMM or a table gather, done by the caller); each step adds W_hh h_{t-1} onto its row block in
place and activates it, so it leaves holding i, f, g, o for the backward pass.
Hbuf, Cbuf (T+1, B, H) with index 0 = carried state.

The elementwise work runs gate block by gate block over contiguous rows: one short loop per
block is what LLVM turns into SIMD code; one loop doing all four blocks at once stayed scalar
(measured 13x slower).
"""

from numba import njit

from rnncli.engine.kernels import panel, sync
from rnncli.engine.kernels.activations import sigmoid, tanh


@njit(cache=True, error_model="numpy")
def cell_forward(gates, c_prev, c, h, u0, u1):
    """Activate gates (B, 4H) in place (pre-activations in, i f g o out) and write c, h (B, H),
    for hidden units u0:u1."""
    B, H = c.shape
    one = c.dtype.type(1.0)
    n = u1 - u0  # the loops run over 0..n on slices: from 0, Numba knows no index is negative and LLVM vectorises
    for b in range(B):
        row = gates[b]
        i, f, g, o = row[u0:u1], row[H + u0:H + u1], row[2 * H + u0:2 * H + u1], row[3 * H + u0:3 * H + u1]
        for j in range(n):
            i[j] = sigmoid(i[j], one)
        for j in range(n):
            f[j] = sigmoid(f[j], one)
        for j in range(n):
            g[j] = tanh(g[j])
        for j in range(n):
            o[j] = sigmoid(o[j], one)
        cp, cn, hn = c_prev[b, u0:u1], c[b, u0:u1], h[b, u0:u1]
        for j in range(n):
            cn[j] = f[j] * cp[j] + i[j] * g[j]
        for j in range(n):
            hn[j] = o[j] * tanh(cn[j])


@njit(cache=True)
def step_forward(gates, h_prev, c_prev, W_hh, P_hh, c, h, u0, u1):
    """One step for hidden units u0:u1. gates (B, 4H): input projection in, activated gates
    out; W_hh (4H, H) and P_hh = panel.packed_gates(W_hh, 4)."""
    panel.product_units_or_gemm(h_prev, W_hh, True, P_hh, gates, 4, u0, u1, True)  # a = (W_xh x_t + b) + W_hh h_{t-1}
    cell_forward(gates, c_prev, c, h, u0, u1)


@njit(cache=True, nogil=True)
def forward(Gates, Hbuf, Cbuf, W_hh, P_hh, ends, lo, hi, u0, u1, barrier, parties):
    """All T steps for batch rows lo:hi and hidden units u0:u1; Hbuf[0], Cbuf[0] = carried
    state set by the caller; P_hh = panel.packed_gates(W_hh, 4), packed once by the caller for
    all worker threads. `parties` threads share rows lo:hi, each its own units, and meet at
    `barrier` after every step, since the next reads all of h_t (kernels/sync.py).
    (The row range, not a view, is how a worker thread gets its rows: a view of some rows is
    not contiguous, and Numba compiles non-contiguous arrays to scalar code.)
    ends (T,): step t computes only rows below ends[t] (see active_rows); the others are left
    as they were."""
    for t in range(Gates.shape[0]):
        e = sync.active_rows(ends, t, lo, hi)
        step_forward(Gates[t][lo:e], Hbuf[t][lo:e], Cbuf[t][lo:e], W_hh, P_hh, Cbuf[t + 1][lo:e],
                     Hbuf[t + 1][lo:e], u0, u1)
        sync.wait(barrier, parties)


@njit(cache=True, error_model="numpy")
def cell_backward(gates, c_prev, c, dh_in, dh_next, dc_next, dg, u0, u1):
    """One step back through the cell, for hidden units u0:u1. gates (B, 4H) activated;
    c_prev, c (B, H); dh_in (B, H) from above. dh_next, dc_next (B, H): in, from step t+1;
    dc_next out: dL/dc_{t-1} (dh_next is left for the caller's GEMM). dg (B, 4H) written:
    gradients at the gate pre-activations."""
    B, H = c.shape
    one = c.dtype.type(1.0)
    n = u1 - u0  # as in cell_forward
    for b in range(B):
        row, drow = gates[b], dg[b]
        i, f, g, o = row[u0:u1], row[H + u0:H + u1], row[2 * H + u0:2 * H + u1], row[3 * H + u0:3 * H + u1]
        di, df, dgg, do = drow[u0:u1], drow[H + u0:H + u1], drow[2 * H + u0:2 * H + u1], drow[3 * H + u0:3 * H + u1]
        cp, cn, dhi, dhn, dc = c_prev[b, u0:u1], c[b, u0:u1], dh_in[b, u0:u1], dh_next[b, u0:u1], dc_next[b, u0:u1]
        for j in range(n):
            tc = tanh(cn[j])
            dh = dhi[j] + dhn[j]
            do[j] = dh * tc * o[j] * (one - o[j])
            # through h = o tanh(c): the cell gets dh·o·(1 - tanh²c) on top of what c_{t+1} sent
            dc[j] += dh * o[j] * (one - tc * tc)
        for j in range(n):
            di[j] = dc[j] * g[j] * i[j] * (one - i[j])
        for j in range(n):
            df[j] = dc[j] * cp[j] * f[j] * (one - f[j])
        for j in range(n):
            dgg[j] = dc[j] * i[j] * (one - g[j] * g[j])
        for j in range(n):
            dc[j] *= f[j]


@njit(cache=True, nogil=True)
def backward(Cbuf, Gates, W_hh, P_hh, dH, dh_next, dc_next, dG, lo, hi, u0, u1, barrier, parties):
    """Backprop through time, t = T-1 .. 0, for batch rows lo:hi and hidden units u0:u1 (see
    forward); P_hh = panel.packed(W_hh, False).

    dH (T, B, H) = dL/dh_t from above. dh_next, dc_next (B, H): gradients arriving from step T
    (zeros for truncated BPTT); on return dL/dh_0 and dL/dc_0. dG (T, B, 4H) written: gradients
    at the gate pre-activations, in i, f, g, o order. Threads meet after each step's cell,
    because dh_{t-1} of any unit needs the gate gradients of all of them.
    """
    dh_next, dc_next = dh_next[lo:hi], dc_next[lo:hi]
    for t in range(dH.shape[0] - 1, -1, -1):
        dg = dG[t][lo:hi]
        cell_backward(Gates[t][lo:hi], Cbuf[t][lo:hi], Cbuf[t + 1][lo:hi], dH[t][lo:hi], dh_next, dc_next, dg,
                      u0, u1)
        sync.wait(barrier, parties)
        # dh_{t-1} = W_hhᵀ da, in row form
        panel.product_units_or_gemm(dg, W_hh, False, P_hh, dh_next, 1, u0, u1, False)
