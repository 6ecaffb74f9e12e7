"""The language model's run folder and checkpoint layout, written and read here alone.

A run folder is OUT/<corpus name>-<cell>-<time>/ with latest.npz (every evaluation) and best.npz
(the lowest validation loss so far). Each checkpoint is one engine/npz.py container holding

    param/<name>         the weights sampling and evaluation use (with --ema, the average)
    raw/<name>           with --ema only: the trained weights, which a resumed run continues from
    opt/<slot>/<name>    the optimizer's state
    state/hidden         every stream's carried state, (layers, k, streams, hidden)
    state/order          with more streams than the batch: this epoch's stream order, (rounds, streams)
    meta                 kind "lm", which ("latest" or "best"), run_id, model, vocab, config, corpus
                         (absolute paths), corpus_chars, batch_size, seq_len, progress,
                         optimizer_steps, rng, saved_at

run_id names the run: a fresh run draws one, a resumed run keeps its checkpoint's, and a run
replaces a checkpoint file only when that file carries its own run_id (claim_run_files), so a
checkpoint copied into another run's folder cannot overwrite that run's files.

so a resumed run takes exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field, replace

import numpy as np

from rnncli.config import (
    ModelConfig,
    OptimConfig,
    TrainConfig,
    from_json,
    model_config_from_dict,
)
from rnncli.data.chars import Vocab
from rnncli.engine import model as M
from rnncli.engine import npz
from rnncli.engine.optim import SLOTS, Optimizer
from rnncli.errors import CheckpointError, ConfigError, RnnError, TargetError

LATEST, BEST = "latest.npz", "best.npz"


@dataclass
class Progress:
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


@dataclass
class LanguageModel:
    cfg: ModelConfig
    vocab: Vocab
    params: dict
    meta: dict
    path: str = ""


# ---------------------------------------------------------------- run folders

def new_run_dir(out_dir: str, corpus_paths: list[str], cell: str) -> str:
    """A fresh run folder under out_dir, named after the one corpus file (or "corpus") and the cell."""
    name = os.path.splitext(os.path.basename(corpus_paths[0]))[0] if len(corpus_paths) == 1 else "corpus"
    return npz.new_run_dir(out_dir, f"{name}-{cell}")


def run_files(run_dir: str) -> tuple[str, str]:
    """(latest, best) checkpoint paths of a run folder."""
    return os.path.join(run_dir, LATEST), os.path.join(run_dir, BEST)


def latest_best_checkpoint(out_dir: str) -> str:
    """best.npz of the most recently written run under out_dir."""
    found = glob.glob(os.path.join(out_dir, "*", BEST))
    if not found:
        raise CheckpointError(f"no checkpoint found under {out_dir}/; run `rnn train` first or give a checkpoint path")
    return max(found, key=os.path.getmtime)


def new_run_id() -> str:
    return uuid.uuid4().hex


def run_identity(meta: dict) -> str:
    """The run a checkpoint belongs to: its run_id, or for checkpoints written before runs were
    named, a digest of what every checkpoint of one run shares (its configuration, corpus record
    and first evaluation)."""
    run_id = meta.get("run_id")
    if isinstance(run_id, str) and run_id:
        return run_id
    progress = meta.get("progress")
    history = progress.get("history") if isinstance(progress, dict) else None
    first = history.get("train", [])[:1] if isinstance(history, dict) and isinstance(history.get("train"), list) else []
    shared = json.dumps([meta.get("config"), meta.get("corpus"), first], sort_keys=True, default=str)
    return "legacy-" + hashlib.sha256(shared.encode()).hexdigest()[:32]


def claim_run_files(run_dir: str, run_id: str, files: tuple[str, ...] = (LATEST, BEST)) -> None:
    """Refuse (TargetError, before anything is written) when a checkpoint file of run_dir that
    this run would replace belongs to another run, or is not a language-model checkpoint at all:
    a run overwrites only its own files."""
    for name in files:
        path = os.path.join(run_dir, name)
        if not os.path.lexists(path):
            continue
        try:
            owner = run_identity(npz.read_meta(path, kind="lm"))
        except CheckpointError as e:
            raise TargetError(f"{path}: is not this run's checkpoint ({e}); move it away or resume from a "
                              f"copy of the checkpoint in a folder of its own") from None
        if owner != run_id:
            raise TargetError(f"{path}: belongs to another run; a run replaces only its own checkpoints "
                              f"(move the file, or resume from a copy of the checkpoint in a folder of its own)")


# ---------------------------------------------------------------- writing

def config_dict(cfg: TrainConfig) -> dict:
    return {"model": vars(cfg.model).copy(), "optim": vars(cfg.optim).copy(),
            **{k: v for k, v in vars(cfg).items() if k not in ("model", "optim")}}


def save_lm_checkpoint(path: str, which: str, *, run_id: str, cfg: TrainConfig, corpus, batch_size: int,
                       seq_len: int, weights: dict, raw: dict | None, opt: Optimizer, hidden: np.ndarray,
                       order: np.ndarray | None, progress: Progress, rng: np.random.Generator,
                       origin: dict | None = None) -> str:
    """Write one checkpoint of the run run_id (atomically, through engine/npz.py), replacing only
    a file of the same run; which is "latest" or "best". weights: what sampling uses (the average
    under --ema); raw: the trained weights when they differ from weights, else None. hidden:
    every stream's carried state; order: the stream plan's order, None when not shuffled;
    origin: for a run started with --init-from, the checkpoint it started from (meta init_from)."""
    claim_run_files(os.path.dirname(os.path.abspath(path)), run_id, (os.path.basename(path),))
    arrays = {f"param/{k}": v for k, v in weights.items()}
    if raw is not None:
        arrays.update({f"raw/{k}": v for k, v in raw.items()})
    arrays.update({f"opt/{k}": v for k, v in opt.state.items()})
    arrays["state/hidden"] = hidden
    if order is not None:
        arrays["state/order"] = order.astype(np.float64)  # checkpoints hold floats only
    meta = {
        "kind": "lm", "which": which, "run_id": run_id, "model": vars(cfg.model).copy(), "vocab": corpus.vocab.chars,
        "config": config_dict(cfg), "corpus": [os.path.abspath(p) for p in corpus.paths],
        "corpus_chars": len(corpus), "batch_size": batch_size, "seq_len": seq_len,
        "progress": vars(progress).copy(), "optimizer_steps": opt.steps,
        "rng": rng.bit_generator.state, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if origin is not None:
        meta["init_from"] = origin
    return npz.save(path, arrays, meta)


# ---------------------------------------------------------------- reading

def load_lm(path: str) -> LanguageModel:
    """A language-model checkpoint, checked against its own metadata."""
    return read_lm_checkpoint(path).model()


def read_lm_checkpoint(path: str) -> LMCheckpoint:
    """Every array and the metadata of a language-model checkpoint, read once; what they mean is
    checked when asked for (model, train_config, resume_point)."""
    arrays, meta = npz.load(path, kind="lm")
    return LMCheckpoint(path, arrays, meta)


def recorded_corpus(meta: dict) -> list[str]:
    """The training text files a checkpoint records ([] when it records none usable)."""
    paths = meta.get("corpus")
    if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
        return paths
    return []


@dataclass
class ResumePoint:
    """What a checkpoint holds of a run in progress, checked: the loop goes on from here."""

    params: dict  # the trained weights
    averaged: dict | None  # with --ema: the average so far (None: a checkpoint written without one)
    opt: Optimizer
    progress: Progress
    rng: np.random.Generator
    hidden: np.ndarray | None
    order: np.ndarray | None

    def hidden_for(self, shape: tuple) -> np.ndarray | None:
        """The carried state when it fits the run's streams (shape), else None (start from zeros)."""
        if self.hidden is not None and self.hidden.shape == shape:
            return np.ascontiguousarray(self.hidden, M.DTYPE)
        return None

    def order_for(self, rounds: int, streams: int) -> np.ndarray | None:
        """The saved stream order when it is one permutation of the streams per round, else None
        (the run shuffles anew)."""
        order = self.order
        if (order is not None and order.shape == (rounds, streams)
                and np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(streams), order.shape))):
            return np.ascontiguousarray(order, np.int64)
        return None


