"""How work is shared between threads: the products in blocks, the helper threads that take
tasks as they become free, the choice between ways of running a loop, and how a split over N
threads balances and changes no bit, tried for N beyond this machine's cores."""

import os
import threading
import time

import numpy as np
import pytest

from rnncli.engine import products
from rnncli.engine import threads as blas
from rnncli.engine.kernels import linear as k_lin


@pytest.fixture
def cores(monkeypatch):
    """Pretend the machine has n cores (the split rules cap threads at the cores)."""
    def pretend(n):
        monkeypatch.setattr(blas, "usable_cores", lambda: n)
        blas.set_threads(n)
    yield pretend
    blas.set_threads(0)


@pytest.mark.parametrize("rows, macs, workers", [(2048, 1 << 30, 2), (2048, 1 << 30, 16), (100, 1 << 30, 4),
                                                 (4096, 3 << 24, 8), (31, 1 << 30, 2)])
def test_blocks_cover_the_rows_in_aligned_blocks_of_enough_work(rows, macs, workers):
    parts = products.blocks(rows, macs, workers)
    assert parts[0][0] == 0 and parts[-1][1] == rows
    assert all(a[1] == b[0] and b[1] > b[0] for a, b in zip(parts, parts[1:]))
    assert len(parts) <= products.BLOCKS_PER_WORKER * workers
    if len(parts) > 1:
        assert all(start % products.ROW_ALIGN == 0 for start, _ in parts)
        assert macs // len(parts) >= products.MIN_BLOCK_MACS
    assert products.blocks(rows, macs, 1) == [(0, rows)]


def _problem(rng, N, M, D):
    f32 = np.float32
    return (rng.standard_normal((N, D)).astype(f32), rng.standard_normal((M, D)).astype(f32),
            rng.standard_normal(M).astype(f32), rng.standard_normal((N, M)).astype(f32))


@pytest.mark.parametrize("N, M, D", [(2048, 1024, 256), (400, 2048, 96), (1000, 65, 1024), (96, 40, 24)])
@pytest.mark.parametrize("workers", [2, 3, 5, 16])
def test_products_in_blocks_give_the_bits_of_one_call(rng, cores, N, M, D, workers):
    """Each product in blocks on `workers` threads equals the single call bit for bit (the
    small one stays whole), so training does not depend on the thread count."""
    X, W, b, dY = _problem(rng, N, M, D)
    whole_Y, whole_dW, whole_dX, whole_db = (np.empty((N, M), np.float32), rng.standard_normal((M, D)).astype(np.float32),
                                             np.empty((N, D), np.float32), rng.standard_normal(M).astype(np.float32))
    Y, dW, dX, db = np.empty_like(whole_Y), whole_dW.copy(), np.empty_like(whole_dX), whole_db.copy()
    k_lin.linear_forward(X, W, b, whole_Y)
    k_lin.linear_weight_grad(X, dY, whole_dW)
    k_lin.linear_input_grad(dY, W, whole_dX)
    k_lin.add_column_sums(dY, whole_db)
    cores(workers)
    products.linear_forward(X, W, b, Y)
    products.linear_weight_grad(X, dY, dW)
    products.linear_input_grad(dY, W, dX)
    products.add_column_sums(dY, db)
    for got, want in ((Y, whole_Y), (dW, whole_dW), (dX, whole_dX), (db, whole_db)):
        np.testing.assert_array_equal(got, want)
    if N * M * D >= 4 * products.MIN_BLOCK_MACS:
        assert len(products.blocks(N, N * M * D)) > 1  # the case really was split


def test_openblas_blocks_sum_in_the_order_of_the_whole_product(rng):
    """What the blocks rest on: OpenBLAS's large-product code gives each element the same bits
    whichever rows or columns of the output one call covers, even at odd edges. Were a build
    to sum otherwise, this fails before any training result moves."""
    blas.set_threads(1)
    try:
        N, M, D = 1000, 512, 160  # 2^26 multiply-adds: above MIN_BLOCK_MACS, blocks of it too
        X, W, b, dY = _problem(rng, N, M, D)
        whole = np.empty((N, M), np.float32)
        k_lin.linear_forward(X, W, b, whole)
        pieces = np.empty_like(whole)
        for r0, r1 in ((0, 333), (333, 1000)):  # not on a register block edge
            k_lin.linear_forward_rows(X, W, b, pieces, r0, r1)
        np.testing.assert_array_equal(pieces, whole)
        dW_whole = np.zeros((M, D), np.float32)
        k_lin.linear_weight_grad(X, dY, dW_whole)
        dW = np.zeros_like(dW_whole)
        for c0, c1 in ((0, 77), (77, 160)):
            k_lin.linear_weight_grad_cols(X, dY, dW, c0, c1)
        np.testing.assert_array_equal(dW, dW_whole)
    finally:
        blas.set_threads(0)


def test_each_runs_every_task_once_and_a_busy_thread_takes_fewer(cores):
    """Tasks are taken as threads become free: while one thread sleeps through a long task the
    other takes the rest; every task runs once; the first failing task's error is raised."""
    cores(2)
    ran = []
    lock = threading.Lock()

    def task(i):
        def run():
            if i == 0:
                time.sleep(0.3)
            with lock:
                ran.append((i, threading.get_ident()))
        return run

    blas.each([task(i) for i in range(12)])
    assert sorted(i for i, _ in ran) == list(range(12))
    slow_thread = next(t for i, t in ran if i == 0)
    assert sum(1 for _, t in ran if t == slow_thread) <= 2

    def fail(i):
        def run():
            if i in (3, 7):
                raise ValueError(f"task {i}")
        return run

    with pytest.raises(ValueError, match="task 3"):
        blas.each([fail(i) for i in range(10)])
    blas.each([task(i) for i in range(3)])  # the helpers still serve after an error


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_its_own_helpers(cores):
    """A child forked after the helpers exist has none of them: its parallel work must not wait
    for threads that did not come along."""
    cores(2)
    blas.each([lambda: None, lambda: None])  # the parent's helpers exist
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the work completes
        try:
            done = []
            blas.each([lambda: done.append(1), lambda: done.append(2)])
            blas.together([lambda: done.append(3), lambda: done.append(4)])
            os._exit(0 if sorted(done) == [1, 2, 3, 4] else 1)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's parallel work never finished")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads thread states from /proc")
