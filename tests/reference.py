"""Slow, obvious numpy reference cells: the truth the kernels are tested against.

Written straight from the equations, independent of rnncli: one Python loop over the batch,
one over time, and column-vector math per step (a = W_xh x + W_hh h + b). Nothing is fused,
transposed ahead of time or computed from an activation's output instead of its input.

Shapes: x (T, B, D); a layer's state (S, B, H), S = 2 for LSTM (h, c) else 1; W_xh (G·H, D),
W_hh (G·H, H), b (G·H,), b_hn (H,) for GRU. Gate blocks: LSTM i, f, g, o; GRU r, z, n.
The stack functions take parameters named as in rnncli.engine.model (l{k}.W_xh, ...), which is only
a naming convention.
"""

import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def act(a, activation):
    if activation == "tanh":
        return np.tanh(a)
    if activation == "relu":
        return np.maximum(a, 0.0)
    if activation == "sigmoid":
        return sigmoid(a)
    raise ValueError(activation)


def act_grad(a, activation):
    """d act / d a at the pre-activation a."""
    if activation == "tanh":
        return 1.0 - np.tanh(a) ** 2
    if activation == "relu":
        return (a > 0).astype(float)
    if activation == "sigmoid":
        return sigmoid(a) * (1.0 - sigmoid(a))
    raise ValueError(activation)


# ---------------------------------------------------------------- vanilla rnn

def rnn_forward(x, h0, W_xh, W_hh, b, activation="tanh"):
    """h_t = act(W_xh x_t + W_hh h_{t-1} + b). h0 (B, H). Returns hs (T, B, H)."""
    T, B, _ = x.shape
    hs = np.zeros((T, B, W_hh.shape[1]))
    for n in range(B):
        h = h0[n]
        for t in range(T):
            a = W_xh @ x[t, n] + W_hh @ h + b
            h = act(a, activation)
            hs[t, n] = h
    return hs


def rnn_backward(x, h0, W_xh, W_hh, b, dhs, activation="tanh", dh_last=None):
    """BPTT given dhs (T, B, H) = dL/dh_t and dh_last (B, H) = extra dL/dh_{T-1} (or None).
    Returns dict of W_xh, W_hh, b, x and h0 gradients."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    g = {"W_xh": np.zeros_like(W_xh), "W_hh": np.zeros_like(W_hh), "b": np.zeros_like(b),
         "x": np.zeros_like(x), "h0": np.zeros((B, H))}
    for n in range(B):
        h_prev, a = [], []
        h = h0[n]
        for t in range(T):
            h_prev.append(h)
            a.append(W_xh @ x[t, n] + W_hh @ h + b)
            h = act(a[t], activation)
        dh_next = np.zeros(H) if dh_last is None else dh_last[n].copy()
        for t in range(T - 1, -1, -1):
            dh = dhs[t, n] + dh_next
            dh_raw = dh * act_grad(a[t], activation)
            g["W_xh"] += np.outer(dh_raw, x[t, n])
            g["W_hh"] += np.outer(dh_raw, h_prev[t])
            g["b"] += dh_raw
            g["x"][t, n] = W_xh.T @ dh_raw
            dh_next = W_hh.T @ dh_raw
        g["h0"][n] = dh_next
    return g


# ---------------------------------------------------------------- lstm (i, f, g, o)

def lstm_forward(x, h0, c0, W_xh, W_hh, b):
    """Returns hs, cs (T, B, H)."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    hs, cs = np.zeros((T, B, H)), np.zeros((T, B, H))
    for n in range(B):
        h, c = h0[n], c0[n]
        for t in range(T):
            i, f, g, o, c = lstm_step(x[t, n], h, c, W_xh, W_hh, b)
            h = o * np.tanh(c)
            hs[t, n], cs[t, n] = h, c
    return hs, cs


def lstm_step(x_t, h, c, W_xh, W_hh, b):
    """One step from the equations: the gates i, f, g, o and the new cell c_t."""
    H = W_hh.shape[1]
    a = W_xh @ x_t + W_hh @ h + b
    i = sigmoid(a[0:H])
    f = sigmoid(a[H:2 * H])
    g = np.tanh(a[2 * H:3 * H])
    o = sigmoid(a[3 * H:4 * H])
    return i, f, g, o, f * c + i * g


