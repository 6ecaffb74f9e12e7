"""Text in, token ids out: UTF-8 corpora as Unicode code points, the sorted vocabulary, batches.

A corpus is read in blocks and kept as the smallest unsigned integer array that holds its
vocabulary (uint8 up to 256 characters), so a 200 MB file never becomes a 200-million-item
Python string or an int64 array. Line endings are normalised (CRLF and lone CR become LF) and a
leading byte-order mark is dropped: neither is text the model should learn.
"""

from __future__ import annotations

import codecs
import os
import stat
from dataclasses import dataclass, field

import numpy as np

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


def _describe(path: str) -> str:
    return path  # as the user gave it


def special_file(path: str) -> str:
    """What path is when it is not a regular file ("a directory", "a named pipe", ...), else "".

    Devices, pipes and sockets can block or never end (`/dev/zero`, a FIFO without a writer),
    so inputs are refused unless they are regular files (links to regular files are fine).
    A path that cannot be examined is left to whoever opens it, which reports why.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return ""
    if stat.S_ISREG(mode):
        return ""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def iter_text_blocks(path: str, on_error: str = "strict"):
    """Yield the decoded text of path in blocks, newlines normalised, BOM dropped.

    on_error="strict" raises CorpusError naming the byte offset of the first invalid byte;
    "replace" substitutes U+FFFD.
    """
    what = special_file(path)
    if what:
        raise CorpusError(f"{path}: is {what}, not a regular file; give a text file") from None
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory; give a text file") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None
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
                    f"{_describe(path)}: not UTF-8 at byte {offset - held + e.start} "
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
    """The corpus bundled with rnncli: every .txt in the installed rnncli.corpora package."""
    from importlib import resources

    root = resources.files("rnncli.corpora")
    files = sorted(str(p) for p in root.iterdir() if p.name.endswith(".txt"))
    if not files:
        raise CorpusError("the bundled corpus is missing from this installation; give a CORPUS file")
    return files


def _blocks(paths: list[str], on_error: str):
    for path in paths:
        yield from iter_text_blocks(path, on_error)


@dataclass
class Corpus:
    vocab: Vocab
    ids: np.ndarray  # (n,) unsigned, compact
    paths: list
    dropped: dict = field(default_factory=dict)  # character -> count left out (drop_unknown)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _id_dtype(vocab_size: int):
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32


def _codes(block: str) -> np.ndarray:
    return np.frombuffer(block.encode("utf-32-le"), dtype=np.uint32)


def load_corpus(paths: list[str], on_error: str = "strict", vocab: Vocab | None = None,
                drop_unknown: bool = False) -> Corpus:
    """Two streamed passes over the files, in order: collect the vocabulary (unless given),
    then encode. With a given vocabulary (resuming), characters outside it are an error, or
    with drop_unknown left out of the ids and counted in Corpus.dropped (scoring a text).

    Memory stays near one byte per character (uint8 ids) plus one block: the vocabulary pass
    marks code points in a table instead of sorting blocks, the encoding pass looks ids up in a
    table and writes them straight into an array sized from the files (a UTF-8 character takes
    at least one byte), whose untouched tail is never paged in.
    """
    path = paths[0] if len(paths) == 1 else os.path.dirname(paths[0]) or "corpus"
    if vocab is None:
        seen = np.zeros(MAX_CODEPOINT + 1, bool)
        for block in _blocks(paths, on_error):
            seen[_codes(block)] = True
        if not seen.any():
            raise CorpusError(f"{_describe(path)}: the corpus is empty; give a file with some text")
        vocab = Vocab("".join(map(chr, np.flatnonzero(seen).tolist())))
    dtype = _id_dtype(vocab.size)
    cps = vocab.codepoints
    known = np.zeros(MAX_CODEPOINT + 1, bool)
    known[cps] = True
    lookup = np.zeros(MAX_CODEPOINT + 1, dtype)
    lookup[cps] = np.arange(len(cps))
    ids = np.empty(sum(_size(p) for p in paths), dtype)
    n = 0
    dropped = {}
    for block in _blocks(paths, on_error):
        codes = _codes(block)
        bad = ~known[codes]
        if bad.any() and drop_unknown:
            for c, count in zip(*np.unique(codes[bad], return_counts=True)):
                dropped[chr(c)] = dropped.get(chr(c), 0) + int(count)
            codes = codes[~bad]
        elif bad.any():
            unknown = sorted({chr(c) for c in codes[bad][:1000].tolist()})
            raise CorpusError(f"{_describe(path)}: characters not in the model's vocabulary: "
                              f"{' '.join(map(repr, unknown[:20]))}")
        if n + len(codes) > len(ids):  # the file grew while it was read
            grown = np.empty(max(2 * len(ids), n + len(codes)), dtype)
            grown[:n] = ids[:n]
            ids = grown
        np.take(lookup, codes, out=ids[n:n + len(codes)], mode="clip")  # "raise" would buffer a copy
        n += len(codes)
    if n == 0 and dropped:
        raise CorpusError(f"{_describe(path)}: none of its {sum(dropped.values()):,} characters is in the "
                          f"model's vocabulary")
    if n == 0:
        raise CorpusError(f"{_describe(path)}: the corpus is empty; give a file with some text")
    return Corpus(vocab, ids[:n], list(paths), dropped)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def split_train_val(n: int, val_fraction: float) -> int:
    """Index where validation starts: the last val_fraction of the corpus."""
    if val_fraction <= 0:
        return n
    return n - max(1, int(round(n * val_fraction)))


@dataclass(frozen=True)
class StreamBatches:
    """Classic char-rnn batching: the text cut into B contiguous streams read side by side, T
    characters at a time, so the hidden state can be carried from one chunk to the next.

    Chunk k covers stream columns [kT, kT + T] (inputs) and [kT + 1, kT + T + 1] (targets).
    """

    ids: np.ndarray
    batch_size: int
    seq_len: int

    @property
    def stream_len(self) -> int:
        return (len(self.ids) - 1) // self.batch_size

    @property
    def chunks(self) -> int:
        return max(0, self.stream_len // self.seq_len)

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), each (T, B) int32, time-major and C-contiguous."""
        S, T, B = self.stream_len, self.seq_len, self.batch_size
        start = k * T
        idx = np.arange(B)[None, :] * S + np.arange(start, start + T + 1)[:, None]
        block = self.ids[idx].astype(np.int32)
        return np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[1:])


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


