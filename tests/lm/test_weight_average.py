"""Weight averaging (--ema): the average from its definition, what the checkpoint holds,
that it leaves training alone, and that a resumed run continues it exactly."""

import numpy as np
import pytest

from rnncli.engine import optim as O
from rnncli.engine import npz
from rnncli.lm import train as TR
from rnncli.lm.checkpoint import load_lm, read_lm_checkpoint
from rnncli.config import ModelConfig, OptimConfig, TrainConfig
from rnncli.errors import ConfigError

TINY_MODEL = ModelConfig(hidden_size=8, num_layers=1, embedding_size=4, dropout=0.0)


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(model=TINY_MODEL, seq_len=8, batch_size=2, max_time=0, eval_every=100, threads=1,
                out_dir=str(tmp_path / "runs"), val_fraction=0.2, state_reset=0.0, patience=0,
                optim=OptimConfig(schedule="constant", lr=0.01))
    base.update(kw)
    return TrainConfig(**base)


def by_definition(seq: list, d: float) -> np.ndarray:
    """Σ_i (1-d)·d^(t-i)·p_i / (1 - d^t) over p_1 … p_t."""
    t = len(seq)
    return sum((1 - d) * d ** (t - i) * p for i, p in enumerate(seq, 1)) / (1 - d ** t)


def test_average_equals_its_definition_after_each_update(rng):
    d = 0.8
    seq = [{"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)} for _ in range(6)]
    avg = O.WeightAverage(d, seq[0])
    for t, p in enumerate(seq, 1):
        avg.update(p, t)
        for k in p:
            np.testing.assert_allclose(avg.params[k], by_definition([q[k] for q in seq[:t]], d), rtol=1e-12)
    # the first update takes the weights as they are, whatever the average held before
    fresh = O.WeightAverage(d, seq[3])
    fresh.update(seq[0], 1)
    assert all(np.array_equal(fresh.params[k], seq[0][k]) for k in seq[0])


def test_average_keeps_its_own_copy_and_dtype(rng):
    p = {"w": rng.standard_normal(4).astype(np.float32)}
    avg = O.WeightAverage(0.5, p)
    p["w"] += 1  # training moves the weights in place: the average must not move with them
    assert not np.array_equal(avg.params["w"], p["w"])
    avg.update(p, 2)
    assert avg.params["w"].dtype == np.float32


def raw_trajectory(monkeypatch) -> list:
    """Records the parameters after every optimizer step of the next training run."""
    seen = []
    step = O.Optimizer.step

    def recording(self, params, grads, lr):
        step(self, params, grads, lr)
        seen.append({k: v.astype(np.float64) for k, v in params.items()})

    monkeypatch.setattr(O.Optimizer, "step", recording)
    return seen


def test_checkpoint_holds_the_average_and_the_raw_weights(tmp_path, corpus_file, monkeypatch):
    seen = raw_trajectory(monkeypatch)
    result = TR.train(tiny_cfg(tmp_path, max_steps=5, ema=0.7), [corpus_file])
    arrays, meta = npz.load(result.latest)
    assert len(seen) == 5 and meta["config"]["ema"] == 0.7
    for k in seen[0]:
        np.testing.assert_allclose(arrays[f"param/{k}"], by_definition([s[k] for s in seen], 0.7),
                                   rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_array_equal(arrays[f"raw/{k}"], seen[-1][k].astype(np.float32), err_msg=k)
    assert not all(np.allclose(arrays[f"param/{k}"], arrays[f"raw/{k}"]) for k in seen[0])


def test_validation_scores_the_averaged_weights(tmp_path, corpus_file):
    cfg = tiny_cfg(tmp_path, max_steps=6, ema=0.9)
    result = TR.train(cfg, [corpus_file])
    lm = load_lm(result.latest)
    corpus = TR.load_corpus([corpus_file], vocab=lm.vocab)
    val_ids = corpus.ids[TR.split_train_val(len(corpus), cfg.val_fraction):]
    B, T, _ = TR.fit_batches(TR.split_train_val(len(corpus), cfg.val_fraction), cfg.batch_size, cfg.seq_len)
    expected = TR.evaluate_split(lm.cfg, lm.params, val_ids, B, T, cfg.eval_chars)
    assert result.history["val"][-1][1] == pytest.approx(expected, rel=1e-6)


def test_averaging_leaves_training_unchanged_and_off_writes_no_raw_weights(tmp_path, corpus_file):
    off = npz.load(TR.train(tiny_cfg(tmp_path / "off", max_steps=7), [corpus_file]).latest)[0]
    on = npz.load(TR.train(tiny_cfg(tmp_path / "on", max_steps=7, ema=0.5), [corpus_file]).latest)[0]
    assert not any(k.startswith("raw/") for k in off)
    params = [k[len("param/"):] for k in off if k.startswith("param/")]
    for k in params:  # the same steps bit for bit: the average only watches
        np.testing.assert_array_equal(on[f"raw/{k}"], off[f"param/{k}"], err_msg=k)
    for k in off:
        if k.startswith(("opt/", "state/")):
            np.testing.assert_array_equal(on[k], off[k], err_msg=k)


def test_resume_continues_the_average_exactly(tmp_path, corpus_file):
    def cfg(sub, steps):
        return tiny_cfg(tmp_path / sub, max_steps=steps, ema=0.8, eval_every=3)

    straight = TR.train(cfg("a", 9), [corpus_file])
    first = TR.train(cfg("b", 4), [corpus_file])
    again = TR.train(cfg("b", 9), [corpus_file], resume=read_lm_checkpoint(first.latest))
    a = npz.load(straight.latest)[0]
    b = npz.load(again.latest)[0]
    assert set(a) == set(b) and any(k.startswith("raw/") for k in a)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert again.history["val"][-1] == [9, pytest.approx(straight.history["val"][-1][1], rel=1e-6)]


def test_ema_must_be_below_one():
    with pytest.raises(ConfigError, match="ema"):
        TrainConfig(ema=1.0).validate()
    with pytest.raises(ConfigError, match="ema"):
        TrainConfig(ema=-0.1).validate()


def test_cli_ema_option_reaches_the_run_and_is_kept_on_resume(tmp_path, corpus_file):
    from click.testing import CliRunner

    from rnncli.cli import main

    tiny = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
            "--dropout", "0", "--eval-every", "3", "--threads", "1", "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(main, ["train", corpus_file, *tiny, "--max-steps", "3", "--ema", "0.9"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "averaged with decay 0.9" in result.stderr
    path = result.stdout.split("\t")[0]
    arrays, meta = npz.load(path)
    assert meta["config"]["ema"] == 0.9 and any(k.startswith("raw/") for k in arrays)
    latest = path.replace("best.npz", "latest.npz")
    clash = CliRunner().invoke(main, ["train", corpus_file, "--resume", latest, "--ema", "0.5", "--max-steps", "4"])
    assert clash.exit_code == 2 and "--ema 0.5 differs" in clash.stderr
    ok = CliRunner().invoke(main, ["train", corpus_file, "--resume", latest, "--max-steps", "6", "-q"])
    assert ok.exit_code == 0, ok.stderr
    assert npz.load(latest)[1]["progress"]["step"] == 6
