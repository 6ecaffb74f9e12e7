"""Training a character language model: set-up (fresh or resumed), data, the loop, evaluation.

The loop never prints; it reports through a Reporter (ui.py supplies the terminal one).
Every piece of state that decides the next step is saved with the checkpoint (lm/checkpoint.py:
parameters, optimizer state, carried hidden state, data position, RNG state, step count), so a
resumed run takes exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass, field, replace

import numpy as np

from rnncli.config import EVAL_SHARE, ModelConfig, OptimConfig, TrainConfig
from rnncli.data.chars import StreamBatches, fit_batches, split_train_val
from rnncli.data.corpus import Corpus, load_corpus
from rnncli.data.files import FolderLock
from rnncli.engine import model as M
from rnncli.engine import threads as blas
from rnncli.engine.model import DTYPE, count_params
from rnncli.engine.optim import SLOTS, Optimizer, WeightAverage
from rnncli.engine.step import train_step
from rnncli.errors import CheckpointError, ConfigError, CorpusError, DivergedError, StoppedAtOnce
from rnncli.lm.checkpoint import (
    LMCheckpoint,
    Progress,
    ResumePoint,
    claim_run_files,
    new_run_dir,
    new_run_id,
    read_lm_checkpoint,
    run_files,
    run_identity,
    save_lm_checkpoint,
)
from rnncli.lm.recipe import apply_recipe
from rnncli.lm.runlog import RunLog, check_log_targets
from rnncli.lm.sample import preview
from rnncli.lm.settings import SHAPE_OPTIONS, check_start, shape_differs
from rnncli.lm.score import evaluate_split

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


# Ctrl-C, `kill` and a terminal that goes away all end a run the same way: at the next step
# boundary, with its checkpoint saved
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Interrupt:
    """The first stop signal asks the loop to stop at the next step boundary (so the checkpoint
    is consistent); a second one interrupts at once, except during a save: then it waits until
    the file is written (the atomic write would keep the old file, but the run would lose what
    it was saving)."""

    def __init__(self, signals: tuple = STOP_SIGNALS):
        self.signals = signals
        self.requested = False
        self._saving = False
        self._pending = False
        self._previous = {}

    def __enter__(self):
        for sig in self.signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # not the main thread: the caller's handlers stay
                break
        return self

    def _handle(self, signum, frame):
        if self.requested and self._saving:
            self._pending = True
        elif self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def saving(self):
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self._pending:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
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


@dataclass
class _Run:
    """A run's model, optimizer and random state, as a fresh start or a checkpoint left them."""

    cfg: TrainConfig
    corpus: Corpus
    params: dict  # the trained weights
    average: WeightAverage | None  # with --ema
    opt: Optimizer
    progress: Progress
    rng: np.random.Generator
    run_dir: str
    dp: object | None  # the MPI rules (lm/parallel.py), None in a single process
    reporter: Reporter
    recipe: tuple = ()  # the recipe's reasons (a fresh run's choices)
    resumed: bool = False
    run_id: str = ""  # written into every checkpoint; a run replaces only files that carry it
    origin: dict | None = None  # --init-from: the checkpoint the weights started from (path, run_id, step)
    source: str = ""  # the checkpoint this process read its weights from (--resume or --init-from), if any
    log: RunLog | None = None  # metrics.jsonl and metrics.csv (rank 0 only), open while the folder is locked

    @property
    def weights(self) -> dict:
        """What evaluation, previews and best.npz use: the average under --ema."""
        return self.params if self.average is None else self.average.params

    @property
    def root(self) -> bool:
        """Whether this process reports and writes checkpoints (rank 0 under MPI)."""
        return self.dp is None or self.dp.root


@dataclass
class _Data:
    """The run's text as the loop reads it: streams, chunks and every stream's carried state."""

    val_ids: np.ndarray
    B: int
    T: int
    batches: StreamBatches
    state: np.ndarray  # (layers, k, streams, H), replaced by zeros at each new epoch
    grads: dict
    work: M.Workspace


@dataclass
class _Window:
    """The steps since the last evaluation: their summed loss and time."""

    loss: float = 0.0
    steps: int = 0
    seconds: float = 0.0


