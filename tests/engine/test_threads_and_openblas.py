"""The matrix-product primitives (kernels/gemm.py, kernels/panel.py) against numpy, and the
thread and kernel policy of rnncli/blas.py."""

import numpy as np
import pytest
from numba import njit

from rnncli.engine import openblas
from rnncli.engine import threads as blas
from rnncli.engine.kernels import panel
from rnncli.engine.kernels.gemm import gemm as gemm_numpy_fallback


# Called from Python, gemm and panel.product run their numpy fallbacks (NUMBA_DISABLE_JIT);
# these compiled callers reach the BLAS call and the micro-kernel, which are under test.
@njit
def gemm(A, B, C, trans_a, trans_b, alpha, beta):
    gemm_numpy_fallback(A, B, C, trans_a, trans_b, alpha, beta)


@njit
def product(A, P, C, accumulate):
    panel.product(A, P, C, accumulate)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy_on_views(rng, dtype, trans_a, trans_b):
    """Operands are views into larger buffers (row stride > row length); beta = 0 ignores NaN."""
    m, k, n = 5, 7, 3
    big_a = rng.standard_normal((12, 12)).astype(dtype)
    big_b = rng.standard_normal((12, 12)).astype(dtype)
    A = big_a[1:1 + k, 2:2 + m] if trans_a else big_a[1:1 + m, 2:2 + k]
    B = big_b[3:3 + n, 1:1 + k] if trans_b else big_b[3:3 + k, 1:1 + n]
    want = (A.T if trans_a else A).astype(np.float64) @ (B.T if trans_b else B).astype(np.float64)
    C = rng.standard_normal((m, n)).astype(dtype)
    C0 = C.copy()
    gemm(A, B, C, trans_a, trans_b, 2.0, 0.5)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(C, 2.0 * want + 0.5 * C0, rtol=tol, atol=tol)
    C[:] = np.nan
    gemm(A, B, C, trans_a, trans_b, 1.0, 0.0)
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (3, 5, 31), (8, 16, 32), (9, 33, 65), (17, 64, 100), (32, 40, 7)])
@pytest.mark.parametrize("transposed", [False, True])
def test_panel_product_matches_numpy(rng, M, K, N, transposed):
    """Every row count of the last block, full and masked panels, accumulate or overwrite."""
    W = rng.standard_normal((N, K) if transposed else (K, N)).astype(np.float32)
    R = (W.T if transposed else W).astype(np.float64)
    P = panel.packed(W, transposed)
    A = rng.standard_normal((M, K)).astype(np.float32)
    C0 = rng.standard_normal((M, N)).astype(np.float32)
    C = C0.copy()
    product(A, P, C, True)
    np.testing.assert_allclose(C, C0 + A.astype(np.float64) @ R, rtol=1e-5, atol=1e-5)
    C[:] = np.nan
    product(A, P, C, False)
    np.testing.assert_allclose(C, A.astype(np.float64) @ R, rtol=1e-5, atol=1e-5)


def test_panel_product_writes_only_its_block(rng):
    """C a view inside a larger buffer: the masked edge never writes past column N."""
    K, N = 10, 40
    W = rng.standard_normal((N, K)).astype(np.float32)
    big = np.full((9, 50), 7.0, np.float32)
    C = big[2:7, 3:3 + N]
    A = rng.standard_normal((5, K)).astype(np.float32)
    product(A, panel.packed(W, True), C, False)
    np.testing.assert_allclose(C, A.astype(np.float64) @ W.T.astype(np.float64), rtol=1e-5, atol=1e-5)
    outside = np.ones(big.shape, bool)
    outside[2:7, 3:3 + N] = False
    assert np.all(big[outside] == 7.0)


