"""Training a character language model: data, the loop, evaluation, checkpoints, resume.

The loop never prints; it reports through a Reporter (ui.py supplies the terminal one).
Every piece of state that decides the next step is saved with the checkpoint (parameters,
optimizer state, carried hidden state, data position, RNG state, step count), so a resumed run
takes exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field, replace

import numpy as np

from rnncli import blas, checkpoint
from rnncli import model as M
from rnncli.config import EVAL_SHARE, GRU_FROM_CHARS, GRU_LR, LM_WEIGHT_DECAY, ModelConfig, OptimConfig, TrainConfig, from_json, model_config_from_dict
from rnncli.errors import CheckpointError, ConfigError, CorpusError, DivergedError, RnnError
from rnncli.optim import SLOTS, Optimizer, WeightAverage, clip_global_norm
from rnncli.sample import lm_from_arrays, preview
from rnncli.text import StreamBatches, fit_batches, load_corpus, split_train_val

DTYPE = np.float32
LN2 = math.log(2.0)


class Reporter:
    """Callbacks from the loop; the default does nothing."""

    def warn(self, message: str) -> None: ...
    def start(self, info: dict) -> None: ...
    def step(self, step: int, loss: float, chars_per_sec: float, lr: float) -> None: ...
    def evaluate(self, ev: "Evaluation") -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Evaluation:
    step: int
    epoch: float
    train_loss: float  # mean over the steps since the last evaluation (nats/char)
    val_loss: float | None  # nats/char; None without a validation split
    chars_per_sec: float
    preview: str
    is_best: bool

    @property
    def val_bits(self) -> float | None:
        return None if self.val_loss is None else self.val_loss / LN2


@dataclass
class TrainResult:
    run_dir: str
    latest: str
    best: str
    steps: int
    epoch: float
    best_val: float | None
    last_val: float | None
    train_loss: float
    chars_per_sec: float
    seconds: float
    stop_reason: str  # "epochs", "max-steps", "max-time", "early-stop" or "interrupted"
    history: dict = field(default_factory=dict)
    rank: int = 0  # under mpiexec, this process's rank: only rank 0 reports


class _Interrupt:
    """First Ctrl-C asks the loop to stop at the next step boundary (so the checkpoint is
    consistent); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def eval_stride(eval_seconds: float, step_seconds: float, eval_every: int) -> int:
    """How many eval_every-step spans to train before the next evaluation, so that evaluating
    (and checkpointing) takes at most EVAL_SHARE of the training time: 1 when it is cheap; more
    on a large validation text, whose scoring would otherwise eat the budget's steps."""
    if step_seconds <= 0:
        return 1
    return max(1, math.ceil(eval_seconds / (EVAL_SHARE * step_seconds * eval_every)))


def lr_at(optim: OptimConfig, epoch: int, done: float = 0.0) -> float:
    """The learning rate at this point of the run. done in [0, 1]: the share of the run's
    nearest limit used so far (run_fraction). cosine: from lr down to lr·lr_final at done = 1;
    step: lr · decay^(epochs past decay_after); constant: lr."""
    if optim.schedule == "cosine":
        low = optim.lr * optim.lr_final
        return low + (optim.lr - low) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, done))))
    if optim.schedule == "step":
        return optim.lr * optim.lr_decay ** max(0, epoch - optim.decay_after)
    return optim.lr


def run_fraction(cfg: TrainConfig, step: int, epochs_done: float, seconds: float) -> float:
    """How much of the run is used, by whichever limit (steps, epochs, time budget) is nearest
    its end; 0 when the run has no limit (early stopping alone ends it)."""
    parts = [0.0]
    if cfg.max_steps:
        parts.append(step / cfg.max_steps)
    if cfg.epochs:
        parts.append(epochs_done / cfg.epochs)
    if cfg.max_time:
        parts.append(seconds / cfg.max_time)
    return min(1.0, max(parts))


