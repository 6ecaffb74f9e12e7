"""The cell registry (engine/cells.py): it names exactly the cells config.py lets through, each
entry's kernels exist and accept the buffers it declares, the stack's shapes follow its
declarations, and an unknown name is a ConfigError."""

import numpy as np
import pytest

from rnncli.config import CELLS, GATES, ModelConfig
from rnncli.engine import cells
from rnncli.engine import model as M
from rnncli.engine.kernels import sampling as k_sampling
from rnncli.errors import ConfigError

REGISTERED = list(cells.REGISTRY.values())
T, B, D, H = 3, 2, 4, 5


def ids(cell):
    return cell.name


def test_registry_holds_exactly_the_configs_cells_in_order():
    # config.py is a leaf without numpy (the CLI's --cell choices come from it), so it keeps its
    # own names; the generation kernel's cell codes follow their order
    assert tuple(cells.REGISTRY) == CELLS
    assert {c.name: c.gates for c in REGISTERED} == GATES
    assert [c.sampling_code for c in REGISTERED] == list(range(len(CELLS)))
    assert (k_sampling.RNN, k_sampling.LSTM, k_sampling.GRU) == tuple(cells.get(n).sampling_code for n in CELLS)


@pytest.mark.parametrize("cell", REGISTERED, ids=ids)
def test_config_gate_count_is_the_cells(cell):
    assert ModelConfig(cell=cell.name).gates == cell.size == len(cell.gates)


@pytest.mark.parametrize("cell", REGISTERED, ids=ids)
def test_each_cell_has_its_kernels_and_calls_them_from_python(cell):
    for name in ("forward", "backward", "step_forward"):
        kernel = getattr(cell.kernels, name)
        assert hasattr(kernel, "py_func"), f"{cell.name}: kernels.{name} is not a Numba kernel"
    # the registry's own functions are Python that calls the module-level kernels: a jitted
    # closure or a kernel passed as an argument would compile again on every run
    for fn in (cell.forward, cell.backward):
        assert callable(fn) and not hasattr(fn, "py_func")


@pytest.mark.parametrize("cell", REGISTERED, ids=ids)
def test_declarations_are_consistent(cell):
    assert cell.states[0] == "h"  # the output of every layer, and state slot 0
    assert cell.projection in cell.forward_buffers
    assert set(cell.saved) <= set(cell.forward_buffers) <= set(cell.backward_buffers)
    assert cell.recurrent_grad in cell.backward_buffers
    assert set(cell.open_gates) <= set(cell.gates)
    assert {gate for _, gate in cell.recurrent_biases} <= set(cell.gates)
    for name in cell.backward_buffers:
        shape = cells.buffer_shape(name, T, B, cell.size, H)
        assert shape[-2:] == (B, H) or shape[-2:] == (B, cell.size * H)


@pytest.mark.parametrize("cell", REGISTERED, ids=ids)
def test_parameter_and_state_shapes_follow_the_declaration(cell):
    cfg = ModelConfig(cell=cell.name, hidden_size=H, num_layers=2, embedding_size=D).validate()
    shapes = M.stack_shapes(cfg, D)
    G = cell.size
    expected = {}
    for k, width in enumerate((D, H)):
        expected.update({f"l{k}.W_xh": (G * H, width), f"l{k}.W_hh": (G * H, H), f"l{k}.b": (G * H,)})
        expected.update({f"l{k}.{leaf}": (H,) for leaf, _ in cell.recurrent_biases})
    assert shapes == expected
    assert M.state_shape(cfg, B) == (2, len(cell.states), B, H)


@pytest.mark.parametrize("cell", REGISTERED, ids=ids)
def test_zero_biases_open_the_declared_gates(cell, rng):
    cfg = ModelConfig(cell=cell.name, hidden_size=H, num_layers=1, embedding_size=D).validate()
    b = M.init_params(cfg, M.stack_shapes(cfg, D), rng, np.float64, biases="zero")["l0.b"]
    blocks = b.reshape(cell.size, H)
    for g, gate in enumerate(cell.gates):
        assert np.all(blocks[g] == (1.0 if gate in cell.open_gates else 0.0)), gate


def test_lstm_opens_its_forget_gate():
    # i, f, g, o: remembering by default means the second block starts at 1
    lstm = cells.get("lstm")
    assert lstm.open_gates == ("f",) and lstm.gate_rows("f", H) == slice(H, 2 * H)


def run_stack(cell, rng, dtype):
    """One float forward and backward of a two-layer stack; returns the workspace."""
    cfg = ModelConfig(cell=cell.name, hidden_size=H, num_layers=2, embedding_size=D, dropout=0.0).validate()
    params = M.init_params(cfg, M.stack_shapes(cfg, D), rng, dtype, biases="pytorch")
    grads = M.zeros_like_params(params)
    work = M.Workspace(dtype)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = rng.uniform(-0.5, 0.5, M.state_shape(cfg, B)).astype(dtype)
    M.stack_forward(cfg, params, x, state, work)
    M.stack_backward(cfg, params, grads, x, rng.standard_normal((T, B, H)).astype(dtype), work)
    M.stack_state_grads(cfg, params, np.ones((T, B, H), dtype), work)
    return cfg, work


def kernel_signatures(cell):
    return {name: len(getattr(cell.kernels, name).signatures) for name in ("forward", "backward")}


@pytest.mark.parametrize("cell", REGISTERED, ids=ids)
def test_stack_runs_on_the_declared_buffers_and_compiles_once(cell, rng):
    cfg, work = run_stack(cell, rng, np.float64)
    for k in range(2):
        for name in cell.backward_buffers:
            a = work._arrays[f"l{k}.{name}"]
            assert a.shape == cells.buffer_shape(name, T, B, cell.size, H) and a.dtype == np.float64
        activity = M.layer_activity(cfg, work, T, B, k)
        assert list(activity) == list(cell.states) + (["gates"] if "gates" in cell.forward_buffers else [])
    before = kernel_signatures(cell)
    run_stack(cell, rng, np.float64)  # new arrays, same dtype: nothing new to compile
    assert kernel_signatures(cell) == before


@pytest.mark.parametrize("name", ["transformer", "LSTM", "", None, ["lstm"]])
def test_unknown_cell_is_a_config_error(name):
    with pytest.raises(ConfigError, match=r"^cell: .* is not one of rnn, lstm, gru$"):
        cells.get(name)


def test_the_model_refuses_an_unknown_cell_clearly():
    cfg = ModelConfig(cell="transformer", hidden_size=H)  # not validated: the engine still says what is wrong
    with pytest.raises(ConfigError, match="cell: 'transformer' is not one of rnn, lstm, gru"):
        M.stack_shapes(cfg, D)
    with pytest.raises(ConfigError, match="cell: 'transformer'"):
        M.state_shape(cfg, B)
    with pytest.raises(ConfigError, match="cell: 'transformer'"):
        cfg.validate()
