"""`rnn eval` (a language model's loss on any text) and `rnn sample --novelty` (how much of a
sample is copied from the training text). Tiny models, one thread."""

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ACCENTED, clean_failure, deadline, ok, run, write_corpus
from rnncli.engine import model as M
from rnncli.lm import score
from rnncli.config import ModelConfig
from rnncli.data.chars import split_train_val
from rnncli.lm.score import score_ids

TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "3",
        "--threads", "1"]
TEXT = ACCENTED * 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("eval")
    corpus = write_corpus(d, 6)
    out = ok("train", corpus, *TINY, "--max-steps", 6, "--eval-every", 3, "--val-fraction", 0.1,
             "--eval-chars", 0, "--out", d / "runs", "--quiet").stdout
    best = out.split("\t")[0]
    with np.load(best, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
    return {"dir": d, "corpus": str(corpus), "best": best, "meta": meta}


def eval_numbers(stdout: str) -> dict:
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1] in ("nats/char", "bits/char"):
            rows[parts[-1]] = float(parts[-2])
        elif parts and parts[0] in ("perplexity", "characters", "unseen"):
            rows[parts[0]] = float(parts[1].replace(",", ""))
    return rows


# ---------------------------------------------------------------- the scoring function


def tiny_model(cell="lstm", V=7, seed=0):
    cfg = ModelConfig(cell=cell, hidden_size=5, num_layers=2, embedding_size=3, dropout=0.0)
    params = M.init_params(cfg, M.lm_shapes(cfg, V), np.random.default_rng(seed), np.float32)
    return cfg, params


@pytest.mark.parametrize("n", [2, 3, 10, 47, 64])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_score_ids_predicts_every_character_but_the_first_once(cell, n):
    """B streams, chunks of T, a shorter last chunk and a tail past the last stream add up to
    exactly the sum over the streams each read alone in one piece."""
    cfg, params = tiny_model(cell)
    ids = np.random.default_rng(n).integers(0, 7, size=n).astype(np.uint8)
    total, count = score_ids(cfg, params, ids, 3, 4)
    assert count == n - 1
    B = 3
    while B > 1 and (n - 1) // B < 1:
        B //= 2
    # the layout score_ids uses: fit_batches keeps B while a stream holds at least one step
    from rnncli.data.chars import fit_batches

    B, T, _ = fit_batches(n, 3, 4)
    S = (n - 1) // B
    streams = [ids[b * S:(b + 1) * S + 1] for b in range(B - 1)] + [ids[(B - 1) * S:]]
    alone = [score_ids(cfg, params, s, 1, len(s)) for s in streams]
    assert sum(c for _, c in alone) == n - 1
    assert total == pytest.approx(sum(t for t, _ in alone), rel=1e-5)


def test_score_ids_does_not_depend_on_the_chunk_length():
    cfg, params = tiny_model("gru")
    ids = np.random.default_rng(1).integers(0, 7, size=40).astype(np.uint8)
    whole = score_ids(cfg, params, ids, 1, 39)
    for T in (1, 3, 7, 38):
        total, count = score_ids(cfg, params, ids, 1, T)
        assert count == 39 and total == pytest.approx(whole[0], rel=1e-5)


def test_a_model_that_knows_the_text_scores_near_zero():
    """The loss is the model's cross-entropy: a model whose output always puts almost all mass on
    character 2 scores a text of 2s near 0 nats and any other text near the bias gap."""
    cfg, params = tiny_model("rnn")
    for p in params.values():
        p[...] = 0
    params["b_y"][2] = 30.0
    ids = np.full(20, 2, np.uint8)
    total, count = score_ids(cfg, params, ids, 2, 4)
    assert count == 19 and total / count < 1e-6
    other = np.full(20, 4, np.uint8)
    total, _ = score_ids(cfg, params, other, 2, 4)
    assert total / 19 == pytest.approx(30.0 + math.log1p(6 * math.exp(-30.0)), rel=1e-4)


# ---------------------------------------------------------------- rnn eval


