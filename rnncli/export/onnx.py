"""A language model as one standard ONNX graph, built with the `onnx` package (the optional
extra rnncli[export]).

    inputs   tokens     int64 (T, B)          character ids (the vocabulary in metadata "vocab")
             state      float32 (L, S, B, H)  the carried state, rnncli's layout: S = 2 for the
                                              LSTM (h, c), else 1 (h); zeros to start
    outputs  logits     float32 (T, B, V)     W_hy h_t + b_y of the top layer, every step
             new_state  float32 (L, S, B, H)  the state after step T-1, to feed back in

T and B are free. Each layer is ONNX's own operator, since each of rnncli's cells is one of
them once its gate blocks are reordered:

    RNN    W_xh, W_hh as they are; activations Tanh, Relu or Sigmoid; B = [b, 0]
    LSTM   rnncli's blocks i f g o become ONNX's i o f c; B = [b, 0]; no peepholes
    GRU    r z n become ONNX's z r h, with linear_before_reset = 1, because rnncli's reset gate
           scales (W_hn h + b_hn) after the product (docs/math.md); B = [b, (0, 0, b_hn)]

The input is a Gather from the embedding, or OneHot for one-hot input (--embedding-size 0).
metadata_props: "vocab" (the characters, a JSON list in id order), "model_config" (JSON), and
"state_layout"; the vocabulary is JSON so that any character, newline included, survives.
"""

from __future__ import annotations

import json

import numpy as np

from rnncli.errors import UsageError
from rnncli.export import model_record

OPSET = 17
IR_VERSION = 8  # the IR of opset 17: runtimes older than the onnx package still read it
INSTALL = "pip install 'rnncli[export]'"
# protobuf refuses messages of 2 GiB; weights beyond this would need ONNX's external data files
MAX_WEIGHT_BYTES = 1_900_000_000
# rnncli's gate blocks, listed in the order ONNX's operator stacks them
ONNX_ORDER = {"rnn": ("a",), "lstm": ("i", "o", "f", "g"), "gru": ("z", "r", "n")}
ONNX_ACTIVATION = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise UsageError(f"--onnx needs the onnx package: {INSTALL}") from None
    return onnx


def _blocks(W: np.ndarray, cell: str) -> np.ndarray:
    """W's gate row blocks (rnncli's order, config.GATES) restacked in ONNX's order."""
    from rnncli.config import GATES

    G = len(GATES[cell])
    parts = np.split(np.asarray(W, np.float32), G, axis=0)
    return np.concatenate([parts[GATES[cell].index(g)] for g in ONNX_ORDER[cell]], axis=0)


