"""Taking a trained language model elsewhere: an ONNX graph (onnx.py) for any ONNX runtime, or one
self-contained HTML page (page.py) that samples from the model in a browser.

Both read a checkpoint through read_model: a language model, checked as `rnn sample` checks it.
"""

from __future__ import annotations

from rnncli.errors import UsageError


def read_model(path: str):
    """The language model a checkpoint holds (lm.checkpoint.LanguageModel). A classifier
    checkpoint is a UsageError (exit 2): only language models are exported; anything the reader
    refuses is its own CheckpointError."""
    from rnncli.engine import npz
    from rnncli.lm.checkpoint import LMCheckpoint, read_lm_checkpoint

    arrays, meta = npz.load(path)
    if meta.get("kind") == "classifier":
        raise UsageError(f"{path}: is a classifier checkpoint; rnn export writes language models only "
                         f"(give a checkpoint of `rnn train`)")
    # another kind is refused by the reader, whose message names it
    ckpt = LMCheckpoint(path, arrays, meta) if meta.get("kind") == "lm" else read_lm_checkpoint(path)
    return ckpt.model()


def model_record(lm) -> dict:
    """What an exported model says about itself: its settings and its vocabulary, in order."""
    cfg = lm.cfg
    return {"cell": cfg.cell, "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
            "embedding_size": cfg.embedding_size, "activation": cfg.activation, "vocab_size": lm.vocab.size,
            "states": ["h", "c"] if cfg.cell == "lstm" else ["h"]}
