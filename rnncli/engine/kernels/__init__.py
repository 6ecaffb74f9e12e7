"""Numba kernels: pure @njit functions over C-contiguous float32/float64 arrays.

Rules (see ../shared/STYLE.md): kernels import only numpy, numba, math and sibling kernels
(and llvmlite, Numba's own IR builder, which panel.py needs to write its micro-kernel);
callers allocate outputs; gradients accumulate with +=.

Matrix products: the recurrent product of each time step runs on panel.py's micro-kernel
against weights packed once per sequence (float32); every other product goes through gemm.py
to the OpenBLAS that SciPy ships. rnncli/blas.py sets that library's thread count and kernel
family and pins numpy's separate OpenBLAS to one thread, so one pool owns the cores.
Under NUMBA_DISABLE_JIT=1 both fall back to numpy, so kernels still run as Python.
"""