def build_model(lm):
    """The onnx.ModelProto of a language model (lm.checkpoint.LanguageModel), checked by
    onnx.checker."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    cfg, p = lm.cfg, lm.params
    if sum(a.nbytes for a in p.values()) > MAX_WEIGHT_BYTES:
        raise UsageError(f"{lm.path}: weights of more than {MAX_WEIGHT_BYTES >> 20} MiB do not fit in one "
                         f"ONNX file")
    L, H, V = cfg.num_layers, cfg.hidden_size, lm.vocab.size
    S = 2 if cfg.cell == "lstm" else 1
    inits, nodes = [], []

    def const(name: str, value, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype)), name))
        return name

    def node(op: str, ins: list, outs: list, **attrs) -> list:
        nodes.append(helper.make_node(op, ins, outs, name=f"{op}_{len(nodes)}", **attrs))
        return outs

    if cfg.embedding_size > 0:
        (x,) = node("Gather", [const("embed", p["embed"]), "tokens"], ["x_embed"], axis=0)
    else:  # one-hot input: layer 0's W_xh columns are the character vectors
        (x,) = node("OneHot", ["tokens", const("vocab_depth", [V], np.int64), const("off_on", [0.0, 1.0])],
                    ["x_onehot"], axis=-1)
    h_out, c_out = [], []
    for k in range(L):
        pre = f"l{k}."
        W = const(pre + "W", _blocks(p[pre + "W_xh"], cfg.cell)[None])
        R = const(pre + "R", _blocks(p[pre + "W_hh"], cfg.cell)[None])
        rb = np.zeros(cfg.gates * H, np.float32)
        if cfg.cell == "gru":
            rb[2 * H:] = p[pre + "b_hn"]  # the h block, last in ONNX's order as in rnncli's
        Bias = const(pre + "B", np.concatenate([_blocks(p[pre + "b"][:, None], cfg.cell)[:, 0], rb])[None])
        starts = [const(f"{pre}start{s}", [k, s], np.int64) for s in range(S)]
        ends = [const(f"{pre}end{s}", [k + 1, s + 1], np.int64) for s in range(S)]
        init = []
        for s in range(S):  # state[k, s] as (1, B, H), the operator's initial_h / initial_c
            (cut,) = node("Slice", ["state", starts[s], ends[s], const(f"{pre}axes{s}", [0, 1], np.int64)],
                          [f"{pre}state{s}"])
            init += node("Squeeze", [cut, const(f"{pre}sq{s}", [1], np.int64)], [f"{pre}init{s}"])
        common = {"hidden_size": H, "direction": "forward"}
        if cfg.cell == "lstm":
            outs = node("LSTM", [x, W, R, Bias, "", init[0], init[1]], [pre + "Y", pre + "Y_h", pre + "Y_c"],
                        **common)
            c_out.append(outs[2])
        elif cfg.cell == "gru":
            outs = node("GRU", [x, W, R, Bias, "", init[0]], [pre + "Y", pre + "Y_h"], linear_before_reset=1,
                        **common)
        else:
            outs = node("RNN", [x, W, R, Bias, "", init[0]], [pre + "Y", pre + "Y_h"],
                        activations=[ONNX_ACTIVATION[cfg.activation]], **common)
        h_out.append(outs[1])
        # Y (T, 1, B, H): one direction
        (x,) = node("Squeeze", [outs[0], const(pre + "sqY", [1], np.int64)], [pre + "out"])
    (logits_raw,) = node("MatMul", [x, const("W_hy_T", p["W_hy"].T)], ["logits_raw"])
    node("Add", [logits_raw, const("b_y", p["b_y"])], ["logits"])
    per_state = []
    for s, outs in enumerate([h_out, c_out][:S]):
        (stacked,) = node("Concat", outs, [f"new_state{s}"], axis=0) if L > 1 else (outs[0],)
        per_state += node("Unsqueeze", [stacked, const(f"unsq{s}", [1], np.int64)], [f"new_state{s}_4d"])
    if S > 1:
        node("Concat", per_state, ["new_state"], axis=1)
    else:
        node("Identity", per_state, ["new_state"])

    graph = helper.make_graph(
        nodes, f"rnncli-{cfg.cell}-{L}x{H}",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["T", "B"]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [L, S, "B", H])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["T", "B", V]),
         helper.make_tensor_value_info("new_state", TensorProto.FLOAT, [L, S, "B", H])],
        inits)
    from rnncli import __version__

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rnncli", producer_version=__version__,
                              doc_string="rnncli character language model: tokens (T, B) int64 and state "
                                         "(L, S, B, H) in; logits (T, B, V) and new_state out")
    model.ir_version = IR_VERSION
    record = model_record(lm)
    helper.set_model_props(model, {
        "vocab": json.dumps(list(lm.vocab.chars), ensure_ascii=False),
        "model_config": json.dumps(record),
        "state_layout": f"(layers, states, batch, hidden) = ({L}, {S}, B, {H}); states: {', '.join(record['states'])}",
    })
    onnx.checker.check_model(model)
    return model


def export_onnx(lm, path: str) -> str:
    """Write the model's ONNX graph to path (a new file or a regular one, replaced atomically)."""
    from rnncli.data.files import replace_file

    data = build_model(lm).SerializeToString()
    return replace_file(path, data, "the ONNX model")