def lstm_backward(x, h0, c0, W_xh, W_hh, b, dhs, dh_last=None, dc_last=None):
    """Returns dict of W_xh, W_hh, b, x, h0 and c0 gradients."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    grads = {"W_xh": np.zeros_like(W_xh), "W_hh": np.zeros_like(W_hh), "b": np.zeros_like(b),
             "x": np.zeros_like(x), "h0": np.zeros((B, H)), "c0": np.zeros((B, H))}
    for n in range(B):
        h, c = h0[n], c0[n]
        steps = []
        for t in range(T):
            i, f, g, o, c_new = lstm_step(x[t, n], h, c, W_xh, W_hh, b)
            steps.append((h, c, i, f, g, o, c_new))
            h, c = o * np.tanh(c_new), c_new
        dh_next = np.zeros(H) if dh_last is None else dh_last[n].copy()
        dc_next = np.zeros(H) if dc_last is None else dc_last[n].copy()
        for t in range(T - 1, -1, -1):
            h_prev, c_prev, i, f, g, o, c_t = steps[t]
            dh = dhs[t, n] + dh_next
            dc = dc_next + dh * o * (1.0 - np.tanh(c_t) ** 2)
            di = dc * g
            df = dc * c_prev
            dg = dc * i
            do = dh * np.tanh(c_t)
            da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)])
            grads["W_xh"] += np.outer(da, x[t, n])
            grads["W_hh"] += np.outer(da, h_prev)
            grads["b"] += da
            grads["x"][t, n] = W_xh.T @ da
            dh_next = W_hh.T @ da
            dc_next = dc * f
        grads["h0"][n] = dh_next
        grads["c0"][n] = dc_next
    return grads


# ---------------------------------------------------------------- gru (r, z, n), cuDNN form

def gru_forward(x, h0, W_xh, W_hh, b, b_hn):
    """r = σ(·), z = σ(·), n = tanh(W_xn x + b_n + r ⊙ (W_hn h + b_hn)), h = (1-z) n + z h_prev.
    Returns hs (T, B, H)."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    hs = np.zeros((T, B, H))
    for n_ in range(B):
        h = h0[n_]
        for t in range(T):
            ax = W_xh @ x[t, n_] + b
            ah = W_hh @ h
            r = sigmoid(ax[0:H] + ah[0:H])
            z = sigmoid(ax[H:2 * H] + ah[H:2 * H])
            n = np.tanh(ax[2 * H:] + r * (ah[2 * H:] + b_hn))
            h = (1 - z) * n + z * h
            hs[t, n_] = h
    return hs


