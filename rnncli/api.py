"""rnncli from Python: train and load character language models, and a text classifier that
follows scikit-learn's estimator conventions. The same core the `rnn` commands call, with the
same options by the same names (`hidden_size` for `--hidden-size`), so the same seed and options
give the same run. Nothing here prints tables; progress is a tqdm bar that draws itself in a
notebook. Errors are the project's exceptions (rnncli.RnnError and its subclasses).

    >>> import rnncli
    >>> run = rnncli.train("input.txt", max_time=60)
    >>> lm = run.model
    >>> lm.sample(200, prime="ROMEO:", temperature=0.8, seed=1)
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from rnncli.config import ClassifyConfig, ModelConfig
from rnncli.data.corpus import corpus_files
from rnncli.data.files import replace_file, unusable_input
from rnncli.errors import CheckpointError, ConfigError, CorpusError, UsageError
from rnncli.lm import settings

PathLike = str | os.PathLike


# ---------------------------------------------------------------- language models

@dataclass(frozen=True)
class Score:
    """A language model's cross-entropy on a text."""

    nats_per_char: float
    bits_per_char: float
    perplexity: float
    chars: int  # characters the model read (characters it has never seen are left out)
    predicted: int  # characters scored: all of them but the first
    unseen: dict  # character -> count, left out of the text and so of the loss


class LanguageModel:
    """A trained character language model (a checkpoint loaded by rnncli.load)."""

    def __init__(self, lm):
        self._lm = lm  # rnncli.lm.checkpoint.LanguageModel: config, vocabulary, weights, metadata

    @property
    def path(self) -> str:
        return self._lm.path

    @property
    def config(self) -> ModelConfig:
        """The cell and its sizes."""
        return self._lm.cfg

    @property
    def vocab(self) -> str:
        """The characters the model knows, in id order."""
        return self._lm.vocab.chars

    @property
    def meta(self) -> dict:
        """The checkpoint's metadata (docs/checkpoint-format.md)."""
        return self._lm.meta

    @property
    def history(self) -> dict:
        """The run's losses: {"train": [[step, nats/char], ...], "val": [...], "time": [[step, s], ...]}."""
        progress = self._lm.meta.get("progress")
        history = progress.get("history") if isinstance(progress, dict) else None
        return history if isinstance(history, dict) else {"train": [], "val": [], "time": []}

    def __repr__(self) -> str:
        c = self.config
        return (f"LanguageModel({c.cell} {c.num_layers}x{c.hidden_size}, embedding {c.embedding_size}, "
                f"{len(self.vocab)} characters, {self.parameter_count:,} parameters, {self.path or 'in memory'})")

    @property
    def parameter_count(self) -> int:
        return int(sum(p.size for p in self._lm.params.values()))

    def _drawing(self, length, prime, temperature, top_k, top_p, seed, num_samples, stop, drop_unknown, threads):
        from rnncli.lm.sample import draw_samples

        return draw_samples(self._lm, prime=prime, length=length, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed, num_samples=num_samples, stop=stop,
                            drop_unknown=drop_unknown, threads=threads)

    def sample(self, length: int = 500, prime: str = "", temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int | None = None, num_samples: int = 1, stop: str = "",
               drop_unknown: bool = False, threads: int | None = None) -> str | list[str]:
        """Generate `length` characters after `prime` (the prime included in what is returned,
        as `rnn sample` prints it): one string, or a list of `num_samples` strings drawn as one
        batch (each is the text it would be alone). temperature 0 is greedy; top_k keeps the k
        likeliest characters (0 = all); top_p the smallest set of likeliest characters whose
        probability reaches p (1 = all). seed None draws one. A sample ends just after `stop`
        appears. Unknown prime characters raise ConfigError unless drop_unknown."""
        drawing = self._drawing(length, prime, temperature, top_k, top_p, seed, num_samples, stop,
                                drop_unknown, threads)
        texts = [drawing.prefix + text for text in drawing.texts()]
        return texts[0] if num_samples == 1 else texts

    def stream(self, length: int = 500, prime: str = "", temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int | None = None, stop: str = "", drop_unknown: bool = False,
               threads: int | None = None) -> Iterator[str]:
        """The characters of one sample as they are generated (the prime not repeated)."""
        drawing = self._drawing(length, prime, temperature, top_k, top_p, seed, 1, stop, drop_unknown, threads)
        for (piece,) in drawing.pieces():
            yield from piece

    def score(self, text: str) -> Score:
        """Cross-entropy on `text`, read as `rnn eval` reads a file (the run's streams and
        chunks); characters the model has never seen are left out and counted."""
        from rnncli.lm.score import score_text

        s = score_text(self._lm, text)
        return Score(s.nats_per_char, s.bits_per_char, s.perplexity, s.chars, s.predicted, dict(s.unseen))

    def next_char_probs(self, prefix: str = "") -> dict[str, float]:
        """{character: probability} of the character after `prefix`, read from the empty state
        (as sampling reads its prime; an empty prefix reads the start character, a newline when
        the model knows one). Unknown characters in prefix raise ConfigError."""
        from rnncli.engine import model as M
        from rnncli.lm.sample import prime_ids, start_token

        ids = prime_ids(self._lm, prefix, drop_unknown=False)
        if not len(ids):
            ids = np.array([start_token(self._lm.vocab)], np.int32)
        cfg = self._lm.cfg
        work = M.Workspace(M.DTYPE)
        logits, _, _, _ = M.lm_forward(cfg, self._lm.params, np.ascontiguousarray(ids.reshape(-1, 1), np.int32),
                                       M.zero_state(cfg, 1, M.DTYPE), work)
        z = logits[-1].astype(np.float64)
        if not np.isfinite(z).all():
            raise CheckpointError(f"{self.path or 'the model'}: its output is not a finite number; "
                                  f"the weights are damaged or not a trained model's")
        p = np.exp(z - z.max())
        p /= p.sum()
        return dict(zip(self.vocab, p.tolist()))


