"""Pretrained word vectors matched to a word vocabulary: GloVe text files and word2vec /
fastText `.vec` files (a first line `count dimension`), zipped or not, with stemming (in the
corpus's language) on a process pool when the vectors' words are stemmed to match.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from rnncli.config import STEMMERS
from rnncli.data.chars import BLOCK_BYTES, BOM
from rnncli.data.files import open_input
from rnncli.data.words import WORD_PATTERN, TokenVocab
from rnncli.errors import ConfigError, CorpusError
from rnncli.memory import require_bytes

GLOVE_MEMBER = re.compile(r"(\d+)d\.txt$")


ZIP_MAGIC = b"PK\x03\x04"

# Bounds on a vector file, checked as it is read: the widest published vectors have 300 values
# in about 3 KiB a line. Above these it is not a word-vector file, and reading on would exhaust
# memory (one unbroken line) or time (a vast zip member).
MAX_VECTOR_DIM = 4096
MAX_LINE_BYTES = 1 << 20
MAX_MEMBER_BYTES = 64 << 30  # decompressed; glove.840B.300d.txt is 5.6 GB


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
                stem_vector: str = "frequent", language: str = "en") -> GloveMatch:
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
    stems = _StemFilter(vocab.tokens[2:], STEMMERS[language]) if match in ("auto", "stem") else None
    name, nbytes, blocks = _glove_blocks(path, dim)
    by_stem = None if stems is None else _StemVectors(vocab.size, stem_vector, name)
    exact, rank = _read_glove(name, blocks, index, vocab.size, dim, stems, by_stem,
                              nbytes >= PARALLEL_STEM_BYTES)
    counts = _token_counts(index, vocab.size, token_lists)
    vectors, chosen, why, coverage = _choose_vectors(exact, by_stem, counts, match)
    return GloveMatch(vectors, exact.shape[1], chosen, why, coverage, name, rank, stem_vector)


class _StemVectors:
    """Per token, the vectors of the GloVe words that stem to it, combined as stem_vector says:
    "frequent" keeps the lowest rank's, "weighted" sums them weighted by 1/rank (float64)."""

    def __init__(self, size: int, stem_vector: str, name: str):
        self.size, self.stem_vector, self.name = size, stem_vector, name
        self.sums = self.weight = None  # (V, d) and (V,), once the first line gives d

    def start(self, width: int) -> None:
        self.sums = np.zeros((self.size, width), np.float64)
        self.weight = np.zeros(self.size, np.float64)

    def add(self, row: int, line: bytes, cut: int, line_no: int, rank: int, vec=None) -> None:
        """The GloVe word of `line` (vector `vec` when already parsed) stems to token `row`."""
        if self.stem_vector == "weighted":
            vec = _glove_values(line, cut, self.name, line_no) if vec is None else vec
            self.sums[row] += vec / rank
            self.weight[row] += 1.0 / rank
        elif 1.0 / rank > self.weight[row]:  # the most frequent word: the lowest rank, in whatever order they come
            self.sums[row] = _glove_values(line, cut, self.name, line_no) if vec is None else vec
            self.weight[row] = 1.0 / rank

    def found(self) -> np.ndarray:
        """(V,) bool: the tokens some GloVe word stems to (<pad> and <unk> never)."""
        stemmed = self.weight > 0
        stemmed[:2] = False
        return stemmed

    def vectors(self, exact: np.ndarray) -> np.ndarray:
        """The exact vectors with each stemmed token's row replaced by its stem vector (float32)."""
        stemmed = self.found()
        vectors = exact.copy()
        if self.stem_vector == "weighted":
            vectors[stemmed] = (self.sums[stemmed] / self.weight[stemmed, None]).astype(np.float32)
        else:
            vectors[stemmed] = self.sums[stemmed].astype(np.float32)
        return vectors


