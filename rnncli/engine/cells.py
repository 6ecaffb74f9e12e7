"""The cell registry: everything the layer stack (model.py) needs to know about a recurrent cell,
so that the stack reads it here instead of branching on the cell's name. A new cell is a kernel
module in kernels/, one entry in REGISTRY, its name and gate letters in config.CELLS and
config.GATES (the leaf the CLI reads), and its step in kernels/sampling.generate, which runs
the whole generation loop in one compiled call and so dispatches on the cell's code itself.

A cell declares its gate blocks (config.GATES, in the order their rows are stacked in W_xh, W_hh
and b), the states a layer carries from step to step (the S axis of a state (L, S, B, H)), where
its input projections go, which per-layer buffers its kernels keep between the forward and the
backward pass, its extra biases, the rule for its biases under zero initialisation, and two
plain Python functions that call the module-level kernels of its module with those buffers.
Calling the dispatchers from Python compiles nothing anew: the arguments keep their types from
call to call, so each kernel keeps one compiled version per dtype.

Per-layer buffers live in model.Workspace as l{k}.<name>; over T steps of B rows, H units and
G gate blocks (buffer_shape):

    Hbuf, Cbuf  (T+1, B, H)   the states h and c: index 0 the carried one, then one per step
    gates       (T, B, G·H)   every gate's value per step, after its activation
    XP          (T, B, G·H)   input projections W_xh x_t + b, for a cell that keeps them apart
    HN          (T, B, H)     GRU: W_hn h_{t-1} + b_hn, the term the reset gate scales
    dG          (T, B, G·H)   dL/d(gate inputs), written by backward
    dHP         (T, B, G·H)   GRU: dL/d(W_hh h_{t-1}), which differs from dG there
    dh_next, dc_next  (B, H)  the gradient reaching each state from the step after
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from rnncli.config import GATES
from rnncli.engine.kernels import gru as k_gru
from rnncli.engine.kernels import lstm as k_lstm
from rnncli.engine.kernels import rnn as k_rnn
from rnncli.engine.kernels import sampling as k_sampling
from rnncli.errors import ConfigError


@dataclass(frozen=True)
class Cell:
    """One recurrent cell, as the stack drives it.

    forward(buf, W_hh, P_hh, biases, code, ends, share): the time loop over T steps on one
    thread's share (lo, hi, u0, u1, barrier, parties); buf maps the names of forward_buffers to
    the layer's arrays, biases holds the arrays of `recurrent_biases` in order, code is the
    vanilla activation's code. backward(buf, W_hh, P_hh, code, dH, share): BPTT over the same
    steps, buf holding backward_buffers, dH (T, B, H) the gradient arriving at the layer's
    outputs.
    """

    name: str
    gates: tuple[str, ...]  # gate letters in row-block order: config.GATES[name]
    states: tuple[str, ...]  # carried from step to step, slot order of the S axis; "h" first, the output
    kernels: ModuleType  # its module in kernels/: forward, backward and step_forward
    # The buffer the caller writes the input projections of all T steps into, where the kernel
    # completes them in place; a state buffer receives them in its rows 1..T.
    projection: str
    saved: tuple[str, ...]  # further buffers forward writes and backward (or inspection) reads
    # Where backward leaves dL/d(W_hh h_{t-1}), which the W_hh gradient is formed from: dG when
    # the recurrent product is added onto the gate inputs, a buffer of its own when it is not.
    recurrent_grad: str
    # (leaf, gate): an (H,) bias l{k}.<leaf> inside that gate block's recurrent term only,
    # where it cannot be folded into b (the GRU's b_hn, which r multiplies).
    recurrent_biases: tuple[tuple[str, str], ...]
    open_gates: tuple[str, ...]  # blocks whose bias starts at 1 when biases start at zero
    forward: Callable
    backward: Callable
    sampling_code: int  # the cell's code in the generation kernel (kernels/sampling.py)

    @property
    def size(self) -> int:
        """G, the number of gate blocks: W_xh, W_hh and b have G·H rows."""
        return len(self.gates)

    @property
    def state_buffers(self) -> tuple[str, ...]:
        return tuple(f"{s.upper()}buf" for s in self.states)

    @property
    def next_grads(self) -> tuple[str, ...]:
        """The buffers of the gradient reaching each state from the next step, in state order."""
        return tuple(f"d{s}_next" for s in self.states)

    @property
    def forward_buffers(self) -> tuple[str, ...]:
        """Every per-layer buffer forward writes, the states first."""
        own = self.state_buffers
        return own + tuple(n for n in (self.projection, *self.saved) if n not in own)

    @property
    def backward_buffers(self) -> tuple[str, ...]:
        """Every per-layer buffer backward reads or writes: forward's, the gradients from the next
        step, dG and the recurrent product's gradient."""
        own = ("dG",) if self.recurrent_grad == "dG" else ("dG", self.recurrent_grad)
        return self.forward_buffers + self.next_grads + own

    def gate_rows(self, gate: str, H: int) -> slice:
        """The rows of gate block `gate` along a G·H axis."""
        g = self.gates.index(gate)
        return slice(g * H, (g + 1) * H)


