"""`rnn classify train / eval / predict` through Click's CliRunner: happy paths on a tiny,
easy data set (three classes with their own words), and bad input (exit code, one `Error`
line on stderr, no traceback).

Every model is tiny (H=8, E=8, one dense layer of 8) and trains for a few epochs of 7 batches.
"""

import glob
import json
import os
import re
import time

import numpy as np
import pytest

from helpers import LABELS, TINY, fails, invoke, lines
from rnncli.classify import train as C

def flat(text: str) -> str:
    """Whitespace collapsed, so a wrapped table title or notice reads as one line."""
    return " ".join(text.split())


def write(path, rows) -> str:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def load_meta(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["meta"]))


def load_params(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k.startswith("param/")}


def train(data, out, *extra) -> str:
    """Train a tiny classifier quietly; returns the checkpoint path printed on stdout."""
    result = invoke("classify", "train", data, *TINY, "--out", out, "--quiet", *extra)
    printed = result.stdout.splitlines()
    assert len(printed) == 1, result.stdout
    return printed[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("data")
    test_rows = lines(8, 1)
    return {"dir": d, "data": write(d / "data.txt", lines(20, 0)), "test": write(d / "test.txt", test_rows),
            "test_rows": test_rows,
            "texts": write(d / "texts.txt", [r.partition("\t")[2] for r in test_rows[:6]])}


@pytest.fixture(scope="module")
def ckpt(files) -> str:
    return train(files["data"], files["dir"] / "runs", "--test", files["test"])


def predict(*args, input=None) -> list:
    result = invoke("classify", "predict", *args, input=input)
    return result.stdout.splitlines()


# ---------------------------------------------------------------- train


def test_train_prints_the_checkpoint_and_the_test_metrics(files, tmp_path):
    result = invoke("classify", "train", files["data"], "--test", files["test"], *TINY,
                    "--out", tmp_path / "runs", "--quiet")
    path = result.stdout.strip()
    assert result.stdout == path + "\n"
    assert os.path.basename(path) == "best.npz" and os.path.isfile(path)
    assert os.path.dirname(os.path.dirname(os.path.abspath(path))) == str(tmp_path / "runs")
    err = flat(result.stderr)
    assert "test (test.txt): accuracy" in err and "macro-F1" in err and "confusion matrix" in err
    assert all(label in result.stderr for label in LABELS)
    assert "Traceback" not in result.output


def test_checkpoint_is_plain_npz_and_loads(ckpt):
    meta = load_meta(ckpt)
    assert meta["format"] == "rnncli" and meta["kind"] == "classifier"
    assert meta["labels"] == LABELS
    assert meta["vocab"][:2] == ["<pad>", "<unk>"]
    assert meta["config"]["hidden_size"] == 8 and meta["config"]["dense"] == [8]
    assert meta["test"]["n"] == 24 and 0 <= meta["test"]["accuracy"] <= 1
    params = load_params(ckpt)
    assert params["param/embed"].shape == (len(meta["vocab"]), 8)
    assert params["param/out.W"].shape == (3, 8)
    clf = C.load_classifier(ckpt)
    assert clf.labels == tuple(LABELS)
    for name, p in clf.params.items():
        np.testing.assert_array_equal(p, params["param/" + name])


def test_summary_without_quiet(files, tmp_path):
    result = invoke("classify", "train", files["data"], *TINY, "--out", tmp_path / "runs")
    err = flat(result.stderr)
    assert "54 training and 6 validation texts (car 20, fruit 20, music 20)" in err
    assert "epoch 3" in err and "validation: accuracy" in err
    assert "Skipped" not in err
    assert len(result.stdout.splitlines()) == 1


def test_easy_data_is_learned(files, tmp_path):
    result = invoke("classify", "train", files["data"], "--test", files["test"], *TINY, "--epochs", 15,
                    "--lr", 0.01, "--dropout", 0, "--patience", 15, "--out", tmp_path / "runs", "--quiet")
    accuracy = float(re.search(r"test \(test\.txt\): accuracy ([0-9.]+)", flat(result.stderr)).group(1))
    assert accuracy >= 0.9, result.stderr
    ckpt = result.stdout.strip()
    assert load_meta(ckpt)["test"]["accuracy"] == pytest.approx(accuracy, abs=5e-5)
    texts = ["apple banana and cherry", "the engine and brake", "violin with piano very"]
    out = predict(ckpt, "-", input="\n".join(texts) + "\n")
    assert [row.split("\t")[0] for row in out] == ["fruit", "car", "music"]


def test_other_model_shapes_train(files, tmp_path):
    ckpt = train(files["data"], tmp_path / "runs", "--cell", "lstm", "--unidirectional", "--pooling", "last",
                 "--tokens", "char", "--dense", "", "--epochs", 1, "--max-len", 20,
                 "--class-weights", "balanced", "--optimizer", "rmsprop")
    clf = C.load_classifier(ckpt)
    assert clf.cfg.tokens == "char" and not clf.cfg.bidirectional and clf.cfg.dense == ()
    assert "bw.l0.W_hh" not in clf.params and "d0.W" not in clf.params
    assert len(predict(ckpt, files["texts"])) == 6


def test_crlf_and_bom_read_like_plain_lines(files, tmp_path):
    plain = open(files["data"], encoding="utf-8").read()
    dos = tmp_path / "dos.txt"
    dos.write_bytes(("\ufeff" + plain.replace("\n", "\r\n")).encode("utf-8"))
    a = train(files["data"], tmp_path / "a", "--epochs", 1)
    b = train(str(dos), tmp_path / "b", "--epochs", 1)
    assert load_meta(b)["labels"] == LABELS and load_meta(b)["vocab"] == load_meta(a)["vocab"]
    pa, pb = load_params(a), load_params(b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_same_seed_same_checkpoint(files, tmp_path):
    a = load_params(train(files["data"], tmp_path / "a", "--seed", 5))
    b = load_params(train(files["data"], tmp_path / "b", "--seed", 5))
    c = load_params(train(files["data"], tmp_path / "c", "--seed", 6))
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert any(not np.array_equal(a[name], c[name]) for name in a)


def test_two_runs_in_the_same_second_keep_both_checkpoints(files, tmp_path, monkeypatch):
    """Run folders are named by the second they finish in; a second run with the same data and
    --out in that second must not overwrite the first (as `rnn train` avoids with a suffix)."""
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20250101-000000")
    first = train(files["data"], tmp_path / "runs", "--seed", 1, "--epochs", 1)
    params = load_params(first)
    second = train(files["data"], tmp_path / "runs", "--seed", 2, "--epochs", 1)
    assert first != second
    after = load_params(first)
    assert all(np.array_equal(params[k], after[k]) for k in params)


# ---------------------------------------------------------------- GloVe


def glove(tmp_path, rows, name="glove.txt") -> str:
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


GLOVE = {"apple": [0.1, 0.2, 0.3, 0.4, 0.5], "engine": [1, 0, -1, 0, 1], "violin": [-0.5, 0.5, -0.5, 0.5, 0],
         "zeppelin": [9, 9, 9, 9, 9], "piano": [0, 0, 0, 0, 2]}


def test_glove_coverage_and_dimension(files, tmp_path):
    path = glove(tmp_path, [w + " " + " ".join(map(str, v)) for w, v in GLOVE.items()])
    result = invoke("classify", "train", files["data"], *TINY, "--glove", path, "--freeze-embeddings",
                    "--epochs", 2, "--out", tmp_path / "runs")
    ckpt = result.stdout.strip()
    vocab = load_meta(ckpt)["vocab"]
    found = sum(w in vocab for w in GLOVE)
    assert found == 4  # zeppelin is not in the data
    assert f"GloVe coverage: {found} of {len(vocab) - 2} vocabulary words" in flat(result.stderr)
    assert "dimension 5" in flat(result.stderr)
    embed = load_params(ckpt)["param/embed"]
    assert embed.shape == (len(vocab), 5)  # the GloVe dimension, not --embedding-size 8
    for word, vector in GLOVE.items():
        if word in vocab:  # frozen: still exactly the GloVe vectors after training
            np.testing.assert_array_equal(embed[vocab.index(word)], np.float32(vector), err_msg=word)
    assert len(predict(ckpt, files["texts"])) == 6


def test_freeze_embeddings_needs_glove(files, tmp_path):
    stderr = fails("classify", "train", files["data"], *TINY, "--freeze-embeddings", "--out", tmp_path / "runs",
                   code=2)
    assert "--glove" in stderr
    assert not (tmp_path / "runs").exists()


def test_glove_with_a_wrong_dimension(files, tmp_path):
    path = glove(tmp_path, ["apple 1 2 3", "banana 1 2 3", "cherry 1 2", "mango 1 2 3"])
    stderr = fails("classify", "train", files["data"], *TINY, "--glove", path, "--out", tmp_path / "runs", code=1)
    assert "glove.txt" in stderr and re.search(r"\bline 3\b", stderr)


# ---------------------------------------------------------------- predict and eval


def test_predict_one_line_per_input_line(ckpt, files):
    texts = [r.partition("\t")[2] for r in files["test_rows"][:6]]
    out = predict(ckpt, files["texts"])
    assert len(out) == len(texts)
    for row in out:
        label, prob = row.split("\t")
        assert label in LABELS and 0.0 <= float(prob) <= 1.0
        assert float(prob) >= 1 / 3 - 1e-4  # the most probable of three classes
    # stdin, with `-` and by default
    assert predict(ckpt, "-", input="\n".join(texts) + "\n") == out
    assert predict(ckpt, input="\n".join(texts)) == out


def test_predict_keeps_empty_lines_in_place(ckpt):
    out = predict(ckpt, "-", input="apple banana\n\nviolin piano\n")
    assert len(out) == 3
    assert out[0] == predict(ckpt, "-", input="apple banana\n")[0]
    assert out[2] == predict(ckpt, "-", input="violin piano\n")[0]


def test_predict_all_probs(ckpt, files):
    for row in predict(ckpt, files["texts"], "--all-probs"):
        label, prob, *pairs = row.split("\t")  # TAB-separated: labels may contain spaces
        probs = dict(pair.rsplit("=", 1) for pair in pairs)
        assert sorted(probs) == LABELS
        assert sum(map(float, probs.values())) == pytest.approx(1.0, abs=3 * 5e-5 + 1e-9)
        assert probs[label] == prob
        assert float(prob) == max(map(float, probs.values()))


def test_predict_labelled_ignores_the_label(ckpt, files, tmp_path):
    wrong = write(tmp_path / "wrong.txt", ["xyz\t" + r.partition("\t")[2] for r in files["test_rows"][:6]])
    plain = predict(ckpt, files["texts"])
    assert predict(ckpt, wrong, "--labelled") == plain
    assert len(predict(ckpt, wrong)) == 6  # without --labelled the label is just more text


def test_eval_prints_the_scores_on_stdout(ckpt, files):
    result = invoke("classify", "eval", ckpt, files["test"])
    out = flat(result.stdout)
    accuracy = float(re.search(r"accuracy ([0-9.]+)", out).group(1))
    assert "macro-F1" in out and "confusion matrix" in out
    # the same number predict gives, line by line
    texts = [r.partition("\t")[2] for r in files["test_rows"]]
    truth = [r.partition("\t")[0] for r in files["test_rows"]]
    predicted = [row.split("\t")[0] for row in predict(ckpt, "-", input="\n".join(texts) + "\n")]
    assert accuracy == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth)]), abs=5e-5)
    assert accuracy == pytest.approx(load_meta(ckpt)["test"]["accuracy"], abs=5e-5)


