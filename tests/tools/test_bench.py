"""rnncli.tools.bench: the FLOP counts against a hand count, and the measuring functions on tiny
models. No timing assertions: speed lives in benchmarks/, these only check that the numbers are
well formed."""

import math

import numpy as np
import pytest

from rnncli.tools import bench
from rnncli.config import ModelConfig
from rnncli.engine import flops


def gemm(m, k, n):
    """FLOPs of an (m, k) @ (k, n) product: m·n dot products of length k, a multiply and an add each."""
    return 2 * m * k * n


def test_train_flops_matches_a_hand_count_for_a_tiny_lstm():
    cfg = ModelConfig(cell="lstm", hidden_size=3, num_layers=2, embedding_size=2)
    B, T, V = 2, 4, 5
    N, H, E, GH = T * B, 3, 2, 4 * 3
    forward = [
        gemm(N, E, GH),  # layer 0 input projection, all steps at once
        T * gemm(B, H, GH),  # layer 0 recurrent product, one per step
        gemm(N, H, GH),  # layer 1 input projection
        T * gemm(B, H, GH),  # layer 1 recurrent product
        gemm(N, H, V),  # output projection
    ]
    backward = [
        gemm(N, GH, E), gemm(GH, N, E),  # layer 0: dX = dA W_xh, dW_xh = dAᵀ X
        T * gemm(B, GH, H), gemm(GH, N, H),  # layer 0: dh_prev = da W_hh per step, dW_hh
        gemm(N, GH, H), gemm(GH, N, H),  # layer 1: input gradient, dW_xh
        T * gemm(B, GH, H), gemm(GH, N, H),  # layer 1: dh_prev per step, dW_hh
        gemm(N, V, H), gemm(V, N, H),  # output: d_top = dY W_hy, dW_hy = dYᵀ top
    ]
    assert flops.forward_flops(cfg, B, T, V) == sum(forward)
    assert bench.train_flops(cfg, B, T, V) == sum(forward) + sum(backward)


def test_one_hot_input_costs_no_input_gemm():
    """With embedding size 0, W_xh x_t is a column gather: layer 0 has only its recurrent products."""
    cfg = ModelConfig(cell="gru", hidden_size=4, num_layers=1, embedding_size=0)
    B, T, V = 3, 2, 6
    N, H, GH = T * B, 4, 3 * 4
    forward = T * gemm(B, H, GH) + gemm(N, H, V)
    assert bench.train_flops(cfg, B, T, V) == 3 * forward


def test_sample_flops_per_character():
    cfg = ModelConfig(cell="lstm", hidden_size=4, num_layers=2, embedding_size=3)
    H, GH, V = 4, 16, 7
    # layer 0 input is a table lookup; layer 1 has an input product; both have a recurrent one
    expected = gemm(1, H, GH) + gemm(1, H, GH) + gemm(1, H, GH) + gemm(1, H, V)
    assert bench.sample_flops(cfg, V) == expected


TINY = bench.BenchCase("tiny", "lstm", hidden=4, layers=2, batch=2, seq_len=3, embedding=3)
TINY_SAMPLE = bench.BenchCase("tiny-sample", "gru", hidden=4, layers=2, batch=1, seq_len=0,
                              embedding=3, task="sample", chars=20)


def positive_finite(x) -> bool:
    return math.isfinite(x) and x > 0


@pytest.mark.parametrize("case", [TINY, TINY_SAMPLE, bench.BenchCase("tiny-rnn", "rnn", 4, 1, 2, 3, 3)],
                         ids=lambda c: c.name)
def test_measure_returns_positive_finite_speeds(case):
    speeds = bench.measure(case, reps=2, warmup=1, min_rep_seconds=0.0)
    assert len(speeds) == 2 and all(positive_finite(s) for s in speeds)


def test_matmul_peak_is_positive_and_finite():
    assert positive_finite(bench.matmul_peak_gflops(threads=1, n=32, reps=2))


def test_memory_bandwidth_reads_and_the_weights_a_character_reads():
    from rnncli.engine.kernels import memory as k_mem

    a = np.arange(1000, dtype=np.float32)
    assert k_mem.read_sum(a, 10, 20, 3) == pytest.approx(3 * sum(range(10, 20)))
    streaming, cached = bench.memory_bandwidth(threads=1, big_bytes=1 << 20, cached_bytes=1 << 14, reps=2)
    assert positive_finite(streaming) and positive_finite(cached)
    case = bench.BenchCase("w", "lstm", 8, 2, batch=1, seq_len=0, task="sample", embedding=4)
    # layer 1: W_xh and W_hh (32 × 8 each); layer 0: W_hh (the input is a table row); W_hy (65 × 8)
    assert bench.weight_bytes_per_char(case) == 4 * (3 * 32 * 8 + 65 * 8)


def test_run_benchmarks_rows():
    seen = []
    report = bench.run_benchmarks([TINY, TINY_SAMPLE], threads=1, reps=2, warmup=1,
                                  min_rep_seconds=0.0, on_row=seen.append)
    assert report.threads == 1 and positive_finite(report.peak_gflops)
    assert [r.name for r in report.rows] == ["tiny", "tiny-sample"] and seen == report.rows
    for row in report.rows:
        assert all(positive_finite(x) for x in (row.chars_per_sec, row.gflops, row.fraction_of_peak))
        assert row.fraction_of_peak == pytest.approx(row.gflops / report.peak_gflops)
        assert row.chars_per_sec == pytest.approx(float(np.median(row.reps)))
    train, sample = report.rows
    assert (train.batch, train.seq_len, train.task) == (2, 3, "train")
    assert (sample.batch, sample.seq_len, sample.task) == (1, 0, "sample")
    assert positive_finite(report.memory_gbs) and positive_finite(sample.weights_gbs) and train.weights_gbs == 0


