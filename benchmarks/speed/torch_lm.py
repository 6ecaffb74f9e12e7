"""The PyTorch side of the comparison: the same character language model as rnncli, built from
stock modules (nn.Embedding -> nn.LSTM / nn.GRU / nn.RNN(tanh) -> nn.Linear), trained with
torch.optim.Adam and clip_grad_norm_, the hidden state carried across chunks and detached.

Imported only where torch is installed (compare_torch.py checks first; the torch parity test
skips without it). rnncli itself never imports torch.

Parameter correspondence (PyTorch's gate orders are LSTM i,f,g,o and GRU r,z,n, as in rnncli):
    embed.weight        = embed
    rnn.weight_ih_l{k}  = l{k}.W_xh        rnn.weight_hh_l{k} = l{k}.W_hh
    rnn.bias_ih_l{k}    = l{k}.b           rnn.bias_hh_l{k}   = 0, except GRU's n block = l{k}.b_hn
    head.weight, head.bias = W_hy, b_y
PyTorch adds bias_ih and bias_hh; rnncli has one bias (plus GRU's b_hn, which r multiplies).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnncli.tools.bench import VOCAB_SIZE, BenchCase, random_chunks


class CharLM(nn.Module):
    def __init__(self, cell: str, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embedding_size)
        if cell == "lstm":
            self.rnn = nn.LSTM(embedding_size, hidden_size, num_layers)
        elif cell == "gru":
            self.rnn = nn.GRU(embedding_size, hidden_size, num_layers)
        else:
            self.rnn = nn.RNN(embedding_size, hidden_size, num_layers, nonlinearity="tanh")
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, inputs: torch.Tensor, state):
        """inputs (T, B) int64, time-major like rnncli; returns logits (T, B, V) and the new state."""
        out, state = self.rnn(self.embed(inputs), state)
        return self.head(out), state


def for_case(case: BenchCase, vocab_size: int = VOCAB_SIZE) -> CharLM:
    return CharLM(case.cell, vocab_size, case.embedding, case.hidden, case.layers)


def zero_state(model: CharLM, batch: int, dtype=torch.float32):
    rnn = model.rnn
    h = torch.zeros(rnn.num_layers, batch, rnn.hidden_size, dtype=dtype)
    return (h, h.clone()) if model.cell == "lstm" else h


def state_from_rnncli(model: CharLM, state: np.ndarray):
    """rnncli's (L, S, B, H) state as PyTorch's h (L, B, H), or (h, c) for an LSTM."""
    s = torch.from_numpy(np.array(state))
    return (s[:, 0].clone(), s[:, 1].clone()) if model.cell == "lstm" else s[:, 0].clone()


def state_to_rnncli(model: CharLM, state) -> np.ndarray:
    parts = state if model.cell == "lstm" else (state,)
    return np.stack([p.detach().numpy() for p in parts], axis=1)


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def put(tensor, array) -> None:
    """tensor[...] = array, in the tensor's dtype."""
    tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(tensor.dtype))


def load_stack(rnn, cell: str, params: dict, prefix: str = "", suffix: str = "") -> None:
    """Copy the rnncli stack named prefix + "l{k}.…" into the direction `suffix` ("" or
    "_reverse") of a PyTorch RNN module: b goes to bias_ih, bias_hh is zero but for GRU's n block,
    which is b_hn. Call under torch.no_grad()."""
    H = rnn.hidden_size
    for k in range(rnn.num_layers):
        put(getattr(rnn, f"weight_ih_l{k}{suffix}"), params[f"{prefix}l{k}.W_xh"])
        put(getattr(rnn, f"weight_hh_l{k}{suffix}"), params[f"{prefix}l{k}.W_hh"])
        put(getattr(rnn, f"bias_ih_l{k}{suffix}"), params[f"{prefix}l{k}.b"])
        bias_hh = getattr(rnn, f"bias_hh_l{k}{suffix}")
        bias_hh.zero_()
        if cell == "gru":
            put(bias_hh[2 * H:], params[f"{prefix}l{k}.b_hn"])


def stack_grads(rnn, cell: str, prefix: str = "", suffix: str = "") -> dict:
    """The gradients of one direction of a PyTorch RNN module under rnncli's names (tensors).
    rnncli's b enters where bias_ih does, so its gradient is bias_ih's; GRU's b_hn is the n block
    of bias_hh."""
    H = rnn.hidden_size
    g = {}
    for k in range(rnn.num_layers):
        g[f"{prefix}l{k}.W_xh"] = getattr(rnn, f"weight_ih_l{k}{suffix}").grad
        g[f"{prefix}l{k}.W_hh"] = getattr(rnn, f"weight_hh_l{k}{suffix}").grad
        g[f"{prefix}l{k}.b"] = getattr(rnn, f"bias_ih_l{k}{suffix}").grad
        if cell == "gru":
            g[f"{prefix}l{k}.b_hn"] = getattr(rnn, f"bias_hh_l{k}{suffix}").grad[2 * H:]
    return g


