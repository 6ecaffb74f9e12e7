"""Frozen settings: the only home of defaults. No numpy here, so the CLI can import it for --help."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields

from rnncli.errors import ConfigError

CELLS = ("rnn", "lstm", "gru")
ACTIVATIONS = ("tanh", "relu", "sigmoid")
OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")
SCHEDULES = ("cosine", "step", "constant")
# Settings `rnn train` may choose from the corpus size and the measured speed when the user
# leaves them at their defaults (TrainConfig.auto); eval_every: evaluations spaced out when
# they would take over EVAL_SHARE of the training time.
AUTO_SETTINGS = ("cell", "hidden_size", "num_layers", "dropout", "lr", "weight_decay", "eval_every")
# The cell the recipe chooses: gru for training texts of at least this many characters, the
# default cell (lstm) below. Measured with the default recipe (README, "Choosing the cell"): GRU
# learned more in the budget on texts of 100 KB and more; on texts of about 30 KB the two tied.
GRU_FROM_CHARS = 50_000
# Adam's learning rate for a GRU when --lr is left to the recipe (other cells keep OptimConfig.lr):
# paired runs (same seed, 1,600 steps) of the GRU 2×256 ended at 1.536, 1.504, 1.498, 1.493 with
# 0.002, 0.003, 0.004, 0.005: 0.004, on the flat part, as longer runs want a lower rate (README).
GRU_LR = 0.004
# Adam's decoupled weight decay for a language model when --weight-decay is left to the recipe
# (the other optimizers add it to the gradient, where it would mean something else: 0 for them).
# Ten-minute runs on tiny Shakespeare, paired (same seed and dropout), ended 0.009 and 0.007
# lower with it (README, "Weight decay").
LM_WEIGHT_DECAY = 0.05
# With --eval-every left to the run, evaluations and checkpoints take at most this share of the
# training time (whole-text scoring of a 10% split took 9% of a ten-minute run at 200 steps).
EVAL_SHARE = 0.04
# Gate blocks per cell, in the order their rows are stacked in W_xh / W_hh / b.
GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
# Upper bounds on model sizes: beyond them a value is a typo or a hostile checkpoint, and would
# make the loader loop over layers or numpy allocate terabytes.
MAX_LAYERS = 64
MAX_SIZE = 1 << 16
MAX_TRIALS = 10_000  # a sweep's trials: each is a training run with its own folder


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _whole(x, low: int, high: float = math.inf) -> bool:
    """An integer (not a bool) in [low, high]. Checkpoint metadata is JSON, so types are not given."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and low <= x <= high


def _real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_types(cfg, whole: tuple = (), real: tuple = ()) -> None:
    """Type gate before the range checks (which would raise TypeError on a string)."""
    for name in whole:
        _check(_whole(getattr(cfg, name), 0), f"{name.replace('_', '-')}: must be a whole number, 0 or more")
    for name in real:
        _check(_real(getattr(cfg, name)), f"{name.replace('_', '-')}: must be a finite number")