def test_eval_of_the_validation_part_is_the_runs_validation_loss(trained, tmp_path):
    """Read the same way as training's validation: the same streams, chunks and state."""
    n = trained["meta"]["corpus_chars"]
    split = split_train_val(n, 0.1)
    val = tmp_path / "val.txt"
    val.write_text(TEXT[split:], encoding="utf-8")
    result = ok("eval", trained["best"], val, "--threads", 1)
    got = eval_numbers(result.stdout)
    best_val = trained["meta"]["progress"]["best_val"]
    assert got["nats/char"] == pytest.approx(best_val, abs=1e-4)
    assert got["bits/char"] == pytest.approx(best_val / math.log(2), abs=1e-4)
    assert got["perplexity"] == pytest.approx(math.exp(best_val), rel=1e-3)
    assert got["characters"] == n - split - 1
    assert got["unseen"] == 0


def test_unseen_characters_are_left_out_and_counted(trained, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("Le café de la gare.\nThe naïve fiancée.\n", encoding="utf-8")
    odd = tmp_path / "odd.txt"
    odd.write_text("Le caf∑é de la gare.\nThe naïve fiancée.\n∑∑Ω", encoding="utf-8")
    a = eval_numbers(ok("eval", trained["best"], plain, "--threads", 1).stdout)
    result = ok("eval", trained["best"], odd, "--threads", 1)
    b = eval_numbers(result.stdout)
    assert b["unseen"] == 4
    assert "'∑'" in result.stdout and "'Ω'" in result.stdout and "2 distinct" in result.stdout
    assert b["nats/char"] == pytest.approx(a["nats/char"], abs=1e-4)
    assert b["characters"] == a["characters"]


def test_eval_stdout_is_the_result_only(trained, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("la gare", encoding="utf-8")
    result = ok("eval", trained["best"], text, "--threads", 1)
    assert "nats/char" in result.stdout and "Compiling" not in result.stdout
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"\xef\xbb\xbf", "empty"),
    ("∑Ω∑".encode(), "none of its 3 characters"),
    (b"a", "at least 2"),
    ("a∑∑".encode(), "and 2 it has never seen"),
    (b"\x00\xff\xfe\x80binary", "not UTF-8 at byte 1"),
])
def test_eval_refuses_texts_it_cannot_score(trained, tmp_path, content, words):
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    stderr = clean_failure(run("eval", trained["best"], path, "--threads", 1), 1)
    assert words in stderr and str(path) in stderr


