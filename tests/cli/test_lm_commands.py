"""The `rnn` command through Click's CliRunner: happy paths, exact resume, Ctrl-C, divergence, and
bad input (exit code, one `Error` line on stderr, no traceback).

Every model here is tiny (H=8, one layer, T=8, B=2) and trains for a handful of steps.
"""

import glob
import json
import os
import signal
import time

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import clean_failure
from rnncli.engine import model as M
from rnncli.lm.checkpoint import load_lm
from rnncli.cli import main

# --dropout given too, so the runs keep it rather than a recipe chosen from the corpus and a
# speed probe (whose training steps would count as calls in the tests that patch them)
TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
        "--dropout", "0.2"]


def invoke(*args, ok=True):
    """Run `rnn ARGS`; with ok, exceptions propagate and the exit code must be 0."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result


def fails(*args, code: int):
    """Run `rnn ARGS`, expecting a clean failure with exit code `code`; returns stderr."""
    return clean_failure(invoke(*args, ok=False), code)


def unwrapped(stderr: str) -> str:
    """stderr with rich's hard line breaks removed (see test_sample_notice_is_one_line)."""
    return stderr.replace("\n", "")


def load_meta(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["meta"]))


def load_arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "meta"}


@pytest.fixture
def corpus(tmp_path, tiny_corpus) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(tiny_corpus * 3, encoding="utf-8")
    return str(path)


def train(corpus, out, *extra, steps=6, eval_every=3) -> str:
    """Train a tiny model; returns the best checkpoint path that `rnn train` printed."""
    result = invoke("train", corpus, *TINY, "--max-steps", steps, "--eval-every", eval_every,
                    "--out", out, "--quiet", *extra)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0].split("\t")[0]


@pytest.fixture
def ckpt(corpus, tmp_path) -> str:
    return train(corpus, tmp_path / "runs")


def sample(ckpt, *args) -> str:
    """stdout of `rnn sample CKPT ARGS`, which must be only the text."""
    result = invoke("sample", ckpt, *args)
    return result.stdout


# ---------------------------------------------------------------- train


def test_train_prints_the_best_checkpoint(corpus, tmp_path):
    result = invoke("train", corpus, *TINY, "--max-steps", 6, "--eval-every", 3,
                    "--out", tmp_path / "runs", "--quiet")
    best, loss = result.stdout.rstrip("\n").split("\t")
    assert result.stdout == f"{best}\t{loss}\n"  # one line: the checkpoint, a TAB, its loss
    assert loss.startswith("best validation loss ") and "nats/char" in loss
    assert os.path.basename(best) == "best.npz"
    run_dir = os.path.dirname(best)
    assert os.path.dirname(os.path.abspath(run_dir)) == str(tmp_path / "runs")
    assert sorted(os.listdir(run_dir)) == [".lock", "best.npz", "latest.npz", "metrics.csv", "metrics.jsonl"]  # the lock stays, unheld


def test_checkpoint_is_plain_npz_with_full_metadata(ckpt, tiny_corpus):
    latest = os.path.join(os.path.dirname(ckpt), "latest.npz")
    meta = load_meta(latest)
    assert meta["format"] == "rnncli" and meta["version"] == 1 and meta["kind"] == "lm"
    vocab = meta["vocab"]
    assert list(vocab) == sorted(set(vocab)) and set(vocab) == set(tiny_corpus)
    assert meta["progress"]["step"] == 6
    assert meta["config"]["model"]["hidden_size"] == 8 and meta["config"]["max_steps"] == 6
    assert meta["model"]["cell"] == "lstm"
    assert isinstance(meta["rng"], dict) and "state" in meta["rng"]
    arrays = load_arrays(latest)
    assert any(k.startswith("param/") for k in arrays)
    assert any(k.startswith("opt/") for k in arrays)
    assert "state/hidden" in arrays
    assert arrays["param/W_hy"].shape == (len(vocab), 8)


