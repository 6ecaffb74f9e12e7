"""The classifier's network: word or character inputs, a (bidirectional) recurrent stack, pooling
over time, dense layers; forward, loss and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rnncli.classify.ngram import NgramPath, log_softmax
from rnncli.config import ClassifyConfig
from rnncli.data.words import TokenVocab, tokenize
from rnncli.engine import model as M
from rnncli.engine.kernels import linear as k_lin
from rnncli.engine.kernels import pool as k_pool
from rnncli.engine.model import DTYPE
from rnncli.errors import CheckpointError

TABLE_BYTES = 512 << 20  # the most memory a classifier's input tables may take (see Classifier.input_tables)


def classifier_shapes(cfg: ClassifyConfig, vocab_size: int, n_classes: int) -> dict[str, tuple]:
    mcfg = cfg.model()
    shapes = {"embed": (vocab_size, cfg.embedding_size)}
    shapes.update(M.stack_shapes(mcfg, cfg.embedding_size, "fw."))
    if cfg.bidirectional:
        shapes.update(M.stack_shapes(mcfg, cfg.embedding_size, "bw."))
    width = cfg.hidden_size * (2 if cfg.bidirectional else 1)
    for i, size in enumerate(cfg.dense):
        shapes[f"d{i}.W"] = (size, width)
        shapes[f"d{i}.b"] = (size,)
        width = size
    shapes["out.W"] = (n_classes, width)
    shapes["out.b"] = (n_classes,)
    return shapes


def init_classifier(cfg: ClassifyConfig, shapes: dict, rng: np.random.Generator, dtype) -> dict:
    """Recurrent weights as in the language model; dense layers He-uniform (they feed ReLUs)."""
    params = M.init_params(cfg.model(), {k: v for k, v in shapes.items() if "." in k and k[:3] in ("fw.", "bw.")}, rng, dtype)
    params["embed"] = (rng.standard_normal(shapes["embed"]) * 0.1).astype(dtype)
    for name, shape in shapes.items():
        if name.startswith(("d", "out.")) and name not in params:
            if name.endswith(".W"):
                limit = math.sqrt(6.0 / shape[1]) if name.startswith("d") else math.sqrt(1.0 / shape[1])
                params[name] = rng.uniform(-limit, limit, size=shape).astype(dtype)
            else:
                params[name] = np.zeros(shape, dtype)
    return {name: np.ascontiguousarray(params[name]) for name in shapes}


def pad_batch(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (T, B) right-padded with 0, reversed ids (T, B): each text's valid prefix reversed,
    lengths (B,)), all int32 and time-major."""
    lengths = np.array([len(s) for s in seqs], np.int32)
    T, B = int(lengths.max()), len(seqs)
    ids = np.zeros((T, B), np.int32)
    rev = np.zeros((T, B), np.int32)
    for b, s in enumerate(seqs):
        ids[:len(s), b] = s
        rev[:len(s), b] = s[::-1]
    return ids, rev, lengths


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Index batches of similar lengths; with rng, shuffled within equal lengths and in order."""
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


@dataclass
class _Masks:
    fw: list | None = None
    bw: list | None = None
    dense: list = field(default_factory=list)


def draw_masks(cfg: ClassifyConfig, T: int, B: int, rng: np.random.Generator, dtype) -> _Masks:
    mcfg = cfg.model()
    masks = _Masks(M.dropout_masks(mcfg, T, B, rng, dtype),
                   M.dropout_masks(mcfg, T, B, rng, dtype) if cfg.bidirectional else None)
    if cfg.dropout > 0:
        keep = 1.0 - cfg.dropout
        masks.dense = [((rng.random((B, size)) < keep) / keep).astype(dtype) for size in cfg.dense]
    return masks


def _pool(cfg: ClassifyConfig, top: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(B, H) summary of each text's valid steps; for max pooling also the argmax steps."""
    T, B, H = top.shape
    if cfg.pooling == "last":
        return top[lengths - 1, np.arange(B)], None
    if cfg.pooling == "mean":
        valid = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
        return (np.where(valid, top, 0).sum(axis=0) / lengths[:, None]).astype(top.dtype), None
    feat = np.empty((B, H), top.dtype)
    arg = np.empty((B, H), np.intp)
    k_pool.max_over_valid(top, lengths, feat, arg)
    return feat, arg


def _unpool(cfg: ClassifyConfig, d_feat: np.ndarray, lengths: np.ndarray, arg, T: int) -> np.ndarray:
    B, H = d_feat.shape
    d_top = np.zeros((T, B, H), d_feat.dtype)
    if cfg.pooling == "last":
        d_top[lengths - 1, np.arange(B)] = d_feat
    elif cfg.pooling == "mean":
        valid = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
        d_top[:] = np.where(valid, (d_feat / lengths[:, None])[None], 0)
    else:
        np.put_along_axis(d_top, arg[None], d_feat[None], axis=0)
    return d_top