# ---------------------------------------------------------------- the recipe

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
    from rnncli.bench import train_flops  # leaf of the core, imported only for the recipe

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
        t0 = time.perf_counter()
        for g in grads.values():
            g.fill(0)
        masks = M.dropout_masks(cfg, seq_len, batch_size, rng, DTYPE)
        M.lm_loss_and_grads(cfg, params, grads, np.ascontiguousarray(ids[:-1]), np.ascontiguousarray(ids[1:]),
                            state, work, masks)
        clip_global_norm(grads, 5.0)
        opt.step(params, grads, 1e-3)
        times.append(time.perf_counter() - t0)
    return batch_size * seq_len / max(float(np.median(times[1:])), 1e-9)


def evaluate(cfg: ModelConfig, params: dict, ids: np.ndarray, batch_size: int, seq_len: int,
             max_chars: int) -> float:
    """Mean cross-entropy (nats/char) over ids (the first max_chars + 1 of them when max_chars)."""
    if max_chars and len(ids) > max_chars + 1:
        ids = ids[:max_chars + 1]
    total, count = score_ids(cfg, params, ids, batch_size, seq_len)
    return total / max(1, count)


def score_ids(cfg: ModelConfig, params: dict, ids: np.ndarray, batch_size: int, seq_len: int) -> tuple:
    """(summed cross-entropy in nats, characters predicted) for every character of ids but the first.

    ids are read as B streams side by side (each starting from the zero state), T characters a
    chunk, the state carried from chunk to chunk: the shorter last chunk is scored too, and the
    fewer than B characters past the last stream are read on from that stream's state, so each
    of ids[1:] is predicted exactly once.
    """
    if len(ids) < 2:
        return 0.0, 0
    B, T, _ = fit_batches(len(ids), batch_size, seq_len)
    batches = StreamBatches(ids, B, T)
    S = batches.stream_len
    state = M.zero_state(cfg, B, DTYPE)
    work = M.Workspace(DTYPE)
    total, count = 0.0, 0

    def score(inputs, targets, state):
        nonlocal total, count
        loss, state = M.lm_loss(cfg, params, inputs, targets, state, work)
        total += loss * inputs.size  # lm_loss is the mean over the T·B predictions
        count += inputs.size
        return state

    for k in range(batches.chunks):
        state = score(*batches.chunk(k), state)
    done = batches.chunks * T
    if done < S:
        idx = np.arange(B)[None, :] * S + np.arange(done, S + 1)[:, None]
        block = ids[idx].astype(np.int32)
        state = score(np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[1:]), state)
    rest = ids[B * S:].astype(np.int32).reshape(-1, 1)
    if len(rest) > 1:
        score(np.ascontiguousarray(rest[:-1]), np.ascontiguousarray(rest[1:]),
              np.ascontiguousarray(state[:, :, B - 1:B]))
    return total, count


class StreamPlan:
    """Which text each row of a step reads. The training text is cut into S contiguous streams
    (S a multiple of the batch B), each read in order, T characters a chunk, with its own
    carried state. S = B is classic char-rnn: the same B streams side by side at every step.
    With S > B, every round each stream advances one chunk, in groups of B drawn at random
    (one permutation per round, drawn per epoch), so consecutive steps read different parts of
    the text (less correlated updates) while every stream still carries its state.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, streams: int):
        self.ids, self.B, self.T = ids, batch_size, seq_len
        self.S = streams
        self.stream_len = (len(ids) - 1) // self.S
        self.rounds = self.stream_len // self.T
        self.groups = self.S // self.B
        self.chunks = self.rounds * self.groups
        self.order = None  # (rounds, S) stream permutation per round; None when S = B

    @staticmethod
    def fit(n_chars: int, batch_size: int, seq_len: int, streams: int) -> int:
        """Streams for this text: the requested number, a multiple of B, lowered (to B at least)
        until each stream holds a few chunks."""
        S = max(batch_size, streams // batch_size * batch_size)
        while S > batch_size and (n_chars - 1) // S < 4 * seq_len:
            S -= batch_size
        return S

    def shuffle(self, rng: np.random.Generator) -> None:
        if self.S > self.B:
            self.order = np.argsort(rng.random((self.rounds, self.S)), axis=1)

    def rows(self, k: int) -> np.ndarray:
        """The streams that step k of the epoch reads, in batch order."""
        if self.order is None:
            return np.arange(self.B)
        r, g = divmod(k, self.groups)
        return self.order[r, g * self.B:(g + 1) * self.B]

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), each (T, B) int32, time-major and C-contiguous."""
        r = k // self.groups
        start = r * self.T
        idx = self.rows(k)[None, :] * self.stream_len + np.arange(start, start + self.T + 1)[:, None]
        block = self.ids[idx].astype(np.int32)
        return np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[1:])


