"""`rnn export --onnx`: the ONNX graph computes what rnncli computes (every cell, 1 and 2 layers),
carries its state like rnncli, and says what it is in its metadata; without onnx, one line."""

import json
import sys

import numpy as np
import pytest
from export_support import MODELS, engine_probabilities, train
from helpers import clean_failure, ok, run

from rnncli.export import read_model

TOLERANCE = 1e-5


def onnx_session(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def onnx_probabilities(session, lm, text: str) -> np.ndarray:
    ids = lm.vocab.encode(text).astype(np.int64).reshape(-1, 1)
    state = np.zeros((lm.cfg.num_layers, 2 if lm.cfg.cell == "lstm" else 1, 1, lm.cfg.hidden_size), np.float32)
    logits, _ = session.run(["logits", "new_state"], {"tokens": ids, "state": state})
    z = logits[-1, 0].astype(np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


@pytest.fixture(scope="module")
def onnx_export():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rnncli.export import onnx as onnx_export

    return onnx_export


@pytest.mark.parametrize("cell,layers", MODELS, ids=[f"{c}-{n}layer" for c, n in MODELS])
def test_onnxruntime_gives_the_engines_next_character_probabilities(onnx_export, checkpoints, prefix, cell, layers):
    lm = read_model(checkpoints[cell, layers])
    want = engine_probabilities(lm, prefix)
    got = onnx_probabilities(onnx_session(onnx_export.build_model(lm)), lm, prefix)
    assert got.shape == want.shape and abs(got.sum() - 1) < 1e-6
    assert np.abs(got - want).max() <= TOLERANCE, np.abs(got - want).max()


def test_one_hot_input_and_relu_activation_export_too(onnx_export, corpus, tmp_path, prefix):
    lm = read_model(train(tmp_path, corpus, "--cell", "rnn", "--layers", "2", "--activation", "relu",
                          "--embedding-size", "0"))
    got = onnx_probabilities(onnx_session(onnx_export.build_model(lm)), lm, prefix)
    assert np.abs(got - engine_probabilities(lm, prefix)).max() <= TOLERANCE


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_parity_check_catches_gates_left_in_rnncli_order(onnx_export, checkpoints, prefix, monkeypatch, cell):
    from rnncli.config import GATES

    lm = read_model(checkpoints[cell, 1])
    monkeypatch.setitem(onnx_export.ONNX_ORDER, cell, GATES[cell])
    got = onnx_probabilities(onnx_session(onnx_export.build_model(lm)), lm, prefix)
    assert np.abs(got - engine_probabilities(lm, prefix)).max() > 100 * TOLERANCE


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_state_carries_across_calls_and_batch_rows_stay_apart(onnx_export, checkpoints, prefix, cell):
    lm = read_model(checkpoints[cell, 2])
    session = onnx_session(onnx_export.build_model(lm))
    L, S, H = lm.cfg.num_layers, 2 if cell == "lstm" else 1, lm.cfg.hidden_size
    # row 0 reads the prefix, row 1 the prefix backwards; in two calls, the state fed back
    ids = np.stack([lm.vocab.encode(prefix), lm.vocab.encode(prefix[::-1])], axis=1).astype(np.int64)
    state = np.zeros((L, S, 2, H), np.float32)
    first, state = session.run(None, {"tokens": ids[:120], "state": state})
    second, state = session.run(None, {"tokens": ids[120:], "state": state})
    assert first.shape == (120, 2, lm.vocab.size) and state.shape == (L, S, 2, H)
    for row, text in ((0, prefix), (1, prefix[::-1])):
        z = second[-1, row].astype(np.float64)
        p = np.exp(z - z.max())
        assert np.abs(p / p.sum() - engine_probabilities(lm, text)).max() <= TOLERANCE


def test_the_graph_says_what_it_is(onnx_export, checkpoints):
    import onnx

    lm = read_model(checkpoints["lstm", 2])
    model = onnx_export.build_model(lm)
    props = {p.key: p.value for p in model.metadata_props}
    assert "".join(json.loads(props["vocab"])) == lm.vocab.chars
    config = json.loads(props["model_config"])
    assert (config["cell"], config["num_layers"], config["hidden_size"], config["states"]) == ("lstm", 2, 8, ["h", "c"])
    assert [i.name for i in model.graph.input] == ["tokens", "state"]
    assert [o.name for o in model.graph.output] == ["logits", "new_state"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert {n.op_type for n in model.graph.node} >= {"LSTM", "Gather", "MatMul"}
    gru = onnx_export.build_model(read_model(checkpoints["gru", 1]))
    (node,) = [n for n in gru.graph.node if n.op_type == "GRU"]
    assert {a.name: a.i for a in node.attribute}["linear_before_reset"] == 1


def test_rnn_export_onnx_writes_a_file_onnxruntime_runs(onnx_export, checkpoints, prefix, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "model.onnx"
    result = ok("export", checkpoints["gru", 2], "--onnx", target)
    assert result.stdout.strip() == str(target)
    lm = read_model(checkpoints["gru", 2])
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert np.abs(onnx_probabilities(session, lm, prefix) - engine_probabilities(lm, prefix)).max() <= TOLERANCE


def test_without_onnx_one_line_says_how_to_install_it(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails as if it were absent
    err = clean_failure(run("export", checkpoints["rnn", 1], "--onnx", tmp_path / "m.onnx"), 2)
    assert "pip install 'rnncli[export]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
