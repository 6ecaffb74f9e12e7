"""Numbers about a language model and a text: its loss on any text (`rnn eval`), and how much of
a sample is copied verbatim from the training text (`rnn sample --novelty`). Returns data, never
prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnncli.config import ModelConfig, TrainConfig
from rnncli.data.chars import BOM, StreamBatches, fit_batches, iter_text_blocks
from rnncli.data.corpus import load_corpus
from rnncli.engine import model as M
from rnncli.engine import threads as blas
from rnncli.engine.model import DTYPE
from rnncli.errors import CheckpointError, CorpusError
from rnncli.lm.checkpoint import LanguageModel

LN2 = math.log(2.0)
NGRAM_SIZES = (10, 20, 50)


@dataclass(frozen=True)
class TextScore:
    path: str
    chars: int  # characters the model read (unseen ones left out)
    predicted: int  # characters scored: all of them but the first
    nats: float  # summed cross-entropy
    unseen: dict  # character -> count: left out of the text, hence of the loss

    @property
    def nats_per_char(self) -> float:
        return self.nats / self.predicted

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / LN2

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_char)

    @property
    def unseen_count(self) -> int:
        return sum(self.unseen.values())


def _meta_int(meta: dict, key: str, default: int) -> int:
    v = meta.get(key)
    return v if type(v) is int and 1 <= v <= 1 << 16 else default


def evaluate_file(lm: LanguageModel, path: str, on_error: str = "strict", threads: int = 0) -> TextScore:
    """The model's cross-entropy on the text of path, read the way training reads its validation
    part (the same streams and chunks as the checkpoint's run, via score_ids).

    Characters the model has never seen have no id to read or predict: they are left out of the
    text (the model reads on as if they were not there) and counted per character.
    """
    blas.set_threads(threads)
    corpus = load_corpus([path], on_error, vocab=lm.vocab, drop_unknown=True)
    return _score(lm, path, corpus.ids, corpus.dropped)


def score_text(lm: LanguageModel, text: str, threads: int | None = None) -> TextScore:
    """evaluate_file for a string: read as a file's text is read (a leading BOM dropped, CRLF and
    CR as LF), so the same text in a file scores the same."""
    if threads is not None:
        blas.set_threads(threads)
    if text.startswith(BOM):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    known_cps = lm.vocab.codepoints
    at = np.minimum(np.searchsorted(known_cps, cps), len(known_cps) - 1)
    known = known_cps[at] == cps
    codes, counts = np.unique(cps[~known], return_counts=True)
    dropped = {chr(int(c)): int(n) for c, n in zip(codes, counts)}
    if not known.any():
        raise CorpusError(f"text: none of its {len(cps):,} characters is in the model's vocabulary")
    return _score(lm, "text", at[known].astype(np.int32), dropped)


def _score(lm: LanguageModel, name: str, ids: np.ndarray, dropped: dict) -> TextScore:
    if len(ids) < 2:
        unseen = sum(dropped.values())
        raise CorpusError(f"{name}: 1 character the model knows" + (f" and {unseen:,} it has never seen" if unseen else "")
                          + "; at least 2 known characters are needed (one to read, one to predict)")
    defaults = TrainConfig()
    total, count = score_ids(lm.cfg, lm.params, ids, _meta_int(lm.meta, "batch_size", defaults.batch_size),
                             _meta_int(lm.meta, "seq_len", defaults.seq_len))
    if not math.isfinite(total):  # finite weights can still overflow: 3e38 is a float32
        raise CheckpointError(f"{lm.path or 'the model'}: its loss on {name} is not a finite number; "
                              f"the weights are damaged or not a trained model's")
    return TextScore(name, len(ids), count, total, dropped)


# ---------------------------------------------------------------- novelty

@dataclass(frozen=True)
class NgramRow:
    n: int
    total: int  # n-grams in the samples (positions, so a repeated one counts each time)
    found: int  # of those, how many occur verbatim in the corpus

    @property
    def share(self) -> float | None:
        return self.found / self.total if self.total else None


_BASE = 0x100000001B3  # an odd 64-bit multiplier (the FNV prime); arithmetic wraps mod 2**64


def _ngram_hashes(codes: np.ndarray, n: int, levels: dict) -> np.ndarray:
    """Polynomial hashes mod 2**64 of every n-gram of codes (uint64), len(codes) - n + 1 of them.

    levels caches the hashes of the power-of-two lengths (each twice as long as the last, from
    two halves), and an n-gram's hash is put together from the powers of two that sum to n:
    hash(a + b) = hash(a) · BASE^len(b) + hash(b). About log2(n) array operations, no loop
    over positions.
    """
    m = len(codes) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    if 1 not in levels:
        levels[1] = codes
    k = 1
    while k * 2 <= n:
        if 2 * k not in levels:
            half = levels[k]
            levels[2 * k] = half[:len(half) - k] * np.uint64(pow(_BASE, k, 1 << 64)) + half[k:]
        k *= 2
    parts = [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]
    acc = levels[parts[0]][:m].copy()
    offset = parts[0]
    for p in parts[1:]:
        acc *= np.uint64(pow(_BASE, p, 1 << 64))
        acc += levels[p][offset:offset + m]
        offset += p
    return acc


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.uint64)


def novelty(samples: list[str], corpus_paths: list[str], sizes=NGRAM_SIZES, on_error: str = "strict",
            piece_chars: int = 1 << 20) -> list[NgramRow]:
    """For each n in sizes, how many of the samples' n-grams occur verbatim in the corpus files
    (read as training reads them: concatenated, line endings normalised).

    The samples' n-grams are hashed into a small table; the corpus is read once, in pieces of
    piece_chars characters (each piece keeps the last max(sizes) - 1 characters of the one
    before, so no n-gram is missed at a seam), its n-grams hashed with array operations and
    looked up. A hash match is confirmed by comparing the characters, so a collision cannot
    count. Reading stops early once every n-gram of the samples has been found.
    """
    sizes = tuple(sizes)
    wanted = {}  # n -> {hash: set of the samples' n-grams with that hash}
    for n in sizes:
        table = {}
        for s in samples:
            h = _ngram_hashes(_codes(s), n, {})
            for i, v in enumerate(h.tolist()):
                table.setdefault(v, set()).add(s[i:i + n])
        wanted[n] = table
    keys = {n: np.array(sorted(wanted[n]), np.uint64) for n in sizes}
    found = {n: set() for n in sizes}
    missing = sum(len(g) for t in wanted.values() for g in t.values())
    overlap = max(sizes) - 1
    carry = ""

    def pieces():
        for path in corpus_paths:
            for block in iter_text_blocks(path, on_error):
                for start in range(0, len(block), piece_chars):
                    yield block[start:start + piece_chars]

    for piece in pieces():
        if not missing:
            break
        window = carry + piece
        carry = window[-overlap:] if overlap else ""
        codes = _codes(window)
        levels = {}
        for n in sizes:
            if not len(keys[n]):
                continue
            h = _ngram_hashes(codes, n, levels)
            at = np.searchsorted(keys[n], h)
            hit = keys[n][np.minimum(at, len(keys[n]) - 1)] == h
            if not hit.any():
                continue
            values, first = np.unique(h[hit], return_index=True)
            positions = np.flatnonzero(hit)[first]
            for v, i in zip(values.tolist(), positions.tolist()):
                open_grams = wanted[n][v] - found[n]
                if not open_grams:
                    continue
                if len(wanted[n][v]) == 1 and window[i:i + n] in open_grams:
                    places = [i]  # the usual case: one n-gram has this hash, and here it is
                else:  # a hash collision: look at every place with this hash
                    places = np.flatnonzero(h == np.uint64(v)).tolist()
                for j in places:
                    gram = window[j:j + n]
                    if gram in open_grams:
                        open_grams.discard(gram)
                        found[n].add(gram)
                        missing -= 1
                        if not open_grams:
                            break
    rows = []
    for n in sizes:
        total = hits = 0
        for s in samples:
            for i in range(len(s) - n + 1):
                total += 1
                hits += s[i:i + n] in found[n]
        rows.append(NgramRow(n, total, hits))
    return rows


def evaluate_split(cfg: ModelConfig, params: dict, ids: np.ndarray, batch_size: int, seq_len: int,
                   max_chars: int) -> float:
    """Mean cross-entropy (nats/char) over a split's ids (the first max_chars + 1 of them when
    max_chars): the validation loss of training."""
    if max_chars and len(ids) > max_chars + 1:
        ids = ids[:max_chars + 1]
    total, count = score_ids(cfg, params, ids, batch_size, seq_len)
    return total / max(1, count)


def score_ids(cfg: ModelConfig, params: dict, ids: np.ndarray, batch_size: int, seq_len: int) -> tuple:
    """(summed cross-entropy in nats, characters predicted) for every character of ids but the first.

    ids are read as B streams side by side (each starting from the zero state), T characters a
    chunk, the state carried from chunk to chunk: the shorter last chunk is scored too, and the
    fewer than B characters past the last stream are read on from that stream's state, so each
    of ids[1:] is predicted exactly once.
    """
    if len(ids) < 2:
        return 0.0, 0
    B, T, _ = fit_batches(len(ids), batch_size, seq_len)
    batches = StreamBatches(ids, B, T)
    S = batches.stream_len
    state = M.zero_state(cfg, B, DTYPE)
    work = M.Workspace(DTYPE)
    total, count = 0.0, 0

    def score(inputs, targets, state):
        nonlocal total, count
        loss, state = M.lm_loss(cfg, params, inputs, targets, state, work)
        total += loss * inputs.size  # lm_loss is the mean over the T·B predictions
        count += inputs.size
        return state

    for k in range(batches.chunks):
        state = score(*batches.chunk(k), state)
    done = batches.chunks * T
    if done < S:
        idx = np.arange(B)[None, :] * S + np.arange(done, S + 1)[:, None]
        block = ids[idx].astype(np.int32)
        state = score(np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[1:]), state)
    rest = ids[B * S:].astype(np.int32).reshape(-1, 1)
    if len(rest) > 1:
        score(np.ascontiguousarray(rest[:-1]), np.ascontiguousarray(rest[1:]),
              np.ascontiguousarray(state[:, :, B - 1:B]))
    return total, count