def forward(cfg: ClassifyConfig, params: dict, ids: np.ndarray, rev: np.ndarray, lengths: np.ndarray,
            work: M.Workspace, masks: _Masks | None = None, inference: bool = False,
            tables: dict | None = None) -> tuple[np.ndarray, dict]:
    """Logits (B, C) and what the backward pass needs. inference: no backward pass follows, so
    each text's recurrent steps stop at its length (the padded steps are skipped, not computed
    and ignored); the logits are the same. tables: input_tables(cfg, params), to gather layer
    0's input projections instead of computing them."""
    masks = masks or _Masks()
    mcfg = cfg.model()
    T, B = ids.shape
    E = params["embed"].shape[1]
    dtype = params["embed"].dtype
    zero = M.zero_state(mcfg, B, dtype)
    ends, order = None, None
    if inference:  # longest first, so that the texts still running at each step are a prefix of the rows
        order = np.argsort(-np.asarray(lengths), kind="stable")
        ids, rev, lengths = ids[:, order], rev[:, order], np.asarray(lengths)[order]
        ends = (np.arange(T)[:, None] < lengths[None, :]).sum(axis=1)
    feats, cache = [], {"arg": [], "inputs": []}
    for prefix, tok, dmask in zip(_directions(cfg), (ids, rev), (masks.fw, masks.bw)):
        if tables is None:
            x = work.get(prefix + "x", (T, B, E))
            k_lin.gather_rows(params["embed"], tok.reshape(-1), x.reshape(T * B, E))
        else:  # token ids, read through layer 0's table
            x = tok
        top, _ = M.stack_forward(mcfg, params, x, zero, work, dmask, prefix, ends=ends,
                                 table=None if tables is None else tables[prefix])
        feat, arg = _pool(cfg, top, lengths)
        if order is not None:  # back to the caller's order of rows
            feat[order] = feat.copy()
        feats.append(feat)
        cache["arg"].append(arg)
        cache["inputs"].append((prefix, tok, x, dmask))
    z = np.ascontiguousarray(np.concatenate(feats, axis=1) if len(feats) > 1 else feats[0])
    cache["acts"] = [z]
    for i in range(len(cfg.dense)):
        W, b = params[f"d{i}.W"], params[f"d{i}.b"]
        a = np.empty((B, W.shape[0]), dtype)
        k_lin.linear_forward(z, W, b, a)
        np.maximum(a, 0, out=a)  # ReLU
        if masks.dense:
            a *= masks.dense[i]
        z = a
        cache["acts"].append(z)
    logits = np.empty((B, params["out.W"].shape[0]), dtype)
    k_lin.linear_forward(z, params["out.W"], params["out.b"], logits)
    return logits, cache


def _directions(cfg: ClassifyConfig) -> tuple:
    """The parameter prefixes of the recurrent stacks: forward, and backward if bidirectional."""
    return ("fw.", "bw.") if cfg.bidirectional else ("fw.",)


def input_tables(cfg: ClassifyConfig, params: dict) -> dict:
    """{direction prefix: layer 0's input table (V, G·H)}: embedding, input weights and bias
    folded together (model.input_table), so that a forward pass gathers one row per token
    instead of multiplying each token's embedding. Valid while the weights do not change."""
    return {p: M.input_table(params[p + "l0.W_xh"], params[p + "l0.b"], params["embed"]) for p in _directions(cfg)}


def tables_for_pass(cfg: ClassifyConfig, params: dict, tokens: int) -> dict | None:
    """input_tables for a forward pass over `tokens` tokens, when they pay; else None. A table
    costs as much to make as projecting as many tokens as it has rows, so not for fewer; and
    not beyond TABLE_BYTES of memory."""
    V, W_xh = params["embed"].shape[0], params["fw.l0.W_xh"]
    if tokens < V or len(_directions(cfg)) * V * W_xh.shape[0] * W_xh.itemsize > TABLE_BYTES:
        return None
    return input_tables(cfg, params)


def loss_and_grads(cfg: ClassifyConfig, params: dict, grads: dict, ids, rev, lengths, targets: np.ndarray,
                   weights: np.ndarray, work: M.Workspace, masks: _Masks | None = None,
                   train_embed: bool = True) -> float:
    """Weighted cross-entropy Σ w_b CE_b (weights sum to 1 for a mean); gradients += into grads."""
    masks = masks or _Masks()
    mcfg = cfg.model()
    T, B = ids.shape
    logits, cache = forward(cfg, params, ids, rev, lengths, work, masks)
    dlogits = np.empty_like(logits)
    loss = k_lin.softmax_xent(logits, targets, weights.astype(logits.dtype), dlogits)
    acts = cache["acts"]
    dz = dlogits
    layers = [(f"d{i}.", i) for i in range(len(cfg.dense))] + [("out.", None)]
    for name, i in reversed(layers):
        x_in = acts[i if i is not None else len(cfg.dense)]
        W = params[name + "W"]
        if i is not None:
            # dz arrives at this layer's output: undo its dropout and ReLU (a > 0 where it passed)
            if masks.dense:
                dz = dz * masks.dense[i]
            dz = dz * (acts[i + 1] > 0)
            x_in = acts[i]
        k_lin.linear_weight_grad(x_in, np.ascontiguousarray(dz), grads[name + "W"])
        k_lin.add_column_sums(np.ascontiguousarray(dz), grads[name + "b"])
        d_in = np.empty((B, W.shape[1]), dz.dtype)
        k_lin.linear_input_grad(np.ascontiguousarray(dz), W, d_in)
        dz = d_in
    H = cfg.hidden_size
    for k, (prefix, tok, x, dmask) in enumerate(cache["inputs"]):
        d_top = _unpool(cfg, np.ascontiguousarray(dz[:, k * H:(k + 1) * H]), lengths, cache["arg"][k], T)
        d_x = M.stack_backward(mcfg, params, grads, x, d_top, work, dmask, prefix)
        if train_embed:
            k_lin.scatter_add_rows(grads["embed"], tok.reshape(-1), d_x.reshape(T * B, -1), 0, d_x.shape[-1])
    return float(loss)


