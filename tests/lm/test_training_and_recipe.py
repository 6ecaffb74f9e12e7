"""The language model's training defaults: the learning-rate schedule to the end of
the run, early stopping, the recipe chosen from corpus size and speed, stream order and state
resets. Tiny models; assertions from the definitions."""

import math

import numpy as np
import pytest

from rnncli.engine import npz
from rnncli.lm import train as TR
from rnncli.lm.checkpoint import read_lm_checkpoint
from rnncli.config import ModelConfig, OptimConfig, TrainConfig
from rnncli.errors import ConfigError
from rnncli.lm import recipe as RC
from rnncli.data.chars import StreamBatches

TINY_MODEL = ModelConfig(hidden_size=8, num_layers=1, embedding_size=4, dropout=0.0)


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(model=TINY_MODEL, seq_len=8, batch_size=2, max_time=0, eval_every=3, threads=1,
                out_dir=str(tmp_path / "runs"), val_fraction=0.2, state_reset=0.0)
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------- schedule

def test_cosine_runs_from_lr_to_lr_final_and_only_down():
    o = OptimConfig(lr=0.01, lr_final=0.1, schedule="cosine")
    rates = [TR.lr_at(o, 0, f) for f in np.linspace(0, 1, 21)]
    assert rates[0] == pytest.approx(0.01)
    assert rates[-1] == pytest.approx(0.001)
    assert rates[10] == pytest.approx((0.01 + 0.001) / 2)  # cos(π/2) = 0: halfway in value
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert TR.lr_at(o, 0, 1.7) == pytest.approx(0.001)  # past the end: stays at the floor


def test_step_and_constant_schedules_keep_their_meaning():
    step = OptimConfig(lr=0.01, schedule="step", lr_decay=0.5, decay_after=1)
    assert [TR.lr_at(step, e, 0.9) for e in range(4)] == pytest.approx([0.01, 0.01, 0.005, 0.0025])
    assert TR.lr_at(OptimConfig(lr=0.01, schedule="constant"), 7, 0.9) == 0.01


def test_run_fraction_follows_the_nearest_limit():
    cfg = TrainConfig(max_steps=100, epochs=4, max_time=60)
    assert TR.run_fraction(cfg, step=10, epochs_done=0.2, seconds=30) == pytest.approx(0.5)  # time
    assert TR.run_fraction(cfg, step=80, epochs_done=0.2, seconds=3) == pytest.approx(0.8)  # steps
    assert TR.run_fraction(cfg, step=10, epochs_done=3.0, seconds=3) == pytest.approx(0.75)  # epochs
    assert TR.run_fraction(TrainConfig(max_time=0, epochs=0), 10**6, 50.0, 10**5) == 0.0  # no limit


def test_the_run_decays_the_rate_to_lr_final_at_its_last_step(tmp_path, corpus_file):
    rates = []

    class Rates(TR.Reporter):
        def step(self, step, loss, cps, lr):
            rates.append(lr)

    cfg = tiny_cfg(tmp_path, max_steps=12, optim=OptimConfig(lr=0.01, lr_final=0.1))
    TR.train(cfg, [corpus_file], reporter=Rates())
    assert len(rates) == 12
    assert rates[0] == pytest.approx(0.01)
    # step k (from 0) runs at fraction k/12: the last at 11/12, just above the floor
    assert rates[-1] == pytest.approx(TR.lr_at(cfg.optim, 0, 11 / 12))
    assert rates[-1] < 0.0012
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_a_run_needs_some_limit():
    with pytest.raises(ConfigError, match="no limit"):
        TrainConfig(epochs=0, max_steps=0, max_time=0, val_fraction=0.0).validate()
    with pytest.raises(ConfigError, match="no limit"):
        TrainConfig(epochs=0, max_steps=0, max_time=0, patience=0).validate()
    TrainConfig(epochs=0, max_steps=0, max_time=0, patience=3).validate()  # early stopping ends it


# ---------------------------------------------------------------- early stopping

