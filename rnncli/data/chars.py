"""Text in, token ids out: UTF-8 corpora as Unicode code points, the sorted vocabulary, batches.

A corpus is read in blocks and kept as the smallest unsigned integer array that holds its
vocabulary (uint8 up to 256 characters), so a 200 MB file never becomes a 200-million-item
Python string or an int64 array. Line endings are normalised (CRLF and lone CR become LF) and a
leading byte-order mark is dropped: neither is text the model should learn.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import numpy as np

from rnncli.data.files import open_input
from rnncli.errors import ConfigError, CorpusError

BLOCK_BYTES = 1 << 22


BOM = "\ufeff"


MAX_CODEPOINT = 0x10FFFF


@dataclass(frozen=True)
class Vocab:
    """Characters sorted by code point; a character's id is its index."""

    chars: str

    def __post_init__(self):
        if not isinstance(self.chars, str):
            raise ConfigError(f"vocabulary must be a string of characters, not {type(self.chars).__name__}")
        if not self.chars:
            raise CorpusError("vocabulary is empty")
        if list(self.chars) != sorted(set(self.chars)):
            raise ConfigError("vocabulary must be distinct characters in sorted order")
        try:
            self.chars.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate, possible in JSON, is not a character
            raise ConfigError(f"vocabulary holds {self.chars[e.start]!r}, which is not a character") from None

    @property
    def size(self) -> int:
        return len(self.chars)

    @property
    def codepoints(self) -> np.ndarray:
        return np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)

    def unknown(self, text: str) -> list[str]:
        """Characters of text that are not in the vocabulary, sorted."""
        known = set(self.chars)
        return sorted({c for c in text if c not in known})

    def encode(self, text: str) -> np.ndarray:
        """int32 ids of text; every character must be in the vocabulary (see unknown())."""
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self.codepoints, cps)
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        chars = self.chars
        return "".join(chars[i] for i in ids)


def iter_text_blocks(path: str, on_error: str = "strict"):
    """Yield the decoded text of path in blocks, newlines normalised, BOM dropped.

    on_error="strict" raises CorpusError naming the byte offset of the first invalid byte;
    "replace" substitutes U+FFFD.
    """
    f = open_input(path, "a text file")
    decoder = codecs.getincrementaldecoder("utf-8")(errors=on_error)
    offset = 0
    first = True
    pending_cr = False
    with f:
        while True:
            raw = f.read(BLOCK_BYTES)
            final = not raw
            held = len(decoder.getstate()[0])  # bytes of a character split across reads
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{path}: not UTF-8 at byte {offset - held + e.start} "
                    f"(0x{e.object[e.start]:02x}); re-save as UTF-8 or use --on-decode-error replace"
                ) from None
            offset += len(raw)
            if first and text.startswith(BOM):
                text = text[1:]
            if text or final:
                first = False if text else first
            if pending_cr:
                text = "\r" + text
            pending_cr = text.endswith("\r") and not final
            if pending_cr:
                text = text[:-1]
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            if text:
                yield text
            if final:
                return


def read_text(path: str, on_error: str = "strict") -> str:
    """The whole file as one string (for small inputs such as prime text or labelled data)."""
    return "".join(iter_text_blocks(path, on_error))


def default_corpus_files() -> list[str]:
    """The corpus bundled with rnncli: every .txt in the installed rnncli.corpora package, or,
    run from a source checkout (where corpora/ sits beside the package), in that folder."""
    from importlib import resources

    try:
        root = resources.files("rnncli.corpora")
    except ModuleNotFoundError:
        from pathlib import Path

        root = Path(__file__).resolve().parents[2] / "corpora"
        if not root.is_dir():
            raise CorpusError("the bundled corpus is missing from this installation; give a CORPUS file") from None
    files = sorted(str(p) for p in root.iterdir() if p.name.endswith(".txt"))
    if not files:
        raise CorpusError("the bundled corpus is missing from this installation; give a CORPUS file")
    return files


def split_train_val(n: int, val_fraction: float) -> int:
    """Index where validation starts: the last val_fraction of the corpus."""
    if val_fraction <= 0:
        return n
    return n - max(1, int(round(n * val_fraction)))


def fit_batches(n_chars: int, batch_size: int, seq_len: int) -> tuple[int, int, list[str]]:
    """Shrink batch size, then sequence length, until one chunk fits in n_chars; say what changed."""
    if n_chars < 2:
        raise CorpusError("the training text needs at least 2 characters")
    notes = []
    B, T = batch_size, seq_len
    while B > 1 and (n_chars - 1) // B < T:
        B = max(1, B // 2)
    while T > 1 and (n_chars - 1) // B < T:
        T = max(1, T // 2)
    if B != batch_size:
        notes.append(f"batch size lowered from {batch_size} to {B}: the text is too short")
    if T != seq_len:
        notes.append(f"sequence length lowered from {seq_len} to {T}: the text is too short")
    return B, T, notes


class StreamBatches:
    """Which text each row of a step reads. The training text is cut into S contiguous streams
    (S a multiple of the batch B), each read in order, T characters a chunk, with its own
    carried state. S = B is classic char-rnn: the same B streams side by side at every step.
    With S > B, every round each stream advances one chunk, in groups of B drawn at random
    (one permutation per round, drawn per epoch), so consecutive steps read different parts of
    the text (less correlated updates) while every stream still carries its state.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, streams: int = 0):
        self.ids, self.B, self.T = ids, batch_size, seq_len
        self.S = streams or batch_size
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
