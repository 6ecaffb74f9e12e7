"""The recipe: the cell, size, dropout, learning rate and weight decay that `rnn train` chooses
for a text and a time budget, from the text's size and a measured training speed.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from rnncli.config import (
    GRU_FROM_CHARS,
    GRU_LR,
    LM_WEIGHT_DECAY,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from rnncli.data.chars import fit_batches, split_train_val
from rnncli.engine import model as M
from rnncli.engine.flops import train_flops
from rnncli.engine.model import DTYPE, count_params
from rnncli.engine.optim import Optimizer
from rnncli.engine.step import train_step

# (layers, hidden size) the recipe chooses from, smallest first.
SIZES = ((1, 128), (2, 128), (2, 256), (2, 384), (2, 512))


# A model is trained enough in the budget when it reads at least this many characters per
# parameter, and is not much larger than its text: at most this many parameters per character.
# 4, not 2: on tiny Shakespeare a GRU 2×384 that read 2.4 characters per parameter in ten
# minutes ended at 1.496 nats/char, the 2×256 that read 10 at 1.473 (README, "The recipe").
CHARS_PER_PARAM = 4.0


PARAMS_PER_CHAR = 5.0


# Dropout grows by this much each time the run reuses each character per parameter twice as
# often. 0.05, not 0.08: on tiny Shakespeare the GRU 2×256 (lr 0.004) ended at 1.465 with dropout
# 0.1 and at 1.482 with the 0.2 that 0.08 gave at full speed (ten-minute runs, README).
DROPOUT_PER_DOUBLING = 0.05


# With Adam's decoupled weight decay on, dropout is what this many fewer doublings would give: the
# decay holds back part of what dropout did. Paired fixed-step runs with the decay, one step of
# 0.05 below the rule's dropout ended lower on all four texts tried, by 0.0025–0.012 (README).
DOUBLINGS_HELD_BY_DECAY = 1.0


# Timed steps of the start-up speed probe: at least these, more while under its seconds.
PROBE_STEPS = 8


@dataclass(frozen=True)
class Recipe:
    model: ModelConfig
    reasons: tuple  # one line per choice, for the start-up summary


def choose_recipe(base: ModelConfig, auto, train_chars: int, vocab_size: int, batch_size: int,
                  seq_len: int, base_chars_per_sec: float, seconds: float, decoupled_decay: bool = False) -> Recipe:
    """Model size and dropout for a text of train_chars characters and a budget of `seconds`,
    on a machine that trains `base` at base_chars_per_sec (measured). Only the settings named in
    auto change; the others keep base's values.

    Size: the largest of SIZES that still reads CHARS_PER_PARAM characters per parameter in the
    budget (speed scaled from base by the matrix-product FLOPs) and has at most PARAMS_PER_CHAR
    parameters per training character. Dropout grows with how often the run will reuse each
    character per parameter: DROPOUT_PER_DOUBLING · log2(epochs · parameters / characters), in [0, 0.5], in
    steps of 0.05; with decoupled_decay (Adam's weight decay on), DOUBLINGS_HELD_BY_DECAY fewer.
    """
    auto = set(auto)
    budget = max(seconds, 1.0)

    def params_of(cfg: ModelConfig) -> int:
        return count_params({k: np.empty(s, np.int8) for k, s in M.lm_shapes(cfg, vocab_size).items()})

    def speed_of(cfg: ModelConfig) -> float:
        return base_chars_per_sec * train_flops(base, batch_size, seq_len, vocab_size) / \
            train_flops(cfg, batch_size, seq_len, vocab_size)

    reasons = []
    cfg = base
    if {"hidden_size", "num_layers"} & auto:
        fits = []
        for layers, hidden in SIZES:
            c = replace(base, num_layers=layers if "num_layers" in auto else base.num_layers,
                        hidden_size=hidden if "hidden_size" in auto else base.hidden_size)
            n, cps = params_of(c), speed_of(c)
            if cps * budget >= CHARS_PER_PARAM * n and n <= PARAMS_PER_CHAR * train_chars:
                fits.append(c)
        cfg = fits[-1] if fits else replace(base, num_layers=SIZES[0][0] if "num_layers" in auto else base.num_layers,
                                            hidden_size=SIZES[0][1] if "hidden_size" in auto else base.hidden_size)
        n, cps = params_of(cfg), speed_of(cfg)
        reasons.append(f"model {cfg.num_layers}×{cfg.hidden_size} ({n:,} parameters): the largest that reads "
                       f"≥{CHARS_PER_PARAM:g} characters per parameter in {budget:.0f} s at about {cps:,.0f} chars/s "
                       f"and has ≤{PARAMS_PER_CHAR:g} parameters per training character ({train_chars:,})")
    if "dropout" in auto:
        n, cps = params_of(cfg), speed_of(cfg)
        epochs = cps * budget / max(1, train_chars)
        reuse = epochs * n / max(1, train_chars)
        held = DOUBLINGS_HELD_BY_DECAY if decoupled_decay else 0.0
        doublings = max(0.0, math.log2(reuse) - held) if reuse > 1 else 0.0
        dropout = min(0.5, round(round(DROPOUT_PER_DOUBLING * doublings / 0.05) * 0.05, 2))
        cfg = replace(cfg, dropout=dropout)
        less = f", {DROPOUT_PER_DOUBLING * held:g} less with the weight decay" if held else ""
        reasons.append(f"dropout {dropout:.2f}: about {epochs:.1f} passes over the text with "
                       f"{n / max(1, train_chars):.2f} parameters per character{less}")
    return Recipe(cfg, tuple(reasons))


def choose_cell(base: ModelConfig, train_chars: int) -> tuple:
    """(base with the cell for a training text of train_chars characters, the reason): gru from
    GRU_FROM_CHARS training characters, base's cell below. A GRU step costs three gate blocks
    to the LSTM's four; on texts of 100 KB and more, read a few dozen times or fewer in the
    budget, it learned more than the LSTM, while on texts of about 30 KB, read hundreds of
    times under heavy dropout, the two tied (measurements: README, "Choosing the cell")."""
    cell = "gru" if train_chars >= GRU_FROM_CHARS else base.cell
    side = "≥" if cell == "gru" else "<"
    return replace(base, cell=cell), (f"cell {cell}: {train_chars:,} training characters "
                                      f"({side} {GRU_FROM_CHARS:,}: gru from there, {base.cell} below)",)


def measure_speed(cfg: ModelConfig, vocab_size: int, batch_size: int, seq_len: int, rng: np.random.Generator,
                  seconds: float = 2.0) -> float:
    """Training chars/s of cfg on this machine now: forward, backward, clip and Adam on random
    chunks, after one untimed step (which also compiles the kernels, cached after the first run).

    From the median step time of at least PROBE_STEPS timed steps: one slow step (another
    process taking a core, a page fault) must not move the recipe to another model size."""
    shapes = M.lm_shapes(cfg, vocab_size)
    params = M.init_params(cfg, shapes, rng, DTYPE)
    grads = M.zeros_like_params(params)
    opt = Optimizer(OptimConfig(), params)
    work = M.Workspace(DTYPE)
    state = M.zero_state(cfg, batch_size, DTYPE)
    times = []  # the first step compiles or warms up: not counted
    while len(times) <= PROBE_STEPS or (sum(times[1:]) < seconds and len(times) <= 4 * PROBE_STEPS):
        ids = rng.integers(0, vocab_size, size=(seq_len + 1, batch_size)).astype(np.int32)
        x, y = np.ascontiguousarray(ids[:-1]), np.ascontiguousarray(ids[1:])
        t0 = time.perf_counter()
        masks = M.dropout_masks(cfg, seq_len, batch_size, rng, DTYPE)
        train_step(params, grads, opt, 1e-3, 5.0, functools.partial(
            M.lm_loss_and_grads, cfg, params, inputs=x, targets=y, state=state, work=work, masks=masks))
        times.append(time.perf_counter() - t0)
    return batch_size * seq_len / max(float(np.median(times[1:])), 1e-9)


def apply_recipe(cfg: TrainConfig, corpus, entered: float) -> tuple:
    """cfg with the settings in cfg.auto chosen for this corpus and machine, and the reasons."""
    n_train = split_train_val(len(corpus), cfg.val_fraction)
    B, T, _ = fit_batches(max(2, n_train), cfg.batch_size, cfg.seq_len)
    base, chosen = cfg.model, ()
    if "cell" in cfg.auto:
        base, chosen = choose_cell(base, n_train)
        cfg = replace(cfg, model=base)
    if "lr" in cfg.auto and base.cell == "gru" and cfg.optim.optimizer == "adam":
        cfg = replace(cfg, optim=replace(cfg.optim, lr=GRU_LR).validate())
        chosen += (f"lr {GRU_LR:g}: Adam's rate for a GRU ({OptimConfig().lr:g} for the other cells), "
                   f"which learned more per step at it in paired runs",)
    if "weight_decay" in cfg.auto and cfg.optim.optimizer == "adam":
        cfg = replace(cfg, optim=replace(cfg.optim, weight_decay=LM_WEIGHT_DECAY).validate())
        chosen += (f"weight decay {LM_WEIGHT_DECAY:g}: Adam's decoupled decay, which ended ten-minute runs "
                   f"lower in paired runs",)
    if not {"hidden_size", "num_layers", "dropout"} & set(cfg.auto):
        return cfg, chosen  # nothing left that needs the speed probe
    cps = measure_speed(base, corpus.vocab.size, B, T, np.random.default_rng(0))
    spent = time.perf_counter() - entered  # loading, compiling and this probe
    if cfg.max_time:
        # the budget left, less about a tenth for evaluations and checkpoints
        seconds = 0.9 * max(1.0, cfg.max_time - spent)
    elif cfg.max_steps or cfg.epochs:
        steps = cfg.max_steps or cfg.epochs * max(1, (n_train - 1) // B // T)
        if cfg.max_steps and cfg.epochs:
            steps = min(steps, cfg.epochs * max(1, (n_train - 1) // B // T))
        seconds = steps * B * T / cps
    else:
        return cfg, chosen + (f"no time, step or epoch limit: the size is kept as given "
                              f"({base.num_layers}×{base.hidden_size}, dropout {base.dropout:g})",)
    recipe = choose_recipe(base, cfg.auto, n_train, corpus.vocab.size, B, T, cps, seconds,
                           decoupled_decay=cfg.optim.optimizer == "adam" and cfg.optim.weight_decay > 0)
    speed = f"measured {cps:,.0f} chars/s for {base.cell} {base.num_layers}×{base.hidden_size} on this machine"
    return replace(cfg, model=recipe.model), chosen + (speed,) + recipe.reasons
