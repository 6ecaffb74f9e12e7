"""Character generation: the whole loop (all layers, softmax, draw) in one kernel call.

Layer 0's input projection for token v is the same vector every time, so the caller folds the
embedding into it once: table0[v] = W_xh embed[v] + b (or column v of W_xh + b for one-hot).
Each generated character then costs one gather, L recurrent matrix-vector products, L-1 input
products and the output projection, with no Python in between.
"""

import numpy as np
from numba import njit

from rnncli.kernels import gru, lstm, panel, rnn

RNN, LSTM, GRU = 0, 1, 2  # cell codes, in config.CELLS order


@njit(cache=True, error_model="numpy")
def _draw(logits, inv_temp, top_k, u, probs):
    """Index drawn from softmax(logits · inv_temp) restricted to the top_k largest (0 = all),
    using the uniform number u. inv_temp = 0 means greedy (argmax)."""
    V = logits.shape[0]
    best = 0
    for v in range(1, V):
        if logits[v] > logits[best]:
            best = v
    if inv_temp == 0:
        return best
    cutoff = -np.inf
    if 0 < top_k < V:
        cutoff = np.sort(logits)[V - top_k]
    m = logits[best]
    total = 0.0
    for v in range(V):
        if logits[v] >= cutoff:
            probs[v] = np.exp((logits[v] - m) * inv_temp)
        else:
            probs[v] = 0.0
        total += probs[v]
    target = u * total
    acc = 0.0
    for v in range(V):
        acc += probs[v]
        if acc > target and probs[v] > 0:
            return v
    return best


@njit(cache=True)
def generate(cell, code, table0, W_xh_up, P_xh_up, b_up, W_hh, P_hh, b_hn, W_hy, P_hy, b_y,
             state, tokens, inv_temp, top_k, uniforms, out):
    """Feed tokens and sample what follows, for B streams at once.

    cell: RNN/LSTM/GRU; code: vanilla activation code. table0 (V, G·H); W_xh_up (L-1, G·H, H)
    and b_up (L-1, G·H) for layers 1..L-1; W_hh (L, G·H, H); b_hn (L, H) (GRU, else zeros);
    W_hy (V, H); b_y (V,). P_xh_up, P_hh, P_hy: each weight matrix packed for its product,
    panel.packed(W, True) (stacked per layer). state (L, S, B, H) in/out.
    tokens (P, B) int32: the prime, fed in order (P >= 1); its last row conditions the first draw.
    uniforms (n, B): one U[0,1) number per draw; out (n, B) int32 written.
    """
    L, S, B, H = state.shape
    GH = W_hh.shape[1]
    V = W_hy.shape[0]
    xp = np.empty((B, GH), state.dtype)
    gates = np.empty((B, GH), state.dtype)
    hn = np.empty((B, H), state.dtype)
    h_new = np.empty((B, H), state.dtype)
    c_new = np.empty((B, H), state.dtype)
    logits = np.empty((B, V), state.dtype)
    probs = np.empty(V, np.float64)
    P = tokens.shape[0]
    n = out.shape[0]
    for i in range(P + n - 1):
        for k in range(L):
            # xp = this layer's input projection: a table row for layer 0, a product above
            if k == 0:
                for b in range(B):
                    xp[b, :] = table0[tokens[i, b] if i < P else out[i - P, b]]
            else:
                for b in range(B):
                    xp[b, :] = b_up[k - 1]
                panel.product_or_gemm(state[k - 1, 0], W_xh_up[k - 1], True, P_xh_up[k - 1], xp, True)
            if cell == LSTM:
                lstm.step_forward(xp, state[k, 0], state[k, 1], W_hh[k], P_hh[k], c_new, h_new)
                state[k, 1] = c_new
            elif cell == GRU:
                gru.step_forward(xp, state[k, 0], W_hh[k], P_hh[k], b_hn[k], gates, hn, h_new)
            else:
                h_new[:] = xp
                rnn.step_forward(state[k, 0], W_hh[k], P_hh[k], code, h_new)
            state[k, 0] = h_new
        if i >= P - 1:
            r = i - (P - 1)
            for b in range(B):
                logits[b, :] = b_y
            panel.product_or_gemm(state[L - 1, 0], W_hy, True, P_hy, logits, True)
            for b in range(B):
                out[r, b] = _draw(logits[b], inv_temp, top_k, uniforms[r, b], probs)