def load_rnncli_params(model: CharLM, params: dict) -> None:
    """Copy rnncli parameters into the PyTorch model (see the module docstring), in its dtype."""
    with torch.no_grad():
        put(model.embed.weight, params["embed"])
        load_stack(model.rnn, model.cell, params)
        put(model.head.weight, params["W_hy"])
        put(model.head.bias, params["b_y"])


def grads_as_rnncli(model: CharLM) -> dict:
    """The PyTorch gradients under rnncli's names (stack_grads)."""
    g = {"embed": model.embed.weight.grad, "W_hy": model.head.weight.grad, "b_y": model.head.bias.grad}
    g.update(stack_grads(model.rnn, model.cell))
    return {name: t.detach().numpy() for name, t in g.items()}


def tie_to_single_bias(model: CharLM) -> None:
    """Make training follow rnncli's single bias exactly: bias_hh gets no gradient (so Adam never
    moves it), except GRU's n block, which is rnncli's b_hn. Without this the summed bias
    b_ih + b_hh moves at twice Adam's step. Used by the loss-curve check only; the speed runs
    keep stock PyTorch."""
    H = model.rnn.hidden_size
    for k in range(model.rnn.num_layers):
        bias_hh = getattr(model.rnn, f"bias_hh_l{k}")
        keep = torch.zeros_like(bias_hh)
        if model.cell == "gru":
            keep[2 * H:] = 1
        bias_hh.register_hook(lambda grad, keep=keep: grad * keep)


class TorchTrainingRun:
    """The PyTorch twin of rnncli.tools.bench.TrainingRun: same case, same data chunks, same optimizer
    settings (Adam lr 2e-3, betas 0.9/0.999, eps 1e-8, clip 5, rnncli's OptimConfig defaults)."""

    def __init__(self, case: BenchCase, seed: int = 0, vocab_size: int = VOCAB_SIZE, data: list | None = None,
                 params: dict | None = None, lr: float = 2e-3, clip: float = 5.0, single_bias: bool = False):
        torch.manual_seed(seed)
        self.case = case
        self.model = for_case(case, vocab_size)
        if params is not None:
            load_rnncli_params(self.model, params)
        if single_bias:
            tie_to_single_bias(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.clip = clip
        self.vocab_size = vocab_size
        chunks = data if data is not None else random_chunks(case, vocab_size, seed)
        self.data = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in chunks]
        self.state = zero_state(self.model, case.batch)
        self.position = 0

    def step(self) -> float:
        inputs, targets = self.data[self.position % len(self.data)]
        self.position += 1
        logits, state = self.model(inputs, self.state)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.state = detach(state)  # truncated BPTT: carry the values, not the graph
        return loss.item()

    def run(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - t0


class TorchSamplingRun:
    """Sampling the usual PyTorch way: one step of the stacked module per character for the
    case's batch of samples, softmax, torch.multinomial, .tolist() to keep the characters;
    decoded at the end."""

    def __init__(self, case: BenchCase, seed: int = 0, vocab_size: int = VOCAB_SIZE):
        torch.manual_seed(seed)
        self.case = case
        self.model = for_case(case, vocab_size).eval()
        self.chars = [chr(32 + k) for k in range(vocab_size)]
        self.generator = torch.Generator().manual_seed(seed)

    def run(self, samples: int = 1) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for _ in range(samples):
                B = self.case.batch
                state = zero_state(self.model, B)
                token = torch.zeros((1, B), dtype=torch.long)
                out = []
                for _ in range(self.case.chars):
                    logits, state = self.model(token, state)
                    probs = torch.softmax(logits[0], dim=-1)
                    token = torch.multinomial(probs, 1, generator=self.generator).view(1, B)
                    out.append(token[0].tolist())
                ["".join(self.chars[row[b]] for row in out) for b in range(B)]
        return time.perf_counter() - t0


def make_run(case: BenchCase, seed: int = 0):
    return TorchTrainingRun(case, seed) if case.task == "train" else TorchSamplingRun(case, seed)


def matmul_peak_gflops(n: int = 1024, reps: int = 10) -> float:
    """torch.mm float32 GFLOP/s at the current torch thread count, best of reps."""
    A, B = torch.randn(n, n), torch.randn(n, n)
    C = torch.empty(n, n)
    torch.mm(A, B, out=C)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(A, B, out=C)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9