@dataclass
class _Loop:
    """What the loop keeps between steps besides the checkpointed Progress."""

    started: float  # perf_counter() at the run's start (a resumed run's lies its saved seconds back)
    next_eval: int  # the step of the next evaluation
    window: _Window = field(default_factory=_Window)
    stale: int = 0  # evaluations since the best one (early stopping)
    # seconds the last evaluation and checkpoint took: the time budget keeps that much for the
    # final one, so the whole run ends within --max-time (single process; under MPI ranks differ)
    eval_seconds: float = 0.0
    last_eval: Evaluation | None = None
    stop_reason: str = "epochs"
    interrupt: _Interrupt = field(default_factory=_Interrupt)
    lr: float | None = None  # the learning rate of the last step taken (the log's)
    stepped: bool = False  # a step was taken in this process

    def clock(self, dp) -> float:
        """Seconds since the start; under MPI rank 0's, as of the last step, so all ranks agree."""
        return time.perf_counter() - self.started if dp is None else dp.elapsed


def train(cfg: TrainConfig, corpus_paths: list[str], resume: LMCheckpoint | str | None = None,
          reporter: Reporter | None = None, *, init_from: LMCheckpoint | str | None = None,
          map_unknown: bool = False, tensorboard: bool = False) -> TrainResult:
    """Train a character language model on the given text files (read in order, one after the
    other), or resume the run of a checkpoint (as read_lm_checkpoint returns it, or its path)
    with cfg.

    init_from: a checkpoint whose weights, model shape and vocabulary a fresh run starts from
    (fine-tuning); cfg.model must have its shape, except for what cfg.auto leaves to choose.
    Characters of the text outside its vocabulary are an error, or with map_unknown dropped.
    tensorboard: also write TensorBoard events under RUN/tensorboard/ (needs tensorboardX).
    Every run appends one row per evaluation to RUN/metrics.jsonl and RUN/metrics.csv (lm/runlog.py)."""
    reporter = reporter or Reporter()
    entered = time.perf_counter()  # a fresh run's time budget counts from here: loading and compiling too
    check_start(resume is not None, init_from is not None, map_unknown, tensorboard)
    cfg.validate()
    dp = _data_parallel()
    # under mpiexec, "all cores" means this host's cores shared by the ranks on it
    blas.set_threads(cfg.threads or (0 if dp is None else dp.threads_per_rank()))
    if dp is not None and not dp.root:
        reporter = Reporter()  # rank 0 alone reports
    if resume is None:
        if isinstance(init_from, str):
            init_from = read_lm_checkpoint(init_from)
        run, point = _fresh_run(cfg, corpus_paths, entered, dp, reporter, init_from, map_unknown), None
    else:
        if isinstance(resume, str):
            resume = read_lm_checkpoint(resume)
        run, point = _resumed_run(cfg, corpus_paths, resume, dp, reporter)
    cfg = run.cfg  # with the recipe's choices
    with contextlib.ExitStack() as held:
        if run.root:  # one writer per run folder, for as long as this process trains
            held.enter_context(FolderLock(run.run_dir))
            claim_run_files(run.run_dir, run.run_id)
            check_log_targets(run.run_dir, tensorboard)
        data = _stream_data(run, corpus_paths, point)
        if run.root:  # rows past the checkpoint's step are cut: the log goes on from where the run does
            run.log = held.enter_context(RunLog(run.run_dir, run.progress.step, tensorboard))
        reporter.start(_start_info(run, data))
        started = entered if not run.resumed else time.perf_counter() - run.progress.seconds
        loop = _Loop(started, next_eval=cfg.eval_every * (run.progress.step // cfg.eval_every + 1),
                     # under MPI a terminated rank is a lost peer (lm/parallel.py): Ctrl-C alone stops
                     interrupt=_Interrupt() if dp is None else _Interrupt((signal.SIGINT,)))
        try:
            with loop.interrupt:
                _run_loop(run, data, loop)
                run.progress.seconds = time.perf_counter() - loop.started
                if loop.window.steps or loop.last_eval is None:
                    loop.last_eval = _evaluate(run, data, loop)
                else:
                    _save(run, data, loop, "latest")
        except KeyboardInterrupt:  # a second interrupt: say what is kept (the lock is released on the way out)
            if not run.root:
                raise
            latest, _ = run_files(run.run_dir)
            kept = (f"the last checkpoint is {latest}; continue with `rnn train --resume {latest}`"
                    if os.path.exists(latest) else "no checkpoint was written yet")
            raise StoppedAtOnce(f"stopped at once; {kept}") from None
    reporter.close()
    if dp is not None:
        dp.close()
    return _result(run, data, loop)


def init_config(cfg: TrainConfig, shape: ModelConfig) -> TrainConfig:
    """cfg for a run that starts from a checkpoint's model (shape): what cfg.auto leaves to choose
    of the shape is the checkpoint's, and the recipe chooses none of it; a shape setting cfg gives
    with another value is a UsageError naming its option."""
    chosen = {k: getattr(shape, k) for k in SHAPE_OPTIONS if k in cfg.auto}
    cfg = replace(cfg, model=replace(cfg.model, **chosen), auto=tuple(a for a in cfg.auto if a not in SHAPE_OPTIONS))
    for k, option in SHAPE_OPTIONS.items():
        if getattr(cfg.model, k) != getattr(shape, k):
            raise shape_differs(option, getattr(cfg.model, k), getattr(shape, k))
    return cfg


def _fresh_run(cfg: TrainConfig, corpus_paths: list[str], entered: float, dp, reporter: Reporter,
               init_from: LMCheckpoint | None = None, map_unknown: bool = False) -> _Run:
    """A new run: the corpus, the recipe's choices, freshly drawn weights (or with init_from the
    checkpoint's) and a new run folder."""
    start = None
    if init_from is None:
        corpus = load_corpus(corpus_paths, cfg.on_decode_error, cache=True)
    else:
        start = init_from.model()
        cfg = init_config(cfg, start.cfg)
        corpus = load_corpus(corpus_paths, cfg.on_decode_error, vocab=start.vocab, drop_unknown=map_unknown,
                             cache=True, unknown_hint="; give --map-unknown to leave them out")
        if corpus.dropped:
            reporter.warn(f"{sum(corpus.dropped.values()):,} characters ({len(corpus.dropped):,} distinct) of the "
                          f"corpus are not in the checkpoint's vocabulary and were left out (--map-unknown)")
    recipe = ()
    if cfg.auto and len(corpus) >= 2 and (dp is None or dp.root):
        cfg, recipe = apply_recipe(cfg, corpus, entered)
    if dp is not None:  # every rank trains rank 0's choice
        cfg, recipe = dp.bcast((cfg, recipe))
    rng = np.random.default_rng(cfg.seed)
    shapes = M.lm_shapes(cfg.model, corpus.vocab.size)
    M.require_memory(shapes, DTYPE, copies=2 + len(SLOTS[cfg.optim.optimizer]))
    if start is None:
        params = M.init_params(cfg.model, shapes, rng, DTYPE, biases="pytorch")
    else:  # a copy: the checkpoint read stays as it was
        params = {k: np.array(v, DTYPE, order="C") for k, v in start.params.items()}
    opt = Optimizer(cfg.optim, params)
    run_dir = new_run_dir(cfg.out_dir, corpus_paths, cfg.model.cell) if dp is None or dp.root else None
    if dp is not None:
        run_dir = dp.bcast(run_dir)
    average = WeightAverage(cfg.ema, params) if cfg.ema else None
    origin = None
    if init_from is not None:  # recorded in every checkpoint of the run: where its weights came from
        progress = init_from.meta.get("progress")
        origin = {"path": os.path.abspath(init_from.path), "run_id": run_identity(init_from.meta),
                  "step": progress.get("step") if isinstance(progress, dict) else None}
    return _Run(cfg, corpus, params, average, opt, Progress(), rng, run_dir, dp, reporter, recipe,
                run_id=new_run_id(), origin=origin, source=init_from.path if init_from is not None else "")


def _resumed_run(cfg: TrainConfig, corpus_paths: list[str], ckpt: LMCheckpoint, dp,
                 reporter: Reporter) -> tuple[_Run, ResumePoint]:
    """The run of a checkpoint, where it stopped, writing on into the checkpoint's folder."""
    lm = ckpt.model()
    corpus = load_corpus(corpus_paths, cfg.on_decode_error, vocab=lm.vocab, cache=True)
    if len(corpus) != ckpt.corpus_chars:
        reporter.warn(f"the corpus has {len(corpus)} characters, the checkpoint was trained on "
                      f"{ckpt.corpus_chars}: the data position will not line up")
    point = ckpt.resume_point(cfg, lm)
    # The weight average starts from the checkpoint's when it has one; a checkpoint written without
    # one counts as the average so far (its weights, folded into from the next step on).
    average = WeightAverage(cfg.ema, point.params, point.averaged) if cfg.ema else None
    return _Run(cfg, corpus, point.params, average, point.opt, point.progress, point.rng, ckpt.run_dir,
                dp, reporter, resumed=True, run_id=run_identity(ckpt.meta),
                origin=ckpt.meta.get("init_from") if isinstance(ckpt.meta.get("init_from"), dict) else None,
                source=ckpt.path), point


def _stream_data(run: _Run, corpus_paths: list[str], point: ResumePoint | None) -> _Data:
    """The training and validation parts of the text, the batch layout, the streams and their
    carried state (a resumed run's where it fits the layout)."""
    cfg, corpus, dp = run.cfg, run.corpus, run.dp
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
        run.reporter.warn(note)
    if dp is not None:
        dp.check_corpus(corpus)
        dp.split(B)
        dp.run_dir = run.run_dir
    batches = StreamBatches(train_ids, B, T, StreamBatches.fit(len(train_ids), B, T, cfg.streams or B))
    state = M.zero_state(cfg.model, batches.S, DTYPE)
    carried = point.hidden_for(state.shape) if point is not None else None
    if carried is not None:
        state = carried
    if batches.S > B:
        order = point.order_for(batches.rounds, batches.S) if point is not None else None
        if order is not None:
            batches.order = order
        else:
            batches.shuffle(run.rng)
    return _Data(val_ids, B, T, batches, state, M.zeros_like_params(run.params), M.Workspace(DTYPE))


def _start_info(run: _Run, data: _Data) -> dict:
    """What the reporter shows as the run starts."""
    cfg, mcfg = run.cfg, run.cfg.model
    return {"run_dir": run.run_dir, "params": count_params(run.params), "vocab": run.corpus.vocab.size,
            "train_chars": len(data.batches.ids), "val_chars": len(data.val_ids), "batch_size": data.B,
            "seq_len": data.T, "chunks_per_epoch": data.batches.chunks, "resumed_at": run.progress.step,
            "total_steps": _planned_steps(cfg, data.batches.chunks), "recipe": list(run.recipe),
            "model": f"{mcfg.cell} {mcfg.num_layers}×{mcfg.hidden_size}, dropout {mcfg.dropout:g}",
            "schedule": _describe_schedule(cfg),
            "ema": f"weights averaged with decay {cfg.ema:g} (over about {1 / (1 - cfg.ema):.0f} steps)"
                   if cfg.ema else "off"}


def _run_loop(run: _Run, data: _Data, loop: _Loop) -> None:
    """Steps, evaluations and checkpoints until a limit, early stopping or Ctrl-C
    (loop.stop_reason says which)."""
    cfg, progress, batches, dp = run.cfg, run.progress, data.batches, run.dp
    while not cfg.epochs or progress.epoch < cfg.epochs:
        while progress.chunk < batches.chunks:
            if cfg.max_steps and progress.step >= cfg.max_steps:
                loop.stop_reason = "max-steps"
                break
            if cfg.max_time and loop.clock(dp) + (loop.eval_seconds if dp is None else 0.0) >= cfg.max_time:
                loop.stop_reason = "max-time"
                break
            _step(run, data, loop)
            if progress.step >= loop.next_eval:
                step_seconds = loop.window.seconds / max(1, loop.window.steps)
                # Spacing from the second evaluation of this process on: the first may include
                # compiling the scoring and sampling kernels (a fresh cache), ~16 s that once spaced
                # a whole ten-minute run's evaluations 2,800 steps apart. Under MPI ranks must agree:
                # steps only.
                spaced = "eval_every" in cfg.auto and dp is None and loop.last_eval is not None
                loop.last_eval = _evaluate(run, data, loop)
                loop.next_eval = progress.step + cfg.eval_every * (
                    eval_stride(loop.eval_seconds, step_seconds, cfg.eval_every) if spaced else 1)
                if cfg.patience and len(data.val_ids) and loop.stale >= cfg.patience:
                    loop.stop_reason = "early-stop"
                    break
            if (loop.interrupt.requested if dp is None else dp.stop):
                loop.stop_reason = "interrupted"
                break
        if loop.stop_reason != "epochs":
            break
        progress.epoch += 1
        progress.chunk = 0
        data.state = M.zero_state(cfg.model, batches.S, DTYPE)  # a new pass starts from a clean state
        batches.shuffle(run.rng)


def _step(run: _Run, data: _Data, loop: _Loop) -> None:
    """One training step on the next chunk: the update, the carried state, the counters."""
    cfg, mcfg, progress, batches, dp = run.cfg, run.cfg.model, run.progress, data.batches, run.dp
    B, T = data.B, data.T
    t0 = time.perf_counter()
    lr = lr_at(cfg.optim, progress.epoch, run_fraction(
        cfg, progress.step, progress.epoch + progress.chunk / batches.chunks, loop.clock(dp)))
    inputs, targets = batches.chunk(progress.chunk)
    rows = batches.rows(progress.chunk)
    masks = M.dropout_masks(mcfg, T, B, run.rng, DTYPE)
    if dp is None:
        reduce = None

        def loss_and_grads(grads):
            return M.lm_loss_and_grads(mcfg, run.params, grads, inputs, targets,
                                       np.ascontiguousarray(data.state[:, :, rows]), data.work, masks)
    else:  # this rank's share of the streams, then the mean over all ranks
        x, y, m = dp.part(inputs, targets, masks)

        def loss_and_grads(grads):
            return M.lm_loss_and_grads(mcfg, run.params, grads, x, y,
                                       np.ascontiguousarray(data.state[:, :, rows[dp.share]]), data.work, m)

        def reduce(grads, loss, new_state):
            return dp.average(grads, loss, new_state, B, time.perf_counter() - loop.started,
                              loop.interrupt.requested)
    loss, norm, new_state = train_step(run.params, data.grads, run.opt, lr, cfg.optim.clip, loss_and_grads, reduce)
    if not math.isfinite(loss) and run.source and not loop.stepped:
        # the first step on weights read from a file: what they compute overflows before any update
        raise CheckpointError(f"{run.source}: its loss on the corpus is {loss}, not a finite number, before "
                              f"any update; the weights are damaged or not a trained model's")
    loop.stepped = True
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise DivergedError(f"loss became {loss if not math.isfinite(loss) else 'finite but the gradient ' + str(norm)} "
                            f"at step {progress.step + 1}; {_kept(run)}; try a lower --lr or --clip")
    if run.average is not None:
        run.average.update(run.params, progress.step + 1)
    if cfg.state_reset > 0:  # some streams start again from the empty state
        new_state[:, :, run.rng.random(B) < cfg.state_reset] = 0
    data.state[:, :, rows] = new_state
    progress.step += 1
    progress.chunk += 1
    dt = time.perf_counter() - t0
    progress.seconds = time.perf_counter() - loop.started
    loop.lr = lr
    loop.window.loss += loss
    loop.window.steps += 1
    loop.window.seconds += dt
    progress.step_seconds += dt
    run.reporter.step(progress.step, loss, B * T / dt if dt > 0 else 0.0, lr)


def _evaluate(run: _Run, data: _Data, loop: _Loop) -> Evaluation:
    """Validation loss, history, a preview and the checkpoints (best.npz when it is the best);
    starts the next window of steps."""
    eval_started = time.perf_counter()
    cfg, progress = run.cfg, run.progress
    bad = [k for k, v in run.params.items() if not np.isfinite(v).all()]
    if bad:  # an update overflowed: keep the last good checkpoint as it is
        raise DivergedError(f"training diverged: parameters became NaN or infinite ({bad[0]}) by step "
                            f"{progress.step}; {_kept(run)}; try a lower --lr or --clip")
    weights = run.weights
    val = evaluate_split(cfg.model, weights, data.val_ids, data.B, data.T, cfg.eval_chars) if len(data.val_ids) else None
    window = loop.window
    train_loss = window.loss / max(1, window.steps)
    cps = data.B * data.T * window.steps / window.seconds if window.seconds > 0 else 0.0
    score = val if val is not None else train_loss
    if not math.isfinite(score):  # finite weights whose output overflows: not a model to save
        raise DivergedError(f"training diverged: the {'validation' if val is not None else 'training'} loss "
                            f"became {score} by step {progress.step}; {_kept(run)}; try a lower --lr or --clip")
    is_best = math.isfinite(score) and (progress.best_val is None or score < progress.best_val)
    if is_best:
        progress.best_val, progress.best_step = score, progress.step
    loop.stale = 0 if is_best else loop.stale + 1
    progress.history["val"].append([progress.step, val])
    progress.history["train"].append([progress.step, train_loss])
    elapsed = round(time.perf_counter() - loop.started, 3)
    progress.history.setdefault("time", []).append([progress.step, elapsed])
    text = preview(cfg.model, run.corpus.vocab, weights, 160, 0.8, seed=cfg.seed + progress.step)
    _save(run, data, loop, "latest")
    if is_best:
        _save(run, data, loop, "best")
    loop.window = _Window()
    ev = Evaluation(progress.step, progress.epoch + progress.chunk / max(1, data.batches.chunks),
                    train_loss, val, cps, text, is_best)
    if run.log is not None:  # after the checkpoints: the log never runs ahead of what was saved
        lr = loop.lr if loop.lr is not None else lr_at(cfg.optim, progress.epoch, run_fraction(
            cfg, progress.step, ev.epoch, loop.clock(run.dp)))
        run.log.write(progress.step, ev.epoch, elapsed, train_loss, val, lr, cps, is_best)
    run.reporter.evaluate(ev)
    loop.eval_seconds = time.perf_counter() - eval_started
    return ev


def _save(run: _Run, data: _Data, loop: _Loop, which: str) -> None:
    """latest.npz or best.npz of the run folder (rank 0 alone writes)."""
    if not run.root:
        return
    latest, best = run_files(run.run_dir)
    with loop.interrupt.saving():
        save_lm_checkpoint(latest if which == "latest" else best, which, run_id=run.run_id, cfg=run.cfg,
                           corpus=run.corpus, batch_size=data.B, seq_len=data.T, weights=run.weights,
                           raw=run.params if run.average is not None else None, opt=run.opt,
                           hidden=data.state, order=data.batches.order, progress=run.progress, rng=run.rng,
                           origin=run.origin)


def _kept(run: _Run) -> str:
    """What a divergence leaves behind."""
    latest, _ = run_files(run.run_dir)
    return f"the last good checkpoint is {latest}" if os.path.exists(latest) else "no checkpoint was written"


def _result(run: _Run, data: _Data, loop: _Loop) -> TrainResult:
    progress = run.progress
    latest, best = run_files(run.run_dir)
    hist = progress.history["train"]
    return TrainResult(
        run_dir=run.run_dir, latest=latest, best=best, steps=progress.step,
        epoch=progress.epoch + progress.chunk / max(1, data.batches.chunks), best_val=progress.best_val,
        last_val=loop.last_eval.val_loss, train_loss=hist[-1][1] if hist else float("nan"),
        chars_per_sec=_mean_speed(progress, data.B * data.T), seconds=progress.seconds,
        stop_reason=loop.stop_reason, history=progress.history, rank=0 if run.dp is None else run.dp.rank)


def _data_parallel():
    """The MPI rules (rnncli/parallel.py) when mpiexec started this process as one of several
    ranks (MPICH and Intel MPI set PMI_SIZE, Open MPI OMPI_COMM_WORLD_SIZE), else None."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        size = os.environ.get(name, "")
        if size.isdigit() and int(size) > 1:
            from rnncli.lm import parallel

            return parallel.DataParallel()
    return None


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


def _mean_speed(progress: Progress, chars_per_step: int) -> float:
    return progress.step * chars_per_step / progress.step_seconds if progress.step_seconds > 0 else 0.0


def _planned_steps(cfg: TrainConfig, chunks: int) -> int:
    """Steps the run plans (epochs, capped by --max-steps): the progress bar's total and ETA
    (None when only time or early stopping ends the run). A time budget can only end the run
    earlier, so it does not remove the total."""
    total = cfg.epochs * chunks if cfg.epochs else None
    if cfg.max_steps:
        total = cfg.max_steps if total is None else min(total, cfg.max_steps)
    return total
