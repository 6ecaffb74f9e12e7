"""`rnn info` (a checkpoint described from its metadata), `rnn --config FILE.toml` (option values
for every command) and shell completion for the `rnn` entry point."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY as CLASSIFY_TINY
from helpers import clean_failure, lines, ok, run, write_corpus
from rnncli.engine import npz

LM_TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "3",
           "--threads", "1", "--dropout", "0.1"]
INFO_KEYS_LM = ["path", "kind", "format_version", "file_bytes", "which", "run_id", "model", "parameters", "vocab_size",
                "vocab_sample", "corpus", "steps", "epochs", "seconds", "optimizer_steps", "best_val", "batch_size",
                "seq_len", "saved_at", "options"]
INFO_KEYS_CLASSIFIER = ["path", "kind", "format_version", "file_bytes", "model", "parameters", "labels",
                        "vocab_size", "vocab_sample", "ngram", "best_epoch", "epochs", "scores", "data", "options"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("info")
    corpus = write_corpus(d, 6)
    lm = ok("train", corpus, *LM_TINY, "--max-steps", 6, "--eval-every", 3, "--out", d / "runs",
            "--quiet").stdout.split("\t")[0]
    data = d / "data.tsv"
    data.write_text("\n".join(lines(20, 0)) + "\n", encoding="utf-8")
    clf = ok("classify", "train", data, *CLASSIFY_TINY, "--out", d / "cruns", "--quiet").stdout.strip()
    return {"dir": d, "corpus": str(corpus), "lm": lm, "clf": clf, "data": str(data)}


def arrays_and_meta(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k != "meta"}, json.loads(str(f["meta"]))


# ---------------------------------------------------------------- rnn info


def test_info_of_a_language_model(trained):
    arrays, meta = arrays_and_meta(trained["lm"])
    facts = json.loads(ok("info", trained["lm"], "--json").stdout)
    assert list(facts) == INFO_KEYS_LM
    assert facts["kind"] == "lm" and facts["which"] == "best"
    assert facts["model"] == {"cell": "lstm", "hidden_size": 8, "layers": 1, "embedding_size": 4,
                              "activation": "tanh", "dropout": 0.1}
    assert facts["parameters"] == sum(a.size for k, a in arrays.items() if k.startswith("param/"))
    assert facts["vocab_size"] == len(meta["vocab"]) and facts["vocab_sample"].startswith("\\n ")
    assert facts["corpus"] == {"files": [os.path.abspath(trained["corpus"])], "chars": meta["corpus_chars"]}
    assert facts["steps"] == 6 and facts["epochs"] == meta["progress"]["epoch"]
    assert facts["best_val"]["nats"] == meta["progress"]["best_val"]
    assert math.isclose(facts["best_val"]["bits"], facts["best_val"]["nats"] / math.log(2))
    assert facts["options"] == meta["config"]
    text = ok("info", trained["lm"]).stdout
    for expected in ("language model (best)", "lstm, 1 layer of 8 units, embedding 4, dropout 0.1",
                     f"{facts['parameters']:,}", f"{facts['vocab_size']} characters: \\n ",
                     os.path.abspath(trained["corpus"]), f"{facts['best_val']['nats']:.4f} nats/char",
                     f"({facts['best_val']['bits']:.4f} bits/char)", "  model.hidden_size = 8", "  max_steps = 6"):
        assert expected in text, (expected, text)


def test_info_of_a_classifier(trained):
    arrays, meta = arrays_and_meta(trained["clf"])
    facts = json.loads(ok("info", trained["clf"], "--json").stdout)
    assert list(facts) == INFO_KEYS_CLASSIFIER
    assert facts["kind"] == "classifier" and facts["labels"] == ["car", "fruit", "music"]
    assert facts["parameters"] == sum(a.size for k, a in arrays.items() if k.startswith("param/"))
    assert facts["vocab_size"] == len(meta["vocab"])
    assert facts["ngram"]["n_max"] == 2 and facts["ngram"]["word_terms"] == meta["ngram"]["terms"].count("\n") + 1
    assert facts["scores"]["val"]["accuracy"] == meta["val"]["accuracy"] and facts["scores"]["test"] is None
    assert facts["data"]["file"] == meta["data"] and facts["epochs"] == len(meta["history"])
    text = ok("info", trained["clf"]).stdout
    for expected in ("classifier", "labels       3: car, fruit, music", "n-gram path  word n-grams up to 2",
                     f"accuracy {meta['val']['accuracy']:.4f}", f"{facts['parameters']:,}"):
        assert expected in text, (expected, text)


def test_info_reads_the_metadata_alone(trained, monkeypatch):
    """No array is read: a checkpoint of any size answers at once."""
    read = []
    original = npz._read_member
    monkeypatch.setattr(npz, "_read_member", lambda zf, info, key, name: read.append(key) or original(zf, info, key, name))
    ok("info", trained["lm"])
    ok("info", trained["clf"], "--json")
    assert read == ["meta", "meta"]


def test_info_escapes_what_a_checkpoint_says(trained, tmp_path):
    """Texts from the file reach the terminal escaped: a crafted vocabulary or path cannot send
    escape sequences."""
    arrays, meta = arrays_and_meta(trained["lm"])
    assert meta["vocab"][0] == "\n"
    meta["vocab"] = "\x1b" + meta["vocab"][1:]  # still sorted, same size
    meta["corpus"] = ["/tmp/\x1b[31mred\u202e.txt"]
    meta["saved_at"] = "\x07now"
    path = str(tmp_path / "crafted.npz")
    npz.save(path, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    text = ok("info", path).stdout
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b !" in text and "/tmp/\\x1b[31mred\\u202e.txt" in text and "\\x07now" in text


def test_info_of_damaged_or_wrong_files(trained, tmp_path):
    with open(trained["lm"], "rb") as f:
        whole = f.read()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert "cut.npz" in clean_failure(run("info", cut), 1)
    text = tmp_path / "text.npz"
    text.write_text("not a checkpoint")
    assert "text.npz" in clean_failure(run("info", text, "--json"), 1)
    clean_failure(run("info", tmp_path), 2)
    clean_failure(run("info", tmp_path / "absent.npz"), 2)
    arrays, meta = arrays_and_meta(trained["lm"])
    meta["model"]["hidden_size"] = "eight"
    bad = str(tmp_path / "bad-meta.npz")
    npz.save(bad, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    assert "metadata is incomplete or invalid" in clean_failure(run("info", bad), 1)


# ---------------------------------------------------------------- rnn --config


def write_toml(folder, text: str, name="settings.toml"):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_config_gives_train_its_options_and_the_command_line_wins(trained, tmp_path):
    config = write_toml(tmp_path, f"""
