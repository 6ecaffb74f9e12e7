"""Who owns the cores: BLAS and Numba thread control, decided once, here.

numpy and scipy wheels each bundle their own OpenBLAS. Numba's np.dot inside @njit calls
SciPy's (scipy.linalg.cython_blas), so every matrix product of training and sampling runs on
SciPy's OpenBLAS. Two pools spinning on two cores slow a small model 3-4x, so:

* SciPy's OpenBLAS gets the thread count the user asked for (default: all cores);
* numpy's OpenBLAS is pinned to 1 thread: the hot path never calls it;
* kernels use no Numba parallel threads. The recurrent loops, which BLAS never sees (their
  per-step products run on kernels/panel.py), are split by rnncli itself (over_shares), over
  batch rows and over hidden units. Rows never interact inside a time loop, so threads with
  different rows run the whole loop with no synchronisation until the end. Threads with the
  same rows and different units each compute their units' gates and states and meet once per
  step (kernels/sync.py), because step t+1 reads all of h_t; each reads only its share of the
  recurrent weights, so a small batch or a large layer still keeps every core busy. The loop's
  results do not depend on the split: each element of each product sums over k in the same
  order on any thread. (OpenBLAS's own threaded SGEMM, which the input and weight-gradient
  products use, does round differently at different thread counts: seen at 1e-7 relative.)

Thread counts are set through each library's own `*openblas_set_num_threads*` symbol, found
by the library's path, so no extra dependency (threadpoolctl) is needed. Where a library is
not OpenBLAS (a conda MKL build, say) nothing is changed and the environment rules.

Kernels: the wheels' OpenBLAS carries code for many CPUs and picks one when it loads, unless
OPENBLAS_CORETYPE names one. Some machines set that to an older family (seen here:
"Haswell", AVX2, on an AVX-512 CPU, which halves every matrix product: 1024³ GEMM 112 vs
208 GFLOP/s on one core). rnncli therefore decides the kernel family itself, before SciPy's
OpenBLAS loads (rnncli/__init__.py calls configure_openblas): on a CPU with the AVX-512 subsets
OpenBLAS's SkylakeX kernels need, a request for an AVX2-or-older family is replaced by
SkylakeX; anything else is left alone. RNN_OPENBLAS_CORETYPE, when set, is used as given
(say "Haswell" for bit-for-bit agreement with an AVX2 machine).

Idle threads: after each call OpenBLAS's helper threads spin for up to 2^28 cycles (about 80 ms)
waiting for more work. During the recurrent loops, where rnncli's own worker threads run, a
spinning helper takes a core from them (LSTM 2x256 at 2 threads: 40.4k chars/s with the
default, 57.7k with no spinning), so configure_openblas also sets OPENBLAS_THREAD_TIMEOUT=4,
the minimum (sleep at once), unless the environment sets it.
"""

from __future__ import annotations

import functools
import os

from rnncli.engine.openblas import set_blas_threads

_workers = 1  # threads for over_shares, set by set_threads


_pool = None  # helper threads of over_shares, made on first use


_pool_size = 0


ROWS_PER_WORKER = 8  # below this a share of the batch is not worth a thread


UNITS_PER_WORKER = 32  # hidden units: one panel of the panel kernel (kernels/panel.py NR)