def count_params(params: dict) -> int:
    return int(sum(p.size for p in params.values()))


@dataclass
class _Progress:
    """Everything the loop carries from step to step; saved whole in every checkpoint."""

    step: int = 0
    epoch: int = 0
    chunk: int = 0
    seconds: float = 0.0  # wall time of the run so far, evaluations included
    step_seconds: float = 0.0  # time inside training steps only: the honest chars/s denominator
    best_val: float | None = None
    best_step: int = 0
    # train/val: [step, nats/char] per evaluation; time: [step, wall seconds] at the same
    # evaluations (absent from checkpoints written before it was recorded)
    history: dict = field(default_factory=lambda: {"train": [], "val": [], "time": []})


def train(cfg: TrainConfig, corpus_paths: list[str], resume: str | None = None,
          reporter: Reporter | None = None) -> TrainResult:
    """Train (or resume) a character language model on the given text files."""
    reporter = reporter or Reporter()
    entered = time.perf_counter()  # a fresh run's time budget counts from here: loading and compiling too
    cfg.validate()
    dp = _data_parallel()
    # under mpiexec, "all cores" means this host's cores shared by the ranks on it
    blas.set_threads(cfg.threads or (0 if dp is None else dp.threads_per_rank()))
    if dp is not None and not dp.root:
        reporter = Reporter()  # rank 0 alone reports
    recipe = ()
    if resume:
        arrays, meta = checkpoint.load(resume, kind="lm")
        lm = lm_from_arrays(arrays, meta, resume)
        corpus = load_corpus(corpus_paths, cfg.on_decode_error, vocab=lm.vocab, cache=True)
        if len(corpus) != meta.get("corpus_chars"):
            reporter.warn(f"the corpus has {len(corpus)} characters, the checkpoint was trained on "
                          f"{meta.get('corpus_chars')}: the data position will not line up")
        params, averaged = lm.params, None
        if any(k.startswith("raw/") for k in arrays):  # param/ holds the average, raw/ the trained weights
            averaged = params
            try:
                params = M.check_params(checkpoint.group(arrays, "raw"), M.lm_shapes(lm.cfg, lm.vocab.size), DTYPE)
            except ConfigError as e:
                raise CheckpointError(f"{resume}: {e} (its raw weights)") from None
            if not all(np.isfinite(p).all() for p in params.values()):
                raise CheckpointError(f"{resume}: raw weights contain NaN or infinity")
        opt, progress, rng = _resume_state(cfg, params, arrays, meta, resume)
        run_dir = os.path.dirname(os.path.abspath(resume))
        carried = arrays.get("state/hidden")
    else:
        corpus = load_corpus(corpus_paths, cfg.on_decode_error, cache=True)
        if cfg.auto and len(corpus) >= 2 and (dp is None or dp.root):
            cfg, recipe = _apply_recipe(cfg, corpus, entered)
        if dp is not None:  # every rank trains rank 0's choice
            cfg, recipe = dp.bcast((cfg, recipe))
        rng = np.random.default_rng(cfg.seed)
        shapes = M.lm_shapes(cfg.model, corpus.vocab.size)
        M.require_memory(shapes, DTYPE, copies=2 + len(SLOTS[cfg.optim.optimizer]))
        params = M.init_params(cfg.model, shapes, rng, DTYPE, biases="pytorch")
        opt = Optimizer(cfg.optim, params)
        progress = _Progress()
        name = os.path.splitext(os.path.basename(corpus_paths[0]))[0] if len(corpus_paths) == 1 else "corpus"
        run_dir = checkpoint.new_run_dir(cfg.out_dir, f"{name}-{cfg.model.cell}") if dp is None or dp.root else None
        if dp is not None:
            run_dir = dp.bcast(run_dir)
        carried, averaged = None, None

    mcfg = cfg.model
    # The weight average starts from the checkpoint's when it has one; a checkpoint written without
    # one counts as the average so far (its weights, folded into from the next step on).
    average = WeightAverage(cfg.ema, params, averaged) if cfg.ema else None
    weights = params if average is None else average.params  # what evaluation, previews and best.npz use
    n = len(corpus)
    if n < 2:
        raise CorpusError(f"{os.path.basename(corpus_paths[0])}: {n} character; a language model needs at "
                          f"least 2 (one to read, one to predict)")
    split = split_train_val(n, cfg.val_fraction)
    if split < 2:
        raise ConfigError(f"the corpus has {n} characters, too few to keep a validation part; "
                          f"lower --val-fraction (0 turns validation off)")
    train_ids, val_ids = corpus.ids[:split], corpus.ids[split:]
    if len(val_ids) < 2:
        val_ids = val_ids[:0]
    B, T, notes = fit_batches(len(train_ids), cfg.batch_size, cfg.seq_len)
    for note in notes:
        reporter.warn(note)
    if dp is not None:
        dp.check_corpus(corpus)
        dp.split(B)
        dp.run_dir = run_dir
    batches = StreamPlan(train_ids, B, T, StreamPlan.fit(len(train_ids), B, T, cfg.streams or B))
    state = M.zero_state(mcfg, batches.S, DTYPE)  # every stream's carried state
    if carried is not None and carried.shape == state.shape:
        state = np.ascontiguousarray(carried, DTYPE)
    if batches.S > B:
        order = arrays.get("state/order") if resume else None
        if (order is not None and order.shape == (batches.rounds, batches.S)
                and np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(batches.S), order.shape))):
            batches.order = np.ascontiguousarray(order, np.int64)
        else:
            batches.shuffle(rng)
    grads = M.zeros_like_params(params)
    work = M.Workspace(DTYPE)
    latest = os.path.join(run_dir, "latest.npz")
    best = os.path.join(run_dir, "best.npz")

    def save(path: str, which: str) -> None:
        if dp is not None and not dp.root:
            return
        arrays = {f"param/{k}": v for k, v in weights.items()}
        if average is not None:  # the trained weights, which a resumed run continues from
            arrays.update({f"raw/{k}": v for k, v in params.items()})
        arrays.update({f"opt/{k}": v for k, v in opt.state.items()})
        arrays["state/hidden"] = state
        if batches.order is not None:
            arrays["state/order"] = batches.order.astype(np.float64)  # checkpoints hold floats only
        checkpoint.save(path, arrays, {
            "kind": "lm", "which": which, "model": vars(mcfg).copy(), "vocab": corpus.vocab.chars,
            "config": _config_dict(cfg), "corpus": [os.path.abspath(p) for p in corpus.paths],
            "corpus_chars": n, "batch_size": B, "seq_len": T,
            "progress": vars(progress).copy(), "optimizer_steps": opt.steps,
            "rng": rng.bit_generator.state, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })

    reporter.start({"run_dir": run_dir, "params": count_params(params), "vocab": corpus.vocab.size,
                    "train_chars": len(train_ids), "val_chars": len(val_ids), "batch_size": B,
                    "seq_len": T, "chunks_per_epoch": batches.chunks, "resumed_at": progress.step,
                    "total_steps": _planned_steps(cfg, batches.chunks), "recipe": list(recipe),
                    "model": f"{mcfg.cell} {mcfg.num_layers}×{mcfg.hidden_size}, dropout {mcfg.dropout:g}",
                    "schedule": _describe_schedule(cfg),
                    "ema": f"weights averaged with decay {cfg.ema:g} (over about {1 / (1 - cfg.ema):.0f} steps)"
                           if cfg.ema else "off"})
    chars_per_step = B * T
    window_loss, window_steps, window_time = 0.0, 0, 0.0
    stop_reason = "epochs"
    started = entered if not resume else time.perf_counter() - progress.seconds

    def clock() -> float:
        """Seconds since the start; under MPI rank 0's, as of the last step, so all ranks agree."""
        return time.perf_counter() - started if dp is None else dp.elapsed
    stale = 0  # evaluations since the best one (early stopping)
    # seconds the last evaluation and checkpoint took: the time budget keeps that much for the
    # final one, so the whole run ends within --max-time (single process; under MPI ranks differ)
    eval_seconds = 0.0

    def run_eval() -> Evaluation:
        nonlocal window_loss, window_steps, window_time, eval_seconds
        eval_started = time.perf_counter()
        bad = [k for k, v in params.items() if not np.isfinite(v).all()]
        if bad:  # an update overflowed: keep the last good checkpoint as it is
            kept = f"the last good checkpoint is {latest}" if os.path.exists(latest) else "no checkpoint was written"
            raise DivergedError(f"training diverged: parameters became NaN or infinite ({bad[0]}) by step "
                                f"{progress.step}; {kept}; try a lower --lr or --clip")
        val = evaluate(mcfg, weights, val_ids, B, T, cfg.eval_chars) if len(val_ids) else None
        train_loss = window_loss / max(1, window_steps)
        cps = chars_per_step * window_steps / window_time if window_time > 0 else 0.0
        nonlocal stale
        score = val if val is not None else train_loss
        is_best = math.isfinite(score) and (progress.best_val is None or score < progress.best_val)
        if is_best:
            progress.best_val, progress.best_step = score, progress.step
        stale = 0 if is_best else stale + 1
        progress.history["val"].append([progress.step, val])
        progress.history["train"].append([progress.step, train_loss])
        progress.history.setdefault("time", []).append([progress.step, round(time.perf_counter() - started, 3)])
        text = preview(mcfg, corpus.vocab, weights, 160, 0.8, seed=cfg.seed + progress.step)
        save(latest, "latest")
        if is_best:
            save(best, "best")
        window_loss, window_steps, window_time = 0.0, 0, 0.0
        ev = Evaluation(progress.step, progress.epoch + progress.chunk / max(1, batches.chunks),
                        train_loss, val, cps, text, is_best)
        reporter.evaluate(ev)
        eval_seconds = time.perf_counter() - eval_started
        return ev

    last_eval = None
    next_eval = cfg.eval_every * (progress.step // cfg.eval_every + 1)  # the step of the next evaluation
    with _Interrupt() as interrupt:
        while not cfg.epochs or progress.epoch < cfg.epochs:
            while progress.chunk < batches.chunks:
                if cfg.max_steps and progress.step >= cfg.max_steps:
                    stop_reason = "max-steps"
                    break
                if cfg.max_time and clock() + (eval_seconds if dp is None else 0.0) >= cfg.max_time:
                    stop_reason = "max-time"
                    break
                t0 = time.perf_counter()
                lr = lr_at(cfg.optim, progress.epoch, run_fraction(
                    cfg, progress.step, progress.epoch + progress.chunk / batches.chunks, clock()))
                inputs, targets = batches.chunk(progress.chunk)
                rows = batches.rows(progress.chunk)
                masks = M.dropout_masks(mcfg, T, B, rng, DTYPE)
                for g in grads.values():
                    g.fill(0)
                if dp is None:
                    loss, new_state = M.lm_loss_and_grads(mcfg, params, grads, inputs, targets,
                                                          np.ascontiguousarray(state[:, :, rows]), work, masks)
                else:  # this rank's share of the streams, then the mean over all ranks
                    x, y, m = dp.part(inputs, targets, masks)
                    loss, new_state = M.lm_loss_and_grads(mcfg, params, grads, x, y,
                                                          np.ascontiguousarray(state[:, :, rows[dp.share]]), work, m)
                    loss, new_state = dp.average(grads, loss, new_state, B, time.perf_counter() - started,
                                                 interrupt.requested)
                norm = clip_global_norm(grads, cfg.optim.clip)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    kept = f"the last good checkpoint is {latest}" if os.path.exists(latest) else "no checkpoint was written"
                    raise DivergedError(f"loss became {loss if not math.isfinite(loss) else 'finite but the gradient ' + str(norm)} "
                                        f"at step {progress.step + 1}; {kept}; try a lower --lr or --clip")
                opt.step(params, grads, lr)
                if average is not None:
                    average.update(params, progress.step + 1)
                if cfg.state_reset > 0:  # some streams start again from the empty state
                    new_state[:, :, rng.random(B) < cfg.state_reset] = 0
                state[:, :, rows] = new_state
                progress.step += 1
                progress.chunk += 1
                dt = time.perf_counter() - t0
                progress.seconds = time.perf_counter() - started
                window_loss += loss
                window_steps += 1
                window_time += dt
                progress.step_seconds += dt
                reporter.step(progress.step, loss, chars_per_step / dt if dt > 0 else 0.0, lr)
                if progress.step >= next_eval:
                    step_seconds = window_time / max(1, window_steps)
                    # Spacing from the second evaluation of this process on: the first may include
                    # compiling the scoring and sampling kernels (a fresh cache), ~16 s that once spaced
                    # a whole ten-minute run's evaluations 2,800 steps apart. Under MPI ranks must agree:
                    # steps only.
                    spaced = "eval_every" in cfg.auto and dp is None and last_eval is not None
                    last_eval = run_eval()
                    next_eval = progress.step + cfg.eval_every * (
                        eval_stride(eval_seconds, step_seconds, cfg.eval_every) if spaced else 1)
                    if cfg.patience and len(val_ids) and stale >= cfg.patience:
                        stop_reason = "early-stop"
                        break
                if (interrupt.requested if dp is None else dp.stop):
                    stop_reason = "interrupted"
                    break
            if stop_reason != "epochs":
                break
            progress.epoch += 1
            progress.chunk = 0
            state = M.zero_state(mcfg, batches.S, DTYPE)  # a new pass starts from a clean state
            batches.shuffle(rng)
        progress.seconds = time.perf_counter() - started
        if window_steps or last_eval is None:
            last_eval = run_eval()
        else:
            save(latest, "latest")
    reporter.close()
    if dp is not None:
        dp.close()
    hist = progress.history["train"]
    return TrainResult(
        run_dir=run_dir, latest=latest, best=best, steps=progress.step,
        epoch=progress.epoch + progress.chunk / max(1, batches.chunks), best_val=progress.best_val,
        last_val=last_eval.val_loss, train_loss=hist[-1][1] if hist else float("nan"),
        chars_per_sec=_mean_speed(progress, chars_per_step), seconds=progress.seconds,
        stop_reason=stop_reason, history=progress.history, rank=0 if dp is None else dp.rank)


def _data_parallel():
    """The MPI rules (rnncli/parallel.py) when mpiexec started this process as one of several
    ranks (MPICH and Intel MPI set PMI_SIZE, Open MPI OMPI_COMM_WORLD_SIZE), else None."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        size = os.environ.get(name, "")
        if size.isdigit() and int(size) > 1:
            from rnncli import parallel

            return parallel.DataParallel()
    return None


def _apply_recipe(cfg: TrainConfig, corpus, entered: float) -> tuple:
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


def _describe_schedule(cfg: TrainConfig) -> str:
    o = cfg.optim
    decay = f", weight decay {o.weight_decay:g}" if o.weight_decay else ""
    if o.schedule == "cosine":
        limits = [f"{cfg.max_time:.0f} s" if cfg.max_time else "", f"{cfg.max_steps} steps" if cfg.max_steps else "",
                  f"{cfg.epochs} epochs" if cfg.epochs else ""]
        horizon = " or ".join(x for x in limits if x) or "no limit (constant)"
        return f"lr {o.lr:g} cosine to {o.lr * o.lr_final:.2g} at the end of {horizon}{decay}"
    if o.schedule == "step":
        return f"lr {o.lr:g} × {o.lr_decay:g} per epoch after {o.decay_after}{decay}"
    return f"lr {o.lr:g} constant{decay}"


def _mean_speed(progress: _Progress, chars_per_step: int) -> float:
    return progress.step * chars_per_step / progress.step_seconds if progress.step_seconds > 0 else 0.0


def _planned_steps(cfg: TrainConfig, chunks: int) -> int:
    """Steps the run plans (epochs, capped by --max-steps): the progress bar's total and ETA
    (None when only time or early stopping ends the run). A time budget can only end the run
    earlier, so it does not remove the total."""
    total = cfg.epochs * chunks if cfg.epochs else None
    if cfg.max_steps:
        total = cfg.max_steps if total is None else min(total, cfg.max_steps)
    return total


def _config_dict(cfg: TrainConfig) -> dict:
    return {"model": vars(cfg.model).copy(), "optim": vars(cfg.optim).copy(),
            **{k: v for k, v in vars(cfg).items() if k not in ("model", "optim")}}


def config_from_checkpoint(meta: dict, overrides: dict, path: str = "checkpoint") -> TrainConfig:
    """The saved configuration with the stopping limits (and output options) the user gave now.
    The model settings are meta["model"], the ones load_lm checks against the arrays."""
    name = os.path.basename(path)
    saved = meta.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{name}: has no training configuration to resume from")
    try:
        if not isinstance(meta.get("model"), dict):
            raise ConfigError("no model settings")
        model = model_config_from_dict(meta["model"])
        # settings a checkpoint written before they existed ran without: keep its run as it was
        optim = from_json(OptimConfig, {"schedule": "step", **saved["optim"]})
        rest = {"state_reset": 0.0, "patience": 0, "streams": 0, "ema": 0.0,
                **{k: v for k, v in saved.items() if k not in ("model", "optim", "auto")}}
        return replace(from_json(TrainConfig, {"model": model, "optim": optim, **rest}), **overrides).validate()
    except (KeyError, TypeError, OverflowError, RnnError) as e:
        raise CheckpointError(f"{name}: cannot resume: its training configuration is incomplete or "
                              f"invalid ({e})") from None


def _resume_state(cfg: TrainConfig, params: dict, arrays: dict, meta: dict, path: str):
    """(optimizer, progress, rng) exactly as they were saved, every field checked first."""
    name = os.path.basename(path)

    def whole(v) -> bool:
        return type(v) is int and 0 <= v < 2**62  # kernels take int64

    def real(v) -> bool:
        return type(v) in (int, float) and math.isfinite(v)

    try:
        progress = _Progress(**meta["progress"])
        steps = meta["optimizer_steps"]
        history = progress.history
        if not (all(whole(v) for v in (progress.step, progress.epoch, progress.chunk, progress.best_step, steps))
                and real(progress.seconds) and real(progress.step_seconds)
                and (progress.best_val is None or real(progress.best_val))
                and isinstance(history, dict) and set(history) in ({"train", "val"}, {"train", "val", "time"})
                and all(isinstance(h, list) for h in history.values())):
            raise ConfigError("progress counters are missing, negative or not numbers")
        state = checkpoint.group(arrays, "opt")
        for slot in SLOTS[cfg.optim.optimizer]:
            for k, p in params.items():
                if f"{slot}/{k}" not in state or state[f"{slot}/{k}"].shape != p.shape:
                    raise ConfigError(f"optimizer state {slot}/{k} is missing or has the wrong shape")
        opt = Optimizer(cfg.optim, params, state, steps=steps)
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
    except (KeyError, TypeError, ValueError, OverflowError, RnnError) as e:
        raise CheckpointError(f"{name}: cannot resume: the training state in its metadata is incomplete "
                              f"or invalid ({e})") from None
    return opt, progress, rng
