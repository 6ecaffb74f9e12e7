"""A corpus as compact ids: one streamed pass for the vocabulary, one to encode, and a cache.

A corpus is read in blocks and kept as the smallest unsigned integer array that holds its
vocabulary (uint8 up to 256 characters), so a 200 MB file never becomes a 200-million-item
Python string or an int64 array.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from rnncli.data.chars import MAX_CODEPOINT, Vocab, iter_text_blocks
from rnncli.data.files import check_target, open_input
from rnncli.errors import CorpusError, RnnError


def corpus_files(args) -> list[str]:
    """The text files that CORPUS arguments name, in order: a file as itself, a folder as its
    `*.txt` files (sorted by name, not in subfolders, regular files or links to them; names
    starting with a dot left out, as the shell's *.txt leaves them). Each file stays one part
    of the corpus, read one after the other, as the bundled corpus's files are. A folder holding
    none is a CorpusError."""
    paths = []
    for arg in args:
        if not os.path.isdir(arg):
            paths.append(arg)
            continue
        try:
            names = sorted(os.listdir(arg))
        except OSError as e:
            raise CorpusError(f"{arg}: cannot list the folder ({e.strerror or e})") from None
        found = [os.path.join(arg, n) for n in names
                 if n.endswith(".txt") and not n.startswith(".") and os.path.isfile(os.path.join(arg, n))]
        if not found:
            raise CorpusError(f"{arg}: no .txt files in this folder; give text files or a folder holding some")
        paths += found
    return paths


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
        raise CorpusError(f"{path}: the corpus is empty; give a file with some text")
    return Vocab("".join(map(chr, np.flatnonzero(seen).tolist())))


def _encoded_blocks(paths: list[str], on_error: str, vocab: Vocab, drop_unknown: bool, dropped: dict,
                    unknown_hint: str = ""):
    """Yield the ids of each block of the files, in order (see load_corpus)."""
    path = paths[0] if len(paths) == 1 else os.path.dirname(paths[0]) or "corpus"
    dtype = _id_dtype(vocab.size)
    cps = vocab.codepoints
    known = np.zeros(MAX_CODEPOINT + 1, bool)
    known[cps] = True
    lookup = np.zeros(MAX_CODEPOINT + 1, dtype)
    lookup[cps] = np.arange(len(cps))
    seen = 0  # characters before this block
    unknown, first = set(), 0  # characters outside the vocabulary, and where the first one is
    outside = 0
    for block in _blocks(paths, on_error):
        codes = _codes(block)
        bad = ~known[codes]
        if bad.any() and drop_unknown:
            for c, count in zip(*np.unique(codes[bad], return_counts=True)):
                dropped[chr(c)] = dropped.get(chr(c), 0) + int(count)
            codes = codes[~bad]
        elif bad.any():
            first = first or seen + int(np.argmax(bad)) + 1
            outside += int(bad.sum())
            unknown.update(np.unique(codes[bad]).tolist())
        seen += len(block)
        if not outside:
            yield np.take(lookup, codes, mode="clip")  # "raise" would buffer a copy
    if outside:
        # Counted, never quoted: the file may be one a checkpoint named rather than one the
        # user chose, and an error message must not become a way to read it.
        raise CorpusError(f"{path}: {outside:,} of its {seen:,} characters ({len(unknown):,} distinct) are "
                          f"not in the model's vocabulary, the first at character {first:,}{unknown_hint}")


def load_corpus(paths: list[str], on_error: str = "strict", vocab: Vocab | None = None,
                drop_unknown: bool = False, cache: bool = False, unknown_hint: str = "") -> Corpus:
    """Two streamed passes over the files, in order: collect the vocabulary (unless given),
    then encode. With a given vocabulary (resuming), characters outside it are an error, or
    with drop_unknown left out of the ids and counted in Corpus.dropped (scoring a text).

    Memory stays near one byte per character (uint8 ids) plus one block: the vocabulary pass
    marks code points in a table instead of sorting blocks, the encoding pass looks ids up in a
    table and writes them straight into an array sized from the files (a UTF-8 character takes
    at least one byte), whose untouched tail is never paged in.

    unknown_hint: appended to the error about characters outside a given vocabulary (what to do).

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
    for block in _encoded_blocks(paths, on_error, vocab, drop_unknown, dropped, unknown_hint):
        if n + len(block) > len(ids):  # the file grew while it was read
            grown = np.empty(max(2 * len(ids), n + len(block)), dtype)
            grown[:n] = ids[:n]
            ids = grown
        ids[n:n + len(block)] = block
        n += len(block)
    if n == 0 and dropped:
        raise CorpusError(f"{path}: none of its {sum(dropped.values()):,} characters is in the "
                          f"model's vocabulary")
    if n == 0:
        raise CorpusError(f"{path}: the corpus is empty; give a file with some text")
    return Corpus(vocab, ids[:n], list(paths), dropped)


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


# The description holds the vocabulary (at most all of Unicode, ~4.5 MB as JSON) and hashes.
CACHE_META_BYTES = 16 << 20


def _open_cache(stem: str, fingerprint: dict) -> Corpus | None:
    """The cached corpus when every check passes, else None (stale, truncated, foreign, damaged)."""
    import json

    try:
        # a regular file only (a pipe planted at the name would block the read) and bounded
        with open_input(stem + ".json", "the cache's description") as f:
            text = f.read(CACHE_META_BYTES + 1)
        if len(text) > CACHE_META_BYTES:
            return None
        meta = json.loads(text.decode("utf-8"))
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
    for target in (stem + ".bin", stem + ".json"):
        check_target(target, "the corpus id cache")
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
            raise CorpusError(f"{paths[0]}: the corpus is empty; give a file with some text")
        if _fingerprint(paths, on_error) != fingerprint:
            raise CorpusError(f"{paths[0]}: the corpus changed while it was read; try again")
        _remove_quietly(stem + ".json")  # the old description must never describe the new ids
        os.replace(tmp, stem + ".bin")
        meta = {"fingerprint": fingerprint, "vocab": vocab.chars, "dtype": dtype.name, "n": n,
                "ids_head": _sha_head(stem + ".bin"), "ids_tail": _sha_head(stem + ".bin", tail=True)}
        # a fresh temporary name, never a fixed one: a fixed name planted as a link would be followed
        fd_meta, tmp_meta = tempfile.mkstemp(prefix=os.path.basename(stem) + ".", suffix=".json.tmp", dir=folder)
        try:
            with os.fdopen(fd_meta, "w", encoding="utf-8") as f:
                json.dump(meta, f)
            os.replace(tmp_meta, stem + ".json")
        except BaseException:
            _remove_quietly(tmp_meta)
            raise
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
