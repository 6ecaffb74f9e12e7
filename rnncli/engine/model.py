"""Parameters and the stacked recurrent model, orchestrating the kernels.

Parameters are a plain dict name -> array, named after the math:

    embed            (V, E)      character (or word) vectors; absent when E = 0 (one-hot input)
    l{k}.W_xh        (G·H, D_k)  input weights of layer k, gate blocks stacked (see kernels/)
    l{k}.W_hh        (G·H, H)    recurrent weights
    l{k}.b           (G·H,)      bias (init_params: zero with the LSTM forget block at 1, or PyTorch's draws)
    l{k}.b_hn        (H,)        GRU only: recurrent bias of the candidate, inside r ⊙ (...)
    W_hy, b_y        (V, H), (V,) output projection to logits

G is the cell's number of gate blocks: 1 (rnn), 4 (lstm: i f g o) or 3 (gru: r z n). What differs
between cells (gates, states, buffers, extra biases, kernels) is read from the registry in
cells.py; nothing here branches on a cell's name. D_0 is E, or V for one-hot input, where
W_xh x_t with x_t one-hot is just column x_t of W_xh: a gather, no GEMM.

When the vocabulary is small next to the T·B tokens of a chunk (characters: 65 against 2048),
layer 0 does not multiply T·B embedding vectors by W_xh: it builds the (V, G·H) table
W_xh embed[v] + b once and gathers rows from it, and its backward scatters the gradient into
that table before two small products. Same result, three large GEMMs fewer per step.

The recurrent state of a stack is one array (L, S, B, H), S the cell's states: 2 for LSTM (h, c), else 1.
"""

from __future__ import annotations

import numpy as np

from rnncli.engine import cells, products
from rnncli.engine import threads as blas
from rnncli.config import ACTIVATIONS, ModelConfig
from rnncli.errors import ConfigError
from rnncli.memory import require_bytes
from rnncli.engine.kernels import linear as k_lin
from rnncli.engine.kernels import panel as k_panel
from rnncli.engine.kernels import sync as k_sync

DTYPES = (np.float32, np.float64)
DTYPE = np.float32  # training, inference and sampling; float64 is for gradient checks
# Gathers and scatters of the input table go to the worker threads in parts of at least this
# many rows (gather) or columns (scatter): below that a thread costs more than it saves.
ROWS_PER_PART = 256
COLUMNS_PER_PART = 64


class Workspace:
    """Named scratch buffers, reused across steps while their shape stays the same.

    Fresh large arrays cost page faults on first touch; reuse keeps the training loop
    allocation-free once the shapes settle.
    """

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple, dtype=None) -> np.ndarray:
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        a = self._arrays.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = np.empty(shape, dtype)
            self._arrays[name] = a
        return a


# ---------------------------------------------------------------- parameters

def stack_shapes(cfg: ModelConfig, input_size: int, prefix: str = "") -> dict[str, tuple]:
    cell = cells.get(cfg.cell)
    G, H = cell.size, cfg.hidden_size
    shapes = {}
    for k in range(cfg.num_layers):
        D = input_size if k == 0 else H
        shapes[f"{prefix}l{k}.W_xh"] = (G * H, D)
        shapes[f"{prefix}l{k}.W_hh"] = (G * H, H)
        shapes[f"{prefix}l{k}.b"] = (G * H,)
        for leaf, _gate in cell.recurrent_biases:
            shapes[f"{prefix}l{k}.{leaf}"] = (H,)
    return shapes


def lm_shapes(cfg: ModelConfig, vocab_size: int) -> dict[str, tuple]:
    """Shapes of the character language model's parameters, in a stable order."""
    shapes = {}
    if cfg.embedding_size > 0:
        shapes["embed"] = (vocab_size, cfg.embedding_size)
    shapes.update(stack_shapes(cfg, cfg.embedding_size or vocab_size))
    shapes["W_hy"] = (vocab_size, cfg.hidden_size)
    shapes["b_y"] = (vocab_size,)
    return shapes