@dataclass(frozen=True)
class ModelConfig:
    """A stack of recurrent layers between an input layer and a softmax output."""

    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 2
    # 0 means one-hot input: layer 0's W_xh columns are then the character vectors.
    embedding_size: int = 64
    activation: str = "tanh"  # vanilla rnn only
    dropout: float = 0.2  # on every layer's output, before the next layer and the softmax

    def validate(self) -> "ModelConfig":
        _check(self.cell in CELLS, f"cell: {self.cell!r} is not one of {', '.join(CELLS)}")
        _check(self.activation in ACTIVATIONS, f"activation: {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")
        _check(_whole(self.hidden_size, 1, MAX_SIZE), f"hidden-size: must be a whole number from 1 to {MAX_SIZE}")
        _check(_whole(self.num_layers, 1, MAX_LAYERS), f"layers: must be a whole number from 1 to {MAX_LAYERS}")
        _check(_whole(self.embedding_size, 0, MAX_SIZE),
               f"embedding-size: must be 0 (one-hot) or a whole number up to {MAX_SIZE}")
        _check(_real(self.dropout) and 0.0 <= self.dropout < 1.0, "dropout: must be in [0, 1)")
        return self

    @property
    def gates(self) -> int:
        return len(GATES[self.cell])


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adam"
    lr: float = 2e-3
    # "cosine": from lr down to lr·lr_final at the end of the run's nearest limit (time budget,
    # steps or epochs; constant when there is none); "step": × lr_decay once per epoch after
    # decay_after epochs (char-rnn); "constant".
    schedule: str = "cosine"
    lr_final: float = 0.05
    lr_decay: float = 0.9
    decay_after: int = 1
    clip: float = 5.0  # global gradient norm; 0 turns clipping off
    momentum: float = 0.9  # sgd momentum, and adam's beta1
    beta2: float = 0.999  # adam's second-moment decay
    rho: float = 0.95  # rmsprop's decay of the mean square (char-rnn's decay_rate)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def validate(self) -> "OptimConfig":
        _check_types(self, whole=("decay_after",),
                     real=("lr", "lr_final", "lr_decay", "clip", "momentum", "beta2", "rho", "eps", "weight_decay"))
        _check(self.optimizer in OPTIMIZERS, f"optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        _check(self.lr > 0, "lr: must be positive")
        _check(self.schedule in SCHEDULES, f"schedule: {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        _check(0 <= self.lr_final <= 1, "lr-final: must be in [0, 1] (a fraction of --lr)")
        _check(0 < self.lr_decay <= 1, "lr-decay: must be in (0, 1]")
        _check(self.decay_after >= 0, "decay-after: must be 0 or more")
        _check(self.clip >= 0, "clip: must be 0 (off) or positive")
        _check(0 <= self.momentum < 1, "momentum: must be in [0, 1)")
        _check(0 < self.beta2 < 1, "beta2: must be in (0, 1)")
        _check(0 < self.rho < 1, "rho: must be in (0, 1)")
        _check(self.eps > 0, "eps: must be positive")
        _check(self.weight_decay >= 0, "weight-decay: must be 0 or positive")
        # each step multiplies the weights by 1 - lr·weight_decay: at 1 or more they would flip sign
        _check(self.lr * self.weight_decay < 1, "weight-decay: lr × weight decay must be below 1")
        return self


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seq_len: int = 64
    batch_size: int = 32
    epochs: int = 0  # 0 = no limit: the time budget or early stopping ends the run
    max_steps: int = 0  # 0 = no limit
    # Seconds from the start of training (corpus loading, the speed probe and kernel compiling
    # included); 0 = no limit. 590 s: the run, its last evaluation and save included, ends about
    # a second later than this after the command starts (570 s, before, left 29 s of ten minutes unused).
    max_time: float = 590.0
    # Evaluations in a row without a better validation loss before stopping (0 = never).
    patience: int = 5
    # Chance per chunk that each stream's carried state is reset to zero, so the model also
    # learns to start from the empty state that sampling starts from (0 = never).
    state_reset: float = 0.02
    # Decay of the exponential moving average of the weights kept during training (bias-corrected:
    # the weights after step t count (1-ema)/(1-ema^t) into it). Evaluations, the best checkpoint,
    # samples and `rnn eval` use the average; the raw weights are kept for resuming. 0 = off.
    ema: float = 0.0
    # Streams the training text is cut into, read B at a time in random groups (train.StreamPlan);
    # 0 = batch_size: classic char-rnn, the same B streams side by side at every step.
    streams: int = 0
    # Settings (from AUTO_SETTINGS) to choose from the corpus size and measured speed; the CLI
    # names those the user left at their defaults. Empty: the configuration is taken as given.
    auto: tuple = ()
    val_fraction: float = 0.05
    eval_every: int = 200  # steps
    eval_chars: int = 100_000  # validation characters scored at each evaluation (0 = all)
    seed: int = 1234
    threads: int = 0  # 0 = all cores
    out_dir: str = "runs"
    on_decode_error: str = "strict"  # or "replace"

    def validate(self) -> "TrainConfig":
        self.model.validate()
        self.optim.validate()
        _check_types(self, whole=("seq_len", "batch_size", "epochs", "max_steps", "eval_every", "eval_chars",
                                  "seed", "threads", "patience", "streams"), real=("max_time", "val_fraction", "state_reset", "ema"))
        _check(isinstance(self.out_dir, str), "out: must be a path")
        _check(self.seq_len >= 1, "seq-len: must be at least 1")
        _check(self.batch_size >= 1, "batch-size: must be at least 1")
        _check(self.epochs >= 0, "epochs: must be 0 (no limit) or more")
        _check(0 <= self.state_reset < 1, "state-reset: must be in [0, 1)")
        _check(0 <= self.ema < 1, "ema: must be in [0, 1) (0 = off)")
        _check(isinstance(self.auto, (tuple, list)) and all(a in AUTO_SETTINGS for a in self.auto),
               f"auto: settings to choose must be among {', '.join(AUTO_SETTINGS)}")
        _check(self.max_steps >= 0, "max-steps: must be 0 (no limit) or more")
        _check(self.max_time >= 0, "max-time: must be 0 (no limit) or more")
        _check(bool(self.epochs or self.max_steps or self.max_time or (self.patience and self.val_fraction > 0)),
               "no limit would end this run: give --epochs, --max-steps, --max-time, or a validation split "
               "with --patience")
        _check(0 <= self.val_fraction < 1, "val-fraction: must be in [0, 1)")
        _check(self.eval_every >= 1, "eval-every: must be at least 1")
        _check(self.threads >= 0, "threads: must be 0 (all cores) or more")
        _check(self.on_decode_error in ("strict", "replace"), "on-decode-error: strict or replace")
        return self


@dataclass(frozen=True)
class GradcheckConfig:
    cells: tuple = CELLS
    layers: tuple = (1, 2)
    hidden_size: int = 5
    embedding_size: int = 3  # 0 checks the one-hot input path
    vocab_size: int = 7
    seq_len: int = 4
    batch_size: int = 2
    activation: str = "tanh"
    seed: int = 0
    eps: float = 1e-5
    tol: float = 1e-6
    samples: int = 30  # entries checked per tensor when it has more than this many
    classifier: bool = True  # also check the classifier head (pooling, dense layers, masking)

    def validate(self) -> "GradcheckConfig":
        for cell in self.cells:
            _check(cell in CELLS, f"cell: {cell!r} is not one of {', '.join(CELLS)}")
        _check(all(n >= 1 for n in self.layers), "layers: must be at least 1")
        _check(self.hidden_size >= 1 and self.vocab_size >= 2, "sizes: hidden >= 1, vocab >= 2")
        _check(self.embedding_size >= 0, "embedding-size: must be 0 (one-hot) or more")
        _check(self.seq_len >= 1 and self.batch_size >= 1, "seq-len and batch-size: at least 1")
        _check(self.activation in ACTIVATIONS, f"activation: {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")
        _check(self.eps > 0 and self.tol > 0 and self.samples >= 1, "eps, tol and samples: must be positive")
        return self


def to_dict(cfg) -> dict:
    return asdict(cfg)


def from_json(cls, d: dict):
    """cls(**d) for settings read back from JSON: whole numbers in float fields become floats
    (a forged 5 instead of 5.0 must not reach a kernel compiled for floats)."""
    _check(isinstance(d, dict), f"{cls.__name__}: expected a mapping of settings")
    floats = {f.name for f in fields(cls) if f.type == "float"}
    return cls(**{k: float(v) if k in floats and type(v) is int else v for k, v in d.items()})


def model_config_from_dict(d: dict) -> ModelConfig:
    names = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in d.items() if k in names})


