"""The settings of a language-model run by option name: where each lives in TrainConfig, which the
recipe chooses, which a resumed run keeps. The CLI's `rnn train` and the Python API build their
configuration here, so the same options mean the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rnncli.config import ModelConfig, OptimConfig, TrainConfig
from rnncli.errors import UsageError


@dataclass(frozen=True)
class Setting:
    """Where a `rnn train` option lives in TrainConfig, and how a run treats it."""

    part: str  # "model" (ModelConfig), "optim" (OptimConfig) or "" (TrainConfig itself)
    field: str
    chosen: bool = False  # the recipe chooses it (from the corpus and a measured speed) unless given
    kept: bool = True  # a resumed run keeps the checkpoint's; False: a limit the command may change


# Every setting of `rnn train`, by option name; adding one here makes it reach the run, the recipe
# and the resume checks. On --resume the first kept option that differs, in this order, is reported.
TRAIN_SETTINGS = {
    "cell": Setting("model", "cell", chosen=True),
    "hidden_size": Setting("model", "hidden_size", chosen=True),
    "layers": Setting("model", "num_layers", chosen=True),
    "embedding_size": Setting("model", "embedding_size"),
    "activation": Setting("model", "activation"),
    "dropout": Setting("model", "dropout", chosen=True),
    "seq_len": Setting("", "seq_len"),
    "batch_size": Setting("", "batch_size"),
    "optimizer": Setting("optim", "optimizer"),
    "lr": Setting("optim", "lr", chosen=True),
    "schedule": Setting("optim", "schedule"),
    "lr_final": Setting("optim", "lr_final"),
    "lr_decay": Setting("optim", "lr_decay"),
    "decay_after": Setting("optim", "decay_after"),
    "weight_decay": Setting("optim", "weight_decay", chosen=True),
    "clip": Setting("optim", "clip"),
    "state_reset": Setting("", "state_reset"),
    "streams": Setting("", "streams"),
    "ema": Setting("", "ema"),
    "val_fraction": Setting("", "val_fraction"),
    "seed": Setting("", "seed"),
    "on_decode_error": Setting("", "on_decode_error"),
    "epochs": Setting("", "epochs", kept=False),
    "patience": Setting("", "patience", kept=False),
    "max_steps": Setting("", "max_steps", kept=False),
    "max_time": Setting("", "max_time", kept=False),
    "eval_every": Setting("", "eval_every", chosen=True, kept=False),
    "eval_chars": Setting("", "eval_chars", kept=False),
    "threads": Setting("", "threads", kept=False),
    "out_dir": Setting("", "out_dir", kept=False),
}
# Options that define the model and schedule: fixed by a checkpoint when resuming.
MODEL_OPTIONS = tuple(name for name, s in TRAIN_SETTINGS.items() if s.kept)
# train options the recipe chooses unless given: option name -> TrainConfig.auto's name
AUTO_OPTIONS = {name: s.field for name, s in TRAIN_SETTINGS.items() if s.chosen}

# The settings that make a model's shape (what --init-from takes from its checkpoint): the
# ModelConfig field -> its option.
SHAPE_OPTIONS = {"cell": "cell", "hidden_size": "hidden-size", "num_layers": "layers",
                 "embedding_size": "embedding-size", "activation": "activation"}


def setting_value(cfg: TrainConfig, setting: Setting):
    return getattr(getattr(cfg, setting.part) if setting.part else cfg, setting.field)


def default_values() -> dict:
    """Every setting's value when no option is given (the configuration dataclasses' defaults)."""
    cfg = TrainConfig()
    return {name: setting_value(cfg, s) for name, s in TRAIN_SETTINGS.items()}


def fresh_config(values: dict, left_default: set) -> TrainConfig:
    """values (option name -> value, every setting) as a TrainConfig; the settings the recipe
    chooses that are in left_default (not given) are named in auto, for the recipe to choose."""
    parts = {"model": {}, "optim": {}, "": {}}
    for name, setting in TRAIN_SETTINGS.items():
        parts[setting.part][setting.field] = values[name]
    auto = tuple(field for name, field in AUTO_OPTIONS.items() if name in left_default)
    return TrainConfig(model=ModelConfig(**parts["model"]), optim=OptimConfig(**parts["optim"]), auto=auto,
                       **parts[""])


def resumed_config(ckpt, values: dict, given: set) -> TrainConfig:
    """The checkpoint's configuration with the limits given now; a model or schedule option given
    with another value than the checkpoint's is a UsageError."""
    cfg = ckpt.train_config({s.field: values[name] for name, s in TRAIN_SETTINGS.items()
                             if not s.kept and name in given})
    for name in MODEL_OPTIONS:
        saved = setting_value(cfg, TRAIN_SETTINGS[name])
        if name in given and values[name] != saved:
            raise UsageError(f"--{name.replace('_', '-')} {values[name]} differs from the checkpoint's "
                             f"{saved}; a resumed run keeps its model and schedule")
    return cfg


def init_from_config(cfg: TrainConfig, shape: ModelConfig, values: dict, given: set) -> TrainConfig:
    """cfg with the model shape of an --init-from checkpoint (shape); a shape option given with
    another value than the checkpoint's is a UsageError naming it."""
    for field, option in SHAPE_OPTIONS.items():
        name = option.replace("-", "_")
        if name in given and values[name] != getattr(shape, field):
            raise shape_differs(option, values[name], getattr(shape, field))
    return replace(cfg, model=replace(cfg.model, **{f: getattr(shape, f) for f in SHAPE_OPTIONS}))


def shape_differs(option: str, value, saved) -> UsageError:
    """The error for a shape option an --init-from run gives with another value than its checkpoint's."""
    return UsageError(f"--{option} {value} differs from the --init-from checkpoint's {saved}; a run started "
                      f"from a checkpoint keeps its model's shape")


def check_start(resume: bool, init_from: bool, map_unknown: bool, tensorboard: bool) -> None:
    """How a run may start: a UsageError for options that do not go together, or for
    --tensorboard without tensorboardX, before any work is done."""
    if init_from and resume:
        raise UsageError("--init-from cannot be given with --resume: a resumed run continues its own weights; "
                         "--init-from starts a new run from a checkpoint's")
    if map_unknown and not init_from:
        raise UsageError("--map-unknown applies to --init-from only (the vocabulary a checkpoint fixes)")
    if tensorboard:
        from rnncli.lm.runlog import require_tensorboard

        require_tensorboard()
