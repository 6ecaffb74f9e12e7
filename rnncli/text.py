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

from rnncli.errors import ConfigError, CorpusError, RnnError

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


def open_input(path: str, wanted: str):
    """path opened for reading bytes, or one CorpusError line saying why not (not a regular
    file, a directory, unreadable) and what to give instead (`wanted`, e.g. "a text file")."""
    what = special_file(path)
    if what:
        raise CorpusError(f"{path}: is {what}, not a regular file; give {wanted}") from None
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory; give {wanted}") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None


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


def scan_vocab(paths: list[str], on_error: str = "strict") -> Vocab:
    """The sorted characters of the files: one streamed pass marking code points in a table."""
    path = paths[0] if len(paths) == 1 else os.path.dirname(paths[0]) or "corpus"
    seen = np.zeros(MAX_CODEPOINT + 1, bool)
    for block in _blocks(paths, on_error):
        seen[_codes(block)] = True
    if not seen.any():
        raise CorpusError(f"{_describe(path)}: the corpus is empty; give a file with some text")
    return Vocab("".join(map(chr, np.flatnonzero(seen).tolist())))


def _encoded_blocks(paths: list[str], on_error: str, vocab: Vocab, drop_unknown: bool, dropped: dict):
    """Yield the ids of each block of the files, in order (see load_corpus)."""
    path = paths[0] if len(paths) == 1 else os.path.dirname(paths[0]) or "corpus"
    dtype = _id_dtype(vocab.size)
    cps = vocab.codepoints
    known = np.zeros(MAX_CODEPOINT + 1, bool)
    known[cps] = True
    lookup = np.zeros(MAX_CODEPOINT + 1, dtype)
    lookup[cps] = np.arange(len(cps))
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
        yield np.take(lookup, codes, mode="clip")  # "raise" would buffer a copy


def load_corpus(paths: list[str], on_error: str = "strict", vocab: Vocab | None = None,
                drop_unknown: bool = False, cache: bool = False) -> Corpus:
    """Two streamed passes over the files, in order: collect the vocabulary (unless given),
    then encode. With a given vocabulary (resuming), characters outside it are an error, or
    with drop_unknown left out of the ids and counted in Corpus.dropped (scoring a text).

    Memory stays near one byte per character (uint8 ids) plus one block: the vocabulary pass
    marks code points in a table instead of sorting blocks, the encoding pass looks ids up in a
    table and writes them straight into an array sized from the files (a UTF-8 character takes
    at least one byte), whose untouched tail is never paged in.

    cache=True (training): corpora of CACHE_MIN_BYTES or more get their ids from a
    memory-mapped cache file (see cached_ids), built on the first run and checked on every
    later one, so memory holds only the pages being read.
    """
    path = paths[0] if len(paths) == 1 else os.path.dirname(paths[0]) or "corpus"
    if cache and not drop_unknown and sum(_size(p) for p in paths) >= CACHE_MIN_BYTES:
        corpus = cached_ids(paths, on_error)
        if vocab is None or vocab == corpus.vocab:
            return corpus
        # resuming on a vocabulary other than the corpus's own: encode in memory as before
    if vocab is None:
        vocab = scan_vocab(paths, on_error)
    dtype = _id_dtype(vocab.size)
    ids = np.empty(sum(_size(p) for p in paths), dtype)
    n = 0
    dropped = {}
    for block in _encoded_blocks(paths, on_error, vocab, drop_unknown, dropped):
        if n + len(block) > len(ids):  # the file grew while it was read
            grown = np.empty(max(2 * len(ids), n + len(block)), dtype)
            grown[:n] = ids[:n]
            ids = grown
        ids[n:n + len(block)] = block
        n += len(block)
    if n == 0 and dropped:
        raise CorpusError(f"{_describe(path)}: none of its {sum(dropped.values()):,} characters is in the "
                          f"model's vocabulary")
    if n == 0:
        raise CorpusError(f"{_describe(path)}: the corpus is empty; give a file with some text")
    return Corpus(vocab, ids[:n], list(paths), dropped)