def _read_glove(name: str, blocks, index: dict, size: int, dim: int, stems: _StemFilter | None,
                by_stem: _StemVectors | None, parallel: bool) -> tuple[np.ndarray, int]:
    """(exact vectors (V, d) float32 with NaN rows for tokens not found, vector lines read); the
    words that stem to a token go to by_stem, through a _StemQueue for those only Porter places."""
    width = 0
    header = 0  # the dimension a .vec file's first line declares
    rank = 0
    exact = None
    queue = None if stems is None else _StemQueue(stems, index, by_stem.add, parallel)
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
                if not width and not header and n == 1 and line[:cut].isdigit() and line[cut + 1:].isdigit():
                    # word2vec / fastText text format (.vec): a first line `count dimension`
                    header = int(line[cut + 1:])
                    continue
                if not width:
                    if header and n != header:
                        raise CorpusError(f"{name}: line {line_no} has {n} values; the header line says {header}")
                    if n > MAX_VECTOR_DIM:
                        raise CorpusError(f"{name}: line {line_no} has {n:,} values; word vectors have at "
                                          f"most {MAX_VECTOR_DIM:,} dimensions; not a GloVe file")
                    if dim and n != dim:
                        raise CorpusError(f"{name}: vectors have {n} values, not --glove-dim {dim}; "
                                          f"give --glove-dim {n} or another file")
                    width = n
                    # the exact and stemmed vectors here, then the model's embedding, its gradient
                    # and two optimizer slots: 4 + 8 + 16 bytes a value
                    require_bytes(size * n * (4 + 16 + (8 if by_stem is not None else 0)),
                                  f"{name}: {n}-dimensional vectors for {size:,} vocabulary words",
                                  "give vectors of fewer dimensions (--glove-dim) or a smaller --max-vocab",
                                  CorpusError)
                    exact = np.full((size, n), np.nan, np.float32)
                    if by_stem is not None:
                        by_stem.start(n)
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
                    by_stem.add(index[stem], line, cut, line_no, rank, vec)
        if queue is not None:
            queue.finish()
    finally:
        if queue is not None:
            queue.close()
    if not width:
        raise CorpusError(f"{name}: no vectors found; expected `word v1 ... vd` per line")
    return exact, rank


def _choose_vectors(exact: np.ndarray, by_stem: _StemVectors | None, counts: np.ndarray,
                    match: str) -> tuple[np.ndarray, str, str, dict]:
    """(vectors, "exact" or "stem", why, coverage): the coverage of each way of matching, and the
    way `match` asks for, or for "auto" the one the tokens' coverage favours."""
    size = len(exact)
    total = max(1, int(counts.sum()))
    found = ~np.isnan(exact[:, 0])
    found[:2] = False
    coverage = {"types": size - 2, "tokens": int(counts.sum()), "exact": _cover(found, counts), "stem": None}
    if by_stem is None:
        return exact, "exact", "asked", coverage
    coverage["stem"] = _cover(by_stem.found() | found, counts)
    if counts.any():
        gain = (coverage["stem"][1] - coverage["exact"][1]) / total
    else:  # no texts given: the vocabulary's types decide
        gain = (coverage["stem"][0] - coverage["exact"][0]) / max(1, size - 2)
    chosen, why = "stem", "asked"
    if match == "auto":
        chosen = "stem" if gain >= AUTO_STEM_GAIN else "exact"
        why = (f"auto: stems cover {100 * gain:+.1f} points of the tokens, "
               + ("the text looks stemmed" if chosen == "stem" else "the text does not look stemmed"))
    return (by_stem.vectors(exact) if chosen == "stem" else exact), chosen, why, coverage


