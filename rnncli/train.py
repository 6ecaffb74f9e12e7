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
from rnncli.config import ModelConfig, OptimConfig, TrainConfig, from_json, model_config_from_dict
from rnncli.errors import CheckpointError, ConfigError, CorpusError, DivergedError, RnnError
from rnncli.optim import SLOTS, Optimizer, clip_global_norm
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
    stop_reason: str  # "epochs", "max-steps", "max-time" or "interrupted"
    history: dict = field(default_factory=dict)


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


def lr_at(optim: OptimConfig, epoch: int) -> float:
    """Step decay: lr · decay^(epochs past decay_after)."""
    return optim.lr * optim.lr_decay ** max(0, epoch - optim.decay_after)


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
    cfg.validate()
    blas.set_threads(cfg.threads)
    if resume:
        arrays, meta = checkpoint.load(resume, kind="lm")
        lm = lm_from_arrays(arrays, meta, resume)
        corpus = load_corpus(corpus_paths, cfg.on_decode_error, vocab=lm.vocab)
        if len(corpus) != meta.get("corpus_chars"):
            reporter.warn(f"the corpus has {len(corpus)} characters, the checkpoint was trained on "
                          f"{meta.get('corpus_chars')}: the data position will not line up")
        params = lm.params
        opt, progress, rng = _resume_state(cfg, params, arrays, meta, resume)
        run_dir = os.path.dirname(os.path.abspath(resume))
        carried = arrays.get("state/hidden")
    else:
        corpus = load_corpus(corpus_paths, cfg.on_decode_error)
        rng = np.random.default_rng(cfg.seed)
        shapes = M.lm_shapes(cfg.model, corpus.vocab.size)
        M.require_memory(shapes, DTYPE, copies=2 + len(SLOTS[cfg.optim.optimizer]))
        params = M.init_params(cfg.model, shapes, rng, DTYPE)
        opt = Optimizer(cfg.optim, params)
        progress = _Progress()
        name = os.path.splitext(os.path.basename(corpus_paths[0]))[0] if len(corpus_paths) == 1 else "corpus"
        run_dir = checkpoint.new_run_dir(cfg.out_dir, f"{name}-{cfg.model.cell}")
        carried = None

    mcfg = cfg.model
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
    batches = StreamBatches(train_ids, B, T)
    state = M.zero_state(mcfg, B, DTYPE)
    if carried is not None and carried.shape == state.shape:
        state = np.ascontiguousarray(carried, DTYPE)
    grads = M.zeros_like_params(params)
    work = M.Workspace(DTYPE)
    latest = os.path.join(run_dir, "latest.npz")
    best = os.path.join(run_dir, "best.npz")

    def save(path: str, which: str) -> None:
        arrays = {f"param/{k}": v for k, v in params.items()}
        arrays.update({f"opt/{k}": v for k, v in opt.state.items()})
        arrays["state/hidden"] = state
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
                    "total_steps": _planned_steps(cfg, batches.chunks)})
    chars_per_step = B * T
    window_loss, window_steps, window_time = 0.0, 0, 0.0
    stop_reason = "epochs"
    started = time.perf_counter() - progress.seconds

    def run_eval() -> Evaluation:
        nonlocal window_loss, window_steps, window_time
        bad = [k for k, v in params.items() if not np.isfinite(v).all()]
        if bad:  # an update overflowed: keep the last good checkpoint as it is
            kept = f"the last good checkpoint is {latest}" if os.path.exists(latest) else "no checkpoint was written"
            raise DivergedError(f"training diverged: parameters became NaN or infinite ({bad[0]}) by step "
                                f"{progress.step}; {kept}; try a lower --lr or --clip")
        val = evaluate(mcfg, params, val_ids, B, T, cfg.eval_chars) if len(val_ids) else None
        train_loss = window_loss / max(1, window_steps)
        cps = chars_per_step * window_steps / window_time if window_time > 0 else 0.0
        score = val if val is not None else train_loss
        is_best = math.isfinite(score) and (progress.best_val is None or score < progress.best_val)
        if is_best:
            progress.best_val, progress.best_step = score, progress.step
        progress.history["val"].append([progress.step, val])
        progress.history["train"].append([progress.step, train_loss])
        progress.history.setdefault("time", []).append([progress.step, round(time.perf_counter() - started, 3)])
        text = preview(mcfg, corpus.vocab, params, 160, 0.8, seed=cfg.seed + progress.step)
        save(latest, "latest")
        if is_best:
            save(best, "best")
        window_loss, window_steps, window_time = 0.0, 0, 0.0
        ev = Evaluation(progress.step, progress.epoch + progress.chunk / max(1, batches.chunks),
                        train_loss, val, cps, text, is_best)
        reporter.evaluate(ev)
        return ev

    last_eval = None
    with _Interrupt() as interrupt:
        while progress.epoch < cfg.epochs:
            lr = lr_at(cfg.optim, progress.epoch)
            while progress.chunk < batches.chunks:
                if cfg.max_steps and progress.step >= cfg.max_steps:
                    stop_reason = "max-steps"
                    break
                if cfg.max_time and time.perf_counter() - started >= cfg.max_time:
                    stop_reason = "max-time"
                    break
                t0 = time.perf_counter()
                inputs, targets = batches.chunk(progress.chunk)
                masks = M.dropout_masks(mcfg, T, B, rng, DTYPE)
                for g in grads.values():
                    g.fill(0)
                loss, new_state = M.lm_loss_and_grads(mcfg, params, grads, inputs, targets, state, work, masks)
                norm = clip_global_norm(grads, cfg.optim.clip)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    kept = f"the last good checkpoint is {latest}" if os.path.exists(latest) else "no checkpoint was written"
                    raise DivergedError(f"loss became {loss if not math.isfinite(loss) else 'finite but the gradient ' + str(norm)} "
                                        f"at step {progress.step + 1}; {kept}; try a lower --lr or --clip")
                opt.step(params, grads, lr)
                state = new_state
                progress.step += 1
                progress.chunk += 1
                dt = time.perf_counter() - t0
                progress.seconds = time.perf_counter() - started
                window_loss += loss
                window_steps += 1
                window_time += dt
                progress.step_seconds += dt
                reporter.step(progress.step, loss, chars_per_step / dt if dt > 0 else 0.0, lr)
                if progress.step % cfg.eval_every == 0:
                    last_eval = run_eval()
                if interrupt.requested:
                    stop_reason = "interrupted"
                    break
            if stop_reason != "epochs":
                break
            progress.epoch += 1
            progress.chunk = 0
            state = M.zero_state(mcfg, B, DTYPE)  # a new pass starts from a clean state
        progress.seconds = time.perf_counter() - started
        if window_steps or last_eval is None:
            last_eval = run_eval()
        else:
            save(latest, "latest")
    reporter.close()
    hist = progress.history["train"]
    return TrainResult(
        run_dir=run_dir, latest=latest, best=best, steps=progress.step,
        epoch=progress.epoch + progress.chunk / max(1, batches.chunks), best_val=progress.best_val,
        last_val=last_eval.val_loss, train_loss=hist[-1][1] if hist else float("nan"),
        chars_per_sec=_mean_speed(progress, chars_per_step), seconds=progress.seconds,
        stop_reason=stop_reason, history=progress.history)


def _mean_speed(progress: _Progress, chars_per_step: int) -> float:
    return progress.step * chars_per_step / progress.step_seconds if progress.step_seconds > 0 else 0.0


def _planned_steps(cfg: TrainConfig, chunks: int) -> int:
    """Steps the run plans (epochs, capped by --max-steps): the progress bar's total and ETA.
    A time budget can only end the run earlier, so it does not remove the total."""
    total = cfg.epochs * chunks
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
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
        optim = from_json(OptimConfig, saved["optim"])
        rest = {k: v for k, v in saved.items() if k not in ("model", "optim")}
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
