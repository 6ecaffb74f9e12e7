"""Who owns the cores: BLAS and Numba thread control, decided once, here.

numpy and scipy wheels each bundle their own OpenBLAS. Numba's np.dot inside @njit calls
SciPy's (scipy.linalg.cython_blas), so every matrix product of training and sampling runs on
SciPy's OpenBLAS. rnncli runs all of its parallel work on its own threads (the helper threads
below, with the caller's), so:

* SciPy's OpenBLAS runs one thread per call; the large products of a step are cut into blocks
  of output rows that rnncli's threads take (engine/products.py). OpenBLAS's own threads split
  a product evenly and sleep after it: a product then ends with its slowest thread (one that
  shares its core with another process slows every product), each call pays for waking them,
  and their sums round differently at different thread counts (seen at 1e-7 relative);
* numpy's OpenBLAS is pinned to 1 thread: the hot path never calls it;
* kernels use no Numba parallel threads. The recurrent loops, which BLAS never sees (their
  per-step products run on kernels/panel.py), are split by rnncli itself (over_shares), over
  batch rows and over hidden units. Rows never interact inside a time loop, so threads with
  different rows run the whole loop with no synchronisation until the end. Threads with the
  same rows and different units each compute their units' gates and states and meet once per
  step (kernels/sync.py), because step t+1 reads all of h_t; each reads only its share of the
  recurrent weights, so a small batch or a large layer still keeps every core busy. The loop's
  results do not depend on the split: each element of each product sums over k in the same
  order on any thread. Nor do the products' blocks change a bit, so training gives the same
  weights on any thread count (tests/engine/test_parallel_work.py).

Helper threads (each, together): made once, they wait for the next piece of work by watching
a word in memory for a few hundred microseconds, then sleep. A training step hands out a few
dozen pieces (loops, product blocks, optimizer parts) a few microseconds to a millisecond
apart, so the helpers are awake for each without being woken (a sleeping thread takes tens
of microseconds to wake: ThreadPoolExecutor paid that for every piece); an idle process holds
no core. Independent pieces (each) are taken by whichever thread is free, so beside a busy
process the thread with less of a core takes fewer. Threads that meet at every step cannot
share out that way; over_shares and the sampler time such a split against running without
meetings, and take the faster (Choice): beside a busy process, meeting threads wait for a
partner that is off its core.

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
waiting for more work. rnncli runs OpenBLAS on one thread, but another library's calls in the
same process (numpy's, which has its own) may not, and a spinning helper takes a core from
rnncli's threads (LSTM 2x256 at 2 threads: 40.4k chars/s with the default, 57.7k with no
spinning), so configure_openblas also sets OPENBLAS_THREAD_TIMEOUT=4, the minimum (sleep at
once), unless the environment sets it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import time

import numpy as np

from rnncli.engine.kernels import sync as k_sync
from rnncli.engine.openblas import set_blas_threads

_workers = 1  # threads for all of rnncli's parallel work (this one included), set by set_threads


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
    return set_blas_threads(1)


def batch_shares(batch: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive (start, stop) row ranges covering range(batch), as equal as whole rows
    allow (batch 24 on 2 threads: 12 + 12, not 16 + 8: a thread's time is its row count, in
    blocks of the panel micro-kernel's 8 rows and the shorter block its remainder leaves)."""
    cuts = [batch * i // parts for i in range(parts + 1)]
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


def over_shares(run, batch: int, units: int, split: str = "auto", key=None) -> None:
    """Call run(lo, hi, u0, u1, barrier, parties) for each share of rows × hidden units
    (split_shape), concurrently: the first on this thread, the others on helper threads. The
    threads of one row share meet at their `barrier` (kernels/sync.py) once per step;
    `parties` is how many they are. `run` must spend its time in nogil kernels, or the
    shares simply take turns — and threads that meet would wait for ever, so the split needs
    compiled kernels (under NUMBA_DISABLE_JIT one thread runs everything).

    Threads that meet at every step run only while all of them have a core: beside another
    busy process, one of them is off its core for milliseconds at a time while the others
    wait, and two threads ran a third as fast as one (LSTM 1x512, batch 8). So when the split
    meets, the same loop is also timed split without meetings (rows alone, or one thread), and
    each call runs the way that has been faster for this loop (`key`: the same work each call)
    lately (Choice). Both ways give the same bits."""
    rows, cols = split_shape(batch, units, _workers, split)
    if _jit_disabled():
        rows, cols = 1, 1
    if cols > 1 and key is not None:
        alone = (rows, 1)
        choice = _choices.setdefault((key, batch, units, rows, cols), Choice([(rows, cols), alone]))
        rows, cols = choice.pick()
        started = time.perf_counter()
        _run_shares(run, batch, units, rows, cols)
        choice.record((rows, cols), time.perf_counter() - started)
        return
    _run_shares(run, batch, units, rows, cols)


def _run_shares(run, batch: int, units: int, rows: int, cols: int) -> None:
    if cols == 1 and rows > 1:  # shares that never meet
        each([functools.partial(run, lo, hi, 0, units, _lone_barrier(), 1) for lo, hi in batch_shares(batch, rows)])
        return
    barriers = np.zeros((rows, k_sync.BARRIER_WORDS), np.int64)
    shares = [(lo, hi, u0, u1, barriers[g], cols)
              for g, (lo, hi) in enumerate(batch_shares(batch, rows)) for u0, u1 in unit_shares(units, cols)]
    together([functools.partial(run, *share) for share in shares])


def _lone_barrier() -> np.ndarray:
    return np.zeros(k_sync.BARRIER_WORDS, np.int64)


class Choice:
    """Which of a few ways of doing the same work (giving the same results) is fastest now, by
    timing them as they run: pick() the way to run next, record() what it took.

    The first way is run until the time spent reaches RETRY_AFTER times its last call; then
    each other way is tried, and from then on the way with the least recent mean time per unit
    of work runs. The way that runs is timed at every call, so when it slows down (another
    process starts) the choice moves at once to a way that was faster. A way that is not
    running is tried again once the time spent since it last ran is its wait times its own last
    call; the wait starts at RETRY_AFTER and doubles, up to RETRY_MOST, each time a try loses,
    so a way that stays slow costs less and less (at most 1 / RETRY_AFTER of the time), and a
    way that became faster (the other process ended) is found within RETRY_MOST of its calls.
    A way's first call is not counted (it pays for loading compiled code and first touches of
    memory) and is followed at once by a counted one. A try's time replaces the way's mean;
    times of calls in a row are averaged (WEIGHT), so one slow call does not switch ways."""

    RETRY_AFTER = 50
    RETRY_MOST = 800
    WEIGHT = 0.25  # of the newest time in the mean

    def __init__(self, ways: list):
        self.ways = list(dict.fromkeys(ways))
        self.mean = {}  # seconds per unit of work
        self.last = {}  # seconds of the last counted call
        self.since = {way: 0.0 for way in self.ways}  # seconds spent since each last ran
        self.calls = {way: 0 for way in self.ways}
        self.wait = {way: self.RETRY_AFTER for way in self.ways}

    def best(self):
        measured = [w for w in self.ways if w in self.mean]
        return min(measured, key=self.mean.__getitem__) if measured else self.ways[0]

    def pick(self):
        for way in self.ways:
            if self.calls[way] == 1:  # its first call was not counted: count the next
                return way
        best = self.best()
        if best not in self.last:
            return best
        for way in self.ways:
            if way != best and self.since[way] >= self.wait[way] * self.last.get(way, self.last[best]):
                return way
        return best

    def record(self, way, seconds: float, work: float = 1.0) -> None:
        for w in self.ways:
            self.since[w] += seconds
        self.calls[way] += 1
        if self.calls[way] == 1:
            return
        tried = self.since[way] > seconds  # another way ran since this one last did
        self.since[way] = 0.0
        self.last[way] = seconds
        rate = seconds / max(work, 1e-12)
        old = self.mean.get(way)
        self.mean[way] = rate if old is None or tried else old + (rate - old) * self.WEIGHT
        if tried and old is not None:  # a retry: wait longer for the next if it lost
            self.wait[way] = self.RETRY_AFTER if self.best() == way else min(2 * self.wait[way], self.RETRY_MOST)


_choices: dict = {}


def together(runs: list) -> None:
    """Call each of `runs` (no arguments) at once: the first on this thread, the others on
    helper threads; returns when all have, raising the first error. They must spend their time
    in nogil kernels, or they simply take turns. For work whose parts meet (kernels/sync.py
    barriers): every part has a thread of its own for as long as it runs."""
    if len(runs) == 1:
        runs[0]()
    elif _jit_disabled():  # the crew's signals are compiled kernels
        _separate_threads(runs)
    else:
        _crew_for(len(runs) - 1).run(runs, one_each=True)


def each(tasks: list) -> None:
    """Call every one of `tasks` (no arguments, independent of each other) on this thread and
    the helper threads (workers() in all), each thread taking the next task as it becomes free,
    so a thread that gets less of a core (another process beside it) takes fewer; returns when
    all are done, raising the first error. Tasks must spend their time in nogil kernels."""
    helpers = min(workers(), len(tasks)) - 1
    if helpers <= 0 or getattr(_here, "helper", False) or _jit_disabled():  # one thread, or from a task
        for task in tasks:
            task()
        return
    _crew_for(helpers).run(tasks, one_each=False)


# The helper threads. Work comes in regions (one together or each call): the caller publishes
# the region and bumps a generation word; helpers that see the bump take tasks from it. A helper
# waits for the next region by looking at the word for SPIN_CYCLES of the time-stamp counter
# (about half a millisecond: longer than the gaps between the regions of one training step) or
# SPIN_LOOKS looks where there is no such counter, then sleeps on a condition until woken, so an
# idle process holds no core. Waking a sleeping thread costs tens of microseconds, which is what
# the watching saves at every region of a step (ThreadPoolExecutor paid it every time).
SPIN_CYCLES = 1 << 20
SPIN_LOOKS = 20000

_here = threading.local()
_crew = None


class _Region:
    def __init__(self, tasks: list, one_each: bool):
        self.tasks = tasks
        self.one_each = one_each
        self.claims = itertools.count()  # next() is atomic under the GIL
        self.done = np.zeros(k_sync.BARRIER_WORDS, np.int64)  # word 0: tasks finished
        self.errors = []

    def work(self) -> None:
        while True:
            i = next(self.claims)
            if i >= len(self.tasks):
                return
            try:
                self.tasks[i]()
            except BaseException as e:  # noqa: B036  (handed to the caller, which raises it)
                self.errors.append((i, e))
            finally:
                k_sync.add(self.done, 0, 1)
            if self.one_each:
                return


class _Crew:
    def __init__(self, size: int):
        self.size = size
        self.signal = np.zeros(k_sync.BARRIER_WORDS, np.int64)  # word 0: the generation
        self.wake = threading.Condition()
        self.busy = threading.Lock()  # one region at a time
        self.region = None
        for i in range(size):
            threading.Thread(target=self._serve, name=f"rnncli-{i + 1}", daemon=True).start()

    def run(self, tasks: list, one_each: bool) -> None:
        if not self.busy.acquire(blocking=False):  # another Python thread has the helpers
            if one_each:
                _separate_threads(tasks)
            else:
                for task in tasks:
                    task()
            return
        try:
            region = self.region = _Region(tasks, one_each)
            with self.wake:
                k_sync.add(self.signal, 0, 1)
                self.wake.notify_all()
            try:
                region.work()
            finally:  # even when interrupted: nothing of this region may run on into the next
                k_sync.await_at_least(region.done, 0, len(tasks))
                self.region = None
        finally:
            self.busy.release()
        if region.errors:
            raise min(region.errors, key=lambda e: e[0])[1]

    def _serve(self) -> None:
        _here.helper = True
        seen = int(self.signal[0])
        while True:
            now = k_sync.await_change(self.signal, 0, seen, SPIN_CYCLES, SPIN_LOOKS)
            if now == seen:
                with self.wake:
                    while int(self.signal[0]) == seen:
                        self.wake.wait()
                now = int(self.signal[0])
            seen = now
            region = self.region
            if region is not None:
                region.work()


def _forget_crew() -> None:
    """In a forked child: the helper threads did not come along; make new ones when needed."""
    global _crew
    _crew = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_crew)