POOLINGS = ("last", "mean", "max")
CLASS_WEIGHTS = ("auto", "none", "balanced")
TOKENIZERS = ("word", "char")
# language code -> the Snowball algorithm that stems it (data/languages.py has the rest of each
# language's rules). English keeps Porter, the stemmer GloVe-matching by stem was measured with
# (stemmed corpora such as WebKB and R8 use it).
STEMMERS = {
    "en": "porter", "fr": "french", "de": "german", "es": "spanish", "it": "italian", "pt": "portuguese",
    "nl": "dutch", "ca": "catalan", "sv": "swedish", "da": "danish", "no": "norwegian", "fi": "finnish",
    "ro": "romanian", "ru": "russian",
}
LANGUAGE_CHOICES = ("auto", *STEMMERS)
GLOVE_MATCHES = ("auto", "exact", "stem")
STEM_VECTORS = ("frequent", "weighted")


@dataclass(frozen=True)
class ClassifyConfig:
    """A many-to-one text classifier: embeddings -> recurrent stack(s) -> pooling -> dense -> softmax."""

    cell: str = "gru"
    hidden_size: int = 256
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "max"  # over the valid (unpadded) time steps; "last" = final state
    dense: tuple = (128, 64)
    dropout: float = 0.3  # on recurrent outputs and after each dense layer
    embedding_size: int = 128  # replaced by the GloVe dimension when a GloVe file is given
    glove: str = ""
    # GloVe words matched to tokens exactly, by Porter stem (a stemmed corpus), or "auto": by stem
    # when that covers at least 10 points more of the training tokens
    glove_match: str = "auto"
    glove_dim: int = 0  # which member of a glove.6B.zip to read (0: its only one); checked for a .txt
    stem_vector: str = "frequent"  # a stem's vector: its most frequent GloVe word's, or "weighted" mean
    freeze_embeddings: bool = False
    tokens: str = "word"
    # the word tokenizer's and the stemmer's language (data/languages.py); "auto" is detected
    # from the training texts and replaced by the language found
    language: str = "auto"
    min_freq: int = 2
    max_vocab: int = 50_000
    max_len: int = 400  # tokens kept from the start of each text
    batch_size: int = 32
    epochs: int = 20
    patience: int = 3  # epochs without a better validation loss before stopping
    # Seconds of recurrent training (0 = no limit): with the n-gram path and the test scoring
    # after it, a default run on a few thousand long texts ends within five minutes on two cores.
    max_time: float = 240.0
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clip: float = 5.0
    # "auto": "balanced" when the rarest class has under a quarter of the largest one's texts
    class_weights: str = "auto"  # or "none", or "balanced": inverse class frequency
    # Word n-grams (1..ngram) of a linear model mixed with the recurrent one; 0 = recurrent only
    ngram: int = 2
    val_fraction: float = 0.1
    seed: int = 1234
    threads: int = 0
    on_decode_error: str = "strict"

    def model(self) -> ModelConfig:
        return ModelConfig(cell=self.cell, hidden_size=self.hidden_size, num_layers=self.num_layers,
                           embedding_size=self.embedding_size, dropout=self.dropout)

    def validate(self) -> "ClassifyConfig":
        self.model().validate()
        _check(self.pooling in POOLINGS, f"pooling: {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        _check(self.tokens in TOKENIZERS, f"tokens: {self.tokens!r} is not one of {', '.join(TOKENIZERS)}")
        _check(self.language in LANGUAGE_CHOICES,
               f"language: {self.language!r} is not one of {', '.join(LANGUAGE_CHOICES)}")
        _check(isinstance(self.bidirectional, bool), "bidirectional: must be true or false")
        _check(isinstance(self.dense, tuple) and len(self.dense) <= MAX_LAYERS
               and all(_whole(d, 1, MAX_SIZE) for d in self.dense),
               f"dense: layer sizes must be whole numbers from 1 to {MAX_SIZE}")
        _check(_whole(self.embedding_size, 1, MAX_SIZE), f"embedding-size: must be a whole number from 1 to {MAX_SIZE}")
        _check(_whole(self.min_freq, 1) and _whole(self.max_vocab, 1), "min-freq and max-vocab: at least 1")
        _check(_whole(self.max_len, 1), "max-len: must be at least 1")
        _check(_whole(self.batch_size, 1) and _whole(self.epochs, 1), "batch-size and epochs: at least 1")
        _check(_whole(self.patience, 1), "patience: must be at least 1")
        _check(_real(self.max_time) and self.max_time >= 0, "max-time: must be 0 (no limit) or more")
        _check(self.optimizer in OPTIMIZERS, f"optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        _check(all(_real(v) for v in (self.lr, self.weight_decay, self.clip))
               and self.lr > 0 and self.weight_decay >= 0 and self.clip >= 0, "lr > 0, weight-decay >= 0, clip >= 0")
        _check(self.glove_match in GLOVE_MATCHES, f"glove-match: one of {', '.join(GLOVE_MATCHES)}")
        _check(self.stem_vector in STEM_VECTORS, f"stem-vector: one of {', '.join(STEM_VECTORS)}")
        _check(_whole(self.glove_dim, 0, MAX_SIZE), f"glove-dim: 0 (the archive's only one) to {MAX_SIZE}")
        _check(self.class_weights in CLASS_WEIGHTS, f"class-weights: one of {', '.join(CLASS_WEIGHTS)}")
        _check(_whole(self.ngram, 0, 5), "ngram: must be a whole number from 0 (off) to 5")
        _check(_real(self.val_fraction) and 0 < self.val_fraction < 1,
               "val-fraction: must be in (0, 1) (validation drives early stopping)")
        _check(_whole(self.threads, 0), "threads: must be 0 (all cores) or more")
        return self

    def optim(self) -> OptimConfig:
        return OptimConfig(optimizer=self.optimizer, lr=self.lr, lr_decay=1.0, clip=self.clip,
                           weight_decay=self.weight_decay).validate()
