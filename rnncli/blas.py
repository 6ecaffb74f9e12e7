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
"""

from __future__ import annotations

import ctypes
import os

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")


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