def init_params(cfg: ModelConfig, shapes: dict[str, tuple], rng: np.random.Generator, dtype,
                biases: str = "zero") -> dict:
    """Weights U(±1/√H), N(0, 1) embeddings, and biases by `biases`:

    "zero": zero, with the cell's open_gates at 1 (the LSTM's forget gate: char-rnn's choice;
    the classifier's).
    "pytorch": U(±1/√H), the recurrent b drawn as the sum of two such draws because it stands
    for PyTorch's two (b_ih + b_hh); no gate starts open. The language model uses this: on tiny
    Shakespeare (LSTM 2×256) "zero" learned about 0.1 nats/char slower over the first 500 steps,
    and "pytorch" follows PyTorch's own curve.
    """
    params = {}
    H = cfg.hidden_size
    cell = cells.get(cfg.cell)
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "embed":
            a = rng.standard_normal(shape)
        elif leaf.startswith("W"):
            fan = H if leaf in ("W_xh", "W_hh", "W_hy") else shape[1]
            k = 1.0 / np.sqrt(fan)
            a = rng.uniform(-k, k, size=shape)
        elif biases == "pytorch":
            k = 1.0 / np.sqrt(H)
            a = rng.uniform(-k, k, size=shape)
            if leaf == "b":
                a += rng.uniform(-k, k, size=shape)
        else:
            a = np.zeros(shape)
            if leaf == "b":
                for gate in cell.open_gates:
                    a[cell.gate_rows(gate, H)] = 1.0
        params[name] = np.ascontiguousarray(a, dtype=dtype)
    return params


def count_params(params: dict) -> int:
    return int(sum(p.size for p in params.values()))


def zeros_like_params(params: dict) -> dict:
    return {name: np.zeros_like(p) for name, p in params.items()}


def require_memory(shapes: dict[str, tuple], dtype, copies: int,
                   remedy: str = "lower --hidden-size, --layers or --embedding-size") -> None:
    """Refuse a model whose parameters, gradients and optimizer state (`copies` arrays per
    parameter) would not fit in this machine's memory, before numpy tries to allocate them."""
    count = sum(int(np.prod(shape, dtype=object)) for shape in shapes.values())
    require_bytes(count * np.dtype(dtype).itemsize * copies,
                  f"a model of {count:,} parameters (weights, gradients and optimizer state)", remedy)


def check_params(params: dict, shapes: dict[str, tuple], dtype) -> dict:
    """The gate into the kernels: exact names, shapes, one dtype, C-contiguous."""
    if set(params) != set(shapes):
        missing = sorted(set(shapes) - set(params))
        extra = sorted(set(params) - set(shapes))
        raise ConfigError(f"parameters do not match the model: missing {missing}, unexpected {extra}")
    out = {}
    for name, shape in shapes.items():
        p = params[name]
        if tuple(p.shape) != tuple(shape):
            raise ConfigError(f"parameter {name}: shape {tuple(p.shape)}, expected {tuple(shape)}")
        out[name] = np.ascontiguousarray(p, dtype=dtype)
    return out


def state_shape(cfg: ModelConfig, batch_size: int) -> tuple:
    return (cfg.num_layers, len(cells.get(cfg.cell).states), batch_size, cfg.hidden_size)


def zero_state(cfg: ModelConfig, batch_size: int, dtype) -> np.ndarray:
    return np.zeros(state_shape(cfg, batch_size), dtype)


def dropout_masks(cfg: ModelConfig, T: int, B: int, rng: np.random.Generator, dtype) -> list | None:
    """Inverted-dropout masks for each layer's output (T, B, H): 0 or 1/keep."""
    if cfg.dropout <= 0:
        return None
    keep = 1.0 - cfg.dropout
    shape = (T, B, cfg.hidden_size)
    scale = np.float32(1.0 / keep)
    # float32 draws: half the random bits and memory of float64, and plenty to compare with keep
    return [((rng.random(shape, dtype=np.float32) < keep) * scale).astype(dtype, copy=False)
            for _ in range(cfg.num_layers)]


# ---------------------------------------------------------------- the layer stack