SPLITS = ("auto", "rows", "units")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), which a container can make fewer
    than os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(threads: int) -> dict[str, int]:
    """Apply the policy above; threads = 0 means all cores. Returns {library path: threads}."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's OpenBLAS so it can be set)

    global _workers
    n = threads or usable_cores()
    _workers = n
    return set_blas_threads(n)


def batch_shares(batch: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive (start, stop) row ranges covering range(batch), in multiples of 8 rows
    (the panel micro-kernel's row block) where the batch allows."""
    cuts = [0]
    for i in range(1, parts):
        cut = (batch * i // parts + 4) // 8 * 8
        cuts.append(min(max(cut, cuts[-1] + 1), batch - (parts - i)))
    cuts.append(batch)
    return list(zip(cuts[:-1], cuts[1:]))


def unit_shares(units: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive (start, stop) ranges of hidden units covering range(units), each a
    whole number of UNITS_PER_WORKER panels (the last may end short, at `units`)."""
    panels = -(-units // UNITS_PER_WORKER)
    cuts = [panels * i // parts * UNITS_PER_WORKER for i in range(parts)] + [units]
    return list(zip(cuts[:-1], cuts[1:]))


def split_shape(batch: int, units: int, workers: int, split: str = "auto") -> tuple[int, int]:
    """(row shares, unit shares) for a recurrent loop over `batch` rows and `units` hidden units
    on `workers` threads (capped at the usable cores: threads that meet at every step must never
    wait for a core). Rows split freely (threads never meet); units split at the cost of one
    meeting per step but each thread then reads only its share of the recurrent weights.
    As many threads as can have work are used: at least ROWS_PER_WORKER rows and
    UNITS_PER_WORKER units each. Among shapes that use as many, "rows" (and "auto", the
    default; RNN_SPLIT overrides it) takes the most row shares, "units" the most unit shares.
    Measured on 16 Xeon cores (benchmarks/RESULTS.md): rows first was as fast or faster on
    every shape, up to 15% (LSTM 1x512, batch 16)."""
    n = max(1, min(workers, usable_cores()))
    max_rows = max(1, batch // ROWS_PER_WORKER)
    max_units = max(1, -(-units // UNITS_PER_WORKER))
    split = os.environ.get("RNN_SPLIT", split) if split == "auto" else split
    if split not in SPLITS:
        split = "auto"

    def preference(shape):
        rows, cols = shape
        return rows * cols, cols if split == "units" else rows

    return max(((r, c) for r in range(1, min(n, max_rows) + 1) for c in range(1, min(n // r, max_units) + 1)),
               key=preference)


def over_shares(run, batch: int, units: int, split: str = "auto") -> None:
    """Call run(lo, hi, u0, u1, barrier, parties) for each share of rows × hidden units
    (split_shape), concurrently: the first on this thread, the others on helper threads. The
    threads of one row share meet at their `barrier` (kernels/sync.py) once per step;
    `parties` is how many they are. `run` must spend its time in nogil kernels, or the
    shares simply take turns — and threads that meet would wait for ever, so the split needs
    compiled kernels (under NUMBA_DISABLE_JIT one thread runs everything)."""
    import numpy as np

    from rnncli.engine.kernels.sync import BARRIER_WORDS

    rows, cols = split_shape(batch, units, _workers, split)
    if _jit_disabled():
        rows, cols = 1, 1
    barriers = np.zeros((rows, BARRIER_WORDS), np.int64)
    shares = [(lo, hi, u0, u1, barriers[g], cols)
              for g, (lo, hi) in enumerate(batch_shares(batch, rows)) for u0, u1 in unit_shares(units, cols)]
    together([functools.partial(run, *share) for share in shares])


def together(runs: list) -> None:
    """Call each of `runs` (no arguments) at once: the first on this thread, the others on
    helper threads; returns when all have, raising the first error. They must spend their time
    in nogil kernels, or they simply take turns."""
    global _pool, _pool_size
    if len(runs) == 1:
        runs[0]()
        return
    if _pool_size < len(runs) - 1:
        from concurrent.futures import ThreadPoolExecutor

        _pool_size = len(runs) - 1
        _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="rnncli")
    helpers = [_pool.submit(r) for r in runs[1:]]
    try:
        runs[0]()
    finally:
        for h in helpers:
            h.result()


def over_parts(run, n: int, min_part: int) -> None:
    """run(lo, hi) over consecutive parts of range(n), one per worker thread but none shorter
    than min_part, concurrently (together). For the elementwise and row-wise work around the
    products (gathers, optimizer updates), which would otherwise leave all cores but one idle."""
    parts = max(1, min(workers(), n // max(1, min_part)))
    cuts = [n * i // parts for i in range(parts + 1)]
    together([functools.partial(run, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])])


def workers() -> int:
    """Threads set by set_threads, capped at the usable cores."""
    return max(1, min(_workers, usable_cores()))


def _jit_disabled() -> bool:
    from numba.core import config

    return bool(config.DISABLE_JIT)