def _crew_for(helpers: int) -> _Crew:
    """The helper threads, at least `helpers` of them (made on first use, grown when more are
    asked for; the old ones then sleep for good)."""
    global _crew
    if _crew is None or _crew.size < helpers:
        _crew = _Crew(helpers)
    return _crew


def _separate_threads(runs: list) -> None:
    """together() for a caller that finds the helpers in use: plain threads, one per run."""
    errors = []

    def call(run):
        try:
            run()
        except BaseException as e:  # noqa: B036
            errors.append(e)

    started = [threading.Thread(target=call, args=(r,), daemon=True) for r in runs[1:]]
    for t in started:
        t.start()
    call(runs[0])
    for t in started:
        t.join()
    if errors:
        raise errors[0]


def over_parts(run, n: int, min_part: int) -> None:
    """run(lo, hi) over consecutive parts of range(n), one per worker thread but none shorter
    than min_part, concurrently (together). For the elementwise and row-wise work around the
    products (gathers, optimizer updates), which would otherwise leave all cores but one idle."""
    parts = max(1, min(workers(), n // max(1, min_part)))
    cuts = [n * i // parts for i in range(parts + 1)]
    each([functools.partial(run, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])])


@contextlib.contextmanager
def limited(threads: int):
    """Within the block, at most `threads` worker threads (workers())."""
    global _workers
    before = _workers
    _workers = max(1, min(before, threads))
    try:
        yield
    finally:
        _workers = before


def workers() -> int:
    """Threads set by set_threads, capped at the usable cores."""
    return max(1, min(_workers, usable_cores()))


def _jit_disabled() -> bool:
    from numba.core import config

    return bool(config.DISABLE_JIT)
