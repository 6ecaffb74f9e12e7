"""Who owns the cores: BLAS and Numba thread control, decided once, here.

numpy and scipy wheels each bundle their own OpenBLAS. Numba's np.dot inside @njit calls
SciPy's (scipy.linalg.cython_blas), so every matrix product of training and sampling runs on
SciPy's OpenBLAS. Two pools spinning on two cores slow a small model 3-4x, so:

* SciPy's OpenBLAS gets the thread count the user asked for (default: all cores);
* numpy's OpenBLAS is pinned to 1 thread: the hot path never calls it;
* kernels use no Numba parallel threads. The recurrent loops, which BLAS never sees (their
  per-step products run on kernels/panel.py), are split over the batch instead: batch rows
  never interact inside a time loop, so each of `threads` Python threads runs the whole loop
  on its share of the rows, in a nogil kernel, with no synchronisation until the end
  (over_batch). Results do not depend on the split: each row is computed the same way.

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

import ctypes
import os

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_CORENAME_GETTERS = ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename")


# OpenBLAS DYNAMIC_ARCH x86-64 families that use AVX2 at most; SkylakeX needs these CPU flags.
_PRE_AVX512 = {"katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn",
               "dunnington", "nehalem", "sandybridge", "haswell", "opteron", "barcelona", "bobcat",
               "bulldozer", "piledriver", "steamroller", "excavator", "zen", "athlon"}
_AVX512_FLAGS = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


requested_kernels = None  # OPENBLAS_CORETYPE as the environment had it, before configure_openblas


def configure_openblas(environ=os.environ, cpu_flags=None) -> str | None:
    """Set OPENBLAS_THREAD_TIMEOUT and OPENBLAS_CORETYPE in `environ` by the policy above;
    returns the kernel family set, or None when that is left as it was. Must run before
    SciPy's OpenBLAS is loaded."""
    global requested_kernels
    environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    requested_kernels = environ.get("OPENBLAS_CORETYPE", "").strip() or None
    chosen = environ.get("RNN_OPENBLAS_CORETYPE", "").strip()
    if not chosen:
        asked = environ.get("OPENBLAS_CORETYPE", "").strip()
        if asked.lower() not in _PRE_AVX512:
            return None
        flags = _cpu_flags() if cpu_flags is None else cpu_flags
        if not _AVX512_FLAGS <= flags:
            return None
        chosen = "SkylakeX"
    environ["OPENBLAS_CORETYPE"] = chosen
    return chosen


def scipy_kernels() -> str:
    """The kernel family of SciPy's OpenBLAS (the one rnncli multiplies with), loaded if need be,
    with what the environment asked for when that differs: e.g. 'SkylakeX (environment: Haswell)'."""
    import scipy.linalg.cython_blas  # noqa: F401

    name = "not OpenBLAS"
    for path, lib in _openblas_libraries():
        getter = _first_symbol(lib, _CORENAME_GETTERS)
        if getter is not None and not _is_numpys(path):
            getter.restype = ctypes.c_char_p
            name = getter().decode("ascii", "replace")
    if requested_kernels and requested_kernels.lower() != name.lower():
        name += f" (environment: {requested_kernels})"
    return name


def _openblas_libraries():
    """(path, ctypes handle) of each OpenBLAS loaded in this process."""
    for path in _loaded_openblas():
        try:
            yield path, ctypes.CDLL(path)
        except OSError:
            continue


def _first_symbol(lib, names):
    """The first of `names` that the library exports, or None (the wheels prefix their symbols)."""
    return next((getattr(lib, s) for s in names if getattr(lib, s, None) is not None), None)


def _is_numpys(path: str) -> bool:
    return "numpy" in os.path.basename(os.path.dirname(path))


def _loaded_openblas() -> list[str]:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:  # not Linux: look beside the packages
        import glob

        import numpy
        import scipy

        paths = set()
        for pkg in (numpy, scipy):
            base = os.path.dirname(os.path.dirname(pkg.__file__))
            paths.update(glob.glob(os.path.join(base, pkg.__name__ + "*libs", "*openblas*")))
    return sorted(p for p in paths if p.startswith("/") or ":" in p)


_workers = 1  # threads for over_batch, set by set_threads
_pool = None  # helper threads of over_batch, made on first use
_pool_size = 0
ROWS_PER_WORKER = 8  # below this a share of the batch is not worth a thread


def set_threads(threads: int) -> dict[str, int]:
    """Apply the policy above; threads = 0 means all cores. Returns {library path: threads}."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's OpenBLAS so it can be set)

    global _workers
    n = threads or os.cpu_count() or 1
    _workers = n
    done = {}
    for path, lib in _openblas_libraries():
        setter = _first_symbol(lib, _SETTERS)
        if setter is not None:
            done[path] = 1 if _is_numpys(path) else n
            setter(ctypes.c_int(done[path]))
    return done


def batch_shares(batch: int, workers: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) row ranges covering range(batch), at most `workers` of them,
    none under ROWS_PER_WORKER rows unless there is only one, in multiples of 8 rows where the
    batch allows (the panel micro-kernel's row block)."""
    parts = max(1, min(workers, batch // ROWS_PER_WORKER))
    cuts = [0]
    for i in range(1, parts):
        cut = (batch * i // parts + 4) // 8 * 8
        cuts.append(min(max(cut, cuts[-1] + 1), batch - (parts - i)))
    cuts.append(batch)
    return list(zip(cuts[:-1], cuts[1:]))


def over_batch(run, batch: int) -> None:
    """Call run(start, stop) for each share of range(batch) (batch_shares), concurrently: the
    first on this thread, the others on helper threads. `run` must spend its time in nogil
    kernels, or the shares simply take turns."""
    global _pool, _pool_size
    shares = batch_shares(batch, _workers)
    if len(shares) == 1:
        run(0, batch)
        return
    if _pool_size < len(shares) - 1:
        from concurrent.futures import ThreadPoolExecutor

        _pool_size = len(shares) - 1
        _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="rnncli")
    helpers = [_pool.submit(run, start, stop) for start, stop in shares[1:]]
    try:
        run(*shares[0])
    finally:
        for h in helpers:
            h.result()