def test_test_lines_with_unknown_labels_are_skipped_and_counted(ckpt, files, tmp_path):
    rows = files["test_rows"] + ["boat\tsail anchor mast", "boat\tkeel", "plane\twing", "car\t", "no tab"]
    path = write(tmp_path / "extra.txt", rows)
    result = invoke("classify", "eval", ckpt, path)
    err = flat(result.stderr)
    assert "Skipped 3 test lines" in err and "boat" in err and "plane" in err
    assert "Skipped 1 test lines without a TAB" in err
    assert "1 test texts were empty" in err  # kept and scored, unlike in training data
    assert "(25 texts)" in flat(result.stdout)
    result = invoke("classify", "train", files["data"], *TINY, "--epochs", 1, "--test", path,
                    "--out", tmp_path / "runs", "--quiet")
    assert "Skipped 3 test lines" in flat(result.stderr)


# ---------------------------------------------------------------- bad input


def test_only_one_class(tmp_path):
    data = write(tmp_path / "one.txt", [r for r in lines(10, 0) if r.startswith("car\t")])
    stderr = fails("classify", "train", data, *TINY, "--out", tmp_path / "runs", code=1)
    assert "only one class" in stderr and "one.txt" in stderr


def test_no_tab_lines(tmp_path):
    data = write(tmp_path / "notab.txt", ["apple banana", "engine wheel", "violin piano"])
    stderr = fails("classify", "train", data, *TINY, "--out", tmp_path / "runs", code=1)
    assert "notab.txt" in stderr and "TAB" in stderr


