"""The PyTorch side of the classifier comparison: the model of `rnn classify train` written as a
PyTorch user writes it. nn.Embedding -> nn.GRU / nn.LSTM / nn.RNN(tanh), bidirectional, over a
packed batch (pack_padded_sequence, so padding is never computed) -> pad_packed_sequence with
-inf padding and a max over time (max pooling over each text's valid steps) -> nn.Linear + ReLU
per dense layer -> nn.Linear to the classes; F.cross_entropy, torch.optim.Adam, clip_grad_norm_.

Imported only where torch is installed (compare_torch.py checks first; the torch parity test
skips without it). rnncli itself never imports torch.

Parameter correspondence (gate orders LSTM i,f,g,o and GRU r,z,n in both; "_reverse" is the
backward direction, which reads each text's valid tokens last to first, as rnncli's "bw." stack):
    embed.weight                     = embed
    rnn.weight_ih_l{k}[_reverse]     = fw|bw.l{k}.W_xh     rnn.weight_hh_l{k}[_reverse] = fw|bw.l{k}.W_hh
    rnn.bias_ih_l{k}[_reverse]       = fw|bw.l{k}.b        rnn.bias_hh_l{k}[_reverse]   = 0, except
                                                            GRU's n block = fw|bw.l{k}.b_hn
    dense[i].weight, .bias           = d{i}.W, d{i}.b      out.weight, out.bias = out.W, out.b
The pooled features are [forward direction's max, backward's max], as rnncli concatenates them.

One layer only when bidirectional: rnncli runs two independent stacks (layer k of "bw." reads
layer k-1 of "bw."), while layer k of a bidirectional nn.GRU reads both directions of layer k-1;
the two are the same model for one layer, the shape the benchmark measures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnncli.tools.bench import ClassifyCase, classify_batches, initial_classifier

sys.path.insert(0, str(Path(__file__).resolve().parent))  # torch_lm, beside this file
from torch_lm import load_stack, put, stack_grads  # noqa: E402

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class TextClassifier(nn.Module):
    def __init__(self, cell: str, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                 bidirectional: bool, dense: tuple, n_classes: int):
        super().__init__()
        if bidirectional and num_layers > 1:
            raise ValueError("bidirectional: one layer only (see the module docstring)")
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embedding_size, padding_idx=0)
        self.rnn = CELLS[cell](embedding_size, hidden_size, num_layers, bidirectional=bidirectional)
        width = hidden_size * (2 if bidirectional else 1)
        layers = []
        for size in dense:
            layers.append(nn.Linear(width, size))
            width = size
        self.dense = nn.ModuleList(layers)
        self.out = nn.Linear(width, n_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (T, B) int64, right-padded, time-major like rnncli; lengths (B,) int64 on the CPU.
        Returns logits (B, C)."""
        packed = pack_padded_sequence(self.embed(ids), lengths, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, padding_value=float("-inf"))  # (T, B, directions·H)
        z = out.max(dim=0).values
        for layer in self.dense:
            z = F.relu(layer(z))
        return self.out(z)


def for_case(case: ClassifyCase) -> TextClassifier:
    return TextClassifier(case.cell, case.vocab, case.embedding, case.hidden, case.layers, case.bidirectional,
                          tuple(case.dense), case.classes)


def _directions(model: TextClassifier):
    """(rnncli prefix, PyTorch suffix) of each direction."""
    return [("fw.", ""), ("bw.", "_reverse")][:2 if model.rnn.bidirectional else 1]


def load_rnncli_params(model: TextClassifier, params: dict) -> None:
    """Copy rnncli classifier parameters into the PyTorch model (see the module docstring)."""
    with torch.no_grad():
        put(model.embed.weight, params["embed"])
        for prefix, suffix in _directions(model):
            load_stack(model.rnn, model.cell, params, prefix, suffix)
        for i, layer in enumerate(model.dense):
            put(layer.weight, params[f"d{i}.W"])
            put(layer.bias, params[f"d{i}.b"])
        put(model.out.weight, params["out.W"])
        put(model.out.bias, params["out.b"])


def grads_as_rnncli(model: TextClassifier) -> dict:
    """The PyTorch gradients under rnncli's names (torch_lm.stack_grads for each direction)."""
    g = {"embed": model.embed.weight.grad, "out.W": model.out.weight.grad, "out.b": model.out.bias.grad}
    for i, layer in enumerate(model.dense):
        g[f"d{i}.W"], g[f"d{i}.b"] = layer.weight.grad, layer.bias.grad
    for prefix, suffix in _directions(model):
        g.update(stack_grads(model.rnn, model.cell, prefix, suffix))
    return {name: t.detach().numpy() for name, t in g.items()}


def as_tensors(batch) -> tuple:
    """(ids (T, B) int64, lengths (B,) int64, targets (B,) int64) of an rnncli.tools.bench.ClassifyBatch."""
    return (torch.from_numpy(batch.ids).long(), torch.from_numpy(batch.lengths).long(),
            torch.from_numpy(batch.targets).long())


class TorchClassifyRun:
    """The PyTorch twin of rnncli.tools.bench.ClassifyRun: the same case, the same batches in the same
    order, rnncli's initial weights (stock PyTorch otherwise: both biases trained), Adam lr 2e-3,
    betas 0.9/0.999, eps 1e-8, clip 5 (rnncli's OptimConfig defaults)."""

    def __init__(self, case: ClassifyCase, seed: int = 0, batches: list | None = None,
                 params: dict | None = None, lr: float = 2e-3, clip: float = 5.0):
        torch.manual_seed(seed)
        self.case = case
        self.model = for_case(case)
        load_rnncli_params(self.model, initial_classifier(case, seed) if params is None else params)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.clip = clip
        self.batches = [as_tensors(b) for b in (batches if batches is not None else classify_batches(case, seed))]

    def train_step(self, batch) -> float:
        ids, lengths, targets = batch
        loss = F.cross_entropy(self.model(ids, lengths), targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return loss.item()

    def logits(self, batch) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(batch[0], batch[1])

    def run(self, passes: int = 1) -> float:
        """Seconds taken by `passes` passes over the batches (training steps or forward passes)."""
        train = self.case.task == "train"
        self.model.train(train)
        step = self.train_step if train else self.logits
        t0 = time.perf_counter()
        for _ in range(passes):
            for b in self.batches:
                step(b)
        return time.perf_counter() - t0


def make_run(case: ClassifyCase, seed: int = 0) -> TorchClassifyRun:
    return TorchClassifyRun(case, seed)
