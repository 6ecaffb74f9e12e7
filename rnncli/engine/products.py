"""The large products of a step (kernels/linear.py) on the worker threads, in blocks of output
rows that the threads take as they become free (threads.each).

OpenBLAS's own threads are not used (threads.set_threads keeps SciPy's OpenBLAS at one): they
split each product evenly, so the product ends when the slowest thread does, and one thread
that shares its core with another process slows every product by as much; they sleep after
each call and must be woken for the next (tens of microseconds, a dozen times a step); and
their results round differently at different thread counts. Here the blocks (BLOCKS_PER_WORKER
per thread, when the product is large enough) are taken by whichever thread is free, no wake-up
is paid (threads.py: the helpers watch for work between pieces), and every block gives the
same bits as the whole product would (kernels/linear.py), so results do not depend on the
thread count.
"""

from __future__ import annotations

import functools

from rnncli.engine import threads
from rnncli.engine.kernels import linear as k_lin

# Blocks per worker thread. 2 let a thread beside a busy process take fewer (LSTM 2x256, batch
# 32, 2 threads: 4% faster loaded) but cost 2-6% quiet (more calls, each packing its operands).
BLOCKS_PER_WORKER = 1
# Least multiply-adds per block: smaller products go to OpenBLAS's small-matrix code, which sums
# in another order, and their blocks would cost more to hand out than they save.
MIN_BLOCK_MACS = 1 << 24
ROW_ALIGN = 16  # block edges, in rows: whole register blocks of OpenBLAS's kernels
COLUMNS_PER_SUM = 256  # bias gradients: columns per thread at least


def blocks(rows: int, macs: int, workers: int | None = None) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges covering range(rows) for a product of `macs`
    multiply-adds: one on one worker, else up to BLOCKS_PER_WORKER per worker, each of at least
    MIN_BLOCK_MACS and ROW_ALIGN rows, the edges on multiples of ROW_ALIGN."""
    workers = threads.workers() if workers is None else workers
    if workers <= 1 or rows < 2 * ROW_ALIGN:
        return [(0, rows)]
    count = min(BLOCKS_PER_WORKER * workers, macs // MIN_BLOCK_MACS, rows // ROW_ALIGN)
    if count <= 1:
        return [(0, rows)]
    cuts = [0] + [(rows * i // count + ROW_ALIGN // 2) // ROW_ALIGN * ROW_ALIGN for i in range(1, count)] + [rows]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _over_blocks(kernel, rows: int, macs: int, *arrays) -> None:
    parts = blocks(rows, macs)
    if len(parts) == 1:
        kernel(*arrays, 0, rows)
        return
    threads.each([functools.partial(kernel, *arrays, r0, r1) for r0, r1 in parts])


def linear_forward(X, W, b, Y) -> None:
    """Y = X Wᵀ + b (kernels/linear.linear_forward), in blocks of Y's rows."""
    _over_blocks(k_lin.linear_forward_rows, Y.shape[0], Y.size * X.shape[1], X, W, b, Y)


def linear_weight_grad(X, dY, dW) -> None:
    """dW += dYᵀ X (kernels/linear.linear_weight_grad), in blocks of dW's rows or, when it has
    few, of its columns."""
    macs = dW.size * X.shape[0]
    if dW.shape[0] >= dW.shape[1]:
        _over_blocks(k_lin.linear_weight_grad_rows, dW.shape[0], macs, X, dY, dW)
    else:
        _over_blocks(k_lin.linear_weight_grad_cols, dW.shape[1], macs, X, dY, dW)


def linear_input_grad(dY, W, dX) -> None:
    """dX = dY W (kernels/linear.linear_input_grad), in blocks of dX's rows."""
    _over_blocks(k_lin.linear_input_grad_rows, dX.shape[0], dX.size * dY.shape[1], dY, W, dX)


def add_column_sums(dY, db) -> None:
    """db += Σ_n dY[n] (kernels/linear.add_column_sums), in blocks of columns."""
    threads.over_parts(lambda c0, c1: k_lin.add_column_sums_cols(dY, db, c0, c1), db.shape[0], COLUMNS_PER_SUM)