def _cover(hit: np.ndarray, counts: np.ndarray) -> tuple[int, int]:
    """(types, tokens) of the vocabulary that `hit` marks, <pad> and <unk> left out of the types."""
    return int(hit[2:].sum()), int(counts[hit].sum())


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
    """Stems of GloVe words, computed only for words whose stem can be a vocabulary token.

    Porter (English) rewrites only the end of a word: a stem is the word's first letters, then at
    most one letter the word does not have there ('y' -> 'i', a restored 'e', "biliti" -> "bl").
    So a word none of whose prefixes is a token, or a token less its last letter, cannot stem to
    a token and is skipped without running the stemmer; so is a word holding a character no token
    has (Porter keeps it). A word ending in none of _PORTER_ENDS is its own stem. The other
    Snowball stemmers also keep a word's beginning, but rewrite more of its end, from the third
    letter on ("voyez" -> "voi", "eaux" -> "eau"), and may fold accents (German "häuser" ->
    "haus"): for them a word is asked about unless its first two letters, accents folded, begin
    no token (and its first letter is no one-letter token). Stems are cached.
    """

    def __init__(self, tokens, algorithm: str = "porter"):
        self.tokens = frozenset(tokens)
        self.algorithm = algorithm
        if algorithm == "porter":
            self.heads = self.tokens | {t[:-1] for t in self.tokens if len(t) > 1}
        else:
            self.heads = {_folded(t[:2]) for t in self.tokens}
            self.short = {_folded(t) for t in self.tokens if len(t) < 2}
        self.stem = _stemmer(algorithm)  # a missing package fails here, before the file is read

    def shortcut(self, word: str):
        """The token word stems to, None if it cannot stem to one, or _ASK_PORTER."""
        if self.algorithm != "porter":
            head = _folded(word[:2])
            return _ASK_PORTER if head in self.heads or head[:1] in self.short else None
        if word[-1:] not in _PORTER_ENDS or not WORD_PATTERN.fullmatch(word):
            return word if word in self.tokens else None
        heads = self.heads
        for j in range(1, len(word) + 1):
            if word[:j] in heads:
                return _ASK_PORTER
        return None

    def __call__(self, word: str) -> str | None:
        stem = self.shortcut(word)
        if stem is _ASK_PORTER:
            stem = self.stem(word)
            return stem if stem in self.tokens else None
        return stem


def _folded(text: str) -> str:
    """text without its accents (é -> e, ä -> a), for comparing the beginnings of words."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


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
        self.algorithm, self.stem = stems.algorithm, stems.stem
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
            self._apply(items, [self.stem(w) for w in words])
            return
        self.pending.append((items, self.pool.starmap_async(_stem_all, [(words, self.algorithm)])))
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


def _stem_all(words: list, algorithm: str = "porter") -> list:
    stem = _stemmer(algorithm)
    return [stem(w) for w in words]


def _stemmer(algorithm: str):
    """The Snowball stemmer of that name (config.STEMMERS), its stems cached; made once."""
    stem = _STEMMERS.get(algorithm)
    if stem is None:
        try:
            import snowballstemmer
        except ImportError:
            raise ConfigError("matching GloVe words by stem needs the snowballstemmer package: "
                              "pip install snowballstemmer (or --glove-match exact)") from None
        import functools

        stem = _STEMMERS[algorithm] = functools.lru_cache(maxsize=1 << 18)(
            snowballstemmer.stemmer(algorithm).stemWord)
    return stem


_STEMMERS: dict = {}


def _glove_blocks(path: str, dim: int):
    """(name for messages, size in bytes, generator of (line number before the block, lines as bytes))."""
    import zipfile
    import zlib

    path = os.fspath(path)
    f = open_input(path, "a GloVe file")
    name = path
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
        nbytes = member.file_size  # the zip reader stops there, whatever the data says
        if nbytes > MAX_MEMBER_BYTES:
            f.close()
            raise CorpusError(f"{name}: expands to {nbytes / 2**30:,.0f} GiB, more than the "
                              f"{MAX_MEMBER_BYTES >> 30} GiB a vector file may have; not a GloVe archive")
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
                longest = max(len(rest), max(map(len, lines), default=0))
                if longest > MAX_LINE_BYTES:
                    at = line_no + 1 + next((i for i, x in enumerate(lines) if len(x) > MAX_LINE_BYTES), len(lines))
                    raise CorpusError(f"{name}: line {at:,} is longer than {MAX_LINE_BYTES >> 20} MiB; "
                                      f"a GloVe file has one word and its numbers per line")
                yield line_no, lines
                line_no += len(lines)
        if rest:
            yield line_no, [rest]

    return name, nbytes, blocks()


def _glove_member(archive, name: str, dim: int):
    members = [m for m in archive.infolist() if not m.is_dir() and m.filename.endswith((".txt", ".vec"))]
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