def gru_backward(x, h0, W_xh, W_hh, b, b_hn, dhs, dh_last=None):
    """Returns dict of W_xh, W_hh, b, b_hn, x and h0 gradients."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    grads = {"W_xh": np.zeros_like(W_xh), "W_hh": np.zeros_like(W_hh), "b": np.zeros_like(b),
             "b_hn": np.zeros_like(b_hn), "x": np.zeros_like(x), "h0": np.zeros((B, H))}
    for n_ in range(B):
        h = h0[n_]
        steps = []
        for t in range(T):
            ax = W_xh @ x[t, n_] + b
            ah = W_hh @ h
            r = sigmoid(ax[0:H] + ah[0:H])
            z = sigmoid(ax[H:2 * H] + ah[H:2 * H])
            hn = ah[2 * H:] + b_hn
            n = np.tanh(ax[2 * H:] + r * hn)
            steps.append((h, r, z, n, hn))
            h = (1 - z) * n + z * h
        dh_next = np.zeros(H) if dh_last is None else dh_last[n_].copy()
        for t in range(T - 1, -1, -1):
            h_prev, r, z, n, hn = steps[t]
            dh = dhs[t, n_] + dh_next
            dn_raw = dh * (1 - z) * (1 - n * n)
            dz_raw = dh * (h_prev - n) * z * (1 - z)
            dr_raw = dn_raw * hn * r * (1 - r)
            d_ax = np.concatenate([dr_raw, dz_raw, dn_raw])  # at W_xh x + b
            d_ah = np.concatenate([dr_raw, dz_raw, dn_raw * r])  # at W_hh h_prev (+ b_hn)
            grads["W_xh"] += np.outer(d_ax, x[t, n_])
            grads["b"] += d_ax
            grads["W_hh"] += np.outer(d_ah, h_prev)
            grads["b_hn"] += dn_raw * r
            grads["x"][t, n_] = W_xh.T @ d_ax
            dh_next = W_hh.T @ d_ah + dh * z
        grads["h0"][n_] = dh_next
    return grads


# ---------------------------------------------------------------- one layer, any cell

def layer_forward(cell, x, state, p, activation="tanh"):
    """state (S, B, H); p has W_xh, W_hh, b (and b_hn). Returns hs (T, B, H), new state."""
    if cell == "lstm":
        hs, cs = lstm_forward(x, state[0], state[1], p["W_xh"], p["W_hh"], p["b"])
        return hs, np.stack([hs[-1], cs[-1]])
    if cell == "gru":
        hs = gru_forward(x, state[0], p["W_xh"], p["W_hh"], p["b"], p["b_hn"])
    else:
        hs = rnn_forward(x, state[0], p["W_xh"], p["W_hh"], p["b"], activation)
    return hs, hs[-1][None]


def layer_backward(cell, x, state, p, dhs, activation="tanh", d_state=None):
    """d_state (S, B, H) or None: gradient at the layer's final state.
    Returns (param grads, dx, d(initial state) (S, B, H))."""
    last = (lambda s: None) if d_state is None else (lambda s: d_state[s])
    if cell == "lstm":
        g = lstm_backward(x, state[0], state[1], p["W_xh"], p["W_hh"], p["b"], dhs, last(0), last(1))
        d0 = np.stack([g.pop("h0"), g.pop("c0")])
    else:
        if cell == "gru":
            g = gru_backward(x, state[0], p["W_xh"], p["W_hh"], p["b"], p["b_hn"], dhs, last(0))
        else:
            g = rnn_backward(x, state[0], p["W_xh"], p["W_hh"], p["b"], dhs, activation, last(0))
        d0 = g.pop("h0")[None]
    dx = g.pop("x")
    return g, dx, d0


# ---------------------------------------------------------------- stacked layers

def _layer_params(params, k):
    prefix = f"l{k}."
    return {name[len(prefix):]: v for name, v in params.items() if name.startswith(prefix)}


def stack_forward(cell, params, x, state, activation="tanh"):
    """state (L, S, B, H). Layer k's input is layer k-1's hs. Returns top hs, new state."""
    new_state = np.zeros(state.shape)
    inp = x
    for k in range(state.shape[0]):
        inp, new_state[k] = layer_forward(cell, inp, state[k], _layer_params(params, k), activation)
    return inp, new_state


def stack_backward(cell, params, x, state, d_top, activation="tanh", d_state=None):
    """Returns (grads named like params, dx, d(initial state) (L, S, B, H))."""
    L = state.shape[0]
    inputs = [x]
    for k in range(L - 1):
        inputs.append(layer_forward(cell, inputs[k], state[k], _layer_params(params, k), activation)[0])
    grads, d0 = {}, np.zeros(state.shape)
    d_out = d_top
    for k in range(L - 1, -1, -1):
        g, d_out, d0[k] = layer_backward(cell, inputs[k], state[k], _layer_params(params, k), d_out,
                                         activation, None if d_state is None else d_state[k])
        grads.update({f"l{k}.{name}": v for name, v in g.items()})
    return grads, d_out, d0


# ---------------------------------------------------------------- softmax cross-entropy

def softmax(logits):
    """Row-wise softmax of logits (N, V)."""
    out = np.zeros(logits.shape)
    for n in range(logits.shape[0]):
        e = np.exp(logits[n] - np.max(logits[n]))
        out[n] = e / np.sum(e)
    return out


def mean_cross_entropy(logits, targets):
    """Mean over rows of -log softmax(logits[n])[targets[n]], through log-sum-exp."""
    total = 0.0
    for n in range(logits.shape[0]):
        m = np.max(logits[n])
        total += m + np.log(np.sum(np.exp(logits[n] - m))) - logits[n, targets[n]]
    return total / logits.shape[0]
