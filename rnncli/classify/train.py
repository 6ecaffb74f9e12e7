"""Many-to-one text classification on the recurrent engine.

    ids (T, B) --embed--> x (T, B, E) --stack "fw." (and "bw." on each text reversed)--> (T, B, H)
      --pool over each text's own steps--> feat (B, H or 2H) --dense+ReLU+dropout ...--> logits (B, C)

Variable lengths: texts are right-padded. The forward stack never looks ahead, so padding after
a text cannot change its states; the backward stack reads each text's valid prefix reversed,
again right-padded. Pooling reads only valid steps. So padding never changes a prediction, and
padded steps receive exactly zero gradient (their dL/dh is 0 and nothing flows back into them).
Batches group texts of similar length so little time is spent on padding; in inference (no
backward pass), the rows are sorted longest first and each text's loop stops at its length, and
layer 0 gathers its input projections from tables that fold embedding, weights and bias.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, replace

import numpy as np

from rnncli.classify.model import (
    DTYPE,
    Classifier,
    classifier_shapes,
    draw_masks,
    init_classifier,
    length_batches,
    loss_and_grads,
    pad_batch,
)
from rnncli.classify.ngram import (
    Candidates,
    NgramPath,
    choose_mix,
    fit_candidates,
    mix,
    path_from_checkpoint,
    refit,
)
from rnncli.config import ClassifyConfig
from rnncli.data.files import unusable_recorded_input
from rnncli.data.languages import detect_language
from rnncli.data.vectors import match_glove
from rnncli.data.words import LabelledData, TokenVocab, read_labelled, tokenize
from rnncli.engine import model as M
from rnncli.engine import npz as checkpoint
from rnncli.engine import threads as blas
from rnncli.engine.optim import Optimizer
from rnncli.engine.step import train_step
from rnncli.errors import (
    CheckpointError,
    ConfigError,
    CorpusError,
    DivergedError,
    RnnError,
)


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): each class contributes round(fraction · count) texts
    to validation (at least one when it has two or more)."""
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


class Reporter:
    def warn(self, message: str) -> None: ...
    def stage(self, message: str) -> None: ...
    def start(self, info: dict) -> None: ...
    def epoch_start(self, epoch: int, batches: int) -> None: ...
    def batch(self, loss: float) -> None: ...
    def epoch_end(self, summary: dict) -> None: ...
    def close(self) -> None: ...


@dataclass
class ClassifyResult:
    path: str
    labels: tuple
    best_epoch: int
    epochs_run: int
    seconds: float
    val: dict
    test: dict | None
    info: dict
    history: list


RARE_CLASS = 50  # training texts below which a class is named in a warning


IMBALANCE = 0.25  # "auto" weighs classes when the rarest has under this share of the largest's texts


def resolve_class_weights(cfg: ClassifyConfig, y: np.ndarray, n_classes: int) -> str:
    """"none" or "balanced": what "auto" means for these labels."""
    if cfg.class_weights != "auto":
        return cfg.class_weights
    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    return "balanced" if present.min() < IMBALANCE * present.max() else "none"