def test_binary_text_with_replacement_counts_the_replacement_as_unseen(trained, tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(b"la gare \xff\xfe de la gare")
    got = eval_numbers(ok("eval", trained["best"], path, "--on-decode-error", "replace", "--threads", 1).stdout)
    assert got["unseen"] == 2 and got["characters"] == len("la gare  de la gare") - 1


def test_eval_refuses_wrong_inputs(trained, tmp_path):
    clf = tmp_path / "x.npz"
    clf.write_bytes(b"not a zip")
    assert "not an .npz" in clean_failure(run("eval", clf, trained["corpus"]), 1)
    clean_failure(run("eval", trained["best"], tmp_path), 2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with deadline(20):
        assert "named pipe" in clean_failure(run("eval", trained["best"], fifo), 2)


@pytest.mark.parametrize("command", ["eval", "sample", "resume", "init-from"])
def test_a_model_whose_output_overflows_is_an_error_naming_the_checkpoint(trained, tmp_path, command):
    """Weights of 3e38 are finite float32s, so the checkpoint loads; what they compute is not."""
    from rnncli.engine import npz as checkpoint

    arrays, meta = checkpoint.load(trained["best"])
    for name in arrays:
        if name.startswith("param/"):
            arrays[name] = np.full_like(arrays[name], 3e38)
    huge = checkpoint.save(str(tmp_path / "huge.npz"), arrays, meta)
    args = {"eval": ("eval", huge, trained["corpus"]), "sample": ("sample", huge, "-n", 50, "--seed", 1),
            "resume": ("train", "--resume", huge, "--max-steps", 20, "-q"),
            "init-from": ("train", trained["corpus"], "--init-from", huge, "--max-steps", 3, "--out", tmp_path / "runs",
                          "-q")}[command]
    result = run(*args)
    assert result.exit_code == 1 and result.stdout == "" and "Traceback" not in result.output
    last = result.stderr.splitlines()[-1]  # sample announces itself first, on stderr
    assert last.startswith("Error: ") and "huge.npz" in last and "not a finite number" in last


# ---------------------------------------------------------------- novelty


def brute_force(samples, corpus, sizes):
    rows = []
    for n in sizes:
        grams = [s[i:i + n] for s in samples for i in range(len(s) - n + 1)]
        rows.append((n, len(grams), sum(g in corpus for g in grams)))
    return rows


@settings(max_examples=40)
@given(st.lists(st.text("abc\n", max_size=30), min_size=1, max_size=3), st.text("abc\n", max_size=120),
       st.integers(1, 9), st.integers(1, 40))
def test_novelty_matches_a_brute_force_count(tmp_path_factory, samples, corpus, piece, split):
    d = tmp_path_factory.mktemp("nov")
    first, second = d / "a.txt", d / "b.txt"  # two files read as one text, as training reads them
    first.write_text(corpus[:split], encoding="utf-8", newline="")
    second.write_text(corpus[split:], encoding="utf-8", newline="")
    rows = score.novelty(samples, [str(first), str(second)], sizes=(1, 3, 5), piece_chars=piece)
    assert [(r.n, r.total, r.found) for r in rows] == brute_force(samples, corpus, (1, 3, 5))


def test_novelty_survives_hash_collisions(tmp_path, monkeypatch):
    """With every hash equal, only the character comparison decides: the counts stay exact."""
    corpus = "the cat sat on the mat; the dog sat on the log"
    path = tmp_path / "c.txt"
    path.write_text(corpus, encoding="utf-8")
    monkeypatch.setattr(score, "_ngram_hashes",
                        lambda codes, n, levels: np.zeros(max(0, len(codes) - n + 1), np.uint64))
    samples = ["the cat sat on the log", "a dog sat on the mat"]
    rows = score.novelty(samples, [str(path)], sizes=(4, 10), piece_chars=8)
    assert [(r.n, r.total, r.found) for r in rows] == brute_force(samples, corpus, (4, 10))


def test_novelty_hashes_are_those_of_the_whole_ngram():
    codes = score._codes("abcdefghijklmnopqrstuvwxyz" * 3)
    for n in (1, 2, 3, 10, 20, 50, 63):
        h = score._ngram_hashes(codes, n, {})
        direct = [score._ngram_hashes(codes[i:i + n], n, {})[0] for i in range(len(codes) - n + 1)]
        assert h.tolist() == [int(v) for v in direct]
        if n < 26:
            assert h[0] == h[26] and h[0] != h[1]


def test_sample_novelty_goes_to_stderr_and_keeps_stdout_clean(trained, tmp_path):
    plain = ok("sample", trained["best"], "-n", 80, "--seed", 5).stdout
    result = ok("sample", trained["best"], "-n", 80, "--seed", 5, "--novelty")
    assert result.stdout == plain
    assert "Novelty" in result.stderr and trained["corpus"] in result.stderr
    copy = tmp_path / "copy.txt"
    copy.write_text("xx" + plain.rstrip("\n") + "yy", encoding="utf-8")
    result = ok("sample", trained["best"], "-n", 80, "--seed", 5, "--corpus", copy)
    assert result.stdout == plain
    assert result.stderr.count("100.0%") == 3  # the sample is in that text, every n-gram of it


def test_sample_novelty_without_the_training_text(trained, tmp_path):
    moved = tmp_path / "moved.npz"
    meta = dict(trained["meta"], corpus=[str(tmp_path / "gone.txt")])
    with np.load(trained["best"], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "meta"}
    from rnncli.engine import npz as checkpoint

    checkpoint.save(str(moved), arrays, meta)
    stderr = clean_failure(run("sample", moved, "-n", 10, "--novelty"), 2)
    assert "gone.txt" in stderr and "--corpus" in stderr
    ok("sample", moved, "-n", 10, "--corpus", trained["corpus"])