def input_table(W_xh: np.ndarray, b: np.ndarray, embed: np.ndarray | None) -> np.ndarray:
    """(V, G·H): row v is W_xh x + b for token v, x one-hot (embed None) or embed[v]."""
    if embed is None:
        return np.ascontiguousarray(W_xh.T) + b
    table = np.empty((embed.shape[0], W_xh.shape[0]), W_xh.dtype)
    products.linear_forward(embed, W_xh, b, table)
    return table


def stack_forward(cfg: ModelConfig, params: dict, x: np.ndarray, state: np.ndarray,
                  work: Workspace, masks: list | None = None, prefix: str = "",
                  embed: np.ndarray | None = None, ends: np.ndarray | None = None,
                  table: np.ndarray | None = None) -> tuple:
    """Run all layers over T steps.

    x: float (T, B, D) input vectors, or int32 (T, B) token ids, read through `embed` (V, E)
    when given and as one-hot vectors otherwise; `table`, when given, is layer 0's
    input_table for them, made once by the caller (a model whose weights do not change).
    state (L, S, B, H): carried state, read only. masks: dropout masks per layer, or None.
    ends (T,), optional: step t computes only rows below ends[t] (rows of texts sorted longest
    first, ends[t] = how many are longer than t); the states of the others, and new_state,
    are then left unset, so this is for forward passes that read each row's valid steps only
    and are not followed by stack_backward. None: every row at every step.
    Returns (top, new_state): top (T, B, H) is the last layer's output after its dropout;
    the buffers stay in `work` for stack_backward.
    """
    T, B = x.shape[0], x.shape[1]
    ends = np.full(T, B, np.int64) if ends is None else np.ascontiguousarray(ends, np.int64)
    cell = cells.get(cfg.cell)
    G, H, L = cell.size, cfg.hidden_size, cfg.num_layers
    code = ACTIVATIONS.index(cfg.activation)
    new_state = np.empty_like(state)
    layer_in = x
    for k in range(L):
        p = f"{prefix}l{k}."
        W_xh, W_hh, b = params[p + "W_xh"], params[p + "W_hh"], params[p + "b"]
        buf = _buffers(work, p, cell.forward_buffers, T, B, G, H)
        # The input projections of all T steps, in one GEMM or gather, written where the cell's
        # kernel wants them (Cell.projection): steps 1..T of a state buffer, or another buffer.
        XP = buf[cell.projection][1:] if cell.projection in cell.state_buffers else buf[cell.projection]
        XP2 = XP.reshape(T * B, G * H)
        if layer_in.ndim == 2:  # token ids: a row of the input table per token
            ids = layer_in.reshape(T * B)
            table = input_table(W_xh, b, embed) if table is None else table
            blas.over_parts(lambda lo, hi: k_lin.gather_rows(table, ids[lo:hi], XP2[lo:hi]), T * B, ROWS_PER_PART)
        else:
            products.linear_forward(layer_in.reshape(T * B, -1), W_xh, b, XP2)
        for s, name in enumerate(cell.state_buffers):
            buf[name][0] = state[k, s]
        # the time loop, on the batch rows and hidden units of each worker thread
        # (blas.over_shares), all of them multiplying by the same packed recurrent weights
        P_hh = _packed(W_hh, G, True)
        biases = tuple(params[p + leaf] for leaf, _gate in cell.recurrent_biases)
        _over_shares(work, B, H, lambda *share: cell.forward(buf, W_hh, P_hh, biases, code, ends, share),
                     (cfg.cell, "forward", T))
        for s, name in enumerate(cell.state_buffers):
            new_state[k, s] = buf[name][T]
        out = buf["Hbuf"][1:]
        if masks is not None:
            dropped = work.get(f"{p}dropped", (T, B, H))
            np.multiply(out, masks[k], out=dropped)
            out = dropped
        layer_in = out
    return layer_in, new_state