def test_too_few_texts_for_a_validation_split(tmp_path):
    data = write(tmp_path / "two.txt", ["car\tengine wheel", "fruit\tapple pear"])
    stderr = fails("classify", "train", data, *TINY, "--out", tmp_path / "runs", code=1)
    assert "two.txt" in stderr and "validation" in stderr


def test_lines_without_tab_and_empty_texts_are_skipped_and_counted(tmp_path):
    rows = lines(20, 0)
    rows[3:3] = ["no tab here", "\tno label", "fruit\t", "car\t   ", "also no tab"]
    data = write(tmp_path / "mixed.txt", rows)
    result = invoke("classify", "train", data, *TINY, "--epochs", 1, "--out", tmp_path / "runs")
    err = flat(result.stderr)
    assert ("Skipped: 2 lines without a TAB; 1 lines with an empty label (only whitespace before the TAB); "
            "2 empty texts.") in err
    assert "54 training and 6 validation texts" in err


def test_data_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(("\n".join(lines(5, 0)) + "\nfruit\tcafé crème\n").encode("latin-1"))
    stderr = fails("classify", "train", path, *TINY, "--out", tmp_path / "runs", code=1)
    assert "byte" in stderr and "latin1.txt" in stderr


def test_labels_with_spaces(tmp_path, files):
    names = {"fruit": "fresh fruit", "car": "car parts", "music": "music"}
    data = write(tmp_path / "spaces.txt", [" " + r if i % 2 else r for i, r in enumerate(lines(20, 0, names))])
    ckpt = train(data, tmp_path / "runs", "--epochs", 1)
    assert load_meta(ckpt)["labels"] == ["car parts", "fresh fruit", "music"]
    for row in predict(ckpt, files["texts"]):
        label, prob = row.split("\t")
        assert label in ("car parts", "fresh fruit", "music")