# ---------------------------------------------------------------- the id cache of large corpora

# Corpora from this size on train from a memory-mapped id file instead of an in-memory array.
CACHE_MIN_BYTES = 64 << 20
CACHE_VERSION = 1
HEAD_BYTES = 1 << 20  # the part of each file (and of the id file) whose hash is checked


def _sha_head(path: str, size: int = HEAD_BYTES, tail: bool = False) -> str:
    import hashlib

    with open(path, "rb") as f:
        if tail:
            f.seek(max(0, os.fstat(f.fileno()).st_size - size))
        return hashlib.sha256(f.read(size)).hexdigest()


def _fingerprint(paths: list[str], on_error: str) -> dict:
    """What must not change for a cache to stay valid: each file's path, size, mtime and the
    hash of its first MiB, and the decoding rule."""
    files = []
    for p in paths:
        st = os.stat(p)
        files.append({"path": os.path.abspath(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                      "head": _sha_head(p)})
    return {"version": CACHE_VERSION, "on_error": on_error, "files": files}


def cache_location(paths: list[str]) -> str:
    """Path stem of the id cache: `.NAME.rnncli-ids` next to a single corpus file when its
    folder is writable, else under the user cache folder ($XDG_CACHE_HOME or ~/.cache,
    rnncli/corpora/), named by a hash of the corpus paths."""
    import hashlib

    first = os.path.abspath(paths[0])
    folder = os.path.dirname(first)
    if len(paths) == 1 and os.access(folder, os.W_OK | os.X_OK):
        return os.path.join(folder, f".{os.path.basename(first)}.rnncli-ids")
    key = hashlib.sha256("\0".join(os.path.abspath(p) for p in paths).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "rnncli", "corpora", f"{os.path.basename(first)}-{key}.rnncli-ids")


def _open_cache(stem: str, fingerprint: dict) -> Corpus | None:
    """The cached corpus when every check passes, else None (stale, truncated, foreign, damaged)."""
    import json

    try:
        with open(stem + ".json", encoding="utf-8") as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or meta.get("fingerprint") != fingerprint:
            return None
        vocab = Vocab(meta["vocab"])
        dtype = np.dtype(meta["dtype"])
        n = meta["n"]
        if dtype != _id_dtype(vocab.size) or type(n) is not int or n < 1:
            return None
        if os.path.getsize(stem + ".bin") != n * dtype.itemsize:  # truncated or grown
            return None
        if (_sha_head(stem + ".bin") != meta["ids_head"]
                or _sha_head(stem + ".bin", tail=True) != meta["ids_tail"]):
            return None
        ids = np.memmap(stem + ".bin", dtype=dtype, mode="r", shape=(n,))
    except (OSError, ValueError, KeyError, TypeError, RnnError):
        return None
    return Corpus(vocab, ids, [f["path"] for f in fingerprint["files"]])


def cached_ids(paths: list[str], on_error: str = "strict") -> Corpus:
    """The corpus with its ids memory-mapped from a cache file (cache_location), built once.

    Reused only while the files keep the size, mtime and head hash recorded with it, the id
    file has exactly the recorded length and its first and last MiB hash as recorded; otherwise
    it is rebuilt. Building streams the text twice (vocabulary, then ids written block by
    block to a temporary file renamed into place, its description written last), so memory
    stays at one block. Reading goes through pages the OS can drop.
    """
    import json
    import tempfile

    fingerprint = _fingerprint(paths, on_error)
    stem = cache_location(paths)
    corpus = _open_cache(stem, fingerprint)
    if corpus is not None:
        return Corpus(corpus.vocab, corpus.ids, list(paths))
    vocab = scan_vocab(paths, on_error)
    dtype = np.dtype(_id_dtype(vocab.size))
    folder = os.path.dirname(stem)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(stem) + ".", suffix=".tmp", dir=folder)
    except OSError as e:
        raise CorpusError(f"{stem}.bin: cannot write the corpus id cache ({e.strerror or e})") from None
    n = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for block in _encoded_blocks(paths, on_error, vocab, False, {}):
                f.write(block.tobytes())
                n += len(block)
        if n == 0:
            raise CorpusError(f"{_describe(paths[0])}: the corpus is empty; give a file with some text")
        if _fingerprint(paths, on_error) != fingerprint:
            raise CorpusError(f"{_describe(paths[0])}: the corpus changed while it was read; try again")
        _remove_quietly(stem + ".json")  # the old description must never describe the new ids
        os.replace(tmp, stem + ".bin")
        meta = {"fingerprint": fingerprint, "vocab": vocab.chars, "dtype": dtype.name, "n": n,
                "ids_head": _sha_head(stem + ".bin"), "ids_tail": _sha_head(stem + ".bin", tail=True)}
        with open(stem + ".json.tmp", "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(stem + ".json.tmp", stem + ".json")
    except OSError as e:
        _remove_quietly(tmp)
        raise CorpusError(f"{stem}.bin: cannot write the corpus id cache ({e.strerror or e})") from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    return Corpus(vocab, np.memmap(stem + ".bin", dtype=dtype, mode="r", shape=(n,)), list(paths))


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


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


# ---------------------------------------------------------------- GloVe
#
# A GloVe file (`word v1 ... vd` per line, most frequent words first) is read as bytes in blocks,
# from a .txt file or from a member of the glove.6B.zip archive without unpacking it. Only the
# rows of vocabulary words are parsed into numbers; every other line costs a search for its first
# space and a count of the rest's spaces (the dimension check), so a 1 GB file keeps no more than
# one block and the vocabulary's vectors in memory.

GLOVE_MEMBER = re.compile(r"(\d+)d\.txt$")
ZIP_MAGIC = b"PK\x03\x04"
AUTO_STEM_GAIN = 0.10  # auto matches by stem when that covers at least 10 points more of the tokens
# Porter changes a word only through suffixes ending in one of these letters ("s", "ed", "ing",
# "y", "ational", ...); any other word is its own stem.
_PORTER_ENDS = frozenset("cdegilmnrstuy")
_ASK_PORTER = object()
PARALLEL_STEM_BYTES = 64 << 20  # files from this size stem in worker processes


@dataclass
class GloveMatch:
    """Vectors for a vocabulary from a GloVe file and how well the file covers it.

    vectors (V, d) float32 hold NaN rows for tokens without a vector (always rows 0 and 1).
    coverage["exact"] and coverage["stem"] are (types, tokens) found each way, or None where not
    looked up; coverage["types"] counts the vocabulary (less <pad> and <unk>), coverage["tokens"]
    the tokens of the texts given (those that became <unk> included).
    """

    vectors: np.ndarray
    dim: int
    match: str  # "exact" or "stem": how the vectors were found
    why: str  # "auto: ..." or "asked"
    coverage: dict
    source: str  # the file, or archive:member
    words: int  # vector lines read
    stem_vector: str


def load_glove(path: str, vocab: TokenVocab) -> tuple[np.ndarray | None, int, int]:
    """Exact matching only: (vectors (V, d) with NaN rows for tokens not found, dimension, tokens found)."""
    m = match_glove(path, vocab, match="exact")
    return m.vectors, m.dim, m.coverage["exact"][0]


def match_glove(path: str, vocab: TokenVocab, token_lists=(), match: str = "auto", dim: int = 0,
                stem_vector: str = "frequent") -> GloveMatch:
    """Vectors for the vocabulary's tokens, matched to GloVe words exactly or by Porter stem.

    match="stem": a token takes the vectors of the GloVe words whose Porter stem it is (for a
    stemmed corpus, where "comput" stands for computer, computing, computation...), combined by
    stem_vector: "frequent" takes the most frequent such word's vector (the file's first),
    "weighted" their mean weighted by 1/rank (GloVe files are sorted by frequency and word
    frequencies fall roughly as 1/rank). A token no GloVe word stems to keeps its exact match.
    match="auto" looks up both and matches by stem when that covers AUTO_STEM_GAIN more of the
    tokens of token_lists (the training texts): in a stemmed text the most frequent words
    ("comput", "univers", "inform") are found only by stem; in a plain one stemming finds
    nothing more. dim picks a member of a zip archive (0: its only one) and is checked against
    a text file. The first vector of a word wins; a line with another number of values than
    the first is an error naming the line.
    """
    index = vocab.index()
    size = vocab.size
    stems = _StemFilter(vocab.tokens[2:]) if match in ("auto", "stem") else None
    name, nbytes, blocks = _glove_blocks(path, dim)
    width = 0
    rank = 0
    exact = by_stem = weight = None

    def add_stem(row, line, cut, line_no, rank, vec=None):
        if stem_vector == "weighted":
            vec = _glove_values(line, cut, name, line_no) if vec is None else vec
            by_stem[row] += vec / rank
            weight[row] += 1.0 / rank
        elif 1.0 / rank > weight[row]:  # the most frequent word: the lowest rank, in whatever order they come
            by_stem[row] = _glove_values(line, cut, name, line_no) if vec is None else vec
            weight[row] = 1.0 / rank

    queue = None if stems is None else _StemQueue(stems, index, add_stem, nbytes >= PARALLEL_STEM_BYTES)
    try:
        for line_no, lines in blocks:
            for line in lines:
                line_no += 1
                if line[-1:] in (b" ", b"\r", b"\t"):
                    line = line.rstrip()
                if not line:
                    continue
                cut = line.find(b" ")
                if cut < 0:
                    raise CorpusError(f"{name}: line {line_no} has no vector values")
                n = line.count(b" ", cut)
                if not width:
                    if dim and n != dim:
                        raise CorpusError(f"{name}: vectors have {n} values, not --glove-dim {dim}; "
                                          f"give --glove-dim {n} or another file")
                    width = n
                    exact = np.full((size, n), np.nan, np.float32)
                    if stems is not None:
                        by_stem = np.zeros((size, n), np.float64)
                        weight = np.zeros(size, np.float64)
                elif n != width:
                    raise CorpusError(f"{name}: line {line_no} has {n} values, "
                                      f"expected {width} like line 1; not a consistent GloVe file")
                rank += 1
                try:
                    word = line[:cut].decode("utf-8")
                except UnicodeDecodeError:
                    raise CorpusError(f"{name}: line {line_no}: the word is not UTF-8; re-save as UTF-8") from None
                vec = None
                row = index.get(word, 0)
                if row >= 2 and np.isnan(exact[row, 0]):
                    vec = exact[row] = _glove_values(line, cut, name, line_no)
                if stems is None:
                    continue
                stem = stems.shortcut(word)
                if stem is _ASK_PORTER:
                    queue.add(word, line, cut, line_no, rank)
                elif stem is not None:
                    add_stem(index[stem], line, cut, line_no, rank, vec)
        if queue is not None:
            queue.finish()
    finally:
        if queue is not None:
            queue.close()
    if not width:
        raise CorpusError(f"{name}: no vectors found; expected `word v1 ... vd` per line")
    counts = _token_counts(index, size, token_lists)
    total = max(1, int(counts.sum()))

    def cover(hit):
        return int(hit[2:].sum()), int(counts[hit].sum())

    found = ~np.isnan(exact[:, 0])
    found[:2] = False
    coverage = {"types": size - 2, "tokens": int(counts.sum()), "exact": cover(found), "stem": None}
    vectors = exact
    chosen, why = "exact", "asked"
    if stems is not None:
        stemmed = weight > 0
        stemmed[:2] = False
        coverage["stem"] = cover(stemmed | found)
        if counts.any():
            gain = (coverage["stem"][1] - coverage["exact"][1]) / total
        else:  # no texts given: the vocabulary's types decide
            gain = (coverage["stem"][0] - coverage["exact"][0]) / max(1, size - 2)
        if match == "auto":
            chosen = "stem" if gain >= AUTO_STEM_GAIN else "exact"
            why = (f"auto: stems cover {100 * gain:+.1f} points of the tokens, "
                   + ("the text looks stemmed" if chosen == "stem" else "the text does not look stemmed"))
        else:
            chosen = "stem"
        if chosen == "stem":
            vectors = exact.copy()
            if stem_vector == "weighted":
                vectors[stemmed] = (by_stem[stemmed] / weight[stemmed, None]).astype(np.float32)
            else:
                vectors[stemmed] = by_stem[stemmed].astype(np.float32)
    return GloveMatch(vectors, width, chosen, why, coverage, name, rank, stem_vector)


def _glove_values(line: bytes, cut: int, name: str, line_no: int) -> np.ndarray:
    try:
        vec = np.array(line[cut + 1:].split(b" "), dtype=np.float32)
    except ValueError:
        raise CorpusError(f"{name}: line {line_no} has a value that is not a number") from None
    if not np.isfinite(vec).all():
        raise CorpusError(f"{name}: line {line_no} has a value that is not a finite number")
    return vec


def _token_counts(index: dict, size: int, token_lists) -> np.ndarray:
    from collections import Counter

    counts = np.zeros(size, np.int64)
    for token, n in Counter(t for tokens in token_lists for t in tokens).items():
        counts[index.get(token, 1)] += n
    return counts


class _StemFilter:
    """Porter stems of GloVe words, computed only for words whose stem can be a vocabulary token.

    Porter rewrites only the end of a word: a stem is the word's first letters, then at most one
    letter the word does not have there ('y' -> 'i', a restored 'e', "biliti" -> "bl"). So a word
    none of whose prefixes is a token, or a token less its last letter, cannot stem to a token
    and is skipped without running the stemmer; so is a word holding a character no token has
    (Porter keeps it). A word ending in none of _PORTER_ENDS is its own stem. Stems are cached.
    """

    def __init__(self, tokens):
        self.tokens = frozenset(tokens)
        self.heads = self.tokens | {t[:-1] for t in self.tokens if len(t) > 1}
        _porter("")  # a missing package fails here, before the file is read

    def shortcut(self, word: str):
        """The token word stems to, None if it cannot stem to one, or _ASK_PORTER."""
        if word[-1:] not in _PORTER_ENDS or not _WORD.fullmatch(word):
            return word if word in self.tokens else None
        heads = self.heads
        for j in range(1, len(word) + 1):
            if word[:j] in heads:
                return _ASK_PORTER
        return None

    def __call__(self, word: str) -> str | None:
        stem = self.shortcut(word)
        if stem is _ASK_PORTER:
            stem = _porter(word)
            return stem if stem in self.tokens else None
        return stem


class _StemQueue:
    """Words only the stemmer can place, stemmed in batches, in worker processes for a large file.

    Pure-Python Porter takes ~70 µs a word: the few hundred thousand candidates of a full-size
    file would take longer than reading it. With workers the main process goes on reading while
    they stem; a batch's lines wait in memory until its stems come back (at most IN_FLIGHT
    batches, ~50 MB of 300-d lines). Batches are finished in the order they were read.
    """

    BATCH = 2048
    IN_FLIGHT = 8

    def __init__(self, stems: _StemFilter, index: dict, on_stem, parallel: bool):
        self.tokens, self.index, self.on_stem = stems.tokens, index, on_stem
        self.items = []
        self.pending = []
        self.pool = None
        self.workers = min(4, _cpus()) if parallel else 1

    def add(self, word, *where):
        self.items.append((word, where))
        if len(self.items) >= self.BATCH:
            self._submit()

    def _submit(self):
        items, self.items = self.items, []
        words = [w for w, _ in items]
        if self.workers > 1 and self.pool is None:
            self.pool = _stem_pool(self.workers)
            self.workers = self.workers if self.pool else 1
        if self.pool is None:
            self._apply(items, [_porter(w) for w in words])
            return
        self.pending.append((items, self.pool.map_async(_porter_all, [words])))
        while len(self.pending) > self.IN_FLIGHT:
            self._collect()

    def _collect(self):
        items, result = self.pending.pop(0)
        self._apply(items, result.get()[0])

    def _apply(self, items, stems):
        for (word, where), stem in zip(items, stems):
            if stem in self.tokens:
                self.on_stem(self.index[stem], *where)

    def finish(self):
        if self.items:
            self._submit()
        while self.pending:
            self._collect()

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _stem_pool(workers: int):
    import multiprocessing

    try:  # spawn: a fresh interpreter, whatever threads (BLAS, Numba) this process has started
        return multiprocessing.get_context("spawn").Pool(workers)
    except (OSError, ValueError, ImportError):
        return None  # no processes to be had: stem here


def _porter_all(words: list) -> list:
    return [_porter(w) for w in words]


def _porter(word: str) -> str:
    global _PORTER
    if _PORTER is None:
        try:
            import snowballstemmer
        except ImportError:
            raise ConfigError("matching GloVe words by stem needs the snowballstemmer package: "
                              "pip install snowballstemmer (or --glove-match exact)") from None
        import functools

        _PORTER = functools.lru_cache(maxsize=1 << 18)(snowballstemmer.stemmer("porter").stemWord)
    return _PORTER(word)


_PORTER = None


def _glove_blocks(path: str, dim: int):
    """(name for messages, size in bytes, generator of (line number before the block, lines as bytes))."""
    import zipfile
    import zlib

    path = os.fspath(path)
    f = open_input(path, "a GloVe file")
    name = _describe(path)
    stream = f
    nbytes = os.fstat(f.fileno()).st_size
    if f.read(4) == ZIP_MAGIC or path.lower().endswith(".zip"):
        try:
            archive = zipfile.ZipFile(f)
            member = _glove_member(archive, name, dim)
            stream = archive.open(member)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
            f.close()
            raise CorpusError(f"{name}: not a readable zip archive ({e}); give a GloVe .txt file or glove.6B.zip") from None
        except CorpusError:
            f.close()
            raise
        name = f"{name}:{member.filename}"
        nbytes = member.file_size
    else:
        f.seek(0)

    def blocks():
        line_no = 0
        rest = b""
        first = True
        with f, stream:
            while True:
                try:
                    raw = stream.read(BLOCK_BYTES)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                    raise CorpusError(f"{name}: cannot be read to the end ({e}); the archive is damaged") from None
                if first and raw.startswith(BOM.encode()):
                    raw = raw[3:]
                first = False
                if not raw:
                    break
                lines = (rest + raw).split(b"\n")
                rest = lines.pop()
                yield line_no, lines
                line_no += len(lines)
        if rest:
            yield line_no, [rest]

    return name, nbytes, blocks()


def _glove_member(archive, name: str, dim: int):
    members = [m for m in archive.infolist() if not m.is_dir() and m.filename.endswith(".txt")]
    dims = {}
    for m in members:
        found = GLOVE_MEMBER.search(m.filename)
        if found:
            dims.setdefault(int(found.group(1)), m)
    listed = ", ".join(map(str, sorted(dims)))
    if dim:
        if dim in dims:
            return dims[dim]
        raise CorpusError(f"{name}: no {dim}-dimensional vectors in the archive"
                          + (f" (it has {listed}); choose --glove-dim from those" if dims else
                             "; expected members named like glove.6B.100d.txt"))
    if len(members) == 1:
        return members[0]
    if not members:
        raise CorpusError(f"{name}: no .txt member in the archive; expected members named like glove.6B.100d.txt")
    raise CorpusError(f"{name}: holds several GloVe files"
                      + (f" ({listed} dimensions); choose one with --glove-dim" if dims else
                         f" ({', '.join(m.filename for m in members[:4])}); keep one .txt member"))