def stack_backward(cfg: ModelConfig, params: dict, grads: dict, x: np.ndarray, d_top: np.ndarray,
                   work: Workspace, masks: list | None = None, prefix: str = "",
                   d_state: np.ndarray | None = None, embed: np.ndarray | None = None) -> np.ndarray | None:
    """Backprop through the stack after stack_forward with the same arguments.

    d_top (T, B, H): dL/d(top output). Gradients accumulate into grads (+=).
    d_state (L, S, B, H), optional: gradient arriving at the final state; None for truncated
    BPTT. Returns dL/dx (T, B, D) for float input; None for token input, whose gradients
    (W_xh's, and grads["embed"] when `embed` is given) are accumulated here.
    """
    T, B = x.shape[0], x.shape[1]
    cell = cells.get(cfg.cell)
    G, H, L = cell.size, cfg.hidden_size, cfg.num_layers
    code = ACTIVATIONS.index(cfg.activation)
    d_out = d_top
    d_in = None
    for k in range(L - 1, -1, -1):
        p = f"{prefix}l{k}."
        W_xh, W_hh = params[p + "W_xh"], params[p + "W_hh"]
        if masks is not None:
            d_h = work.get(f"{p}d_h", (T, B, H))
            np.multiply(d_out, masks[k], out=d_h)
        else:
            d_h = np.ascontiguousarray(d_out)
        buf = _buffers(work, p, cell.backward_buffers, T, B, G, H)
        for s, name in enumerate(cell.next_grads):
            buf[name][:] = 0 if d_state is None else d_state[k, s]
        P_hh = _packed(W_hh, 1, False)  # dh_{t-1} = W_hhᵀ da: W_hh as it lies
        _over_shares(work, B, H, lambda *share: cell.backward(buf, W_hh, P_hh, code, d_h, share),
                     (cfg.cell, "backward", T))
        Hbuf, dG, dHP = buf["Hbuf"], buf["dG"], buf[cell.recurrent_grad]
        for leaf, gate in cell.recurrent_biases:  # inside its gate's recurrent term alone
            grads[p + leaf] += dHP[:, :, cell.gate_rows(gate, H)].sum(axis=(0, 1))
        dG2 = dG.reshape(T * B, G * H)
        # Weight gradients summed over time: one GEMM each over all T·B rows.
        products.linear_weight_grad(Hbuf[:-1].reshape(T * B, H), dHP.reshape(T * B, G * H), grads[p + "W_hh"])
        products.add_column_sums(dG2, grads[p + "b"])
        layer_in = x if k == 0 else _layer_output(work, f"{prefix}l{k - 1}.", masks is not None, (T, B, H))
        if layer_in.ndim == 2:  # token ids: scatter into the input table's gradient
            V = W_xh.shape[1] if embed is None else embed.shape[0]
            d_table = np.zeros((V, G * H), W_xh.dtype)
            ids = layer_in.reshape(T * B)
            blas.over_parts(lambda c0, c1: k_lin.scatter_add_rows(d_table, ids, dG2, c0, c1), G * H, COLUMNS_PER_PART)
            if embed is None:  # one-hot: dW_xh[:, v] += Σ of da_t where x_t = v
                grads[p + "W_xh"] += d_table.T
            else:  # table = embed W_xhᵀ + b: two small products give both gradients
                products.linear_weight_grad(embed, d_table, grads[p + "W_xh"])
                d_embed = np.empty_like(embed)
                products.linear_input_grad(d_table, W_xh, d_embed)
                grads["embed"] += d_embed
            d_in = None
        else:
            products.linear_weight_grad(layer_in.reshape(T * B, -1), dG2, grads[p + "W_xh"])
            d_in = work.get(f"{p}d_in", (T, B, W_xh.shape[1]))
            products.linear_input_grad(dG2, W_xh, d_in.reshape(T * B, -1))
        d_out = d_in
    return d_in


def layer_activity(cfg: ModelConfig, work: Workspace, T: int, B: int, k: int, prefix: str = "") -> dict:
    """What layer k computed in the last stack_forward over T steps and B rows, as views of its
    buffers in `work` (valid until the next forward): each of the cell's states over steps
    1 .. T, (T, B, H): "h", and for the LSTM "c"; and for a cell that keeps its gates, "gates"
    (T, B, G, H) after their activations (LSTM i, f, g, o; GRU r, z, n)."""
    cell = cells.get(cfg.cell)
    G, H = cell.size, cfg.hidden_size
    p = f"{prefix}l{k}."
    out = {state: work.get(p + name, (T + 1, B, H))[1:] for state, name in zip(cell.states, cell.state_buffers)}
    if "gates" in cell.forward_buffers:
        out["gates"] = work.get(f"{p}gates", (T, B, G * H)).reshape(T, B, G, H)
    return out