[train]
hidden-size = 8
layers = 1
embedding_size = 4
seq-len = 8
batch-size = 3
dropout = 0.1
threads = 1
max-steps = 3
eval-every = 3
out = "{tmp_path / 'runs'}"
quiet = true
""")
    best = ok("--config", config, "train", trained["corpus"], "--max-steps", 4, "--hidden-size", 6).stdout.split("\t")[0]
    assert os.path.dirname(os.path.dirname(best)) == str(tmp_path / "runs")
    _, meta = arrays_and_meta(best)
    assert meta["model"]["hidden_size"] == 6 and meta["model"]["embedding_size"] == 4  # line, then file
    assert meta["config"]["max_steps"] == 4 and meta["config"]["seq_len"] == 8
    assert "hidden_size" not in meta["config"]["auto"] and "num_layers" not in meta["config"]["auto"]


def test_config_gives_sample_its_options(trained, tmp_path):
    config = write_toml(tmp_path, '[sample]\ntemp = 0\nn = 30\nprime = "Le "\nthreads = 1\n')
    greedy = ok("sample", trained["lm"], "--argmax", "-n", 30, "--prime", "Le ").stdout
    assert ok("--config", config, "sample", trained["lm"]).stdout == greedy
    assert ok("--config", config, "sample", trained["lm"], "-n", 10).stdout == greedy[:3 + 10] + "\n"


def test_config_gives_classify_train_its_options(trained, tmp_path):
    config = write_toml(tmp_path, f"""
