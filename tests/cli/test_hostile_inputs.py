"""Hostile input through the `rnn` command: bad checkpoints are refused with one line
naming the file and nothing in them runs; odd corpora either train or get a clear error; every
numeric option is bounded (usage error, exit 2); a diverging run keeps its checkpoints.

test_checkpoint.py checks the loader itself, test_fuzz_checkpoint.py throws generated damage at
it; here each case goes through the CLI the way a user meets it. Models are tiny (H <= 8).
"""

import glob
import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from helpers import ACCENTED, clean_failure, deadline, ok, run, write_corpus, write_two_classes
from rnncli.engine import model as M
from rnncli.lm.checkpoint import load_lm

# --dropout given: the run keeps it, rather than a recipe chosen from the corpus and speed
LM_TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
           "--dropout", "0.2"]
CLF_TINY = ["--hidden-size", "4", "--embedding-size", "4", "--dense", "4", "--epochs", "1", "--min-freq", "1"]
TEXT = ACCENTED * 4


def refused(*args, code: int, input=None) -> str:
    """Run `rnn ARGS`, expecting a clean refusal with exit code `code`; returns stderr."""
    return clean_failure(run(*args, input=input), code)


def train_lm(corpus, out, *extra, steps=2) -> str:
    result = ok("train", corpus, *LM_TINY, "--max-steps", steps, "--eval-every", steps, "--out", out,
                "--quiet", *extra)
    return result.stdout.strip().split("\t")[0]  # train: path TAB loss; classify: path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A corpus, a labelled file, and a real checkpoint of each kind."""
    d = tmp_path_factory.mktemp("world")
    corpus = write_corpus(d, 4)
    data = write_two_classes(d, 16)
    lm = train_lm(corpus, d / "runs")
    clf = ok("classify", "train", data, *CLF_TINY, "--out", d / "runs", "--quiet").stdout.strip()
    return {"dir": d, "corpus": str(corpus), "data": str(data), "lm": lm,
            "latest": os.path.join(os.path.dirname(lm), "latest.npz"), "clf": clf}


# ---------------------------------------------------------------- bad checkpoints