def buffer_shape(name: str, T: int, B: int, G: int, H: int) -> tuple:
    """The shape of per-layer buffer `name` over T steps of B rows (see the top of this file)."""
    shapes = {"Hbuf": (T + 1, B, H), "Cbuf": (T + 1, B, H), "gates": (T, B, G * H), "XP": (T, B, G * H),
              "HN": (T, B, H), "dG": (T, B, G * H), "dHP": (T, B, G * H), "dh_next": (B, H), "dc_next": (B, H)}
    return shapes[name]


# ---------------------------------------------------------------- each cell's calls into its kernels

def _rnn_forward(buf, W_hh, P_hh, biases, code, ends, share):
    k_rnn.forward(buf["Hbuf"], W_hh, P_hh, code, ends, *share)


def _rnn_backward(buf, W_hh, P_hh, code, dH, share):
    k_rnn.backward(buf["Hbuf"], W_hh, P_hh, code, dH, buf["dh_next"], buf["dG"], *share)


def _lstm_forward(buf, W_hh, P_hh, biases, code, ends, share):
    k_lstm.forward(buf["gates"], buf["Hbuf"], buf["Cbuf"], W_hh, P_hh, ends, *share)


def _lstm_backward(buf, W_hh, P_hh, code, dH, share):
    k_lstm.backward(buf["Cbuf"], buf["gates"], W_hh, P_hh, dH, buf["dh_next"], buf["dc_next"], buf["dG"], *share)


def _gru_forward(buf, W_hh, P_hh, biases, code, ends, share):
    (b_hn,) = biases
    k_gru.forward(buf["XP"], buf["Hbuf"], W_hh, P_hh, b_hn, buf["gates"], buf["HN"], ends, *share)


def _gru_backward(buf, W_hh, P_hh, code, dH, share):
    k_gru.backward(buf["Hbuf"], buf["gates"], buf["HN"], W_hh, P_hh, dH, buf["dh_next"], buf["dG"], buf["dHP"],
                   *share)


# config.py is a leaf that the CLI reads without numpy, so it keeps its own list of the names
# (config.CELLS, for --cell and validation) and the gate letters (config.GATES); the registry
# must hold exactly those cells, in that order (tests/engine/test_cells.py).
REGISTRY: dict[str, Cell] = {c.name: c for c in (
    # the activation works in place on Hbuf, so the projections go straight there
    Cell("rnn", GATES["rnn"], ("h",), k_rnn, projection="Hbuf", saved=(), recurrent_grad="dG",
         recurrent_biases=(), open_gates=(), forward=_rnn_forward, backward=_rnn_backward,
         sampling_code=k_sampling.RNN),
    # the forget gate open at the start: remember by default (char-rnn's choice)
    Cell("lstm", GATES["lstm"], ("h", "c"), k_lstm, projection="gates", saved=(), recurrent_grad="dG",
         recurrent_biases=(), open_gates=("f",), forward=_lstm_forward, backward=_lstm_backward,
         sampling_code=k_sampling.LSTM),
    # r scales only the recurrent part of the candidate, so the projections stay apart in XP
    Cell("gru", GATES["gru"], ("h",), k_gru, projection="XP", saved=("gates", "HN"), recurrent_grad="dHP",
         recurrent_biases=(("b_hn", "n"),), open_gates=(), forward=_gru_forward, backward=_gru_backward,
         sampling_code=k_sampling.GRU),
)}


def get(name: str) -> Cell:
    """The registered cell called `name`; ConfigError for any other name."""
    cell = REGISTRY.get(name) if isinstance(name, str) else None
    if cell is None:
        raise ConfigError(f"cell: {name!r} is not one of {', '.join(REGISTRY)}")
    return cell
