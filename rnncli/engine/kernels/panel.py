"""The recurrent product of every time step, C (M, N) (+)= A (M, K) · R (K, N), against weights
packed once per sequence (float32).

A recurrent layer multiplies the same weights by a small batch of states at every step: M is the
batch (32), K and N are H and G·H. A general BLAS call packs the whole weight matrix into its
own blocked layout at every call — for a 256 × 1024 matrix that copy is a large part of the
step — so here the weights are packed once per sequence into column panels,

    P[p, k, :] = R[k, p·NR : (p+1)·NR]      (NR = 64 columns, zero-padded at the right edge),

and a register-blocked micro-kernel computes MR × NR blocks of C: MR rows of A broadcast
against the NR weights of one k, accumulated in 16-lane vector registers over all K, so each
weight and each C value crosses the memory hierarchy once per block, not once per k.

The micro-kernel is written in LLVM IR (numba.extending.intrinsic) because Numba arrays carry
no no-alias information: a plain loop keeps the accumulators in memory, with a load and a store
per multiply-add. It is generated for each row count 1..MR, so every batch size is exact; the
right-edge panel masks its loads and stores to the columns that exist.

float64 (gradcheck, reference tests) goes through BLAS (kernels/gemm.py): same products.
"""

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from rnncli.engine.kernels.gemm import gemm

LANES = 16  # float32 lanes of one AVX-512 register; LLVM splits it on narrower machines
VECTORS = 2  # vectors per panel row
NR = LANES * VECTORS  # panel width in columns
MR = 8  # rows of C per block (MR × VECTORS accumulators = 16 registers)


def _rows_per_block() -> int:
    """Rows of C each micro-kernel call computes on this CPU. With AVX-512, MR rows hold their
    MR × VECTORS accumulators in 16 of the 32 vector registers. Without it LLVM splits every
    16-lane vector into two 8-lane AVX2 registers, of which there are only 16: 8 rows would need
    32 for the accumulators alone and spill them to memory at every k, so 2 rows (8 registers of
    accumulators, 4 of weights, 1 broadcast) are taken. The sum for each element of C runs over k
    in the same order either way, so results do not change."""
    try:
        return MR if llvm.get_host_cpu_features().get("avx512f") else 2
    except RuntimeError:  # features unknown: the AVX-512 layout, as before
        return MR


ROWS = _rows_per_block()


