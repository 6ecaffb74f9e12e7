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
from dataclasses import dataclass, field

import numpy as np

from rnncli.config import EVAL_SHARE, OptimConfig, TrainConfig
from rnncli.data.chars import StreamBatches, fit_batches, split_train_val
from rnncli.data.corpus import load_corpus
from rnncli.engine import model as M
from rnncli.engine import npz as checkpoint
from rnncli.engine import threads as blas
from rnncli.engine.model import DTYPE, count_params
from rnncli.engine.optim import SLOTS, Optimizer, WeightAverage, clip_global_norm
from rnncli.errors import CheckpointError, ConfigError, CorpusError, DivergedError
from rnncli.lm.checkpoint import Progress, config_dict, resume_state
from rnncli.lm.recipe import apply_recipe
from rnncli.lm.sample import lm_from_arrays, preview
from rnncli.lm.score import evaluate

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
        opt, progress, rng = resume_state(cfg, params, arrays, meta, resume)
        run_dir = os.path.dirname(os.path.abspath(resume))
        carried = arrays.get("state/hidden")
    else:
        corpus = load_corpus(corpus_paths, cfg.on_decode_error, cache=True)
        if cfg.auto and len(corpus) >= 2 and (dp is None or dp.root):
            cfg, recipe = apply_recipe(cfg, corpus, entered)
        if dp is not None:  # every rank trains rank 0's choice
            cfg, recipe = dp.bcast((cfg, recipe))
        rng = np.random.default_rng(cfg.seed)
        shapes = M.lm_shapes(cfg.model, corpus.vocab.size)
        M.require_memory(shapes, DTYPE, copies=2 + len(SLOTS[cfg.optim.optimizer]))
        params = M.init_params(cfg.model, shapes, rng, DTYPE, biases="pytorch")
        opt = Optimizer(cfg.optim, params)
        progress = Progress()
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
    batches = StreamBatches(train_ids, B, T, StreamBatches.fit(len(train_ids), B, T, cfg.streams or B))
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
            "config": config_dict(cfg), "corpus": [os.path.abspath(p) for p in corpus.paths],
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