def test_bad_test_file_does_not_throw_away_the_training(files, tmp_path, monkeypatch):
    """A --test file that cannot be scored must fail before training starts, or the trained
    weights must still be saved: never an error after all the epochs with nothing kept."""
    bad = tmp_path / "bad-test.txt"
    bad.write_bytes("fruit\tcafé\n".encode("latin-1"))
    real, calls = C.loss_and_grads, [0]

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(C, "loss_and_grads", counting)
    stderr = fails("classify", "train", files["data"], *TINY, "--test", bad, "--out", tmp_path / "runs",
                   "--quiet", code=1)
    assert "bad-test.txt" in stderr and "byte" in stderr
    saved = glob.glob(os.path.join(tmp_path, "runs", "*", "best.npz"))
    assert calls[0] == 0 or saved, f"failed after {calls[0]} training steps and saved nothing"


@pytest.mark.parametrize("option, value", [("--dense", "0"), ("--dense", "abc"), ("--dense", "8,-1"),
                                           ("--val-fraction", "0"), ("--val-fraction", "1"),
                                           ("--hidden-size", "0"), ("--pooling", "sum"), ("--lr", "0")])
def test_bad_classify_options(files, tmp_path, option, value):
    stderr = fails("classify", "train", files["data"], option, value, "--out", tmp_path / "runs", code=2)
    assert option in stderr
    assert not (tmp_path / "runs").exists()


def test_language_model_checkpoint_given_to_classify(tmp_path, tiny_corpus, files):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tiny_corpus * 3, encoding="utf-8")
    result = invoke("train", corpus, "--hidden-size", 8, "--layers", 1, "--embedding-size", 4, "--seq-len", 8,
                    "--batch-size", 2, "--max-steps", 2, "--eval-every", 2, "--out", tmp_path / "runs", "--quiet")
    lm = result.stdout.split("\t")[0]
    for args in (("predict", lm, files["texts"]), ("eval", lm, files["test"])):
        stderr = flat(fails("classify", *args, code=1))
        assert "best.npz" in stderr
        assert "language-model" in stderr or "expected a classifier" in stderr


def test_classifier_checkpoint_given_to_sample(ckpt):
    stderr = flat(fails("sample", ckpt, "-n", 5, code=1))
    assert "best.npz" in stderr and "classifier" in stderr


def test_predict_input_not_utf8(ckpt, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("apple\ncafé crème\n".encode("latin-1"))
    stderr = fails("classify", "predict", ckpt, path, code=1)
    assert "latin1.txt" in stderr and "byte 9" in stderr


def test_eval_without_any_known_label(ckpt, tmp_path):
    path = write(tmp_path / "other.txt", ["boat\tsail", "plane\twing"])
    stderr = fails("classify", "eval", ckpt, path, code=1)
    assert "other.txt" in stderr


def test_predict_garbage_checkpoint(tmp_path, files):
    path = tmp_path / "x.npz"
    path.write_bytes(b"garbage")
    assert "x.npz" in fails("classify", "predict", path, files["texts"], code=1)


@pytest.mark.parametrize("label", [" ", "\u00a0", "\t "])
def test_whitespace_labels_are_named_as_empty_labels(tmp_path, label):
    """Every line has a TAB; what is wrong is the label, and the error says so."""
    data = write(tmp_path / "blank.txt", [f"{label}\t some text {i}" for i in range(200)])
    stderr = fails("classify", "train", data, *TINY, "--out", tmp_path / "runs", code=1)
    assert "0 without a TAB, 200 with an empty label" in flat(stderr)
