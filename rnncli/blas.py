"""Who owns the cores: BLAS and Numba thread control, decided once, here.

numpy and scipy wheels each bundle their own OpenBLAS. Numba's np.dot inside @njit calls
SciPy's (scipy.linalg.cython_blas), so every matrix product of training and sampling runs on
SciPy's OpenBLAS. Two pools spinning on two cores slow a small model 3-4x, so:

* SciPy's OpenBLAS gets the thread count the user asked for (default: all cores);
* numpy's OpenBLAS is pinned to 1 thread: the hot path never calls it;
* kernels use no Numba parallel threads unless a benchmark shows a win.

Thread counts are set through each library's own `*openblas_set_num_threads*` symbol, found
by the library's path, so no extra dependency (threadpoolctl) is needed. Where a library is
not OpenBLAS (a conda MKL build, say) nothing is changed and the environment rules.

Kernels: the wheels' OpenBLAS carries code for many CPUs and picks one when it loads, unless
OPENBLAS_CORETYPE names one. Some machines set that to an older family (seen here:
"Haswell", AVX2, on an AVX-512 CPU, which halves every matrix product: 1024³ GEMM 112 vs
208 GFLOP/s on one core). rnncli therefore decides the kernel family itself, before SciPy's
OpenBLAS loads (rnncli/__init__.py calls choose_kernels): on a CPU with the AVX-512 subsets
OpenBLAS's SkylakeX kernels need, a request for an AVX2-or-older family is replaced by
SkylakeX; anything else is left alone. RNN_OPENBLAS_CORETYPE, when set, is used as given
(say "Haswell" for bit-for-bit agreement with an AVX2 machine).
"""

from __future__ import annotations

import ctypes
import os

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")


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


def choose_kernels(environ=os.environ, cpu_flags=None) -> str | None:
    """Set OPENBLAS_CORETYPE in `environ` by the policy above; returns the value set, or None
    when the environment is left as it was. Must run before SciPy's OpenBLAS is loaded."""
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


def kernel_names() -> dict[str, str]:
    """{library path: the kernel family OpenBLAS chose}, for the libraries loaded now."""
    names = {}
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            getter = getattr(lib, sym, None)
            if getter is not None:
                getter.restype = ctypes.c_char_p
                names[path] = getter().decode("ascii", "replace")
                break
    return names


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


def set_threads(threads: int) -> dict[str, int]:
    """Apply the policy above; threads = 0 means all cores. Returns {library path: threads}."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's OpenBLAS so it can be set)

    n = threads or os.cpu_count() or 1
    done = {}
    for path in _loaded_openblas():
        want = 1 if "numpy" in os.path.basename(os.path.dirname(path)) else n
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in _SETTERS:
            setter = getattr(lib, sym, None)
            if setter is not None:
                setter(ctypes.c_int(want))
                done[path] = want
                break
    return done
