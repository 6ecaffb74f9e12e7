"""Labelled texts and words: the `label<TAB>text` reader, the tokenizer, the word vocabulary.
"""

from __future__ import annotations

import re  # noqa: E402  (kept beside its only use)
from dataclasses import dataclass

import numpy as np

from rnncli.data.chars import read_text
from rnncli.data.languages import split_elisions

PAD, UNK = "<pad>", "<unk>"


@dataclass
class LabelledData:
    labels: list  # str per example
    texts: list  # str per example
    skipped_no_tab: int = 0
    skipped_empty: int = 0
    skipped_no_label: int = 0  # a TAB, but only whitespace before it


def read_labelled(path: str, on_error: str = "strict", keep_empty: bool = False) -> LabelledData:
    """`label<TAB>text` per line. The label is what comes before the first TAB, stripped (it may
    contain spaces). Lines without a TAB, lines whose label is empty (only whitespace before the
    TAB) and, unless keep_empty, lines with an empty text are skipped and counted, each reason
    apart; blank lines are ignored."""
    data = LabelledData([], [])
    for line in read_text(path, on_error).split("\n"):
        if not line.strip():
            continue
        label, tab, body = line.partition("\t")
        label = label.strip()
        if not tab:
            data.skipped_no_tab += 1
            continue
        if not label:
            data.skipped_no_label += 1
            continue
        if not body.strip() and not keep_empty:
            data.skipped_empty += 1
            continue
        data.labels.append(label)
        data.texts.append(body)
    return data


def tokenize(text: str, mode: str, language: str = "en") -> list[str]:
    """Words: lower-cased runs of letters and digits (apostrophes inside words kept), with the
    elided words of French, Italian and Catalan split off (languages.split_elisions: "l'école"
    is "l'", "école"). Characters: every character except line breaks."""
    if mode == "char":
        return [c for c in text if c not in "\r\n"]
    return split_elisions(WORD_PATTERN.findall(text.lower()), language)


WORD_PATTERN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass(frozen=True)
class TokenVocab:
    """Token strings; index 0 is padding, 1 the unknown token, then by frequency."""

    tokens: tuple

    @classmethod
    def build(cls, token_lists, min_freq: int, max_size: int) -> "TokenVocab":
        from collections import Counter

        counts = Counter(t for tokens in token_lists for t in tokens)
        # Ties broken by the token itself so the vocabulary never depends on set order.
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls((PAD, UNK) + tuple(kept[:max(0, max_size - 2)]))

    @property
    def size(self) -> int:
        return len(self.tokens)

    def index(self) -> dict:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, tokens: list[str], index: dict, max_len: int) -> np.ndarray:
        """int32 ids of the first max_len tokens; an empty text becomes a single <unk>."""
        ids = [index.get(t, 1) for t in tokens[:max_len]] or [1]
        return np.asarray(ids, np.int32)