[classify.train]
hidden-size = 8
embedding-size = 8
dense = "8"
epochs = 2
batch-size = 8
unidirectional = true
ngram = 0
out = "{tmp_path / 'cruns'}"
""")
    path = ok("--config", config, "classify", "train", trained["data"], "--quiet").stdout.strip()
    _, meta = arrays_and_meta(path)
    assert path.startswith(str(tmp_path / "cruns"))
    assert (meta["config"]["hidden_size"], meta["config"]["epochs"], meta["config"]["bidirectional"],
            meta["config"]["ngram"], meta["config"]["dense"]) == (8, 2, False, 0, [8])


@pytest.mark.parametrize("text, named", [
    ("[trian]\nlr = 1\n", "[trian]"),
    ("[classify.trian]\nepochs = 1\n", "[classify.trian]"),
    ("[sample]\nlenght = 3\n", "'lenght'"),
    ("[sample]\nhelp = true\n", "'help'"),
    ("n = 3\n", "'n'"),
    ("[sample]\nn = 3\nlength = 4\n", "twice"),
])
def test_config_unknown_command_or_key_is_a_usage_error(trained, tmp_path, text, named):
    config = write_toml(tmp_path, text)
    stderr = clean_failure(run("--config", config, "sample", trained["lm"]), 2)
    assert str(config) in stderr and named in stderr


def test_config_file_that_cannot_be_used(trained, tmp_path):
    bad_toml = write_toml(tmp_path, "[sample\nn = 3\n", "bad.toml")
    assert "not TOML" in clean_failure(run("--config", bad_toml, "sample", trained["lm"]), 1)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[sample]\nprime = "caf\u00e9"\n'.encode("latin-1"))
    assert "not UTF-8" in clean_failure(run("--config", latin1, "sample", trained["lm"]), 1)
    big = write_toml(tmp_path, "# " + "x" * (1 << 20) + "\n[sample]\n", "big.toml")
    assert "1 MiB" in clean_failure(run("--config", big, "sample", trained["lm"]), 1)
    clean_failure(run("--config", tmp_path, "sample", trained["lm"]), 2)
    clean_failure(run("--config", "/dev/zero", "sample", trained["lm"]), 2)
    clean_failure(run("--config", tmp_path / "absent.toml", "sample", trained["lm"]), 2)


# ---------------------------------------------------------------- shell completion


def rnn_script() -> str:
    path = os.path.join(os.path.dirname(sys.executable), "rnn")
    if not os.path.isfile(path):
        pytest.skip("the rnn entry point is not installed beside this Python")
    return path


def complete(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([rnn_script()], env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
                          check=False)


def test_bash_completion_script_for_the_rnn_entry_point():
    proc = complete({"_RNN_COMPLETE": "bash_source"})
    assert proc.returncode == 0, proc.stderr
    assert "complete -o nosort -F _rnn_completion rnn" in proc.stdout and "_RNN_COMPLETE=bash_complete" in proc.stdout


@pytest.mark.parametrize("words, cword, expected", [
    ("rnn in", 1, "plain,info"),
    ("rnn sample --top-", 2, "plain,--top-p"),
    ("rnn classify tr", 2, "plain,train"),
])
def test_bash_completion_completes_commands_and_options(words, cword, expected):
    proc = complete({"_RNN_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert proc.returncode == 0 and expected in proc.stdout.splitlines(), (proc.stdout, proc.stderr)


def test_config_values_count_as_given_on_resume(tmp_path):
    """A resumed run applies the file's limits, and refuses the file's model settings that differ,
    exactly as it treats the same options typed on the command line."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    result = ok("train", corpus, "--hidden-size", 8, "--layers", 1, "--embedding-size", 4, "--seq-len", 8,
                    "--batch-size", 2, "--max-steps", 4, "--eval-every", 2, "--out", tmp_path / "runs", "-q")
    latest = result.stdout.split("\t")[0].replace("best.npz", "latest.npz")
    config = tmp_path / "more.toml"
    config.write_text("[train]\nmax-steps = 6\n", encoding="utf-8")
    ok("--config", config, "train", "--resume", latest, "-q")
    with np.load(latest) as z:
        assert json.loads(str(z["meta"]))["progress"]["step"] == 6
    config.write_text("[train]\nhidden-size = 16\n", encoding="utf-8")
    assert "differs from the checkpoint" in clean_failure(run("--config", config, "train", "--resume", latest, "-q"), 2)