class Trap:
    """Unpickling this creates the directory `marker`: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def members(path) -> list:
    with zipfile.ZipFile(path) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def write_zip(path, items) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the cases
        with zipfile.ZipFile(path, "w") as zf:
            for name, payload in items:
                zf.writestr(name, payload)
    return str(path)


def npy(array, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def meta_of(items) -> dict:
    payload = dict(items)["meta.npy"]
    return json.loads(str(np.lib.format.read_array(io.BytesIO(payload))))


def with_meta(items, **changes) -> list:
    meta = {**meta_of(items), **changes}
    return [(n, npy(np.array(json.dumps(meta))) if n == "meta.npy" else p) for n, p in items]


def replace_member(items, name, payload) -> list:
    return [(n, payload if n == name else p) for n, p in items]


def first_param(items) -> str:
    return next(n for n, _ in items if n.startswith("param/"))


def shrunk(items, name) -> list:
    """The member `name` with its first axis one shorter: shapes that contradict the metadata."""
    a = np.lib.format.read_array(io.BytesIO(dict(items)[name]))
    return replace_member(items, name, npy(a[:-1]))


def fewer_vocab(items) -> list:
    meta = meta_of(items)
    vocab = meta["vocab"]
    return with_meta(items, vocab=vocab[1:] if isinstance(vocab, str) else vocab[:-1])


# name -> (builder(src path, items, marker, tmp_path) -> bytes or items, words the message must hold)
BAD = {
    "pickled-param": (lambda items, marker: replace_member(
        items, first_param(items), npy(np.array([Trap(marker)], dtype=object), allow_pickle=True)), ["pickle"]),
    "pickled-meta": (lambda items, marker: replace_member(
        items, "meta.npy", npy(np.array([Trap(marker)], dtype=object), allow_pickle=True)), ["pickle"]),
    "truncated": (lambda items, marker: None, ["truncated"]),
    "wrong-member": (lambda items, marker: items + [("run_me.py", b"import os; os.mkdir('pwned')")],
                     ["unexpected entry", "run_me.py"]),
    "extra-array": (lambda items, marker: items + [("param/extra.npy", npy(np.zeros(3, np.float32)))],
                    ["extra"]),
    "duplicate-member": (lambda items, marker: items + [items[-1]], ["twice"]),
    "missing-meta": (lambda items, marker: [(n, p) for n, p in items if n != "meta.npy"], ["meta"]),
    "wrong-version": (lambda items, marker: with_meta(items, version=2), ["version 2"]),
    "meta-not-json": (lambda items, marker: replace_member(items, "meta.npy", npy(np.array("{'kind': lm"))),
                      ["JSON"]),
    "shapes": (lambda items, marker: shrunk(items, first_param(items)), ["shape"]),
    "vocab-vs-embedding": (lambda items, marker: fewer_vocab(items), ["vocabulary"]),
    "strings-as-weights": (lambda items, marker: replace_member(items, first_param(items), npy(np.array(["1", "2"]))),
                           ["dtype"]),
    "empty-file": (lambda items, marker: b"", ["not an .npz"]),
    "random-bytes": (lambda items, marker: np.random.default_rng(0).bytes(3000), ["not an .npz"]),
}


def make_bad(case: str, src: str, tmp_path) -> tuple:
    marker = tmp_path / "pwned"
    items = members(src)
    build, words = BAD[case]
    built = build(items, marker)
    path = tmp_path / f"{case}.npz"
    if case == "truncated":
        data = open(src, "rb").read()
        path.write_bytes(data[: len(data) // 2])
    elif isinstance(built, bytes):
        path.write_bytes(built)
    else:
        write_zip(path, built)
    return str(path), marker, words


def assert_refused(args, path, marker, words, input=None) -> None:
    stderr = refused(*args, code=1, input=input)
    assert os.path.basename(path) in stderr
    for word in words:
        assert word in stderr, (word, stderr)
    assert not marker.exists(), "code in the checkpoint ran"
    assert not os.path.exists("pwned")


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_lm_checkpoint_given_to_sample(world, tmp_path, case):
    path, marker, words = make_bad(case, world["latest"], tmp_path)
    assert_refused(["sample", path, "-n", 5], path, marker, words)


@pytest.mark.parametrize("case", ["pickled-param", "pickled-meta", "truncated", "wrong-member", "wrong-version",
                                  "shapes", "vocab-vs-embedding", "meta-not-json"])
def test_bad_lm_checkpoint_given_to_resume(world, tmp_path, case):
    path, marker, words = make_bad(case, world["latest"], tmp_path)
    assert_refused(["train", world["corpus"], "--resume", path, "--max-steps", 3, "--quiet"], path, marker, words)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_classifier_checkpoint_given_to_predict(world, tmp_path, case):
    path, marker, words = make_bad(case, world["clf"], tmp_path)
    assert_refused(["classify", "predict", path], path, marker, words, input="good day\n")


@pytest.mark.parametrize("case", ["pickled-param", "truncated", "wrong-member", "shapes", "vocab-vs-embedding"])
def test_bad_classifier_checkpoint_given_to_eval(world, tmp_path, case):
    path, marker, words = make_bad(case, world["clf"], tmp_path)
    assert_refused(["classify", "eval", path, world["data"]], path, marker, words)


def test_checkpoints_of_the_other_kind(world):
    stderr = refused("sample", world["clf"], code=1)
    assert "classifier" in stderr and "best.npz" in stderr
    for args in (["predict", world["lm"]], ["eval", world["lm"], world["data"]]):
        stderr = refused("classify", *args, code=1, input="good day\n")
        assert "language-model" in stderr and "best.npz" in stderr
    stderr = refused("train", world["corpus"], "--resume", world["clf"], code=1)
    assert "classifier" in stderr


def test_the_trap_is_real(world, tmp_path):
    """The pickled cases would run code if loaded the trusting way."""
    path, marker, _ = make_bad("pickled-param", world["latest"], tmp_path)
    with np.load(path, allow_pickle=True) as npz:
        [npz[k] for k in npz.files]
    assert marker.exists()


# ---------------------------------------------------------------- odd corpora


def write_bytes(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def vocab_of(ckpt) -> str:
    return load_lm(ckpt).vocab.chars


def test_one_character_vocabulary_trains_and_samples_it(tmp_path):
    """'aaaa...' has a vocabulary of 1: the model learns to say 'a', which is right."""
    ckpt = train_lm(write_bytes(tmp_path, "aaaa.txt", b"a" * 300), tmp_path / "runs")
    assert vocab_of(ckpt) == "a"
    assert ok("sample", ckpt, "-n", 20, "--seed", 1).stdout == "a" * 20 + "\n"
    assert ok("sample", ckpt, "-n", 5, "--prime", "aa").stdout == "a" * 7 + "\n"


def test_only_newlines_is_a_one_character_vocabulary(tmp_path):
    ckpt = train_lm(write_bytes(tmp_path, "newlines.txt", b"\n" * 300), tmp_path / "runs")
    assert vocab_of(ckpt) == "\n"
    assert ok("sample", ckpt, "-n", 10, "--seed", 1).stdout == "\n" * 11


def test_crlf_only_normalises_to_newlines(tmp_path):
    ckpt = train_lm(write_bytes(tmp_path, "crlf.txt", b"\r\n" * 200), tmp_path / "runs")
    assert vocab_of(ckpt) == "\n"


@pytest.mark.parametrize("data", [b"a", b"\n", b"\xef\xbb\xbfa", b"\r\n"])
@pytest.mark.parametrize("val", ["0", "0.05"])
def test_a_single_character_is_too_short_to_learn_from(tmp_path, data, val):
    """One character gives no (input, next character) pair: a clear error naming the file,
    that does not send the user after --val-fraction when that cannot help."""
    path = write_bytes(tmp_path, "single.txt", data)
    stderr = refused("train", path, *LM_TINY, "--val-fraction", val, "--out", tmp_path / "runs", code=1)
    assert "single.txt" in stderr and "2" in stderr
    assert "--val-fraction" not in stderr


def test_two_characters_train(tmp_path):
    ckpt = train_lm(write_bytes(tmp_path, "two.txt", "é\n".encode()), tmp_path / "runs", "--val-fraction", "0")
    assert vocab_of(ckpt) == "\né"


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"])
def test_empty_after_the_bom(tmp_path, data):
    stderr = refused("train", write_bytes(tmp_path, "empty.txt", data), *LM_TINY, "--out", tmp_path / "r", code=1)
    assert "empty.txt" in stderr and "empty" in stderr


def test_bom_and_crlf_never_reach_the_vocabulary(tmp_path):
    path = write_bytes(tmp_path, "bom.txt", b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())
    vocab = vocab_of(train_lm(path, tmp_path / "runs"))
    assert "\ufeff" not in vocab and "\r" not in vocab
    assert set(vocab) == set(TEXT)


def test_binary_data_is_refused_with_the_byte_and_a_hint(tmp_path):
    data = np.random.default_rng(1).bytes(4000) + b"\x00\xff"
    path = write_bytes(tmp_path, "blob.bin", data)
    stderr = refused("train", path, *LM_TINY, "--out", tmp_path / "runs", code=1)
    assert "blob.bin" in stderr and "not UTF-8 at byte" in stderr and "--on-decode-error replace" in stderr


def test_binary_data_trains_with_replacement(tmp_path):
    data = np.random.default_rng(2).bytes(3000) + b"\x00\x00 plain text \x00"
    path = write_bytes(tmp_path, "blob.bin", data)
    ckpt = train_lm(path, tmp_path / "runs", "--on-decode-error", "replace")
    vocab = vocab_of(ckpt)
    assert "\ufffd" in vocab and "\x00" in vocab
    out = ok("sample", ckpt, "-n", 30, "--seed", 3).stdout
    assert len(out) == 31 and set(out[:-1]) <= set(vocab)


def test_nul_characters_are_text(tmp_path):
    """NUL is valid UTF-8; it is kept as a character like any other."""
    vocab = vocab_of(train_lm(write_bytes(tmp_path, "nul.txt", b"ab\x00c\n" * 40), tmp_path / "runs"))
    assert vocab == "\x00\nabc"


def test_invalid_utf8_in_replace_mode_through_the_cli(tmp_path):
    path = write_bytes(tmp_path, "mixed.txt", "café ".encode() * 30 + b"\xc3(\xff" + b" fin\n" * 10)
    assert "\ufffd" in vocab_of(train_lm(path, tmp_path / "runs", "--on-decode-error", "replace"))


def test_a_one_megabyte_line(tmp_path):
    rng = np.random.default_rng(3)
    line = "".join(rng.choice(list("abcdéèà ’«»"), size=1 << 20))
    path = tmp_path / "long.txt"
    path.write_text(line, encoding="utf-8")
    ckpt = train_lm(str(path), tmp_path / "runs", "--eval-chars", 500)
    assert set(vocab_of(ckpt)) == set(line)
    assert load_lm(ckpt).meta["corpus_chars"] == len(line)


# ---------------------------------------------------------------- odd labelled data and GloVe files


def write_text(tmp_path, name, text) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("text", ["", "\n\n\n", "\ufeff\r\n\r\n"])
def test_labelled_file_without_usable_lines(tmp_path, text):
    stderr = refused("classify", "train", write_text(tmp_path, "d.tsv", text), *CLF_TINY,
                     "--out", tmp_path / "runs", code=1)
    assert "d.tsv" in stderr and "usable" in stderr


@pytest.mark.parametrize("glove, words", [
    ("good 0.1 0.2 0.3\nbad 0.3 x 0.1\n", ["line 2", "not a number"]),
    ("\n\n", ["no vectors"]),
])
def test_bad_glove_files(world, tmp_path, glove, words):
    path = write_text(tmp_path, "vectors.txt", glove)
    stderr = refused("classify", "train", world["data"], *CLF_TINY, "--glove", path, "--out", tmp_path / "runs", code=1)
    assert "vectors.txt" in stderr
    for word in words:
        assert word in stderr


def test_glove_with_bom_and_crlf(world, tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_bytes(b"\xef\xbb\xbfgood 0.1 0.2 0.3\r\nbad 0.3 0.2 0.1\r\n")
    ok("classify", "train", world["data"], *CLF_TINY, "--glove", path, "--out", tmp_path / "runs", "--quiet")


# ---------------------------------------------------------------- option bounds: usage errors, exit 2

HUGE = str(10**12)
TRAIN_BAD = [
    ("--hidden-size", "-1"), ("--hidden-size", HUGE), ("--layers", "0"), ("--layers", "-3"), ("--layers", HUGE),
    ("--embedding-size", "-1"), ("--embedding-size", HUGE), ("--seq-len", "-1"), ("--batch-size", "0"),
    ("--batch-size", "-2"), ("--lr", "nan"), ("--lr", "inf"), ("--lr-decay", "0"), ("--lr-decay", "1.5"),
    ("--lr-decay", "nan"), ("--decay-after", "-1"), ("--clip", "-1"), ("--clip", "nan"), ("--weight-decay", "-1"),
    ("--weight-decay", "nan"), ("--epochs", "-1"),
    ("--patience", "-1"), ("--state-reset", "1"), ("--state-reset", "nan"), ("--lr-final", "1.5"),
    ("--schedule", "linear"), ("--streams", "-1"), ("--max-steps", "-1"), ("--max-time", "nan"), ("--max-time", "inf"), ("--val-fraction", "-0.1"),
    ("--val-fraction", "1"), ("--val-fraction", "nan"), ("--eval-every", "0"), ("--eval-chars", "-1"),
    ("--threads", "-1"), ("--seed", "-1"), ("--dropout", "-0.1"), ("--dropout", "nan"), ("--optimizer", "lbfgs"),
    ("--activation", "gelu"), ("--on-decode-error", "ignore"),
]


@pytest.mark.parametrize("option, value", TRAIN_BAD)
def test_train_option_bounds(world, tmp_path, option, value):
    with deadline(20):
        stderr = refused("train", world["corpus"], *LM_TINY, option, value, "--out", tmp_path / "runs", code=2)
    assert option in stderr
    assert not (tmp_path / "runs").exists()


def test_weight_decay_that_would_flip_the_weights_is_refused(world, tmp_path):
    """Each step multiplies the weights by 1 - lr × weight decay: from 1 on they would change sign.
    The GRU's rate (0.004, chosen after the options are read) is checked too: 300 × 0.002 passes
    the first check and 300 × 0.004 must not."""
    for extra in (["--weight-decay", "1000"], ["--weight-decay", "300", "--cell", "gru"]):
        with deadline(20):
            stderr = refused("train", world["corpus"], *LM_TINY, *extra, "--out", tmp_path / "runs", code=1)
        assert "weight decay" in stderr
        assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args", [["--temp", "nan"], ["--temp", "inf"], ["--temp", "-inf"], ["--temp", "-0.5"],
                                  ["-n", "-1"], ["--length", "0"], ["--top-k", "-5"], ["--num-samples", "-1"],
                                  ["--seed", "-1"]])
def test_sample_option_bounds(world, args):
    stderr = refused("sample", world["lm"], *args, code=2)
    assert args[0] in stderr or "temp" in stderr


@pytest.mark.parametrize("option, value", [
    ("--hidden-size", "0"), ("--hidden-size", HUGE), ("--layers", "0"), ("--layers", HUGE),
    ("--embedding-size", "-1"), ("--embedding-size", HUGE), ("--vocab-size", "1"), ("--vocab-size", HUGE),
    ("--seq-len", "0"), ("--seq-len", HUGE), ("--batch-size", "0"), ("--batch-size", HUGE), ("--samples", "0"),
    ("--eps", "0"), ("--eps", "-1"), ("--eps", "nan"), ("--tol", "0"), ("--tol", "nan"), ("--dropout", "1"),
    ("--dropout", "nan"), ("--seed", "-1"), ("--cell", "tcn"),
])
def test_gradcheck_option_bounds(option, value):
    with deadline(20):
        stderr = refused("gradcheck", "--no-classifier", option, value, code=2)
    assert option in stderr


@pytest.mark.parametrize("option, value", [
    ("--hidden-size", HUGE), ("--layers", "0"), ("--layers", HUGE), ("--dense", HUGE), ("--dense", "4,,x"),
    ("--embedding-size", "0"), ("--embedding-size", HUGE), ("--min-freq", "0"), ("--max-vocab", "2"),
    ("--max-len", "0"), ("--batch-size", "0"), ("--epochs", "0"), ("--patience", "0"), ("--lr", "nan"),
    ("--lr", "inf"), ("--weight-decay", "-1"), ("--weight-decay", "nan"), ("--clip", "-1"), ("--clip", "inf"),
    ("--val-fraction", "nan"), ("--dropout", "1"), ("--dropout", "nan"), ("--seed", "-1"), ("--threads", "-1"),
    ("--tokens", "bpe"), ("--class-weights", "inverse"), ("--ngram", "6"),
])
def test_classify_option_bounds(world, tmp_path, option, value):
    with deadline(20):
        stderr = refused("classify", "train", world["data"], option, value, "--out", tmp_path / "runs", code=2)
    assert option in stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", [["sample"], ["train"], ["train", "CORPUS", "--resume"], ["classify", "train"],
                                     ["classify", "train", "DATA", "--test"], ["classify", "train", "DATA", "--glove"],
                                     ["classify", "eval"], ["classify", "eval", "CKPT"], ["classify", "predict"],
                                     ["classify", "predict", "CKPT"]])
def test_paths_that_are_directories(world, tmp_path, command):
    names = {"CORPUS": world["corpus"], "DATA": world["data"], "CKPT": world["clf"]}
    args = [names.get(a, a) for a in command] + [tmp_path]
    if command == ["classify", "eval"]:
        args.append(world["data"])
    # train reads a folder as its *.txt files: one with none is bad data (exit 1)
    refused(*args, code=1 if command == ["train"] else 2)


@pytest.mark.parametrize("option, value", [("--cell", "gru"), ("--hidden-size", "16"), ("--embedding-size", "8"),
                                           ("--layers", "2"), ("--optimizer", "sgd"), ("--lr", "0.5"),
                                           ("--seq-len", "4"), ("--dropout", "0.5")])
def test_resume_refuses_a_different_model_or_schedule(world, option, value):
    before = open(world["latest"], "rb").read()
    stderr = refused("train", "--resume", world["latest"], option, value, "--max-steps", 5, code=2)
    assert option in stderr
    assert open(world["latest"], "rb").read() == before


def test_resume_accepts_the_same_values(world, tmp_path):
    run_dir = tmp_path / "copy"
    run_dir.mkdir()
    latest = run_dir / "latest.npz"
    latest.write_bytes(open(world["latest"], "rb").read())
    ok("train", "--resume", latest, "--cell", "lstm", "--hidden-size", 8, "--max-steps", 3, "--quiet")
    assert load_lm(str(latest)).meta["progress"]["step"] == 3


def test_resume_with_a_directory_for_the_corpus(world, tmp_path):
    refused("train", tmp_path, "--resume", world["latest"], code=1)  # a folder without *.txt files


# ---------------------------------------------------------------- numerical faults


def test_divergence_after_a_resume_keeps_both_checkpoints_byte_identical(world, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    src = os.path.dirname(world["latest"])
    for name in ("latest.npz", "best.npz"):
        (run_dir / name).write_bytes(open(os.path.join(src, name), "rb").read())
    before = {name: (run_dir / name).read_bytes() for name in ("latest.npz", "best.npz")}
    real = M.lm_loss_and_grads

    def exploding(*args, **kwargs):
        loss, state = real(*args, **kwargs)
        return float("inf"), state

    monkeypatch.setattr(M, "lm_loss_and_grads", exploding)
    stderr = refused("train", "--resume", run_dir / "latest.npz", "--max-steps", 10, "--eval-every", 1, "--quiet",
                     code=1)
    assert "inf" in stderr.lower() and "latest.npz" in stderr
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(run_dir)) == [".lock", "best.npz", "latest.npz", "metrics.csv", "metrics.jsonl"]  # the lock stays, unheld


def test_classifier_divergence_is_one_line_and_saves_nothing(world, tmp_path):
    # no weight decay: with it, lr 1e30 is refused before training (lr × decay must be below 1)
    stderr = refused("classify", "train", world["data"], *CLF_TINY, "--epochs", 3, "--lr", "1e30", "--optimizer", "sgd",
                     "--weight-decay", 0, "--clip", 0, "--out", tmp_path / "runs", "--quiet", code=1)
    assert any(word in stderr.lower() for word in ("nan", "inf", "non-finite", "diverg"))
    assert glob.glob(str(tmp_path / "runs" / "*" / "*.npz")) == []
