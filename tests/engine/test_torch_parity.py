"""The PyTorch models of benchmarks/speed/compare_torch.py are the same functions as rnncli's: given the
same weights and carried state, the same loss, gradients and new state (float64, tight), and the
benchmark's training runs start from the same loss (float32). The same for the classifier
(benchmarks/speed/torch_classify.py, packed sequences) on a padded batch of unequal lengths. Skipped
without torch."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from rnncli.tools import bench  # noqa: E402
from rnncli.classify import train as C  # noqa: E402
from rnncli.engine import model as M  # noqa: E402
from rnncli.config import ClassifyConfig, ModelConfig  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks" / "speed"


def load_benchmark_module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torch_lm():
    return load_benchmark_module("torch_lm")


@pytest.fixture(scope="module")
def torch_classify():
    return load_benchmark_module("torch_classify")


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_same_weights_give_same_loss_gradients_and_state(torch_lm, cell, layers, rng):
    V, E, H, T, B = 7, 3, 5, 4, 3
    cfg = ModelConfig(cell=cell, hidden_size=H, num_layers=layers, embedding_size=E)
    params = M.init_params(cfg, M.lm_shapes(cfg, V), rng, np.float64)
    for name, p in params.items():  # non-zero biases, so each one's placement is tested
        if not name.split(".")[-1].startswith("W") and name != "embed":
            p += rng.uniform(-0.5, 0.5, p.shape)
    state = rng.uniform(-0.5, 0.5, M.state_shape(cfg, B))
    inputs = rng.integers(0, V, (T, B), dtype=np.int32)
    targets = rng.integers(0, V, (T, B), dtype=np.int32)

    grads = M.zeros_like_params(params)
    loss, new_state = M.lm_loss_and_grads(cfg, params, grads, inputs, targets, state, M.Workspace(np.float64))

    net = torch_lm.CharLM(cell, V, E, H, layers).double()
    torch_lm.load_rnncli_params(net, params)
    logits, t_state = net(torch.from_numpy(inputs).long(), torch_lm.state_from_rnncli(net, state))
    t_loss = F.cross_entropy(logits.reshape(-1, V), torch.from_numpy(targets).long().reshape(-1))
    t_loss.backward()

    assert t_loss.item() == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(torch_lm.state_to_rnncli(net, t_state), new_state, rtol=1e-10, atol=1e-12)
    t_grads = torch_lm.grads_as_rnncli(net)
    assert set(t_grads) == set(grads)
    for name in grads:
        np.testing.assert_allclose(grads[name], t_grads[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_benchmark_runs_start_from_the_same_loss_and_train_alike(torch_lm, cell):
    """float32, the benchmark's own run objects: the same initial loss, and with PyTorch's second
    bias tied (as in the loss-curve check) the same first few updates."""
    case = bench.BenchCase("tiny", cell, hidden=6, layers=2, batch=3, seq_len=5, embedding=4)
    V = 9
    data = bench.random_chunks(case, V, seed=1, count=4)
    ours = bench.TrainingRun(case, seed=2, vocab_size=V, data=data)
    theirs = torch_lm.TorchTrainingRun(case, seed=2, vocab_size=V, data=data,
                                       params=bench.initial_params(case, V, seed=2), single_bias=True)
    for _ in range(4):
        assert theirs.step() == pytest.approx(ours.step(), rel=2e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_classifier_same_weights_give_same_loss_and_gradients(torch_classify, cell, rng):
    """Bidirectional (one layer: see torch_classify's docstring), max pooling, two dense layers,
    one padded batch of unequal lengths: rnncli (padding, each text reversed for the backward
    stack) and PyTorch (packed sequences) compute the same loss and gradients, so the speed
    comparison times the same model."""
    layers = 1
    V, E, H, n_classes = 11, 3, 4, 3
    cfg = ClassifyConfig(cell=cell, hidden_size=H, num_layers=layers, bidirectional=True, pooling="max",
                         dense=(5, 4), dropout=0.0, embedding_size=E).validate()
    params = C.init_classifier(cfg, C.classifier_shapes(cfg, V, n_classes), rng, np.float64)
    for name, p in params.items():  # non-zero biases: each one's placement is tested, no ReLU sits dead
        if name.endswith((".b", ".b_hn")):
            p[:] = rng.uniform(-0.5, 0.5, p.shape)
    seqs = [rng.integers(2, V, n).astype(np.int32) for n in (5, 2, 4, 1)]
    ids, rev, lengths = C.pad_batch(seqs)
    targets = rng.integers(0, n_classes, len(seqs)).astype(np.int32)
    weights = np.full(len(seqs), 1.0 / len(seqs))

    grads = M.zeros_like_params(params)
    loss = C.loss_and_grads(cfg, params, grads, ids, rev, lengths, targets, weights, M.Workspace(np.float64))

    net = torch_classify.TextClassifier(cell, V, E, H, layers, True, cfg.dense, n_classes).double()
    torch_classify.load_rnncli_params(net, params)
    logits = net(torch.from_numpy(ids).long(), torch.from_numpy(lengths).long())
    t_loss = F.cross_entropy(logits, torch.from_numpy(targets).long())
    t_loss.backward()

    assert t_loss.item() == pytest.approx(loss, rel=1e-12)
    t_grads = torch_classify.grads_as_rnncli(net)
    assert set(t_grads) == set(grads)
    for name in grads:
        np.testing.assert_allclose(grads[name], t_grads[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_classifier_benchmark_runs_compute_the_same_model(torch_classify, cell):
    """float32, the benchmark's own run objects on a small case: the same batches, the same
    logits on each, and the same loss at the first training step."""
    case = bench.ClassifyCase("tiny", cell, hidden=6, embedding=5, vocab=50, dense=(7, 5), classes=3,
                              batch=4, texts=10, median_len=6, min_len=2, max_len=12)
    ours = bench.ClassifyRun(case, seed=3)
    theirs = torch_classify.TorchClassifyRun(case, seed=3)
    assert len(ours.batches) == len(theirs.batches) == 3
    assert len({b.ids.shape[0] for b in ours.batches}) > 1 and any(len(set(b.lengths)) > 1 for b in ours.batches)
    for b, tb in zip(ours.batches, theirs.batches):
        np.testing.assert_array_equal(tb[1].numpy(), b.lengths)
        np.testing.assert_allclose(theirs.logits(tb).numpy(), ours.logits(b), rtol=1e-4, atol=1e-5)
    assert theirs.train_step(theirs.batches[0]) == pytest.approx(ours.train_step(ours.batches[0]), rel=1e-5)