def _class_weights(mode: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    if mode == "none":
        return np.ones(n_classes)
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Scores of predicted classes: accuracy, macro-F1, per-class precision/recall/F1/support
    and the confusion matrix (rows = true class, columns = predicted)."""
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = (support > 0) | (predicted > 0)
    return {"accuracy": float(tp.sum() / max(1, len(y_true))),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": support.tolist(), "confusion": confusion.tolist(), "n": int(len(y_true))}


def score_log_proba(log_proba: np.ndarray, y: np.ndarray, n_classes: int,
                    class_weights: np.ndarray | None = None) -> dict:
    """Scores of predicted log-probabilities: score_predictions() of the argmax, plus the
    (class-weighted) mean log-loss."""
    result = score_predictions(y, log_proba.argmax(axis=1), n_classes)
    w = np.ones(len(y)) if class_weights is None else class_weights[y]
    picked = np.maximum(log_proba[np.arange(len(y)), y], np.log(1e-12))
    result["loss"] = float(-(w * picked).sum() / max(w.sum(), 1e-12))
    return result


def score_mix(path: NgramPath, rnn: np.ndarray, ngram: np.ndarray, y: np.ndarray, n_classes: int,
              class_weights: np.ndarray | None) -> dict:
    """Scores of the mix of the two parts' log-probabilities, and each part's accuracy, macro-F1
    and loss alone ("parts")."""
    result = score_log_proba(mix(rnn, ngram, path.alpha, path.scale), y, n_classes, class_weights)
    result["parts"] = {part: {k: v for k, v in score_log_proba(lp, y, n_classes, class_weights).items()
                              if k in ("accuracy", "macro_f1", "loss")}
                       for part, lp in (("rnn", rnn), ("ngram", ngram))}
    return result


def evaluate_split(clf: Classifier, seqs: list, y: np.ndarray, class_weights: np.ndarray | None = None,
                   texts: list | None = None) -> dict:
    """Scores of the classifier run on encoded texts; with an n-gram path (which reads the texts
    themselves) also those of each part alone ("parts")."""
    rnn = clf.rnn_log_proba(seqs)
    if clf.ngram is None:
        return score_log_proba(rnn, y, len(clf.labels), class_weights)
    return score_mix(clf.ngram, rnn, clf.ngram_log_proba(texts), y, len(clf.labels), class_weights)


def train_classifier(cfg: ClassifyConfig, data_path: str, test_path: str | None, out_dir: str,
                     reporter: Reporter | None = None, baseline: bool = False) -> ClassifyResult:
    """Train, keep the best epoch, fit the n-gram path and the mix, save, score the test file.
    With baseline, also fit baseline.py's linear model on the same training texts and score it
    on the same validation and test texts."""
    reporter = reporter or Reporter()
    cfg.validate()
    if baseline:
        from rnncli.classify import baseline as tfidf_baseline

        tfidf_baseline.require()
    blas.set_threads(cfg.threads)
    started = time.perf_counter()
    texts, rng = _read_training_texts(cfg, data_path, test_path)
    cfg = replace(cfg, language=texts.language)  # the checkpoint keeps the language found
    vocab = TokenVocab.build([texts.tokens[i] for i in texts.train_idx], cfg.min_freq, cfg.max_vocab)
    cfg, vectors, coverage = _match_vectors(cfg, texts, vocab)
    model = _set_up_model(cfg, texts, vocab, vectors, rng)
    info = _run_info(cfg, texts, model, coverage)
    reporter.start(info)
    candidates, reserve = _fit_ngram_candidates(cfg, texts, model, reporter)
    epochs = _train_epochs(cfg, model, rng, reporter, started, reserve)
    reporter.close()
    info["stopped"] = epochs.stopped
    for k in model.params:
        model.params[k][...] = epochs.best_params[k]  # early stopping: the best epoch's weights
    if epochs.diverged and epochs.best_val is None:
        raise DivergedError(f"{epochs.diverged}; no epoch finished with a finite validation loss, so nothing was "
                            f"saved; try a lower --lr")
    best_val = epochs.best_val
    if candidates is not None and not epochs.diverged:
        best_val = _choose_mix(texts, model, candidates, reporter, info)
    run_dir = checkpoint.new_run_dir(out_dir, f"{os.path.splitext(texts.name)[0]}-classifier")
    extra = {"best_epoch": epochs.best_epoch, "history": epochs.history, "val": best_val, "info": info,
             "data": os.path.abspath(data_path), "data_sha256": file_sha256(data_path)}
    baseline_model = None
    if baseline and not epochs.diverged:
        baseline_model = _fit_baseline(texts, model, reporter, best_val, extra)
    path = save_classifier(os.path.join(run_dir, "best.npz"), model.clf, extra)
    if epochs.diverged:  # the best finite epoch is kept; the test file is not scored by a failed run
        raise DivergedError(f"{epochs.diverged}; the best finite epoch ({epochs.best_epoch}, validation loss "
                            f"{best_val['loss']:.4f}) was saved to {path}; try a lower --lr")
    test = None
    if test_path:  # scored once, with the best weights, after they are safely saved
        test = evaluate_file(model.clf, test_path, cfg.on_decode_error, baseline_model)
        save_classifier(path, model.clf, {**extra, "test": test})
    seconds = time.perf_counter() - started
    return ClassifyResult(path, texts.labels, epochs.best_epoch, epochs.epochs_run, seconds, best_val, test, info,
                          epochs.history)


@dataclass
class _TrainingTexts:
    """The labelled texts of a training file, their classes, the split and the tokens."""

    name: str  # the file's, for messages and the run folder
    data: LabelledData
    labels: tuple  # the classes, sorted
    y_all: np.ndarray  # class index of each text
    train_idx: np.ndarray
    val_idx: np.ndarray
    tokens: list  # token list of each text
    language: str  # the tokenizer's and stemmer's (config.STEMMERS), never "auto"
    language_why: str  # how it was chosen

    def texts(self, idx) -> list[str]:
        return [self.data.texts[i] for i in idx]


def _read_training_texts(cfg: ClassifyConfig, data_path: str,
                         test_path: str | None) -> tuple[_TrainingTexts, np.random.Generator]:
    """The training file read, checked, split and tokenised, and the rng that made the split
    (it goes on to initialise the model and order the batches)."""
    data = read_labelled(data_path, cfg.on_decode_error)
    name = os.path.basename(data_path)
    if not data.texts:
        raise CorpusError(f"{name}: no usable `label<TAB>text` lines "
                          f"({data.skipped_no_tab} without a TAB, {data.skipped_no_label} with an empty label, "
                          f"{data.skipped_empty} with an empty text)")
    labels = tuple(sorted(set(data.labels)))
    if len(labels) < 2:
        raise CorpusError(f"{name}: only one class ({labels[0]!r}); a classifier needs at least two")
    if test_path:  # a bad test file must fail now, not after the training it would throw away
        test_data = read_labelled(test_path, cfg.on_decode_error, keep_empty=True)
        if not any(label in labels for label in test_data.labels):
            raise CorpusError(f"{os.path.basename(test_path)}: no lines with a label of {name} "
                              f"({', '.join(labels)})")
    y_all = np.array([labels.index(l) for l in data.labels], np.int64)
    rng, train_idx, val_idx = split_for(cfg, y_all)
    if len(val_idx) == 0:
        raise CorpusError(f"{name}: too few texts to hold out a validation split")
    language, why = _language(cfg, data.texts)
    tokens = [tokenize(t, cfg.tokens, language) for t in data.texts]
    return _TrainingTexts(name, data, labels, y_all, train_idx, val_idx, tokens, language, why), rng


def _language(cfg: ClassifyConfig, texts: list[str]) -> tuple[str, str]:
    """(language, why): the one asked for, or with "auto" the one detected from the texts."""
    if cfg.language != "auto":
        return cfg.language, "asked (--language)"
    return detect_language(tokenize(t, "word") for t in texts)


def _match_vectors(cfg: ClassifyConfig, texts: _TrainingTexts,
                   vocab: TokenVocab) -> tuple[ClassifyConfig, np.ndarray | None, dict | None]:
    """(cfg with the GloVe file's embedding size, the vectors, their coverage), or cfg unchanged
    and no vectors without --glove."""
    if not cfg.glove:
        return cfg, None, None
    glove = match_glove(cfg.glove, vocab, [texts.tokens[i] for i in texts.train_idx], cfg.glove_match,
                        cfg.glove_dim, cfg.stem_vector, cfg.language)
    if glove.dim != cfg.embedding_size:
        cfg = replace(cfg, embedding_size=glove.dim)
    coverage = {**glove.coverage, "match": glove.match, "why": glove.why, "source": glove.source,
                "words": glove.words, "stem_vector": glove.stem_vector}
    return cfg, glove.vectors, coverage


@dataclass
class _Model:
    """A classifier in training: its parameters, what updates them, and the split encoded."""

    clf: Classifier
    params: dict
    trainable: dict  # params less the embeddings when they are frozen
    grads: dict
    opt: Optimizer
    work: M.Workspace
    train_seqs: list
    val_seqs: list
    y_train: np.ndarray
    y_val: np.ndarray
    lengths: np.ndarray  # of the training texts, for the length batches
    weighting: str  # "none" or "balanced"
    class_weights: np.ndarray  # (C,) the weight of a text of each class


def _set_up_model(cfg: ClassifyConfig, texts: _TrainingTexts, vocab: TokenVocab, vectors: np.ndarray | None,
                  rng: np.random.Generator) -> _Model:
    """The initialised classifier (GloVe rows copied in), its optimizer over the trainable
    parameters, and the texts encoded."""
    labels = texts.labels
    shapes = classifier_shapes(cfg, vocab.size, len(labels))
    remedy = "lower --hidden-size, --dense, --max-vocab or --embedding-size"
    if cfg.glove:  # the embedding size is the vector file's, not an option
        remedy = (f"the embeddings take {cfg.embedding_size} dimensions from {cfg.glove}: give vectors "
                  f"of fewer dimensions, or lower --max-vocab, --hidden-size or --dense")
    M.require_memory(shapes, DTYPE, copies=4, remedy=remedy)
    params = init_classifier(cfg, shapes, rng, DTYPE)
    if vectors is not None:
        hit = ~np.isnan(vectors[:, 0])
        params["embed"][hit] = vectors[hit]
    index = vocab.index()
    seqs = [vocab.encode(t, index, cfg.max_len) for t in texts.tokens]
    clf = Classifier(cfg, vocab, labels, params)
    train_seqs = [seqs[i] for i in texts.train_idx]
    y_train, y_val = texts.y_all[texts.train_idx], texts.y_all[texts.val_idx]
    val_seqs = [seqs[i] for i in texts.val_idx]
    weighting = resolve_class_weights(cfg, y_train, len(labels))
    cw = _class_weights(weighting, y_train, len(labels))
    trainable = {k: v for k, v in params.items() if not (k == "embed" and cfg.freeze_embeddings)}
    opt = Optimizer(cfg.optim(), trainable)
    grads = M.zeros_like_params(trainable)
    if cfg.freeze_embeddings:
        grads["embed"] = np.zeros((0, 0), DTYPE)  # never read: embeddings are not trained
    lengths = np.array([len(s) for s in train_seqs])
    return _Model(clf, params, trainable, grads, opt, M.Workspace(DTYPE), train_seqs, val_seqs, y_train, y_val,
                  lengths, weighting, cw)


def _run_info(cfg: ClassifyConfig, texts: _TrainingTexts, model: _Model, coverage: dict | None) -> dict:
    """What the reporter shows at the start and the checkpoint keeps about the data and model."""
    labels, data = texts.labels, texts.data
    train_counts = np.bincount(model.y_train, minlength=len(labels))
    return {"train": len(texts.train_idx), "val": len(texts.val_idx), "labels": labels,
            "vocab": model.clf.vocab.size, "skipped_no_tab": data.skipped_no_tab,
            "skipped_no_label": data.skipped_no_label, "skipped_empty": data.skipped_empty, "truncated": sum(len(t) > cfg.max_len for t in texts.tokens),
            "coverage": coverage, "params": int(sum(p.size for p in model.params.values())),
            "embedding_size": cfg.embedding_size,
            "class_counts": np.bincount(texts.y_all, minlength=len(labels)).tolist(),
            "class_weights": model.weighting, "auto_weights": cfg.class_weights == "auto", "ngram": cfg.ngram,
            "language": texts.language, "language_why": texts.language_why,
            "rare": [(labels[c], int(n)) for c, n in enumerate(train_counts) if n < RARE_CLASS]}


def _fit_ngram_candidates(cfg: ClassifyConfig, texts: _TrainingTexts, model: _Model,
                          reporter: Reporter) -> tuple[Candidates | None, float]:
    """(the n-gram path's candidate fits, seconds to keep for its refit), or (None, 0) without
    one. Fitted before the recurrent training, so that knows how much of --max-time is left."""
    if not cfg.ngram:
        return None, 0.0
    reporter.stage("fitting the n-gram path on the training texts")
    cw = model.class_weights
    candidates = fit_candidates(texts.texts(texts.train_idx), model.y_train, cw[model.y_train],
                                texts.texts(texts.val_idx), len(texts.labels), cfg.ngram, language=cfg.language)
    return candidates, 1.5 * candidates.seconds_per_fit  # for its refit on training + validation texts


@dataclass
class _Epochs:
    """How the epochs went: the best of them and why they ended."""

    best_loss: float  # validation loss of the best epoch
    best_epoch: int
    best_params: dict  # copies of its weights
    best_val: dict | None  # its validation scores; None until an epoch finishes finite
    history: list  # the summary of each epoch
    epochs_run: int = 0
    diverged: str = ""  # what went non-finite, and when
    stopped: str = "epochs"  # why training ended: "epochs", "patience" or "time"


def _train_epochs(cfg: ClassifyConfig, model: _Model, rng: np.random.Generator, reporter: Reporter,
                  started: float, reserve: float) -> _Epochs:
    """Epochs of training, each scored on the validation split, until the last of cfg.epochs,
    cfg.patience epochs without a better validation loss, the time limit (less `reserve`
    seconds), or a non-finite loss."""
    run = _Epochs(math.inf, 0, {k: v.copy() for k, v in model.params.items()}, None, [])
    bad_epochs = 0
    for epoch in range(1, cfg.epochs + 1):
        run.epochs_run = epoch
        total, seen = _train_epoch(cfg, model, rng, reporter, epoch, started, reserve, run)
        if run.diverged:
            break
        val = evaluate_split(model.clf, model.val_seqs, model.y_val, model.class_weights)
        if not math.isfinite(val["loss"]):
            run.diverged = f"the validation loss became {val['loss']} after epoch {epoch}"
            break
        improved = val["loss"] < run.best_loss
        if improved:
            run.best_loss, run.best_epoch, run.best_val = val["loss"], epoch, val
            run.best_params = {k: v.copy() for k, v in model.params.items()}
            bad_epochs = 0
        else:
            bad_epochs += 1
        summary = {"epoch": epoch, "train_loss": total / max(1, seen), "val_loss": val["loss"],
                   "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "best": improved,
                   "seconds": time.perf_counter() - started}
        run.history.append(summary)
        reporter.epoch_end(summary)
        if run.stopped == "time":
            break
        if bad_epochs >= cfg.patience:
            run.stopped = "patience"
            break
    return run


def _train_epoch(cfg: ClassifyConfig, model: _Model, rng: np.random.Generator, reporter: Reporter, epoch: int,
                 started: float, reserve: float, run: _Epochs) -> tuple[float, int]:
    """One pass over the training texts in length batches, a training step each; returns (the
    loss summed over texts, texts seen). A non-finite loss or gradient norm ends it with
    run.diverged set, the time limit with run.stopped = "time"."""
    batches = length_batches(model.lengths, cfg.batch_size, rng)
    reporter.epoch_start(epoch, len(batches))
    total, seen = 0.0, 0
    for idx in batches:
        batch = _training_batch(model, idx)
        loss, norm, _ = train_step(model.trainable, model.grads, model.opt, cfg.lr, cfg.clip,
                                   functools.partial(_batch_loss_and_grads, cfg, model, batch, rng),
                                   work=batch[0].size)  # padded tokens: batches differ in length
        if not (math.isfinite(loss) and math.isfinite(norm)):
            run.diverged = f"the training loss became non-finite in epoch {epoch}"
            break
        total += loss * len(idx)
        seen += len(idx)
        reporter.batch(loss)
        if cfg.max_time and time.perf_counter() - started > cfg.max_time - reserve:
            run.stopped = "time"  # this partial epoch is still evaluated, and kept if it is the best
            break
    return total, seen


def _training_batch(model: _Model, idx: np.ndarray) -> tuple:
    """(ids, rev, lengths, targets, weights summing to 1) of the training texts idx."""
    ids, rev, lens = pad_batch([model.train_seqs[i] for i in idx])
    y = model.y_train[idx].astype(np.int32)
    w = model.class_weights[y]
    w = w / w.sum()
    return ids, rev, lens, y, w


def _batch_loss_and_grads(cfg: ClassifyConfig, model: _Model, batch: tuple, rng: np.random.Generator,
                          grads: dict) -> tuple[float, None]:
    """train_step's loss_and_grads for one batch. Its dropout masks are drawn here, after the
    gradients are zeroed; zeroing draws nothing, so the rng's draws keep their order."""
    ids, rev, lens, y, w = batch
    masks = draw_masks(cfg, ids.shape[0], ids.shape[1], rng, DTYPE)
    return loss_and_grads(cfg, model.params, grads, ids, rev, lens, y, w, model.work, masks,
                          train_embed=not cfg.freeze_embeddings), None


def _choose_mix(texts: _TrainingTexts, model: _Model, candidates: Candidates, reporter: Reporter,
                info: dict) -> dict:
    """Choose the n-gram candidate and the mix on the validation split, refit the n-gram model on
    training + validation texts into model.clf; returns the validation scores of the mix."""
    reporter.stage("choosing the mix on the validation split")
    cw, y_val = model.class_weights, model.y_val
    rnn_val = model.clf.rnn_log_proba(model.val_seqs)
    path = choose_mix(candidates, rnn_val, y_val, cw[y_val])
    # The validation score of the mix as chosen, with the n-gram model fitted on the training
    # texts alone (the refit below, which adds the validation texts, would flatter it).
    best_val = score_mix(path, rnn_val, candidates.val_log_proba[path.C], y_val, len(texts.labels), cw)
    fit_idx = np.concatenate([texts.train_idx, texts.val_idx])
    clf = model.clf
    clf.ngram = refit(path, texts.texts(fit_idx), texts.y_all[fit_idx], cw[texts.y_all[fit_idx]])
    info["mix"] = {"alpha": clf.ngram.alpha, "C": clf.ngram.C, "terms": clf.ngram.features.size}
    return best_val


def _fit_baseline(texts: _TrainingTexts, model: _Model, reporter: Reporter, best_val: dict, extra: dict):
    """baseline.py's model fitted on the training texts; its validation scores go into best_val
    and its description into the checkpoint's extra metadata."""
    from rnncli.classify import baseline as tfidf_baseline

    reporter.stage("fitting the baseline on the same training texts")
    baseline_model = tfidf_baseline.fit(texts.texts(texts.train_idx), model.y_train)
    best_val["baseline"] = _brief(score_predictions(model.y_val, baseline_model.predict(texts.texts(texts.val_idx)),
                                                    len(texts.labels)))
    extra["baseline"] = tfidf_baseline.DESCRIPTION
    return baseline_model


def split_for(cfg: ClassifyConfig, y_all: np.ndarray) -> tuple:
    """(rng, training indices, validation indices): the split every run of cfg on these labels
    makes; the rng goes on to initialise the model."""
    rng = np.random.default_rng(cfg.seed)
    return (rng, *stratified_split(y_all, cfg.val_fraction, rng))


def file_sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _brief(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def refit_baseline(clf: Classifier, on_error: str = "strict"):
    """baseline.py's model fitted again on the training split of a checkpoint trained with
    --baseline: the data file it names must still hold the same bytes."""
    from rnncli.classify import baseline as tfidf_baseline

    tfidf_baseline.require()
    path = clf.meta.get("data", "")
    why = unusable_recorded_input(path)
    if why:
        raise CorpusError(f"baseline: the training file {path!r} the checkpoint names {why}; it is needed to refit")
    if file_sha256(path) != clf.meta.get("data_sha256"):
        raise CorpusError(f"baseline: {path} has changed since training; the baseline cannot be refitted "
                          f"on the same texts")
    data = read_labelled(path, on_error)
    strangers = sorted(set(data.labels) - set(clf.labels))
    if strangers:  # the file is the one trained on (same bytes), so the checkpoint was altered
        raise CheckpointError(f"baseline: the checkpoint's labels do not match its training file {path}: "
                              f"{len(strangers):,} of the file's labels are not among its {len(clf.labels):,}; "
                              f"the checkpoint is damaged or altered")
    y_all = np.array([clf.labels.index(l) for l in data.labels], np.int64)
    _, train_idx, _ = split_for(clf.cfg, y_all)
    return tfidf_baseline.fit([data.texts[i] for i in train_idx], y_all[train_idx])


def evaluate_file(clf: Classifier, path: str, on_error: str = "strict", baseline_model=None) -> dict:
    """Scores of the classifier run on a labelled file. Texts with labels the model does not know are skipped and
    counted; empty texts are kept (predicted from a lone unknown token) and counted. With a
    baseline model, its accuracy and macro-F1 on the same texts too ("baseline")."""
    data = read_labelled(path, on_error, keep_empty=True)
    known = [i for i, l in enumerate(data.labels) if l in clf.labels]
    unknown_labels = sorted({l for l in data.labels if l not in clf.labels})
    if not known:
        raise CorpusError(f"{os.path.basename(path)}: no lines with a label the model knows "
                          f"({', '.join(clf.labels)})")
    texts = [data.texts[i] for i in known]
    y = np.array([clf.labels.index(data.labels[i]) for i in known], np.int64)
    result = evaluate_split(clf, clf.encode(texts), y, texts=texts)
    if baseline_model is not None:
        result["baseline"] = _brief(score_predictions(y, baseline_model.predict(texts), len(clf.labels)))
    result.update({"skipped_unknown_label": len(data.labels) - len(known), "unknown_labels": unknown_labels,
                   "skipped_no_tab": data.skipped_no_tab, "skipped_no_label": data.skipped_no_label, "empty_texts": sum(not t.strip() for t in texts),
                   "path": path})
    return result


def save_classifier(path: str, clf: Classifier, extra: dict) -> str:
    arrays = {f"param/{k}": v for k, v in clf.params.items()}
    meta = {}
    if clf.ngram is not None:
        arrays.update(clf.ngram.arrays())
        meta["ngram"] = clf.ngram.meta()
    cfg = vars(clf.cfg).copy()
    cfg["dense"] = list(cfg["dense"])
    return checkpoint.save(path, arrays, {"kind": "classifier", "config": cfg, "labels": list(clf.labels),
                                          "vocab": list(clf.vocab.tokens), **meta, **extra})


def load_classifier(path: str) -> Classifier:
    arrays, meta = checkpoint.load(path, kind="classifier")
    name = os.path.basename(path)
    try:
        raw = dict(meta["config"])
        raw["dense"] = tuple(raw["dense"])
        raw.setdefault("ngram", 0)  # saved before the n-gram path existed
        raw.setdefault("language", "en")  # saved before languages: English rules
        cfg = ClassifyConfig(**raw).validate()
        if not all(isinstance(v, list) and all(isinstance(t, str) for t in v)
                   for v in (meta["labels"], meta["vocab"])):
            raise ConfigError("labels and vocabulary must be lists of strings")
        "".join(meta["labels"] + meta["vocab"]).encode("utf-8")  # no lone surrogates: labels get printed
        labels = tuple(meta["labels"])
        vocab = TokenVocab(tuple(meta["vocab"]))
        if len(labels) < 2 or vocab.size < 2 or len(set(labels)) < len(labels):
            raise ConfigError("too few or repeated labels, or too few vocabulary entries")
    except (KeyError, TypeError, ValueError, RnnError) as e:
        raise CheckpointError(f"{name}: metadata is incomplete or invalid ({e})") from None
    try:
        params = M.check_params(checkpoint.group(arrays, "param"),
                                classifier_shapes(cfg, vocab.size, len(labels)), DTYPE)
    except ConfigError as e:
        raise CheckpointError(f"{name}: {e} (vocabulary {vocab.size}, {len(labels)} labels)") from None
    ngram = None
    if "ngram" in meta:
        try:
            ngram = path_from_checkpoint(arrays, meta["ngram"], len(labels))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{name}: the n-gram path is incomplete or invalid ({e})") from None
    return Classifier(cfg, vocab, labels, params, meta, ngram, frozen=True, path=path)


def predict_lines(clf: Classifier, lines: list[str]) -> np.ndarray:
    return clf.predict_proba(lines)
