"""Sampling text from a language model (lm/checkpoint.py reads one from disk) or from parameters
in memory."""

from __future__ import annotations

import functools
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from rnncli.config import CELLS, ModelConfig
from rnncli.data.chars import BOM, Vocab
from rnncli.data.files import read_small_text
from rnncli.engine import model as M
from rnncli.engine import threads as blas
from rnncli.engine.kernels import linear as k_lin
from rnncli.engine.kernels import panel as k_panel
from rnncli.engine.kernels import sampling as k_sampling
from rnncli.engine.kernels import sync as k_sync
from rnncli.errors import CheckpointError, ConfigError, DivergedError

# load_lm belongs to lm/checkpoint.py; callers that sample find it here too
from rnncli.lm.checkpoint import LanguageModel, load_lm  # noqa: F401

CHUNK = 64  # characters per kernel call: small enough to stream, large enough to hide overhead
SPLIT_MIN_BYTES = 1 << 20  # weights read per character below which one thread samples alone
BATCH_SAMPLES = 256  # samples drawn together at most (their states and scratch stay small)
PRIME_FILE_MAX_BYTES = 1 << 20  # a prime is context for a few thousand steps, not a corpus


def decode_escapes(text: str, what: str = "prime") -> str:
    r"""Turn \n, \t, \\ and \uXXXX escapes typed on a command line into characters; what names
    the option in the error."""
    if "\\" not in text:
        return text
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what}: bad escape sequence ({e.reason})") from None


