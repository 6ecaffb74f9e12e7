"""Character generation: the whole loop (all layers, softmax, draw) in one kernel call.

Layer 0's input projection for token v is the same vector every time, so the caller folds the
embedding into it once: table0[v] = W_xh embed[v] + b (or column v of W_xh + b for one-hot).
Each generated character then costs one gather, L recurrent matrix-vector products, L-1 input
products and the output projection, with no Python in between.
"""

import numpy as np
from numba import njit

from rnncli.engine.kernels import gru, lstm, panel, rnn, sync

RNN, LSTM, GRU = 0, 1, 2  # cell codes, in config.CELLS order


@njit(cache=True, error_model="numpy")
def _draw(logits, inv_temp, top_k, top_p, u, probs):
    """Index drawn from softmax(logits · inv_temp) restricted to the top_k largest (0 = all),
    then to the nucleus: the smallest set of the likeliest of those whose probability reaches
    top_p (1 = all), using the uniform number u. inv_temp = 0 means greedy (argmax). Ties in
    the nucleus are taken in index order."""
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
    if top_p < 1.0:
        # stable: of equal probabilities the lower index comes first
        order = np.argsort(-probs[:V], kind="mergesort")
        target = top_p * total
        kept = 0.0
        j = 0
        while j < V:
            kept += probs[order[j]]
            j += 1
            if kept >= target:
                break
        for r in range(j, V):
            probs[order[r]] = 0.0
        # the same sum, in the order the draw below accumulates it
        total = 0.0
        for v in range(V):
            total += probs[v]
    target = u * total
    acc = 0.0
    for v in range(V):
        acc += probs[v]
        if acc > target and probs[v] > 0:
            return v
    return best


@njit(cache=True, nogil=True)
def generate(cell, code, table0, W_xh_up, P_xh_up, b_up, W_hh, P_hh, b_hn, W_hy, P_hy, b_y,
             state, tokens, inv_temp, top_k, top_p, uniforms, out, xp, gates, hn, hs, logits,
             u0, u1, v0, v1, barrier, parties, rank):
    """Feed tokens and sample what follows, for B streams at once, on this thread's share:
    hidden units u0:u1 of every layer and vocabulary columns v0:v1 of the output product.

    cell: RNN/LSTM/GRU; code: vanilla activation code. table0 (V, G·H); W_xh_up (L-1, G·H, H)
    and b_up (L-1, G·H) for layers 1..L-1; W_hh (L, G·H, H); b_hn (L, H) (GRU, else zeros);
    W_hy (V, H); b_y (V,). P_xh_up, P_hh: each layer's matrix packed by
    panel.packed_gates(W, G), stacked; P_hy = panel.packed(W_hy, True). state (L, S, B, H)
    in/out. tokens (P, B) int32: the prime, fed in order (P >= 1); its last row conditions the
    first draw. top_k, top_p: as _draw (0 and 1 keep every character). uniforms (n, B): one
    U[0,1) number per draw; out (n, B) int32 written.

    Scratch shared by the `parties` threads, each writing only its own columns: xp, gates
    (B, G·H), hn (B, H), hs (2, L, S, B, H) (hs[0] = state on entry; the states of step i are
    read from hs[i % 2] and written to the other, so a thread never overwrites a state another
    may still be reading), logits (2, B, V) (alternating likewise). The threads meet after
    each layer (the next layer reads the whole of its h) and after the output product; each
    then draws the same character from the same logits and uniforms, and thread `rank` 0
    writes it.
    """
    L, S, B, H = state.shape
    G = W_hh.shape[1] // H
    probs = np.empty(W_hy.shape[0], np.float64)
    last = np.empty(B, np.int32)
    P = tokens.shape[0]
    n = out.shape[0]
    for i in range(P + n - 1):
        now, new = hs[i % 2], hs[1 - i % 2]
        for k in range(L):
            # xp = this layer's input projection: a table row for layer 0, a product above
            if k == 0:
                for b in range(B):
                    row = table0[tokens[i, b] if i < P else last[b]]
                    for g in range(G):
                        xp[b, g * H + u0:g * H + u1] = row[g * H + u0:g * H + u1]
            else:
                for b in range(B):
                    for g in range(G):
                        xp[b, g * H + u0:g * H + u1] = b_up[k - 1, g * H + u0:g * H + u1]
                panel.product_units_or_gemm(new[k - 1, 0], W_xh_up[k - 1], True, P_xh_up[k - 1], xp, G, u0, u1,
                                            True)
            if cell == LSTM:
                lstm.step_forward(xp, now[k, 0], now[k, 1], W_hh[k], P_hh[k], new[k, 1], new[k, 0], u0, u1)
            elif cell == GRU:
                gru.step_forward(xp, now[k, 0], W_hh[k], P_hh[k], b_hn[k], gates, hn, new[k, 0], u0, u1)
            else:
                for b in range(B):
                    new[k, 0, b, u0:u1] = xp[b, u0:u1]
                rnn.step_forward(now[k, 0], W_hh[k], P_hh[k], code, new[k, 0], u0, u1)
            sync.wait(barrier, parties)
        if i >= P - 1:
            r = i - (P - 1)
            lg = logits[i % 2]
            for b in range(B):
                lg[b, v0:v1] = b_y[v0:v1]
            panel.product_units_or_gemm(new[L - 1, 0], W_hy, True, P_hy, lg, 1, v0, v1, True)
            sync.wait(barrier, parties)
            for b in range(B):
                last[b] = _draw(lg[b], inv_temp, top_k, top_p, uniforms[r, b], probs)
                if rank == 0:
                    out[r, b] = last[b]
    final = hs[(P + n - 1) % 2]
    for k in range(L):
        for s in range(S):
            for b in range(B):
                state[k, s, b, u0:u1] = final[k, s, b, u0:u1]