def _micro_kernel(rows):
    """An intrinsic computing a `rows` × NR block: C[r, :ncols] (+)= Σ_k A[r, k] · P[k, :ncols]."""

    @intrinsic
    def kernel(typingctx, a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate):
        sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
                         types.intp, types.intp)

        def codegen(context, builder, signature, args):
            a_addr, lda_v, p_addr, c_addr, ldc_v, k_count, ncols_v, acc_flag = args
            f32 = ir.FloatType()
            vec = ir.VectorType(f32, LANES)
            i1v = ir.VectorType(ir.IntType(1), LANES)
            i32 = ir.IntType(32)
            intp = context.get_value_type(types.intp)
            fptr = f32.as_pointer()
            vptr = vec.as_pointer()
            module = builder.module
            fma = cgutils.get_or_insert_function(module, ir.FunctionType(vec, [vec, vec, vec]),
                                                 f"llvm.fma.v{LANES}f32")
            masked_load = cgutils.get_or_insert_function(
                module, ir.FunctionType(vec, [vptr, i32, i1v, vec]), f"llvm.masked.load.v{LANES}f32.p0")
            masked_store = cgutils.get_or_insert_function(
                module, ir.FunctionType(ir.VoidType(), [vec, vptr, i32, i1v]), f"llvm.masked.store.v{LANES}f32.p0")
            align = ir.Constant(i32, 4)
            zero = ir.Constant(vec, [0.0] * LANES)
            lane_ids = ir.Constant(ir.VectorType(intp, LANES), list(range(LANES)))

            a_base = builder.inttoptr(a_addr, fptr)
            p_base = builder.inttoptr(p_addr, fptr)
            c_base = builder.inttoptr(c_addr, fptr)
            masks = []
            for v in range(VECTORS):
                left = builder.sub(ncols_v, ir.Constant(intp, v * LANES))
                splat = builder.insert_element(ir.Constant(ir.VectorType(intp, LANES), None), left, ir.Constant(i32, 0))
                splat = builder.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
                masks.append(builder.icmp_signed("<", lane_ids, splat))

            def c_ptr_at(r, v):
                offset = builder.add(builder.mul(ir.Constant(intp, r), ldc_v), ir.Constant(intp, v * LANES))
                return builder.bitcast(builder.gep(c_base, [offset]), vptr)

            load_c = builder.icmp_signed("!=", acc_flag, ir.Constant(intp, 0))
            start = []
            for r in range(rows):
                for v in range(VECTORS):
                    loaded = builder.call(masked_load, [c_ptr_at(r, v), align, masks[v], zero])
                    start.append(builder.select(load_c, loaded, zero))

            entry = builder.block
            loop = builder.append_basic_block("panel.loop")
            done = builder.append_basic_block("panel.done")
            has_work = builder.icmp_signed(">", k_count, ir.Constant(intp, 0))
            builder.cbranch(has_work, loop, done)

            builder.position_at_end(loop)
            k = builder.phi(intp)
            k.add_incoming(ir.Constant(intp, 0), entry)
            accs = []
            for init in start:
                phi = builder.phi(vec)
                phi.add_incoming(init, entry)
                accs.append(phi)
            w_row = builder.gep(p_base, [builder.mul(k, ir.Constant(intp, NR))])
            weights = [builder.load(builder.bitcast(builder.gep(w_row, [ir.Constant(intp, v * LANES)]), vptr), align=4)
                       for v in range(VECTORS)]
            updated = []
            for r in range(rows):
                a_val = builder.load(builder.gep(a_base, [builder.add(builder.mul(ir.Constant(intp, r), lda_v), k)]))
                a_vec = builder.insert_element(ir.Constant(vec, None), a_val, ir.Constant(i32, 0))
                a_vec = builder.shuffle_vector(a_vec, a_vec, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
                for v in range(VECTORS):
                    updated.append(builder.call(fma, [a_vec, weights[v], accs[r * VECTORS + v]]))
            k_next = builder.add(k, ir.Constant(intp, 1))
            k.add_incoming(k_next, builder.block)
            for phi, new in zip(accs, updated):
                phi.add_incoming(new, builder.block)
            builder.cbranch(builder.icmp_signed("<", k_next, k_count), loop, done)

            builder.position_at_end(done)
            results = []
            for i, init in enumerate(start):
                phi = builder.phi(vec)
                phi.add_incoming(init, entry)
                phi.add_incoming(updated[i], loop)
                results.append(phi)
            for r in range(rows):
                for v in range(VECTORS):
                    builder.call(masked_store, [results[r * VECTORS + v], c_ptr_at(r, v), align, masks[v]])
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_BLOCKS = tuple(_micro_kernel(r) for r in range(1, MR + 1))
_block_1, _block_2, _block_3, _block_4, _block_5, _block_6, _block_7, _block_8 = _BLOCKS
assert MR == 8


@njit(cache=True)
def _block(rows, a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate):
    if rows == 8:
        _block_8(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)
    elif rows == 7:
        _block_7(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)
    elif rows == 6:
        _block_6(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)
    elif rows == 5:
        _block_5(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)
    elif rows == 4:
        _block_4(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)
    elif rows == 3:
        _block_3(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)
    elif rows == 2:
        _block_2(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)
    else:
        _block_1(a_ptr, lda, p_ptr, c_ptr, ldc, K, ncols, accumulate)


@njit(cache=True)
def packed(W, transposed):
    """The panels of R = Wᵀ (transposed) or W, for `product`; float32 only. For float64 an
    empty array: `product_or_gemm` multiplies by W itself then."""
    P = empty_panels(W, 1, transposed)
    pack(W, 1, transposed, P, 0, P.shape[0])
    return P


@njit(cache=True)
def packed_gates(W, G):
    """The panels of R = Wᵀ, W (G·H, K) float32, laid out so that each of the G gate blocks
    starts a new panel: P[g·nq + q, k, j] = W[g·H + q·NR + j, k], nq = ⌈H / NR⌉, zero past H.
    A thread that owns hidden units u0:u1 (u0 a multiple of NR) then finds all its columns, in
    every gate block, as whole panels (product_units). When NR divides H this is packed(W, True).
    For float64 an empty array, as packed."""
    P = empty_panels(W, G, True)
    pack(W, G, True, P, 0, P.shape[0])
    return P


@njit(cache=True)
def empty_panels(W, G, transposed):
    """The array `pack` fills for W (see packed, packed_gates); (0, K, NR) for float64."""
    K, N = (W.shape[1], W.shape[0]) if transposed else (W.shape[0], W.shape[1])
    if W.itemsize != 4:
        return np.empty((0, K, NR), W.dtype)
    return np.empty((G * ((N // G + NR - 1) // NR), K, NR), W.dtype)


def product_units(A, P, C, G, u0, u1, accumulate):
    """For every gate block g of C (M, G·H) and unit u in u0:u1 (u0 a multiple of NR):
    C[:, g·H + u] = A (M, K) · R[:, g·H + u] (+ C if accumulate), R packed by packed_gates(W, G)
    (G = 1: by packed, either orientation). float32. The sum for each element runs over k in the
    same order whatever the unit range, so threads that split the units get the numbers one
    thread would.

    This body (numpy) is what runs under NUMBA_DISABLE_JIT=1."""
    H = C.shape[1] // G
    nq = P.shape[0] // G
    for g in range(G):
        R = P[g * nq:(g + 1) * nq].transpose(1, 0, 2).reshape(P.shape[1], -1)[:, u0:u1]
        cols = C[:, g * H + u0:g * H + u1]
        cols[...] = A @ R + cols if accumulate else A @ R


@overload(product_units, jit_options={"cache": True})
def _product_units_blocks(A, P, C, G, u0, u1, accumulate):
    def impl(A, P, C, G, u0, u1, accumulate):
        M = C.shape[0]
        H = C.shape[1] // G
        nq = P.shape[0] // G
        K = A.shape[1]
        lda = A.strides[0] // 4
        ldc = C.strides[0] // 4
        a0 = A.ctypes.data
        c0 = C.ctypes.data
        p0 = P.ctypes.data
        for g in range(G):
            for q in range(u0 // NR, (u1 + NR - 1) // NR):
                ncols = min(NR, u1 - q * NR)
                p_ptr = p0 + (g * nq + q) * K * NR * 4
                col = g * H + q * NR
                for r in range(0, M, ROWS):
                    _block(min(ROWS, M - r), a0 + r * lda * 4, lda, p_ptr, c0 + (r * ldc + col) * 4, ldc,
                           K, ncols, 1 if accumulate else 0)
    return impl


@njit(cache=True)
def product_units_or_gemm(A, W, transposed, P, C, G, u0, u1, accumulate):
    """product_units in float32; in float64 (one thread: u0:u1 is all the units) BLAS over C."""
    if C.itemsize == 4:
        product_units(A, P, C, G, u0, u1, accumulate)
    else:
        gemm(A, W, C, False, transposed, 1.0, 1.0 if accumulate else 0.0)


@njit(cache=True)
def product_or_gemm(A, W, transposed, P, C, accumulate):
    """C = A · R (+ C if accumulate), R = Wᵀ (transposed) or W, P = packed(W, transposed):
    the panel kernel in float32, BLAS in float64."""
    if C.itemsize == 4:
        product(A, P, C, accumulate)
    else:
        gemm(A, W, C, False, transposed, 1.0, 1.0 if accumulate else 0.0)


@njit(cache=True, nogil=True)
def pack(W, G, transposed, P, p0, p1):
    """Panels p0:p1 of P = empty_panels(W, G, transposed), padding columns set to 0: those of
    R = Wᵀ, gate block by gate block (transposed; see packed_gates), or of R = W (G = 1).
    Panels are independent, so threads may each pack a range of them."""
    K = P.shape[1]
    N = W.shape[0] if transposed else W.shape[1]
    H = N // G
    nq = P.shape[0] // G
    for p in range(p0, p1):
        c0 = (p // nq) * H + (p % nq) * NR  # first column of R in this panel
        width = min(NR, (p // nq) * H + H - c0)
        panel = P[p]  # (K, NR); indexing it from 0 lets Numba drop its negative-index checks
        for k in range(K):
            row = panel[k]
            for j in range(width, NR):
                row[j] = 0.0
        if transposed:  # in blocks of 16 k, so reads and writes both stay within a few lines
            for k0 in range(0, K, 16):
                k1 = min(K, k0 + 16)
                for j in range(width):
                    w = W[c0 + j]
                    for k in range(k0, k1):
                        panel[k, j] = w[k]
        else:
            for k in range(K):
                w = W[k, c0:c0 + width]
                row = panel[k]
                for j in range(width):
                    row[j] = w[j]


@njit(cache=True)
def product(A, P, C, accumulate):
    """C (M, N) = A (M, K) · R (+ C if accumulate), R packed in P by `packed`. float32, rows
    contiguous: product_units over all the columns, as one gate block."""
    product_units(A, P, C, 1, 0, C.shape[1], accumulate)