class Generator:
    """Streams characters from a model, one sample or a batch of them; large models on several
    threads (parties)."""

    def __init__(self, lm: LanguageModel, threads: int | None = None):
        """threads: as blas.set_threads (0 = all cores); None leaves the process's setting."""
        if threads is not None:
            blas.set_threads(threads)
        self.lm = lm
        cfg, p = lm.cfg, lm.params
        L, H, GH = cfg.num_layers, cfg.hidden_size, cfg.gates * cfg.hidden_size
        dt = np.float32
        if cfg.embedding_size > 0:
            self.table0 = np.empty((lm.vocab.size, GH), dt)
            k_lin.linear_forward(p["embed"], p["l0.W_xh"], p["l0.b"], self.table0)
        else:
            self.table0 = np.ascontiguousarray(p["l0.W_xh"].T + p["l0.b"], dt)
        self.W_xh_up = np.ascontiguousarray(np.stack([p[f"l{k}.W_xh"] for k in range(1, L)]) if L > 1
                                            else np.zeros((0, GH, H), dt), dt)
        self.b_up = np.ascontiguousarray(np.stack([p[f"l{k}.b"] for k in range(1, L)]) if L > 1
                                         else np.zeros((0, GH), dt), dt)
        self.W_hh = np.ascontiguousarray(np.stack([p[f"l{k}.W_hh"] for k in range(L)]), dt)
        self.b_hn = np.ascontiguousarray(np.stack([p[f"l{k}.b_hn"] for k in range(L)]) if cfg.cell == "gru"
                                         else np.zeros((L, H), dt), dt)
        self.W_hy = np.ascontiguousarray(p["W_hy"], dt)
        # each matrix packed once for the generation kernel's products
        self.P_xh_up = _packed_stack(self.W_xh_up, cfg.gates)
        self.P_hh = _packed_stack(self.W_hh, cfg.gates)
        self.P_hy = k_panel.packed(self.W_hy, True)
        self.b_y = np.ascontiguousarray(p["b_y"], dt)
        self.cell = CELLS.index(cfg.cell)
        self.code = ("tanh", "relu", "sigmoid").index(cfg.activation)
        self._choices = {}  # threads sharing a character -> blas.Choice between them and one

    def parties(self) -> int:
        """Threads that share each character's products: those set by blas.set_threads, when
        the weights one character reads are large enough to be worth splitting
        (SPLIT_MIN_BYTES), at most one per UNITS_PER_WORKER hidden units."""
        if self.weight_bytes() < SPLIT_MIN_BYTES:
            return 1
        return max(1, min(blas.workers(), -(-self.lm.cfg.hidden_size // blas.UNITS_PER_WORKER)))

    def weight_bytes(self) -> int:
        """Bytes of weights read per generated character (each matrix once)."""
        return 4 * (self.W_xh_up.size + self.W_hh.size + self.W_hy.size)

    def generate(self, state: np.ndarray, feed: np.ndarray, inv_temp: float, top_k: int,
                 uniforms: np.ndarray, out: np.ndarray, top_p: float = 1.0) -> None:
        """kernels/sampling.generate over the threads of parties(), each on its share of the
        hidden units and of the vocabulary; state (L, S, B, H) in/out, out (n, B) written."""
        L, S, B, H = state.shape
        GH, V = self.W_hh.shape[1], self.W_hy.shape[0]
        parties = self.parties()
        xp, gates = np.empty((B, GH), np.float32), np.empty((B, GH), np.float32)
        hn, logits = np.empty((B, H), np.float32), np.zeros((2, B, V), np.float32)  # zeros: checked below
        hs = np.empty((2,) + state.shape, np.float32)
        hs[0] = state
        barrier = np.zeros(k_sync.BARRIER_WORDS, np.int64)
        # threads that share a character meet L + 1 times in it, and beside another busy process
        # wait for each other more than they gain: run alone when that has been faster lately
        # (blas.Choice; one thread draws the very same text)
        choice = self._choices.setdefault(parties, blas.Choice([parties, 1])) if parties > 1 else None
        if choice is not None:
            parties = choice.pick()
        started = time.perf_counter()
        shares = zip(blas.unit_shares(H, parties), blas.unit_shares(V, parties))
        blas.together([functools.partial(
            k_sampling.generate, self.cell, self.code, self.table0, self.W_xh_up, self.P_xh_up, self.b_up,
            self.W_hh, self.P_hh, self.b_hn, self.W_hy, self.P_hy, self.b_y, state, feed, inv_temp, top_k,
            float(top_p), uniforms, out, xp, gates, hn, hs, logits, u0, u1, v0, v1, barrier, parties, rank)
            for rank, ((u0, u1), (v0, v1)) in enumerate(shares)])
        if choice is not None:  # per step: the first call also feeds the prime
            choice.record(parties, time.perf_counter() - started, feed.shape[0] + out.shape[0])
        # the last two steps' scores: finite weights can still overflow (3e38 is a float32), and a
        # draw from NaN scores would quietly write one character over and over
        if not (np.isfinite(logits).all() and np.isfinite(state).all()):
            if not self.lm.path:  # weights in training (the preview): they diverged
                raise DivergedError("training diverged: the model's output is not a finite number; "
                                    "try a lower --lr or --clip")
            raise CheckpointError(f"{self.lm.path}: its output is not a finite number; "
                                  f"the weights are damaged or not a trained model's")

    def start_token(self) -> int:
        """What to feed when there is no prime: a newline if the model knows one."""
        return start_token(self.lm.vocab)

    def stream(self, prime_ids: np.ndarray, length: int, temperature: float, top_k: int,
               rng: np.random.Generator, stop: str = "", top_p: float = 1.0):
        """Yield decoded pieces of at most CHUNK characters, `length` characters in all, ending
        early just after `stop` appears (stop = "" never stops)."""
        for pieces in self.stream_batch(prime_ids, length, temperature, top_k, [rng], stop, top_p):
            if pieces[0]:
                yield pieces[0]

    def stream_batch(self, prime_ids: np.ndarray, length: int, temperature: float, top_k: int,
                     rngs: list, stop: str = "", top_p: float = 1.0):
        """Draw len(rngs) samples as one batch, so that each step reads the weights once for
        all of them: yield, per chunk of at most CHUNK characters, one decoded piece per sample.
        Sample b takes its random numbers from rngs[b] alone and rows never interact, so it is
        the very text it would be drawn alone. A sample ends just after `stop` appears (pieces
        "" from then on); the loop ends when all have, or after `length` characters. top_p
        keeps, after top_k, the smallest set of likeliest characters whose probability reaches
        it (1 = all)."""
        if temperature < 0:
            raise ConfigError("temperature: must be 0 (greedy) or positive")
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p: must be above 0 and at most 1, not {top_p!r}")
        inv_temp = 0.0 if temperature == 0 else 1.0 / temperature
        B = len(rngs)
        state = M.zero_state(self.lm.cfg, B, np.float32)
        prime = np.asarray(prime_ids, np.int32).reshape(-1, 1)
        feed = np.ascontiguousarray(np.repeat(prime, B, axis=1))
        produced = 0
        tails = [""] * B
        done = [False] * B
        while produced < length and not all(done):
            n = min(CHUNK, length - produced)
            out = np.empty((n, B), np.int32)
            uniforms = np.ascontiguousarray(np.stack([rng.random(n) for rng in rngs], axis=1))
            self.generate(state, feed, inv_temp, top_k, uniforms, out, top_p)
            feed = out[-1:].copy()
            produced += n
            pieces = []
            for b in range(B):
                piece = "" if done[b] else self.lm.vocab.decode(out[:, b])
                if stop and piece:
                    window = tails[b] + piece
                    at = window.find(stop)
                    if at >= 0:
                        piece = window[len(tails[b]):at + len(stop)] if at + len(stop) > len(tails[b]) else ""
                        done[b] = True
                    else:
                        tails[b] = window[-(len(stop) - 1):] if len(stop) > 1 else ""
                pieces.append(piece)
            yield pieces


def _packed_stack(W: np.ndarray, G: int) -> np.ndarray:
    """panel.packed_gates(W[k], G) for each matrix of a stack (L, G·H, K), stacked; (0, ...) if
    L = 0."""
    N, K = W.shape[1], W.shape[2]
    if W.shape[0] == 0:
        return np.zeros((0, G * -(-(N // G) // k_panel.NR), K, k_panel.NR), W.dtype)
    return np.stack([k_panel.packed_gates(w, G) for w in W])


def start_token(vocab: Vocab) -> int:
    """What to feed when there is no prime: a newline if the model knows one."""
    return vocab.chars.index("\n") if "\n" in vocab.chars else 0


def prime_ids(lm: LanguageModel, prime: str, drop_unknown: bool) -> np.ndarray:
    """The prime text as ids; unknown characters are an error listing them, or dropped."""
    unknown = lm.vocab.unknown(prime)
    if unknown:
        if not drop_unknown:
            shown = " ".join(repr(c) for c in unknown[:20])
            raise ConfigError(f"prime: characters the model has never seen: {shown}; "
                              f"remove them or pass --drop-unknown")
        prime = "".join(c for c in prime if c not in set(unknown))
    return lm.vocab.encode(prime)


def read_prime_file(path: str) -> str:
    """A prime from a UTF-8 file, taken as written (no escapes), read as a corpus is read (a
    leading BOM dropped, CRLF and CR as LF); a regular file of at most PRIME_FILE_MAX_BYTES."""
    text = read_small_text(path, "a UTF-8 text file", PRIME_FILE_MAX_BYTES,
                           "give the end of it that the sample should follow")
    if text.startswith(BOM):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class Drawing:
    """Samples ready to be drawn (draw_samples returns one); nothing is drawn until pieces() or
    texts() is called, and each call draws the same texts again from `seed`."""

    lm: LanguageModel
    seed: int  # the seed the samples are drawn with: sample i takes default_rng([seed, i])
    prefix: str  # the prime as the model reads it (decoded from its ids)
    feed: np.ndarray  # what is fed before the first draw: the prime, or the start token
    length: int
    temperature: float
    top_k: int
    top_p: float
    num_samples: int
    stop: str
    threads: int | None
    _generator: Generator | None = field(default=None, repr=False)

    def generator(self) -> Generator:
        """The model prepared for sampling (its weights packed once, on first use)."""
        if self._generator is None:
            self._generator = Generator(self.lm, self.threads)
        return self._generator

    def pieces(self):
        """Yield, per chunk of at most CHUNK characters, a list of num_samples decoded pieces:
        sample i's text is "".join of its pieces. Samples are drawn BATCH_SAMPLES at a time, so
        beyond that a chunk holds "" for the samples not in the batch being drawn."""
        gen, n = self.generator(), self.num_samples
        for first in range(0, n, BATCH_SAMPLES):
            count = min(BATCH_SAMPLES, n - first)
            rngs = [np.random.default_rng([self.seed, i]) for i in range(first, first + count)]
            for pieces in gen.stream_batch(self.feed, self.length, self.temperature, self.top_k, rngs,
                                           self.stop, self.top_p):
                yield pieces if count == n else [""] * first + pieces + [""] * (n - first - count)

    def texts(self) -> list[str]:
        """Every sample drawn to its end: the generated texts, without the prefix."""
        texts = [[] for _ in range(self.num_samples)]
        for pieces in self.pieces():
            for text, piece in zip(texts, pieces):
                if piece:
                    text.append(piece)
        return ["".join(t) for t in texts]


def draw_samples(lm, prime: str = "", length: int = 500, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, num_samples: int = 1, stop: str = "",
                 drop_unknown: bool = False, threads: int | None = None) -> "Drawing":
    """num_samples samples of `length` characters from a language model (load_lm), each
    following `prime` (its characters as they are: no escapes). temperature divides the logits
    (0 = greedy); top_k keeps the k likeliest characters (0 = all), then top_p the smallest set
    of likeliest ones whose probability reaches it (1 = all); a sample ends just after `stop`
    appears. Sample i draws from default_rng([seed, i]), so it is the same text however many
    are drawn; seed None draws one (Drawing.seed says which). Characters of the prime the model
    has never seen are an error, or dropped with drop_unknown. threads: as Generator."""
    if not isinstance(lm, LanguageModel):
        raise ConfigError("draw_samples: lm must be a language model (lm.checkpoint.load_lm)")
    if not (_real(temperature) and temperature >= 0):
        raise ConfigError(f"temperature: must be 0 (greedy) or a positive number, not {temperature!r}")
    if not (_real(top_p) and 0 < top_p <= 1):
        raise ConfigError(f"top-p: must be above 0 and at most 1, not {top_p!r}")
    for name, value, low in (("length", length, 0), ("top-k", top_k, 0), ("num-samples", num_samples, 1)):
        if not _whole(value, low):
            raise ConfigError(f"{name}: must be a whole number, at least {low}, not {value!r}")
    if seed is not None and not _whole(seed, 0):
        raise ConfigError(f"seed: must be a whole number, 0 or more, not {seed!r}")
    if not (isinstance(prime, str) and isinstance(stop, str)):
        raise ConfigError("prime and stop: must be text")
    ids = prime_ids(lm, prime, drop_unknown)
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**31)
    feed = ids if len(ids) else np.array([start_token(lm.vocab)], np.int32)
    prefix = lm.vocab.decode(ids) if len(ids) else ""
    return Drawing(lm, int(seed), prefix, feed, int(length), float(temperature), int(top_k), float(top_p),
                   int(num_samples), stop, threads)


def _whole(x, low: int) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= low


def _real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def preview(cfg: ModelConfig, vocab: Vocab, params: dict, length: int, temperature: float, seed: int) -> str:
    """A short sample straight from parameters in memory (training previews)."""
    lm = LanguageModel(cfg, vocab, params, {})
    gen = Generator(lm)
    rng = np.random.default_rng(seed)
    return "".join(gen.stream(np.array([gen.start_token()]), length, temperature, 0, rng))