def test_early_stopping_after_patience_evaluations_without_improvement(tmp_path, corpus_file, monkeypatch):
    scores = iter([3.0, 2.0, 2.5, 2.4, 2.1, 1.0, 0.5])  # best at the 2nd evaluation, then 3 worse
    monkeypatch.setattr(TR, "evaluate_split", lambda *a, **k: next(scores))
    result = TR.train(tiny_cfg(tmp_path, max_steps=100, patience=3), [corpus_file])
    assert result.stop_reason == "early-stop"
    assert result.steps == 5 * 3  # five evaluations, every 3 steps
    assert result.best_val == 2.0
    assert [v for _, v in result.history["val"]] == [3.0, 2.0, 2.5, 2.4, 2.1]


def test_patience_zero_never_stops_early(tmp_path, corpus_file, monkeypatch):
    scores = iter([1.0] + [2.0] * 50)
    monkeypatch.setattr(TR, "evaluate_split", lambda *a, **k: next(scores))
    result = TR.train(tiny_cfg(tmp_path, max_steps=12, patience=0), [corpus_file])
    assert result.stop_reason == "max-steps" and result.steps == 12


# ---------------------------------------------------------------- recipe

def recipe(chars: int, speed: float, seconds: float = 570, auto=("hidden_size", "num_layers", "dropout")):
    return RC.choose_recipe(ModelConfig(), auto, chars, 65, 32, 64, speed, seconds)


def test_recipe_grows_the_model_with_the_budget_and_caps_it_by_the_text():
    sizes = [(r.model.num_layers, r.model.hidden_size) for r in
             (recipe(3_000_000, s) for s in (500, 4000, 20_000, 200_000))]
    assert sizes == sorted(sizes, key=lambda lh: lh[0] * lh[1] ** 2)  # never smaller when faster
    assert sizes[0] != sizes[-1]
    small = recipe(200_000, 200_000).model  # fast machine, short text: capped by the text
    n_small = TR.count_params({k: np.empty(s) for k, s in TR.M.lm_shapes(small, 65).items()})
    assert n_small <= RC.PARAMS_PER_CHAR * 200_000
    assert small.hidden_size * small.num_layers < recipe(3_000_000, 200_000).model.hidden_size * 2


def test_recipe_dropout_rises_as_the_text_gets_shorter():
    dropouts = [recipe(n, 20_000).model.dropout for n in (20_000_000, 3_000_000, 1_000_000, 200_000, 30_000)]
    assert dropouts == sorted(dropouts)
    assert dropouts[0] == 0.0 and dropouts[-1] == 0.5
    assert all(0 <= d <= 0.5 for d in dropouts)


def test_recipe_dropout_is_one_doubling_lower_with_adams_weight_decay():
    for chars, speed in ((30_000, 20_000), (200_000, 20_000), (1_000_000, 20_000), (1_000_000, 4_000), (3_000_000, 20_000)):
        plain = recipe(chars, speed).model.dropout
        decayed = RC.choose_recipe(ModelConfig(), ("hidden_size", "num_layers", "dropout"), chars, 65, 32, 64, speed, 570,
                                   decoupled_decay=True).model.dropout
        lowered = RC.DROPOUT_PER_DOUBLING * RC.DOUBLINGS_HELD_BY_DECAY
        assert decayed <= plain and decayed >= 0
        if 0 < plain < 0.5:
            assert decayed == pytest.approx(max(0.0, plain - lowered), abs=0.05 / 2), (chars, speed)
    # the same reuse with and without: a doubling more reuse with the decay gives the plain dropout
    x = recipe(1_000_000, 20_000, auto=("dropout",)).model.dropout
    y = RC.choose_recipe(ModelConfig(), ("dropout",), 1_000_000, 65, 32, 64, 40_000, 570, decoupled_decay=True).model.dropout
    assert x == y > 0


def test_train_lowers_the_dropout_only_when_adams_decay_is_on(tmp_path, corpus_file, monkeypatch):
    seen = []
    real = RC.choose_recipe

    def spy(*a, **k):
        seen.append(k.get("decoupled_decay"))
        return real(*a, **k)

    monkeypatch.setattr(RC, "choose_recipe", spy)
    for name, optim in (("on", OptimConfig(weight_decay=0.05)), ("off", OptimConfig(weight_decay=0.0)),
                        ("coupled", OptimConfig(optimizer="rmsprop", weight_decay=0.05))):
        result, reasons = train_seeing_recipe(tiny_cfg(tmp_path / name, max_steps=2, auto=("dropout",), optim=optim),
                                              [corpus_file])
        assert any("less with the weight decay" in r for r in reasons) == (name == "on")
    assert seen == [True, False, False]