def test_idle_helper_threads_sleep(cores):
    """Helpers spin only briefly after the last work: an idle process holds no core."""
    cores(2)
    blas.each([lambda: None, lambda: None])
    time.sleep(0.5)
    states = []
    for t in threading.enumerate():
        if t.name.startswith("rnncli-"):
            with open(f"/proc/self/task/{t.native_id}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
    assert states and all(s == "S" for s in states), states


def test_choice_runs_the_faster_way_and_retries_the_other_rarely():
    choice = blas.Choice(["meet", "alone"])
    cost = {"meet": 4.0, "alone": 1.0}  # a neighbour makes meeting threads slow
    runs = []
    for _ in range(20 * blas.Choice.RETRY_AFTER):
        way = choice.pick()
        runs.append(way)
        choice.record(way, cost[way])
    first_alone = runs.index("alone")
    # the first way alone until RETRY_AFTER times its call (a short probe sees nothing else),
    # its first call not counted; then the other way twice (its first call not counted)
    assert first_alone == blas.Choice.RETRY_AFTER
    assert runs[first_alone:first_alone + 2] == ["alone", "alone"]
    later = runs[first_alone:]
    spent_on_slow = cost["meet"] * later.count("meet")
    assert 0 < spent_on_slow / sum(cost[w] for w in later) < 1.5 / blas.Choice.RETRY_AFTER
    assert choice.wait["meet"] > blas.Choice.RETRY_AFTER  # tries that lost come less and less often
    cost.update(meet=0.5)  # the neighbour ends: meeting is faster again
    after = []
    for _ in range(5 * blas.Choice.RETRY_MOST):  # the try comes within RETRY_MOST x 4.0 of "alone"
        way = choice.pick()
        after.append(way)
        choice.record(way, cost[way])
    assert after[-50:].count("meet") >= 48
    cost.update(meet=4.0)  # a neighbour again: the running way slows, the choice moves at once
    again = []
    for _ in range(20):
        way = choice.pick()
        again.append(way)
        choice.record(way, cost[way])
    assert again[-15:].count("alone") == 15


def test_choice_compares_time_per_unit_of_work():
    """Steps of different sizes (a classifier's batches) are compared per token."""
    choice = blas.Choice(["threads", "one"])
    for i in range(30 * blas.Choice.RETRY_AFTER):
        way = choice.pick()
        tokens = 100 if i % 2 else 1000
        choice.record(way, tokens * (1.0 if way == "threads" else 1.8), tokens)
    assert choice.mean["threads"] < choice.mean["one"]
    assert choice.pick() == "threads"


@pytest.mark.parametrize("threads", [3, 4, 6, 8, 16])
@pytest.mark.parametrize("batch, units", [(4, 512), (8, 512), (24, 768), (32, 256), (64, 512), (12, 256)])
def test_a_split_over_n_threads_covers_the_loop_once_and_balances(monkeypatch, threads, batch, units):
    """For thread counts this machine does not have: every (row, unit) of a loop falls in one
    share, the shares use every thread that can have work, and no thread has much more than
    its part (rows x units of the largest share against the mean, panels being whole)."""
    monkeypatch.setattr(blas, "usable_cores", lambda: threads)
    monkeypatch.delenv("RNN_SPLIT", raising=False)
    blas.set_threads(threads)
    try:
        seen = []
        blas.over_shares(lambda lo, hi, u0, u1, barrier, parties: seen.append((lo, hi, u0, u1, parties)), batch, units)
    finally:
        blas.set_threads(0)
    covered = np.zeros((batch, units), np.int64)
    for lo, hi, u0, u1, _ in seen:
        covered[lo:hi, u0:u1] += 1
    assert (covered == 1).all()
    rows, cols = blas.split_shape(batch, units, threads)
    assert len(seen) == rows * cols
    assert all(parties == cols for *_, parties in seen)
    panels = -(-units // blas.UNITS_PER_WORKER)
    assert len(seen) == min(threads, max(1, batch // blas.ROWS_PER_WORKER) * panels)
    work = [(hi - lo) * (u1 - u0) for lo, hi, u0, u1, _ in seen]
    assert max(work) / (batch * units / len(seen)) <= 1.5


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_training_on_n_threads_is_bit_identical(cores, cell):
    """Three training steps with every thread count (beyond this machine's cores too) leave the
    same weights and optimizer state, bit for bit: loops split over rows and units, products in
    blocks."""
    from rnncli.tools import bench

    case = bench.BenchCase("n-threads", cell, 96, 2, batch=24, seq_len=12)
    runs = {}
    for threads in (1, 2, 3, 4, 8):
        cores(threads)
        run = bench.TrainingRun(case)
        for _ in range(3):
            run.step()
        runs[threads] = {**run.params, **{f"opt/{k}": v for k, v in run.opt.state.items()}}
    for threads, arrays in runs.items():
        for name, a in arrays.items():
            np.testing.assert_array_equal(a, runs[1][name], err_msg=f"{name} at {threads} threads")