def stack_state_grads(cfg: ModelConfig, params: dict, d_top: np.ndarray, work: Workspace,
                      prefix: str = "") -> np.ndarray:
    """dL/dh_t for every layer and step: (L, T, B, H), after stack_forward over the same T and B
    without dropout. d_top (T, B, H): dL/d(top output) (e.g. zero except at the last step).

    The cells' own BPTT kernels, called one step at a time, so that the gradient reaching each
    earlier state can be read between calls; weight gradients are not formed. For reading
    gradients through time (tools/inspection.py), not for training: stack_backward is the fast path.
    """
    T, B = d_top.shape[0], d_top.shape[1]
    cell = cells.get(cfg.cell)
    G, H, L = cell.size, cfg.hidden_size, cfg.num_layers
    code = ACTIVATIONS.index(cfg.activation)
    dt = work.dtype
    grads = np.zeros((L, T, B, H), dt)
    d_out = np.ascontiguousarray(d_top, dtype=dt)
    for k in range(L - 1, -1, -1):
        p = f"{prefix}l{k}."
        W_xh, W_hh = params[p + "W_xh"], params[p + "W_hh"]
        buf = _buffers(work, p, cell.backward_buffers, T, B, G, H)
        dG = buf["dG"]
        P_hh = k_panel.packed(W_hh, False)
        for name in cell.next_grads:  # fresh zeros: nothing arrives from beyond step T
            buf[name] = np.zeros((B, H), dt)
        whole = (0, B, 0, H, _lone_barrier(), 1)  # one thread, all rows and units
        for t in range(T - 1, -1, -1):
            grads[k, t] = d_out[t] + buf["dh_next"]  # from above, and back from step t + 1
            cell.backward(_step_views(cell, buf, t), W_hh, P_hh, code, d_out[t:t + 1], whole)
        if k > 0:  # what the layer below receives through this layer's input weights
            d_in = np.empty((T, B, W_xh.shape[1]), dt)
            products.linear_input_grad(dG.reshape(T * B, G * H), W_xh, d_in.reshape(T * B, -1))
            d_out = d_in
    return grads


def _buffers(work: Workspace, p: str, names: tuple, T: int, B: int, G: int, H: int) -> dict:
    """Layer p's buffers `names` from the workspace, by name (shapes: cells.buffer_shape). All are
    fetched before the worker threads start, which then only read the dict."""
    return {name: work.get(p + name, cells.buffer_shape(name, T, B, G, H)) for name in names}


def _step_views(cell: cells.Cell, buf: dict, t: int) -> dict:
    """The layer's buffers as a backward over step t alone sees them: the two states it joins
    (t, t + 1), its own step of the per-step buffers, the gradients from the next step whole."""
    views = {}
    for name, a in buf.items():
        if name in cell.state_buffers:
            views[name] = a[t:t + 2]
        elif name in cell.next_grads:
            views[name] = a
        else:
            views[name] = a[t:t + 1]
    return views


def _over_shares(work: Workspace, batch: int, units: int, run, key=None) -> None:
    """run(lo, hi, u0, u1, barrier, parties) over the whole batch and all hidden units, or over
    shares of them on the worker threads (float32; float64, the checking dtype, stays on one
    thread)."""
    if work.dtype == np.float32:
        blas.over_shares(run, batch, units, key=key)
    else:
        run(0, batch, 0, units, _lone_barrier(), 1)


def _packed(W: np.ndarray, G: int, transposed: bool) -> np.ndarray:
    """kernels/panel.py's panels of W (packed_gates(W, G) when transposed, else packed(W, False)),
    packed by the worker threads, a range of panels each."""
    P = k_panel.empty_panels(W, G, transposed)
    blas.over_parts(lambda p0, p1: k_panel.pack(W, G, transposed, P, p0, p1), P.shape[0], 2)
    return P