@dataclass
class LMCheckpoint:
    """A language-model checkpoint as read from disk (read_lm_checkpoint)."""

    path: str
    arrays: dict
    meta: dict

    @property
    def run_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def corpus_chars(self):
        """The length of the text it was trained on, as recorded (not checked)."""
        return self.meta.get("corpus_chars")

    @property
    def corpus_paths(self) -> list[str]:
        return recorded_corpus(self.meta)

    def model(self) -> LanguageModel:
        """The model its param/ arrays hold, checked against the metadata."""
        arrays, meta, name = self.arrays, self.meta, self.path
        try:
            if not isinstance(meta.get("model"), dict):
                raise ConfigError("no model settings")
            cfg = model_config_from_dict(meta["model"]).validate()
            vocab = Vocab(meta["vocab"])
        except (KeyError, TypeError, RnnError) as e:
            raise CheckpointError(f"{name}: metadata is incomplete or invalid ({e})") from None
        try:
            params = M.check_params(npz.group(arrays, "param"), M.lm_shapes(cfg, vocab.size), np.float32)
        except ConfigError as e:
            raise CheckpointError(f"{name}: {e} (vocabulary of {vocab.size} characters)") from None
        if not all(np.isfinite(p).all() for p in params.values()):
            raise CheckpointError(f"{name}: parameters contain NaN or infinity")
        return LanguageModel(cfg, vocab, params, meta, self.path)

    def train_config(self, overrides: dict) -> TrainConfig:
        """The saved configuration with the stopping limits (and output options) given now.
        The model settings are meta["model"], the ones model() checks against the arrays."""
        meta, name = self.meta, os.path.basename(self.path)
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

    def resume_point(self, cfg: TrainConfig, lm: LanguageModel) -> ResumePoint:
        """The run's state exactly as it was saved, every field checked first; lm is model()."""
        params, averaged = lm.params, None
        if any(k.startswith("raw/") for k in self.arrays):  # param/ holds the average, raw/ the trained weights
            averaged = params
            try:
                params = M.check_params(npz.group(self.arrays, "raw"), M.lm_shapes(lm.cfg, lm.vocab.size), M.DTYPE)
            except ConfigError as e:
                raise CheckpointError(f"{self.path}: {e} (its raw weights)") from None
            if not all(np.isfinite(p).all() for p in params.values()):
                raise CheckpointError(f"{self.path}: raw weights contain NaN or infinity")
        opt, progress, rng = self._training_state(cfg, params)
        return ResumePoint(params, averaged, opt, progress, rng, self.arrays.get("state/hidden"),
                           self.arrays.get("state/order"))

    def _training_state(self, cfg: TrainConfig, params: dict):
        """(optimizer, progress, rng) as they were saved."""
        meta, name = self.meta, os.path.basename(self.path)

        def whole(v) -> bool:
            return type(v) is int and 0 <= v < 2**62  # kernels take int64

        def real(v) -> bool:
            return type(v) in (int, float) and math.isfinite(v)

        try:
            progress = Progress(**meta["progress"])
            steps = meta["optimizer_steps"]
            history = progress.history
            if not (all(whole(v) for v in (progress.step, progress.epoch, progress.chunk, progress.best_step, steps))
                    and real(progress.seconds) and real(progress.step_seconds)
                    and (progress.best_val is None or real(progress.best_val))
                    and isinstance(history, dict) and set(history) in ({"train", "val"}, {"train", "val", "time"})
                    and all(isinstance(h, list) for h in history.values())):
                raise ConfigError("progress counters are missing, negative or not numbers")
            state = npz.group(self.arrays, "opt")
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
