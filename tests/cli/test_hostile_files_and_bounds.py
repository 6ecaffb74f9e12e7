"""Hostile files and bounds: zip bombs, inputs that are not regular files, a classifier
that diverges after a good epoch, error subjects, help text, whole paths in the training
summary, and the one-line result of `rnn train -q`. Tiny models, one thread."""

import glob
import io
import json
import re
import os
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import clean_failure, deadline, ok, run, write_corpus, write_two_classes
from rnncli.engine import npz as checkpoint
from rnncli.classify import train as core_classify
from rnncli.cli import main
from rnncli.errors import CheckpointError, CorpusError
from rnncli.data.chars import iter_text_blocks
from rnncli.data.corpus import load_corpus

LM_TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
           "--threads", "1"]
CLF_TINY = ["--hidden-size", "4", "--embedding-size", "4", "--dense", "4", "--min-freq", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("world2")
    corpus = write_corpus(d, 4)
    data = write_two_classes(d, 20)
    out = ok("train", corpus, *LM_TINY, "--max-steps", 2, "--eval-every", 2, "--out", d / "runs", "--quiet").stdout
    fifo = d / "fifo"
    os.mkfifo(fifo)
    return {"dir": d, "corpus": str(corpus), "data": str(data), "lm": out.split("\t")[0], "fifo": str(fifo)}


# ---------------------------------------------------------------- zip bombs


def bomb(path, declared_mib: int) -> None:
    """A checkpoint-shaped zip whose one member's .npy header declares declared_mib MiB of zeros,
    deflated (about 1000x): a small file that would expand to the declared size."""
    header = io.BytesIO()
    count = (declared_mib << 20) // 4
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.npy", _npy(np.array(json.dumps({"format": "rnncli", "version": 1, "kind": "lm"}))))
        with zf.open("param/embed.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            zeros = bytes(1 << 20)
            for _ in range(declared_mib):
                f.write(zeros)


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_a_zip_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.npz"
    bomb(path, 200)
    assert os.path.getsize(path) < 1 << 20  # 200 MiB of data in well under 1 MiB
    with deadline(5):
        with pytest.raises(CheckpointError, match="zip bomb") as e:
            checkpoint.load(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    stderr = clean_failure(run("sample", path), 1)
    declared = int(re.search(r"to ([\d,]+) bytes", stderr).group(1).replace(",", ""))
    assert "zip bomb" in stderr and declared >= (200 << 20) + 128  # header + data, as declared (+ meta)


def test_a_small_compressed_checkpoint_still_loads(world, tmp_path):
    """np.savez_compressed of a real checkpoint is fine: floats barely compress."""
    arrays, meta = checkpoint.load(world["lm"])
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, meta=np.array(json.dumps(meta)), **arrays)
    again, meta2 = checkpoint.load(str(packed))
    assert meta2 == meta and all(np.array_equal(again[k], arrays[k]) for k in arrays)
    ok("sample", packed, "-n", 5, "--seed", 1)


def test_arrays_larger_than_memory_are_refused(world, monkeypatch):
    monkeypatch.setattr(checkpoint, "_physical_memory", lambda: 1000)
    with pytest.raises(CheckpointError, match="more than this machine's"):
        checkpoint.load(world["lm"])


def test_a_stored_member_must_hold_its_declared_size(world, tmp_path):
    """Patch the uncompressed size in the zip's central directory: a stored member then declares
    more than it holds, and nothing that size is allocated."""
    raw = bytearray(open(world["lm"], "rb").read())
    at = raw.rfind(b"PK\x01\x02")  # the last central-directory entry
    raw[at + 24:at + 28] = (1 << 31).to_bytes(4, "little")
    path = tmp_path / "forged.npz"
    path.write_bytes(bytes(raw))
    with deadline(5):
        with pytest.raises(CheckpointError, match="declares 2,147,483,648 bytes but stores"):
            checkpoint.load(str(path))


# ---------------------------------------------------------------- not regular files


@pytest.mark.parametrize("args", [
    ("train", "/dev/zero"),
    ("train", "{fifo}"),
    ("train", "--resume", "{fifo}"),
    ("sample", "/dev/null"),
    ("sample", "{lm}", "--corpus", "/dev/zero"),
    ("eval", "{lm}", "/dev/zero"),
    ("eval", "{fifo}", "{corpus}"),
    ("classify", "train", "{fifo}"),
    ("classify", "train", "{data}", "--glove", "/dev/zero"),
    ("classify", "train", "{data}", "--test", "{fifo}"),
    ("classify", "eval", "{fifo}", "{data}"),
    ("classify", "predict", "{fifo}"),
    ("classify", "predict", "{lm}", "/dev/zero"),
])
def test_devices_and_pipes_are_usage_errors(world, args):
    args = [a.format(**world) for a in args]
    with deadline(30):
        stderr = clean_failure(run(*args), 2)
    assert "not a regular file" in stderr
    assert ("/dev/" in stderr) or (world["fifo"] in stderr)


def test_the_core_refuses_them_too(world):
    """Paths that do not come from the command line (a checkpoint's corpus record, the bundled
    corpus) meet the same check in the readers."""
    with deadline(10):
        with pytest.raises(CorpusError, match="is a named pipe, not a regular file"):
            load_corpus([world["fifo"]])
        with pytest.raises(CorpusError, match="/dev/zero: is a character device"):
            next(iter_text_blocks("/dev/zero"))
        with pytest.raises(CheckpointError, match="is a named pipe, not a checkpoint file"):
            checkpoint.load(world["fifo"])


def test_predict_input_is_bounded(world, monkeypatch):
    from rnncli.cli import classify as cli

    clf = ok("classify", "train", world["data"], *CLF_TINY, "--epochs", 1, "--out", world["dir"] / "runs",
             "--quiet").stdout.strip()
    monkeypatch.setattr(cli, "PREDICT_MAX_CHARS", 50)
    stderr = clean_failure(run("classify", "predict", clf, input="good day\n" * 10), 1)
    assert "more than 50 characters" in stderr
    assert ok("classify", "predict", clf, input="good day\n" * 5).stdout.count("\n") == 5


# ---------------------------------------------------------------- a classifier that diverges later


def test_classifier_diverging_after_a_good_epoch_keeps_that_epoch(world, tmp_path, monkeypatch):
    real = core_classify.evaluate_split
    calls = []

    def nan_from_epoch_3(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) >= 3:
            result = dict(result, loss=float("nan"))
        return result

    monkeypatch.setattr(core_classify, "evaluate_split", nan_from_epoch_3)
    stderr = clean_failure(run("classify", "train", world["data"], *CLF_TINY, "--epochs", 6, "--patience", 6,
                               "--out", tmp_path / "runs", "--quiet"), 1)
    saved = glob.glob(str(tmp_path / "runs" / "*" / "best.npz"))
    assert len(saved) == 1
    assert "validation loss became nan after epoch 3" in stderr and saved[0] in stderr
    clf = core_classify.load_classifier(saved[0])
    assert clf.meta["best_epoch"] in (1, 2) and f"epoch ({clf.meta['best_epoch']}," in stderr
    assert all(np.isfinite(p).all() for p in clf.params.values())


def test_classifier_whose_training_loss_diverges_later_keeps_the_best_epoch(world, tmp_path, monkeypatch):
    real = core_classify.loss_and_grads
    calls = []

    def inf_after_a_while(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls.append(1)
        return float("inf") if len(calls) > 3 else loss  # one epoch is 2 batches of 9 texts

    monkeypatch.setattr(core_classify, "loss_and_grads", inf_after_a_while)
    stderr = clean_failure(run("classify", "train", world["data"], *CLF_TINY, "--epochs", 4, "--batch-size", 9,
                               "--out", tmp_path / "runs", "--quiet"), 1)
    saved = glob.glob(str(tmp_path / "runs" / "*" / "best.npz"))
    assert len(saved) == 1 and "training loss became non-finite in epoch 2" in stderr
    assert "best finite epoch (1," in stderr and saved[0] in stderr


# ---------------------------------------------------------------- error subjects


@pytest.mark.parametrize("option", ["--stop", "--prime"])
def test_a_bad_escape_names_its_option(world, option):
    stderr = clean_failure(run("sample", world["lm"], option, "ab\\"), 1)
    assert f"{option}: bad escape sequence" in stderr
    assert ("prime" in stderr) == (option == "--prime")


def test_checkpoint_errors_name_the_path_as_given(tmp_path):
    sub = tmp_path / "deep"
    sub.mkdir()
    bad = sub / "best.npz"
    bad.write_bytes(b"garbage")
    stderr = clean_failure(run("sample", bad), 1)
    assert f"Error: {bad}: not an .npz checkpoint" in stderr


def test_corpus_errors_name_the_path_as_given(tmp_path):
    bad = tmp_path / "c.txt"
    bad.write_bytes(b"ok \xff")
    assert f"Error: {bad}: not UTF-8 at byte 3" in clean_failure(run("train", bad, *LM_TINY), 1)


# ---------------------------------------------------------------- help text

PAGES = [[], ["train"], ["sample"], ["eval"], ["gradcheck"], ["bench"], ["classify"], ["classify", "train"],
         ["classify", "eval"], ["classify", "predict"]]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: " ".join(p) or "rnn")
def test_help_pages_read_cleanly(page):
    result = CliRunner().invoke(main, [*page, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split("Options:")[-1].split())  # the options, unwrapped
    assert "None" not in text
    assert '[default: ""]' not in text
    assert "] [" not in text  # one bracket of defaults and ranges per option
    assert text.count("[default:") == len([m for m in text.split("[default:")[1:]])
    for option_line in text.split(" --")[1:]:
        assert option_line.count("[default:") <= 1, option_line


def test_temperature_help_shows_its_real_range():
    text = " ".join(CliRunner().invoke(main, ["sample", "--help"]).stdout.split())
    assert "[default: 1.0; x>=0]" in text


def test_negative_temperature_is_still_a_usage_error(world):
    assert "--temp" in clean_failure(run("sample", world["lm"], "--temp", "-1"), 2)


# ---------------------------------------------------------------- the summary and the quiet result


def test_summary_prints_paths_whole_on_80_columns(world, tmp_path):
    out = tmp_path / ("a-rather-long-folder-name-for-the-runs-of-this-experiment-" * 2) / "runs"
    result = ok("train", world["corpus"], *LM_TINY, "--max-steps", 2, "--eval-every", 2, "--out", out)
    best = result.stdout.split("\t")[0]
    assert len(best) > 80
    lines = result.stderr.splitlines()
    assert any(line.endswith(best) for line in lines), result.stderr
    assert any(line.endswith(os.path.join(os.path.dirname(best), "latest.npz")) for line in lines)


def test_quiet_training_prints_one_result_line(world, tmp_path):
    result = ok("train", world["corpus"], *LM_TINY, "--max-steps", 4, "--eval-every", 2,
                "--out", tmp_path / "runs", "-q")
    assert result.stderr == ""
    assert result.stdout.count("\n") == 1
    path, loss = result.stdout.rstrip("\n").split("\t")
    with np.load(path, allow_pickle=False) as npz:
        best_val = json.loads(str(npz["meta"]))["progress"]["best_val"]
    assert loss.startswith(f"best validation loss {best_val:.4f} nats/char")


def test_quiet_training_without_validation_says_training_loss(world, tmp_path):
    result = ok("train", world["corpus"], *LM_TINY, "--max-steps", 2, "--eval-every", 2, "--val-fraction", 0,
                "--out", tmp_path / "runs", "-q")
    assert "\tbest training loss " in result.stdout
