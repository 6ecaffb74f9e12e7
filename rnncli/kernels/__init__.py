"""Numba kernels: pure @njit functions over C-contiguous float32/float64 arrays.

Rules (see ../shared/STYLE.md): kernels import only numpy, numba, math and sibling kernels;
callers allocate outputs; gradients accumulate with +=.

BLAS: every matrix product in the hot path runs here, inside @njit, through the OpenBLAS that
SciPy ships (Numba binds np.dot to scipy.linalg.cython_blas). rnncli/blas.py sets that library's
thread count and pins numpy's separate OpenBLAS to one thread, so one pool owns the cores.
"""