def test_random_chunks_continue_one_stream():
    """The carried state is only meaningful if chunk k+1 continues chunk k, stream by stream."""
    chunks = bench.random_chunks(TINY, vocab_size=11, seed=3, count=4)
    assert len(chunks) == 4
    for (inputs, targets), (next_inputs, _) in zip(chunks, chunks[1:]):
        assert inputs.shape == targets.shape == (TINY.seq_len, TINY.batch) and inputs.dtype == np.int32
        np.testing.assert_array_equal(inputs[1:], targets[:-1])
        np.testing.assert_array_equal(next_inputs[0], targets[-1])
    assert all(0 <= x.min() and x.max() < 11 for c in chunks for x in c)


def test_training_run_carries_the_state():
    run = bench.TrainingRun(TINY)
    assert not run.state.any()
    first = run.step()
    carried = run.state.copy()
    assert carried.any() and positive_finite(first)
    run.step()
    assert not np.array_equal(run.state, carried)


def _steps_by_hand(run, loss_and_grads, n: int) -> None:
    """n steps of what `rnn train` does, written out: zero, loss and gradients, clip, update."""
    from rnncli.engine.optim import clip_global_norm

    for _ in range(n):
        for g in run.grads.values():
            g.fill(0)
        loss_and_grads(run)
        clip_global_norm(run.grads, run.optim.clip)
        run.opt.step(run.params, run.grads, run.optim.lr)


def test_a_timed_step_is_the_training_step():
    """The steps the benchmark times change the weights exactly as zero, loss, clip, update do."""
    from rnncli.classify import model as CM
    from rnncli.config import OptimConfig
    from rnncli.engine import model as M

    optim = OptimConfig(clip=0.01)  # small enough to clip every step
    timed, by_hand = bench.TrainingRun(TINY, optim=optim), bench.TrainingRun(TINY, optim=optim)
    for _ in range(3):
        timed.step()

    def lm(run):
        inputs, targets = run.data[run.position % len(run.data)]
        run.position += 1
        _, run.state = M.lm_loss_and_grads(run.cfg, run.params, run.grads, inputs, targets, run.state, run.work)

    _steps_by_hand(by_hand, lm, 3)
    assert all(np.array_equal(timed.params[k], by_hand.params[k]) for k in timed.params)
    timed, by_hand = bench.ClassifyRun(CLS, optim=optim), bench.ClassifyRun(CLS, optim=optim)
    for b in timed.batches[:3]:
        timed.train_step(b)
    batches = iter(by_hand.batches[:3])

    def cls(run):
        b = next(batches)
        CM.loss_and_grads(run.cfg, run.params, run.grads, b.ids, b.rev, b.lengths, b.targets, b.weights, run.work)

    _steps_by_hand(by_hand, cls, 3)
    assert all(np.array_equal(timed.params[k], by_hand.params[k]) for k in timed.params)


def test_default_configs_cover_training_and_sampling():
    cases = bench.default_configs()
    assert len({c.name for c in cases}) == len(cases)
    assert {c.task for c in cases} == {"train", "sample"}
    assert {c.cell for c in cases} == {"rnn", "lstm", "gru"}
    for c in cases:
        c.model_config()  # valid sizes


CLS = bench.ClassifyCase("tiny-cls", "gru", hidden=4, embedding=3, vocab=30, dense=(5,), classes=3, batch=4,
                         texts=11, median_len=8, min_len=3, max_len=15)


def test_classify_data_lengths_ids_and_batches():
    texts, labels = bench.classify_data(CLS, seed=2)
    assert len(texts) == len(labels) == CLS.texts
    assert all(t.dtype == np.int32 and CLS.min_len <= len(t) <= CLS.max_len for t in texts)
    ids = np.concatenate(texts)
    assert ids.min() >= 2 and ids.max() < CLS.vocab  # 0 is padding and 1 unknown: never drawn
    assert 0 <= labels.min() and labels.max() < CLS.classes
    big = bench.ClassifyCase("zipf", texts=200)
    counts = np.bincount(np.concatenate(bench.classify_data(big)[0]), minlength=big.vocab)
    assert counts[2] > counts[3] > counts[12] > 0  # Zipf: the k-th word ∝ 1/k
    batches = bench.classify_batches(CLS, seed=2)
    assert sum(len(b.lengths) for b in batches) == CLS.texts and max(len(b.lengths) for b in batches) == CLS.batch
    for b in batches:
        assert b.ids.shape == b.rev.shape == (b.lengths.max(), len(b.lengths))
        assert b.weights.sum() == pytest.approx(1.0)
    # similar lengths together: the batches, ordered by their shortest text, do not overlap
    spans = sorted((b.lengths.min(), b.lengths.max()) for b in batches)
    assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
    assert [b.ids.tolist() for b in bench.classify_batches(CLS, seed=2)] == [b.ids.tolist() for b in batches]


@pytest.mark.parametrize("task", ["train", "infer"])
def test_classify_run_takes_passes(task):
    from dataclasses import replace

    run = bench.make_run(replace(CLS, task=task))
    assert isinstance(run, bench.ClassifyRun)
    before = {k: v.copy() for k, v in run.params.items()}
    assert positive_finite(run.run(1))
    changed = any(not np.array_equal(before[k], run.params[k]) for k in before)
    assert changed == (task == "train")
