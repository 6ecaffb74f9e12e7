"""Throughput of training and sampling, and the machine's matrix-multiply peak, measured through
the engine's public API. `rnn bench` reports these; benchmarks/compare_torch.py times the same
runs side by side with PyTorch.

What is measured
* Training chars/s = B·T characters per step / seconds per step. A step is what `rnn train` does
  with one chunk, the engine's one training step (step.train_step): zero the gradients, forward +
  BPTT (model.lm_loss_and_grads), global-norm clipping, an Adam update (optim.Optimizer);
  float32; the hidden state carried from chunk to chunk. The tokens are random ids of a 65-character vocabulary (tiny
  Shakespeare's): the work of a step does not depend on their values.
* Sampling chars/s = characters / seconds of sample.Generator.stream_batch, temperature 1,
  decoding included (what `rnn sample` does per character), for a batch of samples drawn
  together (1, or 16 as `rnn sample --num-samples 16` draws them). At batch 1 each character
  reads every weight once, so the bound is memory, not arithmetic: memory_bandwidth measures a
  streaming read from memory and one from a cache, and each sampling row reports the weights
  it read per second against them.
* Classifier (ClassifyCase, ClassifyRun; benchmarks/compare_torch.py's cls-* rows): the model of
  `rnn classify train` on synthetic word-id texts of realistic lengths, timed in passes over
  length-sorted batches; training steps (forward + backward + clip + Adam) or forward passes.
* Every measurement warms up first (JIT compile or cache load, first touch of the buffers, BLAS
  threads waking), then takes `reps` repetitions and reports their median. A repetition runs
  whole steps for at least `min_rep_seconds`, so a short step is not lost in timer noise.

FLOP convention (train_flops, sample_flops): only matrix products count, 2·m·n·k per product of
(m, k) by (k, n); elementwise gate math, softmax, clipping and Adam are left out, and so are
gathers (embedding lookups, one-hot inputs), which do no multiply-adds.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from rnncli.classify import model as C
from rnncli.config import ClassifyConfig, ModelConfig, OptimConfig
from rnncli.data.chars import StreamBatches, Vocab
from rnncli.engine import model as M
from rnncli.engine import openblas, products
from rnncli.engine import threads as blas
from rnncli.engine.flops import sample_flops, train_flops
from rnncli.engine.kernels import memory as k_mem
from rnncli.engine.model import DTYPE
from rnncli.engine.optim import Optimizer
from rnncli.engine.step import train_step
from rnncli.errors import ConfigError
from rnncli.lm.sample import Generator, LanguageModel

VOCAB_SIZE = 65  # tiny Shakespeare's character set




TASKS = ("train", "sample")


@dataclass(frozen=True)
class BenchCase:
    """One configuration to measure. For task "sample", `batch` samples of `chars` characters
    are drawn together per call (Generator.stream_batch); seq_len is not used."""

    name: str
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 2
    batch: int = 32
    seq_len: int = 64
    embedding: int = 64
    task: str = "train"
    chars: int = 2000

    def model_config(self) -> ModelConfig:
        return ModelConfig(cell=self.cell, hidden_size=self.hidden, num_layers=self.layers,
                           embedding_size=self.embedding).validate()

    @property
    def chars_per_unit(self) -> int:
        """Characters processed by one timed unit: a training step, or one sample."""
        return self.batch * self.seq_len if self.task == "train" else self.chars * self.batch


@dataclass(frozen=True)
class BenchRow:
    """The result for one case. For sampling rows batch is the samples drawn together and
    seq_len 0."""

    name: str
    cell: str
    hidden: int
    layers: int
    batch: int
    seq_len: int
    chars_per_sec: float  # median over the repetitions
    gflops: float  # model FLOPs (see module docstring) per second, at the median speed
    fraction_of_peak: float  # gflops / the machine's float32 GEMM peak at the same threads
    task: str = "train"
    threads: int = 1
    embedding: int = 64
    reps: tuple = ()  # chars/s of each repetition, in the order measured
    weights_gbs: float = 0.0  # sampling: GB/s of weights read (each step reads them once for the batch)


@dataclass(frozen=True)
class BenchReport:
    threads: int
    peak_gflops: float
    rows: list = field(default_factory=list)
    openblas: str = ""  # openblas.scipy_kernels(): the kernel family the products run on
    memory_gbs: float = 0.0  # memory_bandwidth(): streaming from memory ...
    cache_gbs: float = 0.0  # ... and from a cache


def default_configs() -> list[BenchCase]:
    """The standard sizes of `rnn bench`: together well under a minute on two cores."""
    return [
        BenchCase("lstm-1x128", "lstm", 128, 1),
        BenchCase("lstm-2x256", "lstm", 256, 2),
        BenchCase("gru-2x256", "gru", 256, 2),
        BenchCase("rnn-2x256", "rnn", 256, 2),
        BenchCase("sample-lstm-2x256", "lstm", 256, 2, batch=1, seq_len=0, task="sample"),
        BenchCase("sample-lstm-2x256-x16", "lstm", 256, 2, batch=16, seq_len=0, task="sample", chars=500),
    ]


def resolved_threads(threads: int) -> int:
    """0 means all cores, as in blas.set_threads."""
    return threads or os.cpu_count() or 1


def case_flops_per_unit(case: BenchCase, vocab_size: int = VOCAB_SIZE) -> int:
    """FLOPs of one timed unit of a case: one training step, or one batch of case.batch samples
    of case.chars."""
    cfg = case.model_config()
    if case.task == "train":
        return train_flops(cfg, case.batch, case.seq_len, vocab_size)
    return sample_flops(cfg, vocab_size) * case.chars * case.batch


def matmul_peak_gflops(threads: int = 0, n: int = 1024, reps: int = 10, seed: int = 0) -> float:
    """float32 GEMM GFLOP/s of an (n, n) @ (n, n) product through the engine's own product path
    (engine/products.py: blocks of rows on rnncli's threads, each SciPy's OpenBLAS called from
    @njit on one thread), with the thread policy of blas.set_threads.
    A peak is what the machine can do at best, so this is the best of `reps` after a warm-up."""
    blas.set_threads(threads)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n), dtype=DTYPE)
    Bm = rng.standard_normal((n, n), dtype=DTYPE)
    C = np.empty((n, n), DTYPE)
    # linear_input_grad is exactly C = A @ B with C preallocated: a plain GEMM, no extra kernel.
    products.linear_input_grad(A, Bm, C)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        products.linear_input_grad(A, Bm, C)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def memory_bandwidth(threads: int = 0, big_bytes: int = 256 << 20, cached_bytes: int = 256 << 10,
                     reps: int = 5) -> tuple[float, float]:
    """(GB/s streaming from memory, GB/s from a cache): float32 reads of one buffer of big_bytes,
    far larger than any last-level cache, and of cached_bytes per thread (fits a core's L2)
    read many times over; split across the worker threads of blas.set_threads(threads); best
    of `reps`. The bound for batch-1 sampling, which reads every weight once per character."""
    blas.set_threads(threads)
    results = []
    for nbytes, passes in ((big_bytes, 1), (cached_bytes * blas.workers(), 64)):
        a = np.ones(nbytes // 4, DTYPE)
        blas.over_parts(lambda lo, hi: k_mem.read_sum(a, lo, hi, 1), a.size, 1 << 14)  # warm-up, compile
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            blas.over_parts(lambda lo, hi: k_mem.read_sum(a, lo, hi, passes), a.size, 1 << 14)
            best = min(best, time.perf_counter() - t0)
        results.append(a.nbytes * passes / best / 1e9)
    return results[0], results[1]


def weight_bytes_per_char(case: BenchCase, vocab_size: int = VOCAB_SIZE) -> int:
    """Bytes of weights one sampled character reads at batch 1 (float32): every recurrent, input
    (layers above 0) and output matrix once; layer 0's input is a table row."""
    return 2 * sample_flops(case.model_config(), vocab_size)  # 2 FLOPs and 4 bytes per weight


def initial_params(case: BenchCase, vocab_size: int = VOCAB_SIZE, seed: int = 0) -> dict:
    """The model's seeded initialisation (float32): what both frameworks start from."""
    cfg = case.model_config()
    return M.init_params(cfg, M.lm_shapes(cfg, vocab_size), np.random.default_rng(seed), DTYPE)


def random_chunks(case: BenchCase, vocab_size: int = VOCAB_SIZE, seed: int = 0,
                  count: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` consecutive chunks (inputs, targets), each (T, B) int32, of a random id stream read
    as B side-by-side streams, the same way `rnn train` reads text (so the carried state really
    continues the stream). The PyTorch comparison feeds the very same chunks."""
    B, T = case.batch, case.seq_len
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, size=B * T * count + 1, dtype=np.int32)
    batches = StreamBatches(ids, B, T)
    return [batches.chunk(k) for k in range(batches.chunks)]


class TrainingRun:
    """A model, its optimizer, gradients, workspace and data, ready to take training steps.

    data: chunks (inputs, targets) to cycle through in order, default random_chunks(case);
    params: initial parameters (float32 after the model's own check), default a seeded init.
    """

    def __init__(self, case: BenchCase, seed: int = 0, vocab_size: int = VOCAB_SIZE,
                 data: list | None = None, params: dict | None = None, optim: OptimConfig | None = None):
        self.case = case
        self.cfg = case.model_config()
        shapes = M.lm_shapes(self.cfg, vocab_size)
        if params is None:
            params = initial_params(case, vocab_size, seed)
        self.params = M.check_params(params, shapes, DTYPE)
        self.grads = M.zeros_like_params(self.params)
        self.optim = (optim or OptimConfig()).validate()
        self.opt = Optimizer(self.optim, self.params)
        self.work = M.Workspace(DTYPE)
        self.state = M.zero_state(self.cfg, case.batch, DTYPE)
        self.data = data if data is not None else random_chunks(case, vocab_size, seed)
        self.position = 0

    def step(self) -> float:
        """One training step on the next chunk; returns its loss (nats/char, before the update)."""
        inputs, targets = self.data[self.position % len(self.data)]
        self.position += 1
        loss, _, self.state = train_step(
            self.params, self.grads, self.opt, self.optim.lr, self.optim.clip,
            lambda grads: M.lm_loss_and_grads(self.cfg, self.params, grads, inputs, targets, self.state, self.work))
        return loss

    def run(self, steps: int) -> float:
        """Seconds taken by `steps` training steps."""
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - t0


class SamplingRun:
    """A Generator on a freshly initialised model of the case's size, drawing case.batch samples
    together."""

    def __init__(self, case: BenchCase, seed: int = 0, vocab_size: int = VOCAB_SIZE):
        self.case = case
        cfg = case.model_config()
        params = initial_params(case, vocab_size, seed)
        vocab = Vocab("".join(chr(32 + k) for k in range(vocab_size)))  # printable, sorted
        self.generator = Generator(LanguageModel(cfg, vocab, params, {}))
        self.rngs = [np.random.default_rng([seed, b]) for b in range(case.batch)]
        self.prime = np.array([0], np.int32)

    def run(self, samples: int = 1) -> float:
        """Seconds taken to draw `samples` batches of case.batch texts of case.chars characters
        each, a batch at a time (Generator.stream_batch; state reset per batch)."""
        t0 = time.perf_counter()
        for _ in range(samples):
            for _pieces in self.generator.stream_batch(self.prime, self.case.chars, 1.0, 0, self.rngs):
                pass
        return time.perf_counter() - t0


def make_run(case, seed: int = 0):
    """The run object of a BenchCase, or of a ClassifyCase (ClassifyRun)."""
    if isinstance(case, ClassifyCase):
        return ClassifyRun(case, seed)
    if case.task not in TASKS:
        raise ConfigError(f"bench: task {case.task!r} is not one of {', '.join(TASKS)}")
    return TrainingRun(case, seed) if case.task == "train" else SamplingRun(case, seed)


CLASSIFY_TASKS = ("train", "infer")


@dataclass(frozen=True)
class ClassifyCase:
    """A word-level text classifier as `rnn classify train` builds it: embedding -> recurrent
    stack (both directions) -> max pooling over each text's valid steps -> dense ReLU layers ->
    classes; dropout 0. The data are `texts` synthetic texts (classify_data) in batches of
    similar length (classify.length_batches). A timed unit is one pass over all the batches:
    for task "train" a step per batch (zero the gradients, forward + backward, global-norm
    clip, Adam), for "infer" the forward pass alone, as a loaded classifier runs it
    (classify.forward with inference=True and its input tables, made once)."""

    name: str
    cell: str = "gru"
    hidden: int = 256
    layers: int = 1
    bidirectional: bool = True
    embedding: int = 128
    vocab: int = 20_000
    dense: tuple = (128, 64)
    classes: int = 4
    batch: int = 32
    texts: int = 512
    # text lengths in tokens: log-normal with this median and sigma, clipped to [min_len, max_len]
    median_len: int = 100
    sigma: float = 0.7
    min_len: int = 20
    max_len: int = 400
    task: str = "train"

    def config(self) -> ClassifyConfig:
        return ClassifyConfig(cell=self.cell, hidden_size=self.hidden, num_layers=self.layers,
                              bidirectional=self.bidirectional, pooling="max", dense=tuple(self.dense),
                              dropout=0.0, embedding_size=self.embedding, batch_size=self.batch).validate()


@dataclass(frozen=True)
class ClassifyBatch:
    """One padded batch: ids and rev (T, B) int32 as classify.pad_batch makes them, lengths (B,)
    int32, targets (B,) int32, weights (B,) float32 (1/B each: the mean cross-entropy)."""

    ids: np.ndarray
    rev: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray
    weights: np.ndarray


def classify_data(case: ClassifyCase, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """(texts as int32 id arrays, labels (N,) int32), seeded. Lengths are log-normal (a long
    right tail, as in reviews and news) clipped to [min_len, max_len]; ids follow Zipf's law over
    the vocabulary: the k-th most frequent word (id k + 1; 0 is padding, 1 unknown) has
    probability ∝ 1/k."""
    rng = np.random.default_rng([seed, 14])
    raw = rng.lognormal(math.log(case.median_len), case.sigma, size=case.texts)
    lengths = np.clip(np.rint(raw), case.min_len, case.max_len).astype(np.int64)
    rank = np.arange(1, case.vocab - 1, dtype=np.float64)
    p = 1.0 / rank
    ids = (rng.choice(rank.size, size=int(lengths.sum()), p=p / p.sum()) + 2).astype(np.int32)
    texts = np.split(ids, np.cumsum(lengths)[:-1])
    labels = rng.integers(0, case.classes, size=case.texts).astype(np.int32)
    return texts, labels


def classify_batches(case: ClassifyCase, seed: int = 0) -> list[ClassifyBatch]:
    """The batches of one pass, in order: texts of similar length together and the batches in
    a seeded random order, as an epoch of `rnn classify train` takes them. The PyTorch
    comparison feeds the very same batches."""
    texts, labels = classify_data(case, seed)
    lengths = np.array([len(t) for t in texts])
    out = []
    for idx in C.length_batches(lengths, case.batch, np.random.default_rng([seed, 15])):
        ids, rev, lens = C.pad_batch([texts[i] for i in idx])
        out.append(ClassifyBatch(ids, rev, lens, labels[idx], np.full(len(idx), 1.0 / len(idx), DTYPE)))
    return out


def initial_classifier(case: ClassifyCase, seed: int = 0) -> dict:
    """The classifier's seeded initialisation (float32): what both frameworks start from."""
    cfg = case.config()
    shapes = C.classifier_shapes(cfg, case.vocab, case.classes)
    return C.init_classifier(cfg, shapes, np.random.default_rng(seed), DTYPE)


class ClassifyRun:
    """A classifier, its optimizer, gradients, workspace and batches; run() times passes."""

    def __init__(self, case: ClassifyCase, seed: int = 0, batches: list | None = None,
                 params: dict | None = None, optim: OptimConfig | None = None):
        if case.task not in CLASSIFY_TASKS:
            raise ConfigError(f"bench: classifier task {case.task!r} is not one of {', '.join(CLASSIFY_TASKS)}")
        self.case = case
        self.cfg = case.config()
        shapes = C.classifier_shapes(self.cfg, case.vocab, case.classes)
        self.params = M.check_params(initial_classifier(case, seed) if params is None else params, shapes, DTYPE)
        self.grads = M.zeros_like_params(self.params)
        self.optim = (optim or OptimConfig()).validate()
        self.opt = Optimizer(self.optim, self.params)
        self.work = M.Workspace(DTYPE)
        self.batches = batches if batches is not None else classify_batches(case, seed)
        # inference runs as a loaded classifier does (classify.Classifier.input_tables): the
        # input tables, when they pay for a pass, are made once
        self.tables = None
        if case.task == "infer":
            tokens = int(sum(b.lengths.sum() for b in self.batches))
            self.tables = C.tables_for_pass(self.cfg, self.params, tokens)

    def train_step(self, b: ClassifyBatch) -> float:
        """One training step on a batch; returns its loss (mean nats per text, before the update)."""
        loss, _, _ = train_step(
            self.params, self.grads, self.opt, self.optim.lr, self.optim.clip,
            lambda grads: (C.loss_and_grads(self.cfg, self.params, grads, b.ids, b.rev, b.lengths, b.targets,
                                            b.weights, self.work), None))
        return loss

    def logits(self, b: ClassifyBatch) -> np.ndarray:
        return C.forward(self.cfg, self.params, b.ids, b.rev, b.lengths, self.work, inference=True,
                         tables=self.tables)[0]

    def run(self, passes: int = 1) -> float:
        """Seconds taken by `passes` passes over the batches (training steps or forward passes)."""
        step = self.train_step if self.case.task == "train" else self.logits
        t0 = time.perf_counter()
        for _ in range(passes):
            for b in self.batches:
                step(b)
        return time.perf_counter() - t0


def warm_up(run, warmup: int = 2) -> float:
    """Run `warmup` units untimed, then time single units; returns the best seconds per unit,
    from which a repetition's length is chosen."""
    run.run(max(1, warmup))
    return min(run.run(1) for _ in range(2))


def units_per_rep(seconds_per_unit: float, min_rep_seconds: float) -> int:
    return max(1, math.ceil(min_rep_seconds / max(seconds_per_unit, 1e-9)))


def measure(case: BenchCase, reps: int = 5, warmup: int = 2, min_rep_seconds: float = 0.3,
            seed: int = 0) -> list[float]:
    """chars/s of each of `reps` repetitions of a case, after the warm-up."""
    run = make_run(case, seed)
    units = units_per_rep(warm_up(run, warmup), min_rep_seconds)
    return [units * case.chars_per_unit / run.run(units) for _ in range(reps)]


def make_row(case: BenchCase, speeds: list[float], threads: int, peak_gflops: float,
             vocab_size: int = VOCAB_SIZE) -> BenchRow:
    """A result row from per-repetition chars/s: median speed, model GFLOP/s, fraction of peak."""
    cps = statistics.median(speeds)
    gflops = case_flops_per_unit(case, vocab_size) / case.chars_per_unit * cps / 1e9
    sampling = case.task == "sample"
    weights_gbs = weight_bytes_per_char(case, vocab_size) * cps / case.batch / 1e9 if sampling else 0.0
    return BenchRow(case.name, case.cell, case.hidden, case.layers, case.batch,
                    0 if sampling else case.seq_len, cps, gflops,
                    gflops / peak_gflops if peak_gflops > 0 else float("nan"),
                    task=case.task, threads=threads, embedding=case.embedding, reps=tuple(speeds),
                    weights_gbs=weights_gbs)


def run_benchmarks(cases: list[BenchCase] | None = None, threads: int = 0, reps: int = 5,
                   warmup: int = 2, min_rep_seconds: float = 0.3, on_row=None) -> BenchReport:
    """Measure the GEMM peak and each case at the given thread count (0 = all cores).

    on_row(row) is called as each case finishes (default: nothing), for progress display.
    """
    cases = default_configs() if cases is None else cases
    blas.set_threads(threads)
    n_threads = resolved_threads(threads)
    peak = matmul_peak_gflops(threads)
    memory_gbs, cache_gbs = memory_bandwidth(threads) if any(c.task == "sample" for c in cases) else (0.0, 0.0)
    rows = []
    for case in cases:
        row = make_row(case, measure(case, reps, warmup, min_rep_seconds), n_threads, peak)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return BenchReport(n_threads, peak, rows, openblas.scipy_kernels(), memory_gbs, cache_gbs)