def test_recipe_changes_only_the_settings_it_may_choose():
    given = recipe(200_000, 20_000, auto=("dropout",)).model
    assert (given.num_layers, given.hidden_size) == (ModelConfig().num_layers, ModelConfig().hidden_size)
    sized = recipe(200_000, 20_000, auto=("hidden_size", "num_layers")).model
    assert sized.dropout == ModelConfig().dropout
    none = recipe(200_000, 20_000, auto=()).model
    assert none == ModelConfig()


def train_seeing_recipe(cfg: TrainConfig, paths: list) -> tuple:
    """(the run's result, the recipe's reasons from its start-up summary)."""
    seen = {}

    class Start(TR.Reporter):
        def start(self, info):
            seen.update(info)

    return TR.train(cfg, paths, reporter=Start()), seen.get("recipe", ())


def test_train_with_auto_reports_its_choice_and_keeps_the_rest(tmp_path, corpus_file):
    result, reasons = train_seeing_recipe(tiny_cfg(tmp_path, max_steps=3, auto=("dropout",)), [corpus_file])
    assert any(r.startswith("dropout") for r in reasons)
    meta = npz.load(result.latest)[1]
    assert meta["model"]["hidden_size"] == 8  # not in auto: as given
    assert meta["config"]["model"]["dropout"] == meta["model"]["dropout"]


# ---------------------------------------------------------------- streams and state resets

def test_stream_plan_reads_every_chunk_of_every_stream_once_in_order():
    ids = np.arange(1000)
    plan = StreamBatches(ids, batch_size=4, seq_len=5, streams=16)
    plan.shuffle(np.random.default_rng(0))
    seen = {}
    for k in range(plan.chunks):
        x, y = plan.chunk(k)
        np.testing.assert_array_equal(x[1:], y[:-1])
        for b, s in enumerate(plan.rows(k)):
            seen.setdefault(int(s), []).append(int(x[0, b]))
    assert sorted(seen) == list(range(16))
    L = plan.stream_len
    for s, firsts in seen.items():  # each stream's chunks in order, T apart, from its own start
        assert firsts == [s * L + r * 5 for r in range(plan.rounds)]
    # consecutive steps do not read the same streams
    assert not all(set(plan.rows(k)) == set(plan.rows(k + 1)) for k in range(plan.groups - 1))


def test_stream_plan_with_as_many_streams_as_rows_is_the_classic_order():
    ids = np.arange(500)
    plan = StreamBatches(ids, 4, 5, StreamBatches.fit(len(ids), 4, 5, 0))
    classic = StreamBatches(ids, 4, 5)
    assert plan.chunks == classic.chunks
    for k in range(plan.chunks):
        for a, b in zip(plan.chunk(k), classic.chunk(k)):
            np.testing.assert_array_equal(a, b)


def test_stream_plan_fit_keeps_streams_a_multiple_of_the_batch_and_long_enough():
    assert StreamBatches.fit(1_000_000, 32, 64, 512) == 512
    assert StreamBatches.fit(1_000_000, 32, 64, 500) == 480
    S = StreamBatches.fit(20_000, 32, 64, 512)
    assert S % 32 == 0 and 32 <= S < 512 and (20_000 - 1) // S >= 4 * 64


def final_state(tmp_path, corpus_file, reset: float, name: str) -> np.ndarray:
    cfg = tiny_cfg(tmp_path / name, max_steps=6, state_reset=reset, batch_size=4, eval_every=100)
    result = TR.train(cfg, [corpus_file])
    return npz.load(result.latest)[0]["state/hidden"]


def test_state_reset_zeroes_streams_and_zero_chance_never_does(tmp_path, corpus_file):
    kept = final_state(tmp_path, corpus_file, 0.0, "a")
    assert (np.abs(kept).reshape(-1, 4, 8).max(axis=(0, 2)) > 0).all()  # every stream carries state
    reset = final_state(tmp_path, corpus_file, 0.99, "b")
    assert (np.abs(reset).reshape(-1, 4, 8).max(axis=(0, 2)) == 0).sum() >= 3  # nearly all restart


