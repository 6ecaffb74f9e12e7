"""The PyTorch model of benchmarks/compare_torch.py is the same function as rnncli's: given the
same weights and carried state, the same loss, gradients and new state (float64, tight), and the
benchmark's training runs start from the same loss (float32). Skipped without torch."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from rnncli import bench  # noqa: E402
from rnncli import model as M  # noqa: E402
from rnncli.config import ModelConfig  # noqa: E402

TORCH_LM = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_lm.py"


@pytest.fixture(scope="module")
def torch_lm():
    spec = importlib.util.spec_from_file_location("torch_lm", TORCH_LM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