def _lone_barrier() -> np.ndarray:
    """The barrier of a loop that one thread runs alone (never waited on)."""
    return np.zeros(k_sync.BARRIER_WORDS, np.int64)


def _layer_output(work: Workspace, p: str, dropped: bool, shape: tuple) -> np.ndarray:
    """What layer p fed upward in the last forward: its states, after dropout if any."""
    if dropped:
        return work.get(f"{p}dropped", shape)
    T, B, H = shape
    return work.get(f"{p}Hbuf", (T + 1, B, H))[1:]


# ---------------------------------------------------------------- character language model

def lm_forward(cfg: ModelConfig, params: dict, inputs: np.ndarray, state: np.ndarray,
               work: Workspace, masks: list | None = None) -> tuple:
    """Logits (T·B, V) and the new state, for token ids inputs (T, B) int32."""
    T, B = inputs.shape
    x, embed = inputs, _folded_embedding(cfg, params, T * B)
    if cfg.embedding_size > 0 and embed is None:
        x = work.get("x_embed", (T, B, cfg.embedding_size))
        k_lin.gather_rows(params["embed"], inputs.reshape(T * B), x.reshape(T * B, -1))
    top, new_state = stack_forward(cfg, params, x, state, work, masks, embed=embed)
    V = params["W_hy"].shape[0]
    logits = work.get("logits", (T * B, V))
    products.linear_forward(top.reshape(T * B, -1), params["W_hy"], params["b_y"], logits)
    return logits, new_state, x, top


def lm_loss(cfg: ModelConfig, params: dict, inputs: np.ndarray, targets: np.ndarray,
            state: np.ndarray, work: Workspace) -> tuple:
    """Mean cross-entropy (nats per token) and the new state; no gradients, no dropout."""
    logits, new_state, _, _ = lm_forward(cfg, params, inputs, state, work)
    N = logits.shape[0]
    weights = np.full(N, 1.0 / N, logits.dtype)
    dlogits = work.get("dlogits", logits.shape)
    loss = k_lin.softmax_xent(logits, targets.reshape(N), weights, dlogits)
    return float(loss), new_state


def lm_loss_and_grads(cfg: ModelConfig, params: dict, grads: dict, inputs: np.ndarray,
                      targets: np.ndarray, state: np.ndarray, work: Workspace,
                      masks: list | None = None) -> tuple:
    """Forward + BPTT over one chunk. Gradients of the mean cross-entropy accumulate into grads.

    inputs, targets (T, B) int32; state (L, S, B, H) carried in from the previous chunk.
    Returns (loss, new_state).
    """
    logits, new_state, x, top = lm_forward(cfg, params, inputs, state, work, masks)
    N = logits.shape[0]
    weights = np.full(N, 1.0 / N, logits.dtype)
    dlogits = work.get("dlogits", logits.shape)
    loss = k_lin.softmax_xent(logits, targets.reshape(N), weights, dlogits)
    T, B = inputs.shape
    products.linear_weight_grad(top.reshape(N, -1), dlogits, grads["W_hy"])
    products.add_column_sums(dlogits, grads["b_y"])
    d_top = work.get("d_top", (T, B, cfg.hidden_size))
    products.linear_input_grad(dlogits, params["W_hy"], d_top.reshape(N, -1))
    embed = _folded_embedding(cfg, params, N)
    d_x = stack_backward(cfg, params, grads, x, d_top, work, masks, embed=embed)
    if cfg.embedding_size > 0 and embed is None:
        k_lin.scatter_add_rows(grads["embed"], inputs.reshape(N), d_x.reshape(N, -1), 0, cfg.embedding_size)
    return float(loss), new_state


def _folded_embedding(cfg: ModelConfig, params: dict, tokens: int) -> np.ndarray | None:
    """The embedding to fold into layer 0's input table, when that is cheaper (see top)."""
    if cfg.embedding_size > 0 and params["embed"].shape[0] <= tokens:
        return params["embed"]
    return None