def test_resume_with_shuffled_streams_equals_the_straight_run(tmp_path, corpus_file):
    def cfg(sub, steps):
        return tiny_cfg(tmp_path / sub, max_steps=steps, streams=8, eval_every=3, state_reset=0.3,
                        epochs=0, optim=OptimConfig(schedule="constant"))

    straight = TR.train(cfg("a", 9), [corpus_file])
    first = TR.train(cfg("b", 4), [corpus_file])
    again = TR.train(cfg("b", 9), [corpus_file], resume=read_lm_checkpoint(first.latest))
    a = npz.load(straight.latest)[0]
    b = npz.load(again.latest)[0]
    assert "state/order" in a and a["state/hidden"].shape[2] == 8
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_cli_explicit_options_win_over_the_recipe(tmp_path, corpus_file):
    from click.testing import CliRunner

    from rnncli.cli import main

    tiny = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
            "--max-steps", "3", "--eval-every", "3", "--threads", "1"]

    def run(*extra, out):
        result = CliRunner().invoke(main, ["train", corpus_file, *tiny, *extra, "--out", str(tmp_path / out)],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        path = result.stdout.split("\t")[0]
        return result.stderr, npz.load(path)[1]

    stderr, meta = run(out="a")
    assert "chosen: dropout" in stderr and "chosen: model" not in stderr  # size given, dropout not
    assert "chosen: cell lstm" in stderr  # a small text: the default cell, said
    assert meta["model"]["hidden_size"] == 8
    assert "chosen: weight decay" in stderr and meta["config"]["optim"]["weight_decay"] > 0
    stderr, meta = run("--dropout", "0.1", "--cell", "lstm", "--weight-decay", "0", out="b")
    assert "chosen:" not in stderr
    assert meta["model"]["dropout"] == 0.1 and meta["config"]["optim"]["weight_decay"] == 0


def test_time_budget_keeps_room_for_the_last_evaluation(tmp_path, corpus_file, monkeypatch):
    import time

    def slow_evaluate(*a, **k):
        time.sleep(0.4)
        return 1.0

    monkeypatch.setattr(TR, "evaluate_split", slow_evaluate)
    TR.train(tiny_cfg(tmp_path / "warm", max_steps=2), [corpus_file])  # kernels compiled and loaded
    t0 = time.perf_counter()
    result = TR.train(tiny_cfg(tmp_path, max_time=2.0, eval_every=1, patience=0), [corpus_file])
    spent = time.perf_counter() - t0
    assert result.stop_reason == "max-time"
    assert spent < 2.0 + 0.3, spent  # the final evaluation (0.4 s) fits inside the 2 s


def test_recipe_cell_gru_for_large_texts_default_below():
    from rnncli.config import GRU_FROM_CHARS

    small, why_small = RC.choose_cell(ModelConfig(cell="lstm"), GRU_FROM_CHARS - 1)
    large, why_large = RC.choose_cell(ModelConfig(cell="lstm"), GRU_FROM_CHARS)
    assert small.cell == "lstm" and large.cell == "gru"
    assert (large.hidden_size, large.num_layers, large.dropout) == (small.hidden_size, small.num_layers, small.dropout)
    assert why_small[0].startswith("cell lstm") and why_large[0].startswith("cell gru")


def test_train_chooses_the_cell_only_when_left_to_it(tmp_path):
    from rnncli.config import GRU_FROM_CHARS, GRU_LR

    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefgh \n"), size=int(GRU_FROM_CHARS / 0.8) + 1000))
    path = tmp_path / "large.txt"
    path.write_text(text)
    chosen = {}
    for auto in (("cell", "lr"), ("cell",), ()):
        result, reasons = train_seeing_recipe(tiny_cfg(tmp_path, max_steps=1, auto=auto), [str(path)])
        meta = npz.load(result.latest)[1]
        chosen[auto] = (meta["model"]["cell"], meta["config"]["optim"]["lr"])
        if auto:
            assert any(r.startswith("cell gru") for r in reasons)
    assert chosen[("cell", "lr")] == ("gru", GRU_LR)  # the recipe's rate for the cell it chose
    assert chosen[("cell",)] == ("gru", OptimConfig().lr)  # --lr given: kept
    assert chosen[()] == ("lstm", OptimConfig().lr)


def test_weight_decay_is_chosen_for_adam_only_when_left_to_the_recipe(tmp_path, corpus_file):
    from rnncli.config import LM_WEIGHT_DECAY

    chosen = {}
    for optimizer, auto, given in (("adam", ("weight_decay",), 0.0), ("adam", (), 0.0), ("adam", (), 0.2),
                                   ("rmsprop", ("weight_decay",), 0.0)):
        cfg = tiny_cfg(tmp_path / f"{optimizer}{len(auto)}{given}", max_steps=1, auto=auto,
                       optim=OptimConfig(optimizer=optimizer, weight_decay=given))
        result, reasons = train_seeing_recipe(cfg, [corpus_file])
        decay = chosen[optimizer, auto, given] = npz.load(result.latest)[1]["config"]["optim"]["weight_decay"]
        assert any(r.startswith("weight decay") for r in reasons) == (decay > 0 and bool(auto))
    assert chosen["adam", ("weight_decay",), 0.0] == LM_WEIGHT_DECAY > 0
    assert chosen["adam", (), 0.0] == 0.0  # --weight-decay 0 given: kept
    assert chosen["adam", (), 0.2] == 0.2
    assert chosen["rmsprop", ("weight_decay",), 0.0] == 0.0  # coupled decay: not the measured setting


def test_eval_stride_keeps_evaluations_under_their_share():
    assert TR.eval_stride(0.1, 0.2, 200) == 1  # cheap: every eval_every steps
    k = TR.eval_stride(3.9, 0.19, 200)  # whole 10% of tiny Shakespeare at 2 threads
    assert k == math.ceil(3.9 / (TR.EVAL_SHARE * 0.19 * 200)) and k > 1
    assert 3.9 / (k * 200 * 0.19) <= TR.EVAL_SHARE < 3.9 / ((k - 1) * 200 * 0.19)  # the fewest spans that do
    assert TR.eval_stride(5.0, 0.0, 200) == 1


def test_slow_evaluations_are_spaced_out_only_when_left_to_the_run(tmp_path, corpus_file, monkeypatch):
    import time

    def slow_evaluate(*a, **k):
        time.sleep(0.05)  # far over 4% of a tiny model's few milliseconds of steps
        return 2.0

    monkeypatch.setattr(TR, "evaluate_split", slow_evaluate)
    steps = {}
    for auto in (("eval_every",), ()):
        result = TR.train(tiny_cfg(tmp_path / str(len(auto)), max_steps=12, patience=0, auto=auto), [corpus_file])
        steps[auto] = [s for s, _ in result.history["val"]]
    assert steps[()] == [3, 6, 9, 12]
    assert steps[("eval_every",)][:2] == [3, 6] and steps[("eval_every",)][-1] == 12  # the first two, the last
    assert len(steps[("eval_every",)]) < 4


def test_a_slow_first_evaluation_alone_does_not_space_them_out(tmp_path, corpus_file, monkeypatch):
    """The first evaluation of a run may compile the scoring kernels: its time must not set the
    spacing. Here it takes 1 s and the others next to nothing, with steps of 50 ms and
    evaluations allowed as long as the training between them (EVAL_SHARE 1): evaluations stay
    every eval_every (3) steps. Spaced by the first, the next would come 21 steps later."""
    import time

    calls = []

    def first_slow(*a, **k):
        calls.append(1)
        time.sleep(1.0 if len(calls) == 1 else 0.0)
        return 2.0

    real_step = TR.M.lm_loss_and_grads

    def slow_step(*a, **k):
        time.sleep(0.05)
        return real_step(*a, **k)

    monkeypatch.setattr(TR, "evaluate_split", first_slow)
    monkeypatch.setattr(TR.M, "lm_loss_and_grads", slow_step)
    monkeypatch.setattr(TR, "EVAL_SHARE", 1.0)
    result = TR.train(tiny_cfg(tmp_path, max_steps=12, patience=0, auto=("eval_every",)), [corpus_file])
    assert [s for s, _ in result.history["val"]] == [3, 6, 9, 12]