def test_kernel_family_policy():
    avx512 = {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    assert openblas.configure_openblas(env, avx512) == "SkylakeX"
    assert env["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert env["OPENBLAS_THREAD_TIMEOUT"] == "4"
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    assert openblas.configure_openblas(env, {"avx2", "fma"}) is None  # an AVX2 CPU keeps Haswell
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    env = {}
    assert openblas.configure_openblas(env, avx512) is None  # unset: OpenBLAS picks for the CPU
    assert "OPENBLAS_CORETYPE" not in env
    env = {"OPENBLAS_CORETYPE": "Cooperlake"}
    assert openblas.configure_openblas(env, avx512) is None  # already an AVX-512 family
    env = {"OPENBLAS_CORETYPE": "SkylakeX", "RNN_OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_THREAD_TIMEOUT": "20"}
    assert openblas.configure_openblas(env, avx512) == "Haswell"  # the user's explicit choice wins
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and env["OPENBLAS_THREAD_TIMEOUT"] == "20"


@pytest.mark.parametrize("batch, parts", [(1, 1), (7, 2), (16, 2), (24, 2), (32, 2), (33, 2), (64, 3), (100, 4), (5, 1)])
def test_batch_shares_cover_the_batch(batch, parts):
    shares = blas.batch_shares(batch, parts)
    assert len(shares) == parts
    assert shares[0][0] == 0 and shares[-1][1] == batch
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
    assert all(stop > start for start, stop in shares)
    sizes = [stop - start for start, stop in shares]
    assert max(sizes) - min(sizes) <= 1  # batch 24 on 2: 12 + 12, not 16 + 8


@pytest.mark.parametrize("units, parts", [(20, 1), (64, 2), (100, 2), (256, 3), (512, 16)])
def test_unit_shares_are_whole_panels(units, parts):
    shares = blas.unit_shares(units, parts)
    assert len(shares) == parts and shares[0][0] == 0 and shares[-1][1] == units
    assert all(a[1] == b[0] and b[1] > b[0] for a, b in zip(shares, shares[1:]))
    assert all(start % panel.NR == 0 for start, _ in shares)


@pytest.mark.parametrize("batch, units, threads, expected", [
    (32, 256, 1, (1, 1)),
    (32, 256, 2, (2, 1)),     # rows first: they never meet
    (16, 256, 2, (2, 1)),
    (8, 512, 2, (1, 2)),      # too few rows to split: units
    (4, 512, 2, (1, 2)),
    (32, 256, 16, (4, 4)),    # every thread busy: 8 rows × 64 units each
    (2, 32, 4, (1, 1)),       # one panel of units, two rows: nothing to share
])
def test_split_shape_uses_the_threads_that_can_have_work(monkeypatch, batch, units, threads, expected):
    monkeypatch.setattr(blas, "usable_cores", lambda: 64)
    monkeypatch.delenv("RNN_SPLIT", raising=False)
    assert blas.split_shape(batch, units, threads) == expected


def test_split_shape_never_exceeds_the_cores(monkeypatch):
    """Threads that meet at every step must each have a core: --threads 16 on 2 cores uses 2."""
    monkeypatch.setattr(blas, "usable_cores", lambda: 2)
    rows, cols = blas.split_shape(64, 512, 16)
    assert rows * cols == 2


def test_over_shares_runs_every_share_and_reports_errors(monkeypatch):
    monkeypatch.setattr(blas, "usable_cores", lambda: 2)
    blas.set_threads(2)
    try:
        seen = []
        blas.over_shares(lambda lo, hi, u0, u1, barrier, parties: seen.append((lo, hi, u0, u1, parties)), 32, 64)
        assert sorted(seen) == [(0, 16, 0, 64, 1), (16, 32, 0, 64, 1)]
        seen.clear()
        blas.over_shares(lambda lo, hi, u0, u1, barrier, parties: seen.append((lo, hi, u0, u1, parties)), 4, 64)
        assert sorted(seen) == [(0, 4, 0, 32, 2), (0, 4, 32, 64, 2)]

        def fail(lo, hi, u0, u1, barrier, parties):
            if lo > 0:
                raise ValueError("helper share failed")

        with pytest.raises(ValueError, match="helper share"):
            blas.over_shares(fail, 32, 64)
    finally:
        blas.set_threads(0)


def test_numpy_fallbacks_agree(rng):
    """What runs under NUMBA_DISABLE_JIT=1 computes the same products."""
    A = rng.standard_normal((9, 33)).astype(np.float32)
    W = rng.standard_normal((65, 33)).astype(np.float32)
    C = rng.standard_normal((9, 65)).astype(np.float32)
    P = panel.packed(W, True)
    jit, fallback, blas_fallback = C.copy(), C.copy(), C.copy()
    product(A, P, jit, True)
    panel.product(A, P, fallback, True)
    gemm_numpy_fallback(A, W, blas_fallback, False, True, 1.0, 1.0)
    np.testing.assert_allclose(fallback, jit, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blas_fallback, jit, rtol=1e-5, atol=1e-5)
