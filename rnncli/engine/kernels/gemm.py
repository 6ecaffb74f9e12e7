"""C = α·op(A)·op(B) + β·C on row-major arrays, straight to BLAS.

np.dot inside @njit cannot accumulate (β = 1), cannot read a transposed operand without a copy,
and allocates when it has no output. This calls the same BLAS (SciPy's OpenBLAS, through
Numba's own `numba_xxgemm` helper, so compiled kernels still cache) with the flags and strides
set: the recurrent product adds onto the input projection in place, weight gradients
accumulate over time with no temporary, and a weight matrix is read transposed where it lies.

Operands are 2-D float32 or float64 arrays whose rows are contiguous (any row stride: views of
larger buffers are fine). BLAS is column-major, so the row-major product C = op(A) op(B) is
asked for as Cᵀ = op(B)ᵀ op(A)ᵀ, which needs no data movement.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

_XXGEMM_SIG = types.intc(types.char, types.char, types.char,  # kind ('s'/'d'), transa, transb
                         types.intp, types.intp, types.intp,  # m, n, k
                         types.voidptr, types.voidptr, types.intp,  # alpha, a, lda
                         types.voidptr, types.intp,  # b, ldb
                         types.voidptr, types.voidptr, types.intp)  # beta, c, ldc
_xxgemm = types.ExternalFunction("numba_xxgemm", _XXGEMM_SIG)

_N, _T, _S, _D = np.int8(ord("n")), np.int8(ord("t")), np.int8(ord("s")), np.int8(ord("d"))


@njit(cache=True)
def _row_stride(X):
    """Leading dimension in elements; BLAS wants at least the row length, even for one row."""
    return max(X.strides[0] // X.itemsize, X.shape[1], 1)


def gemm(A, B, C, trans_a, trans_b, alpha, beta):
    """C = alpha · op(A) · op(B) + beta · C, op(X) = Xᵀ when trans_x. C (m, n) written in place;
    op(A) (m, k), op(B) (k, n). With beta = 0, C's old contents are ignored (NaN included).

    This body is what runs under NUMBA_DISABLE_JIT=1; compiled callers get _gemm_blas."""
    product = (A.T if trans_a else A) @ (B.T if trans_b else B)
    C[...] = alpha * product if beta == 0 else alpha * product + beta * C


@overload(gemm, jit_options={"cache": True})
def _gemm_blas(A, B, C, trans_a, trans_b, alpha, beta):
    def impl(A, B, C, trans_a, trans_b, alpha, beta):
        m, n = C.shape
        k = A.shape[0] if trans_a else A.shape[1]
        if m == 0 or n == 0:
            return
        scalars = np.empty(2, C.dtype)
        scalars[0] = alpha
        scalars[1] = beta
        _xxgemm(_S if C.itemsize == 4 else _D, _T if trans_b else _N, _T if trans_a else _N,
                n, m, k, scalars[0:].ctypes, B.ctypes, _row_stride(B), A.ctypes, _row_stride(A),
                scalars[1:].ctypes, C.ctypes, _row_stride(C))
    return impl
