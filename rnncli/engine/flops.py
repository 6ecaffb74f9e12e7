"""Floating-point operation counts of the matrix products of training, inference and sampling,
for speed figures (% of the GEMM peak) and for the recipe's speed estimates.
"""

from __future__ import annotations

from rnncli.config import ModelConfig


def _gemm_input_widths(cfg: ModelConfig) -> list[int]:
    """Width D_k of each layer's input as a GEMM operand: E for layer 0 (0 for one-hot input,
    where W_xh x_t is a column gather), H above it."""
    return [cfg.embedding_size] + [cfg.hidden_size] * (cfg.num_layers - 1)


def forward_flops(cfg: ModelConfig, B: int, T: int, V: int) -> int:
    """Matrix-product FLOPs of one forward pass over T steps of B streams.

    Per layer k with input width D_k and G gate blocks, over N = T·B rows:
        input projection  (N, D_k) @ (D_k, G·H)   2·N·D_k·G·H
        recurrent product (B, H) @ (H, G·H), T×   2·N·H·G·H
    and the output projection (N, H) @ (H, V):    2·N·H·V
    """
    N, H, GH = T * B, cfg.hidden_size, cfg.gates * cfg.hidden_size
    flops = sum(2 * N * D * GH + 2 * N * H * GH for D in _gemm_input_widths(cfg))
    return flops + 2 * N * H * V


def train_flops(cfg: ModelConfig, B: int, T: int, V: int) -> int:
    """Matrix-product FLOPs of one training step (forward + backward), 2·m·n·k per GEMM.

    Each forward product Y = X W has two backward products of the same size: dX = dY Wᵀ (the
    gradient sent down, or back in time) and dW = Xᵀ dY (summed over the N = T·B rows). So a
    step is 3× forward_flops: the input projections, the recurrent products, the output
    projection, each once forward and twice backward. Layer 0 with one-hot input counts 0 in all
    three (a gather forward, a scatter backward). The backward recurrent product runs at every
    step including t = 0 (the gradient at the carried state), T per layer.
    """
    return 3 * forward_flops(cfg, B, T, V)


def sample_flops(cfg: ModelConfig, V: int) -> int:
    """Matrix-vector FLOPs per sampled character at batch 1: layer 0's input projection is a
    table lookup (embedding folded in), then per layer the recurrent product, for layers above
    0 the input product, and the output projection."""
    H, GH, L = cfg.hidden_size, cfg.gates * cfg.hidden_size, cfg.num_layers
    recurrent = L * 2 * GH * H
    inputs_above = (L - 1) * 2 * GH * H
    return recurrent + inputs_above + 2 * H * V
