"""What a checkpoint holds, from its metadata alone (`rnn info`): the model, its size, the
vocabulary, the run that made it and its scores. The arrays are not read, so a large checkpoint
answers at once; the parameter count follows from the settings, as the loaders check it.

Everything here comes from a file that may be a stranger's, so every value is checked for its
type before it is reported (None when absent or of the wrong type), and every text meant for a
terminal goes through printable() first.
"""

from __future__ import annotations

import math
import numbers
import os

from rnncli.config import ClassifyConfig, model_config_from_dict
from rnncli.data.chars import Vocab
from rnncli.engine import npz
from rnncli.errors import CheckpointError, RnnError

VOCAB_SAMPLE_CHARS = 200  # characters of a language model's vocabulary shown
VOCAB_SAMPLE_TOKENS = 30  # tokens of a classifier's vocabulary shown
SCORE_KEYS = ("accuracy", "macro_f1", "loss", "n")  # of a classifier's recorded scores


def checkpoint_info(path: str) -> dict:
    """The facts about a checkpoint of either kind, as one JSON-ready dict (keys in docs/cli.md).
    Raises CheckpointError when the file is not a readable rnncli checkpoint."""
    meta = npz.read_meta(path)
    kind = meta.get("kind")
    facts = {"path": path, "kind": kind, "format_version": meta.get("version"), "file_bytes": os.path.getsize(path)}
    if kind == "lm":
        return {**facts, **_lm_facts(path, meta)}
    if kind == "classifier":
        return {**facts, **_classifier_facts(path, meta)}
    raise CheckpointError(f"{path}: of unknown kind {printable(str(kind))!r}; expected a language model or a "
                          f"classifier")


def _lm_facts(path: str, meta: dict) -> dict:
    from rnncli.engine import model as M
    from rnncli.lm.checkpoint import recorded_corpus

    try:
        if not isinstance(meta.get("model"), dict):
            raise CheckpointError("no model settings")
        cfg = model_config_from_dict(meta["model"]).validate()
        vocab = Vocab(meta.get("vocab"))
    except RnnError as e:
        raise CheckpointError(f"{path}: metadata is incomplete or invalid ({e})") from None
    progress = meta.get("progress") if isinstance(meta.get("progress"), dict) else {}
    best = _real(progress.get("best_val"))
    sample = vocab.chars[:VOCAB_SAMPLE_CHARS]
    return {
        "which": _text(meta.get("which")),
        "run_id": _text(meta.get("run_id")),
        "model": {"cell": cfg.cell, "hidden_size": cfg.hidden_size, "layers": cfg.num_layers,
                  "embedding_size": cfg.embedding_size, "activation": cfg.activation, "dropout": cfg.dropout},
        "parameters": _count(M.lm_shapes(cfg, vocab.size)),
        "vocab_size": vocab.size,
        "vocab_sample": printable(sample) + ("..." if len(sample) < vocab.size else ""),
        "corpus": {"files": recorded_corpus(meta), "chars": _whole(meta.get("corpus_chars"))},
        "steps": _whole(progress.get("step")),
        "epochs": _whole(progress.get("epoch")),
        "seconds": _real(progress.get("seconds")),
        "optimizer_steps": _whole(meta.get("optimizer_steps")),
        "best_val": None if best is None else {"nats": best, "bits": best / math.log(2),
                                                "step": _whole(progress.get("best_step"))},
        "batch_size": _whole(meta.get("batch_size")),
        "seq_len": _whole(meta.get("seq_len")),
        "saved_at": _text(meta.get("saved_at")),
        "options": meta.get("config") if isinstance(meta.get("config"), dict) else None,
    }


def _classifier_facts(path: str, meta: dict) -> dict:
    from rnncli.classify.model import classifier_shapes

    try:
        raw = dict(meta["config"])
        raw["dense"] = tuple(raw["dense"])
        raw.setdefault("ngram", 0)  # saved before the n-gram path existed
        cfg = ClassifyConfig(**raw).validate()
        labels, vocab = meta["labels"], meta["vocab"]
        if not all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in (labels, vocab)):
            raise CheckpointError("labels and vocabulary must be lists of strings")
    except (KeyError, TypeError, ValueError, RnnError) as e:
        raise CheckpointError(f"{path}: metadata is incomplete or invalid ({e})") from None
    ngram = meta.get("ngram") if isinstance(meta.get("ngram"), dict) else None
    history = meta.get("history") if isinstance(meta.get("history"), list) else []
    tokens = [t for t in vocab if t not in ("<pad>", "<unk>")][:VOCAB_SAMPLE_TOKENS]
    return {
        "model": {"cell": cfg.cell, "hidden_size": cfg.hidden_size, "layers": cfg.num_layers,
                  "embedding_size": cfg.embedding_size, "bidirectional": cfg.bidirectional, "pooling": cfg.pooling,
                  "dense": list(cfg.dense), "tokens": cfg.tokens},
        "parameters": _count(classifier_shapes(cfg, len(vocab), len(labels))),
        "labels": labels,
        "vocab_size": len(vocab),
        "vocab_sample": " ".join(printable(t) for t in tokens) + (" ..." if len(tokens) < len(vocab) - 2 else ""),
        "ngram": None if ngram is None else {
            "n_max": _whole(ngram.get("n_max")),
            "word_terms": _terms(ngram.get("terms")),
            "char_terms": _terms(ngram.get("char_terms")),
            "alpha": _real(ngram.get("alpha")),
        },
        "best_epoch": _whole(meta.get("best_epoch")),
        "epochs": len(history),
        "scores": {"val": _scores(meta.get("val")), "test": _scores(meta.get("test"))},
        "data": {"file": _text(meta.get("data")), "sha256": _text(meta.get("data_sha256"))},
        "options": meta.get("config"),
    }


def printable(text: str) -> str:
    r"""text safe to show on a terminal: newline, tab and carriage return as \n \t \r, a backslash
    doubled, other control and invisible characters as \xNN, \uNNNN or \UNNNNNNNN (a crafted
    checkpoint must not be able to send escape sequences to the terminal)."""
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
    out = []
    for c in text:
        code = ord(c)
        if c in named:
            out.append(named[c])
        elif c.isprintable():
            out.append(c)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _count(shapes: dict) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def _whole(v):
    return v if isinstance(v, numbers.Integral) and not isinstance(v, bool) else None


def _real(v):
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _text(v):
    return v if isinstance(v, str) else None


def _terms(v):
    """How many n-grams a newline-joined list holds (None: no such list)."""
    return (v.count("\n") + 1 if v else 0) if isinstance(v, str) else None


def _scores(v):
    if not isinstance(v, dict):
        return None
    return {k: (_whole(v.get(k)) if k == "n" else _real(v.get(k))) for k in SCORE_KEYS}