@dataclass
class Run:
    """A finished (or interrupted) training run: its folder, checkpoints and history."""

    run_dir: str
    best: str  # best.npz: the lowest validation loss
    latest: str  # latest.npz: where --resume continues
    stop_reason: str  # "epochs", "max-steps", "max-time", "early-stop" or "interrupted"
    steps: int
    seconds: float
    best_val: float | None  # nats/char
    chars_per_sec: float
    history: dict = field(default_factory=dict)
    _model: LanguageModel | None = field(default=None, repr=False)

    @property
    def model(self) -> LanguageModel:
        """The best model, loaded on first use."""
        if self._model is None:
            self._model = load(self.best)
        return self._model


class _Progress:
    """The training loop's reporter for Python callers: a tqdm bar (tqdm.auto: a widget in a
    notebook, text in a terminal), warnings on stderr, and callback(evaluation) after each
    evaluation (an rnncli.lm.train.Evaluation: step, epoch, train_loss, val_loss, chars_per_sec,
    preview, is_best)."""

    def __init__(self, show: bool, callback: Callable | None):
        self.show, self.callback, self.bar = show, callback, None

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    def start(self, info: dict) -> None:
        if self.show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=info["total_steps"], desc="train", unit="step", initial=info["resumed_at"],
                            dynamic_ncols=True)

    def step(self, step: int, loss: float, chars_per_sec: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def evaluate(self, ev) -> None:
        if self.callback is not None:
            self.callback(ev)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(corpus: PathLike | Sequence[PathLike] | None = None, *, text: str | None = None,
          resume: PathLike | None = None, init_from: PathLike | None = None, map_unknown: bool = False,
          tensorboard: bool = False, progress: bool = True, callback: Callable | None = None,
          **options) -> Run:
    """Train a character language model, as `rnn train` does, and return the Run.

    corpus: a text file, a folder (its *.txt files), several of them (each file's end kept as a
    boundary), or None for the texts bundled with rnncli; or give `text=` a string to train on
    (it is kept in OUT/texts/, so the run can be resumed). options: those of `rnn train` by
    their Python names (`hidden_size=256`, `layers=2`, `cell="lstm"`, `max_time=60` (seconds),
    `max_steps`, `out_dir`, `seed`, ...); the recipe chooses the settings it chooses on the
    command line unless they are given. resume: a checkpoint to continue (limits such as
    max_steps may change, the model may not). init_from: a checkpoint whose weights and
    vocabulary a new run starts from (fine-tuning; map_unknown drops characters outside its
    vocabulary). tensorboard: also write TensorBoard events (needs tensorboardX). Every run
    writes RUN/metrics.jsonl and RUN/metrics.csv. callback(evaluation) is called after every
    evaluation. Raises RnnError subclasses.
    """
    from rnncli.lm.checkpoint import read_lm_checkpoint, recorded_corpus
    from rnncli.lm.train import train as run_training

    unknown = sorted(set(options) - set(settings.TRAIN_SETTINGS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], settings.TRAIN_SETTINGS, n=1)
        raise UsageError(f"{unknown[0]}: not an option of rnncli.train"
                         + (f"; did you mean {close[0]}?" if close else ""))
    values = {**settings.default_values(), **options}
    if resume is not None:
        if "out_dir" in options:
            raise UsageError("out_dir cannot be given with resume: a resumed run writes on in its own folder")
        checkpoint = read_lm_checkpoint(os.fspath(resume))
        cfg = settings.resumed_config(checkpoint, values, set(options))
        paths = _corpus_paths(corpus, text, cfg.out_dir) if corpus is not None or text is not None \
            else recorded_corpus(checkpoint.meta)
    else:
        checkpoint = None
        cfg = settings.fresh_config(values, set(settings.AUTO_OPTIONS) - set(options))
        if init_from is not None:
            init_from = read_lm_checkpoint(os.fspath(init_from))
            cfg = settings.init_from_config(cfg, init_from.model().cfg, values, set(options))
        paths = _corpus_paths(corpus, text, cfg.out_dir)
    cfg.validate()
    result = run_training(cfg, paths, resume=checkpoint, reporter=_Progress(progress, callback),
                          init_from=init_from, map_unknown=map_unknown, tensorboard=tensorboard)
    return Run(result.run_dir, result.best, result.latest, result.stop_reason, result.steps, result.seconds,
               result.best_val, result.chars_per_sec, result.history)


def _corpus_paths(corpus, text: str | None, out_dir: str) -> list[str]:
    """The training files: those given (each checked as `rnn train` checks its CORPUS), the
    bundled texts, or `text` kept in a file of its own under out_dir."""
    if text is not None:
        if corpus is not None:
            raise UsageError("give corpus or text=, not both")
        if not isinstance(text, str) or not text:
            raise CorpusError("text: give a non-empty string to train on")
        data = text.encode("utf-8")
        folder = os.path.join(out_dir, "texts")
        os.makedirs(folder, exist_ok=True)
        path = os.path.abspath(os.path.join(folder, f"text-{hashlib.sha256(data).hexdigest()[:16]}.txt"))
        if not (os.path.isfile(path) and os.path.getsize(path) == len(data)):
            replace_file(path, data, "the training text", CorpusError)
        return [path]
    if corpus is None:
        from rnncli.data.chars import default_corpus_files

        return default_corpus_files()
    paths = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    if not paths:
        raise CorpusError("corpus: no files given")
    out = []
    for p in paths:
        p = os.fspath(p)
        why = "" if os.path.isdir(p) else unusable_input(p)
        if why:
            hint = "; to train on a string, pass text=" if why == "is not there" and not p.endswith(".txt") else ""
            raise CorpusError(f"{p}: {why}{hint}")
        out.append(p)
    return corpus_files(out)


def bundled_texts() -> list[str]:
    """The English and French texts bundled with rnncli (what train() reads when given no
    corpus), as paths."""
    from rnncli.data.chars import default_corpus_files

    return default_corpus_files()


def load(path: PathLike) -> "LanguageModel | TextClassifier":
    """A checkpoint: a LanguageModel for a language model, a fitted TextClassifier for a
    classifier. Checked as every rnncli command checks a checkpoint (never unpickled)."""
    from rnncli.engine import npz

    path = os.fspath(path)
    kind = npz.read_meta(path).get("kind")
    if kind == "classifier":
        return TextClassifier.load(path)
    from rnncli.lm.checkpoint import load_lm

    return LanguageModel(load_lm(path))


# ---------------------------------------------------------------- text classifier

_C = ClassifyConfig()


class TextClassifier:
    """A text classifier (recurrent network mixed with an n-gram model, as `rnn classify train`
    builds it) with scikit-learn's estimator interface: fit, predict, predict_proba, score,
    classes_, get_params, set_params; save and load. It drops into
    sklearn.model_selection.cross_val_score and GridSearchCV.

    Parameters are those of `rnn classify train` by their Python names. fit holds out
    val_fraction of the texts (stratified) for early stopping and for weighing the two parts;
    texts are single lines (TABs and line breaks are read as spaces).
    """

    def __init__(self, cell: str = _C.cell, hidden_size: int = _C.hidden_size, layers: int = _C.num_layers,
                 bidirectional: bool = _C.bidirectional, pooling: str = _C.pooling, dense: tuple = _C.dense,
                 dropout: float = _C.dropout, embedding_size: int = _C.embedding_size, glove: str = _C.glove,
                 glove_dim: int = _C.glove_dim, glove_match: str = _C.glove_match,
                 stem_vector: str = _C.stem_vector, freeze_embeddings: bool = _C.freeze_embeddings,
                 tokens: str = _C.tokens, language: str = _C.language, min_freq: int = _C.min_freq,
                 max_vocab: int = _C.max_vocab,
                 max_len: int = _C.max_len, batch_size: int = _C.batch_size, epochs: int = _C.epochs,
                 patience: int = _C.patience, optimizer: str = _C.optimizer, lr: float = _C.lr,
                 weight_decay: float = _C.weight_decay, clip: float = _C.clip,
                 class_weights: str = _C.class_weights, ngram: int = _C.ngram, max_time: float = _C.max_time,
                 val_fraction: float = _C.val_fraction, seed: int = _C.seed, threads: int = _C.threads,
                 progress: bool = False):
        for name, value in locals().items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # scikit-learn's conventions: parameters are the constructor's arguments, stored as given
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    _estimator_type = "classifier"  # what scikit-learn before 1.6 reads

    def __sklearn_tags__(self):
        """What scikit-learn 1.6 and later read: a classifier of raw strings (only called by
        scikit-learn, so it is imported here)."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags(one_d_array=True, two_d_array=False,
                                                                           string=True))

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "TextClassifier":
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise UsageError(f"{name}: not a parameter of TextClassifier")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != inspect.signature(self.__init__).parameters[k].default}
        return f"TextClassifier({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def _config(self) -> ClassifyConfig:
        p = self.get_params()
        p.pop("progress")
        p["num_layers"] = p.pop("layers")
        p["dense"] = tuple(p["dense"])
        p["glove"] = os.fspath(p["glove"]) if p["glove"] else ""
        return ClassifyConfig(**p).validate()

    def fit(self, X: Sequence[str], y: Sequence) -> "TextClassifier":
        """Train on texts X with labels y (any hashable values, each with a distinct str())."""
        from rnncli.classify.train import Reporter, load_classifier, train_classifier

        texts, labels = self._check_texts(X), list(y)
        if len(texts) != len(labels):
            raise ConfigError(f"fit: {len(texts)} texts but {len(labels)} labels")
        names = {}
        for label in labels:
            name = str(label)
            if name != name.strip() or not name or any(c in name for c in "\t\r\n"):
                raise ConfigError(f"fit: label {name!r} is empty, has surrounding spaces, a TAB or a line break")
            if names.setdefault(name, label) != label:
                raise ConfigError(f"fit: labels {names[name]!r} and {label!r} read the same ({name!r})")
        cfg = self._config()
        with tempfile.TemporaryDirectory(prefix="rnncli-fit-") as folder:
            data = os.path.join(folder, "texts.txt")
            with open(data, "w", encoding="utf-8") as f:
                for label, text in zip(labels, texts):
                    f.write(f"{label}\t{_one_line(text)}\n")
            result = train_classifier(cfg, data, None, os.path.join(folder, "runs"),
                                      _ClassifyProgress() if self.progress else Reporter())
            self._clf = load_classifier(result.path)
        self._clf.path = ""  # its temporary file is gone
        self.classes_ = np.array([names[name] for name in self._clf.labels], dtype=object)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        return self

    def _fitted(self):
        clf = self.__dict__.get("_clf")
        if clf is None:
            raise ConfigError("this TextClassifier is not fitted yet; call fit(texts, labels) or load a checkpoint")
        return clf

    @staticmethod
    def _check_texts(X) -> list[str]:
        if isinstance(X, str):
            raise ConfigError("expected a list of texts, got one string")
        texts = list(X)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise ConfigError(f"texts must be strings, got {type(bad).__name__}")
        return texts

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """(n_texts, n_classes) probabilities, columns in classes_ order."""
        return self._fitted().predict_proba([_one_line(t) for t in self._check_texts(X)])

    def predict(self, X: Sequence[str]) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X: Sequence[str], y: Sequence) -> float:
        """Accuracy on texts X with true labels y."""
        predicted = self.predict(X)
        truth = np.array(list(y), dtype=object)
        if len(truth) != len(predicted):
            raise ConfigError(f"score: {len(predicted)} texts but {len(truth)} labels")
        return float(np.mean(predicted == truth)) if len(truth) else 0.0

    def save(self, path: PathLike) -> str:
        """Write the fitted model as a checkpoint (the format `rnn classify` reads)."""
        from rnncli.classify.train import save_classifier

        clf = self._fitted()
        extra = {k: v for k, v in clf.meta.items() if k not in ("format", "version", "kind", "config", "labels",
                                                                 "vocab", "ngram")}
        extra["estimator"] = {"classes": [_plain(c) for c in self.classes_],
                              "params": {k: (list(v) if isinstance(v, tuple) else v)
                                         for k, v in self.get_params().items()}}
        return save_classifier(os.fspath(path), clf, extra)

    @classmethod
    def load(cls, path: PathLike) -> "TextClassifier":
        """A fitted classifier from a checkpoint of `rnn classify train` or of save()."""
        from rnncli.classify.train import load_classifier

        clf = load_classifier(os.fspath(path))
        cfg = clf.cfg
        known = set(cls._param_names())
        params = {k: v for k, v in vars(cfg).items() if k in known}
        params["layers"] = cfg.num_layers
        model = cls(**params)
        model._clf = clf
        saved = clf.meta.get("estimator", {}).get("classes") if isinstance(clf.meta.get("estimator"), dict) else None
        same = isinstance(saved, list) and [str(c) for c in saved] == list(clf.labels)
        model.classes_ = np.array(saved if same else list(clf.labels), dtype=object)  # the labels fit was given
        model.history_ = clf.meta.get("history", [])
        model.best_epoch_ = clf.meta.get("best_epoch")
        return model


def _plain(label):
    """A label as JSON keeps it: numbers and strings as they are (numpy's as Python's), else str."""
    label = label.item() if isinstance(label, np.generic) else label
    return label if isinstance(label, (str, int, float, bool)) else str(label)


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).replace("\t", " ").replace("\r", " ")


class _ClassifyProgress:
    """A tqdm bar over epochs for TextClassifier.fit(progress=True)."""

    bar = None

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    def stage(self, message: str) -> None: ...
    def start(self, info: dict) -> None: ...

    def epoch_start(self, epoch: int, batches: int) -> None:
        from tqdm.auto import tqdm

        self.close()
        self.bar = tqdm(total=batches, desc=f"epoch {epoch}", unit="batch", leave=False)

    def batch(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def epoch_end(self, summary: dict) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
