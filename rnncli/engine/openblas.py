"""OpenBLAS set-up: which kernel family SciPy's OpenBLAS loads, and how many threads each
library's OpenBLAS runs.
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


def set_blas_threads(n: int) -> dict[str, int]:
    """SciPy's OpenBLAS (the one rnncli multiplies with) to n threads, numpy's to 1 (the hot path
    never calls it). Returns {library path: threads}."""
    done = {}
    for path, lib in _openblas_libraries():
        setter = _first_symbol(lib, _SETTERS)
        if setter is not None:
            done[path] = 1 if _is_numpys(path) else n
            setter(ctypes.c_int(done[path]))
    return done


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