# ---------------------------------------------------------------- labelled texts (classification)

PAD, UNK = "<pad>", "<unk>"


@dataclass
class LabelledData:
    labels: list  # str per example
    texts: list  # str per example
    skipped_no_tab: int = 0
    skipped_empty: int = 0


def read_labelled(path: str, on_error: str = "strict", keep_empty: bool = False) -> LabelledData:
    """`label<TAB>text` per line. The label is what comes before the first TAB, stripped (it may
    contain spaces). Lines without a TAB and (unless keep_empty) lines with an empty text are
    skipped and counted; blank lines are ignored."""
    data = LabelledData([], [])
    for line in read_text(path, on_error).split("\n"):
        if not line.strip():
            continue
        label, tab, body = line.partition("\t")
        label = label.strip()
        if not tab or not label:
            data.skipped_no_tab += 1
            continue
        if not body.strip() and not keep_empty:
            data.skipped_empty += 1
            continue
        data.labels.append(label)
        data.texts.append(body)
    return data


def tokenize(text: str, mode: str) -> list[str]:
    """Words: lower-cased runs of letters and digits (apostrophes inside words kept).
    Characters: every character except line breaks."""
    if mode == "char":
        return [c for c in text if c not in "\r\n"]
    return _WORD.findall(text.lower())


import re  # noqa: E402  (kept beside its only use)

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


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


def load_glove(path: str, vocab: TokenVocab) -> tuple[np.ndarray | None, int, int]:
    """Vectors for the vocabulary's tokens from a GloVe text file (`word v1 ... vd` per line).

    Returns (vectors (V, d) with NaN rows for tokens not found, dimension, tokens found).
    A line whose number of values differs from the first line's is an error naming the line.
    """
    index = vocab.index()
    vectors = None
    dim = 0
    found = 0
    line_no = 0
    for block in _glove_lines(path):
        for line in block:
            line_no += 1
            parts = line.rstrip().split(" ")
            if len(parts) < 2:
                if not line.strip():
                    continue
                raise CorpusError(f"{_describe(path)}: line {line_no} has no vector values")
            if dim == 0:
                dim = len(parts) - 1
                vectors = np.full((vocab.size, dim), np.nan, np.float32)
            if len(parts) - 1 != dim:
                raise CorpusError(f"{_describe(path)}: line {line_no} has {len(parts) - 1} values, "
                                  f"expected {dim} like line 1; not a consistent GloVe file")
            row = index.get(parts[0])
            if row is None or row < 2 or not np.isnan(vectors[row, 0]):
                continue
            try:
                vectors[row] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise CorpusError(f"{_describe(path)}: line {line_no} has a value that is not a number") from None
            found += 1
    if dim == 0:
        raise CorpusError(f"{_describe(path)}: no vectors found; expected `word v1 ... vd` per line")
    return vectors, dim, found


def _glove_lines(path: str):
    rest = ""
    for block in iter_text_blocks(path):
        lines = (rest + block).split("\n")
        rest = lines.pop()
        yield lines
    if rest:
        yield [rest]