def test_small_corpus_warns_and_trains(tmp_path, tiny_corpus):
    path = tmp_path / "small.txt"
    path.write_text(tiny_corpus[:30], encoding="utf-8")
    result = invoke("train", path, "--hidden-size", 8, "--layers", 1, "--embedding-size", 4,
                    "--batch-size", 32, "--seq-len", 50, "--max-steps", 3, "--out", tmp_path / "runs")
    assert "warning" in result.stderr
    assert "Traceback" not in result.output
    assert os.path.isfile(result.stdout.split("\t")[0])


# ---------------------------------------------------------------- sample


def test_sample_stdout_is_only_the_text(ckpt):
    result = invoke("sample", ckpt, "-n", 50, "--seed", 7, "--prime", "Le ")
    vocab = load_meta(ckpt)["vocab"]
    out = result.stdout
    assert out.startswith("Le ") and out.endswith("\n")
    assert len(out) == len("Le ") + 50 + 1
    assert set(out[:-1]) <= set(vocab)
    assert "Sampling from" in result.stderr
    assert "seed 7" in " ".join(result.stderr.split())
    assert "Sampling" not in out


def test_sample_threads_draw_the_same_text(corpus, tmp_path, monkeypatch):
    """`rnn sample --threads 2` writes what --threads 1 writes for the same seed, with a model of
    40 units (two panels of units to share) made to split whatever its size."""
    from rnncli.engine import threads as blas
    from rnncli.lm import sample as S

    ckpt = train(corpus, tmp_path / "runs", "--hidden-size", "40", steps=2, eval_every=2)
    monkeypatch.setattr(S, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(blas, "usable_cores", lambda: 2)
    one = sample(ckpt, "-n", 120, "--seed", 11, "--threads", 1)
    two = sample(ckpt, "-n", 120, "--seed", 11, "--threads", 2)
    assert one == two and len(one) == 121


def test_sample_without_a_prime(ckpt):
    out = sample(ckpt, "-n", 40, "--seed", 1)
    assert len(out) == 41 and out.endswith("\n")


def test_sample_finds_the_latest_run(corpus, tmp_path):
    out = tmp_path / "runs"
    older = train(corpus, out, "--seed", 1)
    time.sleep(0.01)
    newer = train(corpus, out, "--seed", 2)
    past = time.time() - 100
    os.utime(older, (past, past))
    result = invoke("sample", "--out", out, "-n", 30, "--seed", 3)
    assert unwrapped(result.stderr).startswith(f"Sampling from {newer} ")
    assert result.stdout == sample(newer, "-n", 30, "--seed", 3)
    assert result.stdout != sample(older, "-n", 30, "--seed", 3)


def test_sample_notice_is_one_line(ckpt, monkeypatch):
    """The notice names the checkpoint whole, on one line, so it can be copied or grepped even
    when stderr goes to a log file (no terminal: rich assumes 80 columns)."""
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("sample", ckpt, "-n", 5, "--seed", 11)
    assert result.stderr == f"Sampling from {ckpt} (temperature 1, seed 11)\n"


def test_same_seed_same_text(ckpt):
    a = sample(ckpt, "-n", 100, "--seed", 42)
    assert a == sample(ckpt, "-n", 100, "--seed", 42)
    assert a != sample(ckpt, "-n", 100, "--seed", 43)


def test_temp_zero_is_argmax_and_ignores_the_seed(ckpt):
    greedy = sample(ckpt, "-n", 60, "--argmax", "--seed", 1, "--prime", "Le")
    assert sample(ckpt, "-n", 60, "--temp", 0, "--seed", 2, "--prime", "Le") == greedy
    assert sample(ckpt, "-n", 60, "--temp", 0, "--seed", 3, "--prime", "Le") == greedy
    assert sample(ckpt, "-n", 60, "--top-k", 1, "--seed", 4, "--prime", "Le") == greedy
    assert sample(ckpt, "-n", 60, "--top-k", 1, "--temp", 5, "--seed", 5, "--prime", "Le") == greedy


def test_argmax_follows_the_model(ckpt):
    """Greedy text equals a float64 step-by-step argmax rollout of the model's own forward pass."""
    prime, n = "Le ", 12
    greedy = sample(ckpt, "-n", n, "--argmax", "--prime", prime)[len(prime):-1]
    lm = load_lm(ckpt)
    params = {k: v.astype(np.float64) for k, v in lm.params.items()}
    state = M.zero_state(lm.cfg, 1, np.float64)
    work = M.Workspace(np.float64)
    feed = list(lm.vocab.encode(prime))
    text = ""
    while len(text) < n:
        for token in feed:
            logits, state, _, _ = M.lm_forward(lm.cfg, params, np.array([[token]], np.int32), state, work)
            state = state.copy()
        top2 = np.sort(logits[0])[-2:]
        assert top2[1] - top2[0] > 1e-5  # no near-tie that float32 could break the other way
        nxt = int(np.argmax(logits[0]))
        text += lm.vocab.chars[nxt]
        feed = [nxt]
    assert greedy == text


def test_stop_ends_right_after_the_stop_text(ckpt):
    """The stop text is cut from a free sample, straddling a 64-character kernel chunk."""
    full = sample(ckpt, "-n", 300, "--seed", 9)[:-1]
    stop = full[62:66]
    end = full.find(stop) + len(stop)
    out = sample(ckpt, "-n", 300, "--seed", 9, "--stop", stop)
    assert out == full[:end] + "\n"


def test_stop_understands_escapes(ckpt):
    full = sample(ckpt, "-n", 400, "--seed", 5)[:-1]
    assert "\n" in full
    out = sample(ckpt, "-n", 400, "--seed", 5, "--stop", "\\n")
    assert out == full[:full.index("\n") + 1] + "\n"


def test_prime_escapes(ckpt):
    out = sample(ckpt, "-n", 10, "--seed", 1, "--prime", "Le\\ncafé")
    assert out.startswith("Le\ncafé")
    assert len(out) == len("Le\ncafé") + 10 + 1


def test_several_samples(ckpt):
    out = sample(ckpt, "-n", 20, "--seed", 3, "--num-samples", 2, "--prime", "À")
    assert len(out) == 2 * (1 + 20 + 1) + 1  # prime + text + newline, a blank line between
    first, second = out[:22], out[23:]
    assert out[22] == "\n" and first.startswith("À") and second.startswith("À")
    assert first.endswith("\n") and second.endswith("\n")
    assert first == sample(ckpt, "-n", 20, "--seed", 3, "--prime", "À")


def test_accents_survive_the_round_trip(tmp_path, tiny_corpus):
    path = tmp_path / "accents.txt"
    path.write_text(tiny_corpus * 2, encoding="utf-8")
    ckpt = train(str(path), tmp_path / "runs")
    vocab = load_meta(ckpt)["vocab"]
    assert {"é", "ç", "œ", "«", "»", "\u00a0", "’"} <= set(vocab)
    out = sample(ckpt, "-n", 300, "--seed", 2, "--prime", "« Noël »\u00a0")
    assert out.startswith("« Noël »\u00a0")
    assert set(out[:-1]) <= set(vocab)
    assert len(out) == len("« Noël »\u00a0") + 300 + 1


def test_unknown_prime_characters(ckpt):
    stderr = fails("sample", ckpt, "-n", 5, "--prime", "Qé✓", code=1)
    assert "'Q'" in stderr and "'✓'" in stderr and "'é'" not in stderr
    out = sample(ckpt, "-n", 5, "--seed", 1, "--prime", "Qé✓", "--drop-unknown")
    assert out.startswith("é") and len(out) == 1 + 5 + 1


# ---------------------------------------------------------------- resume


def test_resume_continues_to_the_new_limit(ckpt):
    latest = os.path.join(os.path.dirname(ckpt), "latest.npz")
    result = invoke("train", "--resume", latest, "--max-steps", 10, "--quiet")
    assert result.stdout.split("\t")[0] == ckpt
    assert load_meta(latest)["progress"]["step"] == 10


def short_corpus(tmp_path, tiny_corpus, chunks: int) -> str:
    """A corpus whose epoch is `chunks` steps of B=2, T=8 (5% held out for validation)."""
    n = 20 * chunks  # 95% train: (19·chunks - 1) // 2 // 8 == chunks for chunks in 3..6
    path = tmp_path / f"short{chunks}.txt"
    path.write_text((tiny_corpus * 3)[:n], encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("cell, chunks", [("lstm", None), ("gru", None), ("lstm", 3), ("gru", 5), ("rnn", 4)])
def test_resumed_run_equals_straight_run(tmp_path, tiny_corpus, corpus, cell, chunks):
    """5 steps, stop, resume to 10 == 10 steps straight: parameters, optimizer state, carried state.

    Dropout makes the RNG state matter; chunks=3/4 resume mid-epoch after an epoch boundary,
    chunks=5 stops exactly at the end of an epoch (the step schedule decays per epoch). State
    resets draw from the RNG too. (The cosine schedule follows --max-steps, which differs between
    the two runs here, so this test uses the step schedule.)"""
    text = corpus if chunks is None else short_corpus(tmp_path, tiny_corpus, chunks)
    opts = ["--cell", cell, "--dropout", 0.3, "--seed", 77, "--schedule", "step", "--lr-decay", 0.5,
            "--decay-after", 0, "--state-reset", 0.2, "--weight-decay", 0.1]
    straight = train(text, tmp_path / "a", *opts, steps=10, eval_every=5)
    first = train(text, tmp_path / "b", *opts, steps=5, eval_every=5)
    latest_b = os.path.join(os.path.dirname(first), "latest.npz")
    invoke("train", "--resume", latest_b, "--max-steps", 10, "--quiet")
    latest_a = os.path.join(os.path.dirname(straight), "latest.npz")

    meta_a, meta_b = load_meta(latest_a), load_meta(latest_b)
    for key in ("step", "epoch", "chunk"):
        assert meta_a["progress"][key] == meta_b["progress"][key], key
    assert meta_a["progress"]["step"] == 10
    if chunks:
        assert (meta_a["progress"]["epoch"], meta_a["progress"]["chunk"]) == divmod(10, chunks)
    assert meta_a["optimizer_steps"] == meta_b["optimizer_steps"] == 10
    assert meta_a["rng"] == meta_b["rng"]
    a, b = load_arrays(latest_a), load_arrays(latest_b)
    assert set(a) == set(b)
    checked = [k for k in a if k.startswith(("param/", "opt/", "state/"))]
    assert "state/hidden" in checked and any(k.startswith("opt/") for k in checked)
    for key in checked:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_resume_with_a_different_cell_is_a_usage_error(ckpt):
    latest = os.path.join(os.path.dirname(ckpt), "latest.npz")
    stderr = fails("train", "--resume", latest, "--cell", "gru", "--max-steps", 8, code=2)
    assert "--cell" in stderr
    assert load_meta(latest)["progress"]["step"] == 6


def test_weight_decay_reaches_the_optimizer_and_stays_with_the_run(tmp_path, corpus):
    """--weight-decay changes the trained weights, is saved with the run, and a resume cannot
    change it (it is part of the schedule the run was trained with)."""
    plain = train(corpus, tmp_path / "plain", "--seed", 3)
    decayed = train(corpus, tmp_path / "decayed", "--seed", 3, "--weight-decay", 2.0)
    latest = os.path.join(os.path.dirname(decayed), "latest.npz")
    assert load_meta(latest)["config"]["optim"]["weight_decay"] == 2.0
    a = load_arrays(os.path.join(os.path.dirname(plain), "latest.npz"))
    b = load_arrays(latest)
    # the same seed and data: only the decay can make the weights differ, and it shrinks them
    assert np.linalg.norm(b["param/l0.W_hh"]) < np.linalg.norm(a["param/l0.W_hh"])
    stderr = fails("train", "--resume", latest, "--weight-decay", 0, "--max-steps", 8, code=2)
    assert "--weight-decay" in stderr
    invoke("train", "--resume", latest, "--weight-decay", 2.0, "--max-steps", 8, "--quiet")
    assert load_meta(latest)["progress"]["step"] == 8


def test_resume_with_the_suggested_command_keeps_the_run_limits(tmp_path, tiny_corpus, monkeypatch):
    """Ctrl-C prints `rnn train --resume LATEST`; running just that finishes the run as it was
    configured (here --epochs 1 = 3 steps), not with the default limits (20 epochs)."""
    text = short_corpus(tmp_path, tiny_corpus, 3)
    interrupt_on_call(monkeypatch, 1)
    result = invoke("train", text, *TINY, "--epochs", 1, "--eval-every", 100, "--out", tmp_path / "runs",
                    "--quiet", ok=False)
    assert result.exit_code == 130, result.stderr
    monkeypatch.undo()
    latest = glob_one(tmp_path / "runs", "latest.npz")
    assert load_meta(latest)["progress"]["step"] == 1
    invoke("train", "--resume", latest, "--quiet")
    meta = load_meta(latest)
    assert meta["progress"]["step"] == 3, meta["progress"]["step"]


# ---------------------------------------------------------------- Ctrl-C and divergence


def interrupt_on_call(monkeypatch, k: int) -> None:
    """Send SIGINT to this process during the k-th training step, as a user's Ctrl-C would.

    Only when training has installed its own handler: pytest's default handler would end the
    whole session."""
    real = M.lm_loss_and_grads
    calls = [0]
    default = signal.getsignal(signal.SIGINT)

    def counting(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            assert signal.getsignal(signal.SIGINT) is not default, "training installed no SIGINT handler"
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(M, "lm_loss_and_grads", counting)


def glob_one(out, name) -> str:
    runs = os.listdir(out)
    assert len(runs) == 1, runs
    return os.path.join(out, runs[0], name)


def test_ctrl_c_saves_and_exits_130(corpus, tmp_path, monkeypatch):
    handler = signal.getsignal(signal.SIGINT)
    interrupt_on_call(monkeypatch, 3)
    result = invoke("train", corpus, *TINY, "--max-steps", 50, "--eval-every", 100,
                    "--out", tmp_path / "runs", "--quiet", ok=False)
    assert result.exit_code == 130, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert signal.getsignal(signal.SIGINT) is handler  # the training handler is removed again
    latest = glob_one(tmp_path / "runs", "latest.npz")
    lm = load_lm(latest)
    assert lm.meta["progress"]["step"] == 3
    assert latest in unwrapped(result.stderr)
    assert "interrupted" in result.stderr.lower()


def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint(corpus, tmp_path, monkeypatch):
    real = M.lm_loss_and_grads
    calls = [0]

    def poisoned(*args, **kwargs):
        calls[0] += 1
        loss, state = real(*args, **kwargs)
        return (float("nan") if calls[0] == 5 else loss), state

    monkeypatch.setattr(M, "lm_loss_and_grads", poisoned)
    stderr = fails("train", corpus, *TINY, "--max-steps", 20, "--eval-every", 2,
                   "--out", tmp_path / "runs", "--quiet", code=1)
    assert "nan" in stderr.lower() and "step 5" in stderr
    latest = glob_one(tmp_path / "runs", "latest.npz")
    assert load_lm(latest).meta["progress"]["step"] == 4


def test_huge_learning_rate_diverges_cleanly(corpus, tmp_path):
    stderr = fails("train", corpus, *TINY, "--cell", "rnn", "--activation", "relu", "--lr", "1e30",
                   "--optimizer", "sgd", "--clip", 0, "--max-steps", 20, "--eval-every", 1,
                   "--out", tmp_path / "runs", "--quiet", code=1)
    assert any(word in stderr.lower() for word in ("nan", "inf", "diverg"))
    # The first update may already overflow, so no checkpoint need exist; any that does must load.
    for path in glob.glob(os.path.join(tmp_path, "runs", "*", "*.npz")):
        load_lm(path)


def test_update_overflow_never_saves_a_broken_checkpoint(corpus, tmp_path):
    """lr · gradient overflows float32 in the very first update while the loss is still finite.
    No checkpoint may hold non-finite parameters: the error's 'last good checkpoint' must load."""
    stderr = fails("train", corpus, *TINY, "--lr", "1e39", "--optimizer", "sgd", "--clip", 0,
                   "--max-steps", 20, "--eval-every", 1, "--out", tmp_path / "runs", "--quiet", code=1)
    assert any(word in stderr.lower() for word in ("nan", "inf", "diverg"))
    for path in glob.glob(os.path.join(tmp_path, "runs", "*", "*.npz")):
        load_lm(path)


# ---------------------------------------------------------------- gradcheck


def test_gradcheck_vanilla_rnn():
    result = invoke("gradcheck", "--cell", "rnn", "--layers", 1)
    assert "l0.W_hh" in result.stdout
    assert "FAIL" not in result.output


# ---------------------------------------------------------------- bad input


def test_empty_corpus(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    stderr = fails("train", path, *TINY, "--out", tmp_path / "runs", code=1)
    assert "empty" in stderr and "empty.txt" in stderr


def test_corpus_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café crème\n".encode("latin-1") * 10)
    stderr = fails("train", path, *TINY, "--out", tmp_path / "runs", code=1)
    assert "byte 3" in stderr and "latin1.txt" in stderr


def test_corpus_is_a_directory_without_text_files(tmp_path):
    fails("train", tmp_path, *TINY, code=1)


def test_corpus_missing(tmp_path):
    fails("train", tmp_path / "nope.txt", *TINY, code=2)


@pytest.mark.parametrize("option, value", [("--hidden-size", "0"), ("--lr", "-1"), ("--lr", "0"),
                                           ("--dropout", "1"), ("--max-time", "abc"), ("--seq-len", "0"),
                                           ("--cell", "tcn"), ("--max-time", "-5m")])
def test_bad_train_options(corpus, tmp_path, option, value):
    stderr = fails("train", corpus, option, value, "--out", tmp_path / "runs", code=2)
    assert option in stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args", [["--temp", "-1"], ["-n", "0"], ["--top-k", "-1"], ["--num-samples", "0"]])
def test_bad_sample_options(ckpt, args):
    fails("sample", ckpt, *args, code=2)


@pytest.mark.parametrize("prime", ["\\", "\\x4"])
def test_bad_prime_escape(ckpt, prime):
    assert "prime" in fails("sample", ckpt, "--prime", prime, code=1)


def test_sample_a_classifier_checkpoint(tmp_path):
    from rnncli.engine import npz as checkpoint

    path = checkpoint.save(str(tmp_path / "clf.npz"), {"param/x": np.zeros(2, np.float32)}, {"kind": "classifier"})
    assert "clf.npz" in fails("sample", path, code=1)


def test_sample_garbage_checkpoint(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"garbage, not a checkpoint")
    assert "x.npz" in fails("sample", path, code=1)


def test_sample_truncated_checkpoint(ckpt):
    data = open(ckpt, "rb").read()
    with open(ckpt, "wb") as f:
        f.write(data[: len(data) // 2])
    assert "best.npz" in fails("sample", ckpt, code=1)


def test_sample_without_any_run(tmp_path):
    (tmp_path / "empty").mkdir()
    stderr = fails("sample", "--out", tmp_path / "empty", code=1)
    assert "rnn train" in stderr


def test_resume_from_garbage(tmp_path, corpus):
    path = tmp_path / "x.npz"
    path.write_bytes(b"garbage")
    fails("train", "--resume", path, corpus, "--quiet", code=1)


# ---------------------------------------------------------------- the compile notice


def test_compile_notice_sees_a_numba_cache_dir(tmp_path, monkeypatch, capsys):
    """With NUMBA_CACHE_DIR set, Numba writes its index files into a subdirectory per source
    directory (<cache>/kernels_<hash>/*.nbi); once they exist, the kernels are not compiled
    again and the 'Compiling...' notice must not be printed."""
    from rnncli.cli import options as cli

    monkeypatch.setattr(cli, "__file__", str(tmp_path / "pkg" / "cli" / "options.py"))  # no cache beside the code
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    cli.announce_compile()
    assert "Compiling" in capsys.readouterr().err  # nothing cached yet: the notice is due
    (cache / "kernels_0123abcd").mkdir()
    (cache / "kernels_0123abcd" / "rnn.forward-25.py311.nbi").write_bytes(b"")
    cli.announce_compile()
    assert capsys.readouterr().err == ""