def top_grads(cfg: ClassifyConfig, params: dict, ids, rev, lengths, targets: np.ndarray, weights: np.ndarray,
              work: M.Workspace) -> tuple[float, dict]:
    """(Σ w_b CE_b, {direction prefix: dL/d(top output) (T, B, H)}), no dropout: the input
    gradients of loss_and_grads's backward through the head and the pooling, no weight
    gradients. The stacks' buffers stay in `work`, so that model.stack_state_grads(..., prefix)
    reads dL/dh_t of every layer and step from them."""
    T, B = ids.shape
    logits, cache = forward(cfg, params, ids, rev, lengths, work)
    dlogits = np.empty_like(logits)
    loss = k_lin.softmax_xent(logits, targets, weights.astype(logits.dtype), dlogits)
    acts, dz = cache["acts"], dlogits
    for i in range(len(cfg.dense), -1, -1):  # the output layer, then the dense layers down
        W = params["out.W"] if i == len(cfg.dense) else params[f"d{i}.W"]
        if i < len(cfg.dense):
            dz = dz * (acts[i + 1] > 0)  # through the ReLU
        d_in = np.empty((B, W.shape[1]), dz.dtype)
        k_lin.linear_input_grad(np.ascontiguousarray(dz), W, d_in)
        dz = d_in
    H = cfg.hidden_size
    return float(loss), {prefix: _unpool(cfg, np.ascontiguousarray(dz[:, k * H:(k + 1) * H]), lengths,
                                         cache["arg"][k], T)
                         for k, prefix in enumerate(_directions(cfg))}


@dataclass
class Classifier:
    cfg: ClassifyConfig
    vocab: TokenVocab
    labels: tuple
    params: dict
    meta: dict = field(default_factory=dict)
    ngram: NgramPath | None = None  # the linear n-gram model mixed in (ngram.py); None: recurrent only
    frozen: bool = False  # the weights no longer change (a loaded model): input tables are kept between calls
    path: str = ""  # the checkpoint it was loaded from, for messages
    _tables: dict | None = field(default=None, repr=False)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids for the recurrent model (the n-gram path reads the texts themselves)."""
        index = self.vocab.index()
        return [self.vocab.encode(tokenize(t, self.cfg.tokens, self.cfg.language), index, self.cfg.max_len)
                for t in texts]

    def rnn_log_proba(self, seqs: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """The recurrent model's log class probabilities (N, C), no dropout; batches of similar length."""
        logp = np.zeros((len(seqs), len(self.labels)), np.float64)
        if not seqs:
            return logp
        work = M.Workspace(DTYPE)
        lengths = np.array([len(s) for s in seqs])
        tables = self.input_tables(int(lengths.sum()))
        for idx in length_batches(lengths, batch_size, None):
            ids, rev, lens = pad_batch([seqs[i] for i in idx])
            logits, _ = forward(self.cfg, self.params, ids, rev, lens, work, inference=True, tables=tables)
            logp[idx] = log_softmax(logits.astype(np.float64))
        return self.checked(logp)

    def input_tables(self, tokens: int) -> dict | None:
        """tables_for_pass; a frozen classifier keeps them for its next calls."""
        if self._tables is not None:
            return self._tables
        tables = tables_for_pass(self.cfg, self.params, tokens)
        if self.frozen:
            self._tables = tables
        return tables

    def log_proba(self, texts: list[str]) -> np.ndarray:
        """Log class probabilities of the whole classifier: the recurrent model, mixed with the
        n-gram path when there is one."""
        logp = self.rnn_log_proba(self.encode(texts))
        return logp if self.ngram is None or not texts else self.checked(self.ngram.mix(logp, texts))

    def ngram_log_proba(self, texts: list[str]) -> np.ndarray:
        return self.checked(self.ngram.log_proba(texts))

    def checked(self, logp: np.ndarray) -> np.ndarray:
        """logp, when finite. A loaded model's output can overflow with finite weights (3e38 is
        a float32): that is a damaged checkpoint, never a prediction. (While training, a
        non-finite loss ends the run as diverged instead.)"""
        if self.frozen and not np.isfinite(logp).all():
            raise CheckpointError(f"{self.path or 'the classifier'}: its output is not a finite number; "
                                  f"the weights are damaged or not a trained model's")
        return logp

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.exp(self.log_proba(texts))
