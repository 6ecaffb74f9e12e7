"""The language model's run folder and checkpoint layout: what a checkpoint holds, written and
read in this one module.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np

from rnncli.config import OptimConfig, TrainConfig, from_json, model_config_from_dict
from rnncli.engine import npz as checkpoint
from rnncli.engine.optim import SLOTS, Optimizer
from rnncli.errors import CheckpointError, ConfigError, RnnError


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


def config_dict(cfg: TrainConfig) -> dict:
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


def resume_state(cfg: TrainConfig, params: dict, arrays: dict, meta: dict, path: str):
    """(optimizer, progress, rng) exactly as they were saved, every field checked first."""
    name = os.path.basename(path)

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
