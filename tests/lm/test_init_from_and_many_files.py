"""`rnn train` on several files and folders (read one after the other, as the bundled corpus's
files are; resume finds them again), and `--init-from` (a new run from a checkpoint's weights,
shape and vocabulary; characters outside it refused, or dropped with --map-unknown, counted
and never quoted).
"""

import os

import numpy as np
import pytest

from rnncli.config import ModelConfig, TrainConfig
from rnncli.engine import npz
from rnncli.lm import train as train_mod
from tests.helpers import ACCENTED, clean_failure, ok, run

SHAPE = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--cell", "lstm"]
TINY = [*SHAPE, "--seq-len", "8", "--batch-size", "2", "--eval-every", "2", "--max-time", "0", "--dropout", "0",
        "--threads", "1", "--quiet"]


def only_run(out):
    (name,) = os.listdir(out)
    return out / name


def checkpoint(folder, which="latest"):
    return npz.load(str(folder / f"{which}.npz"))


def same_arrays(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


# ---------------------------------------------------------------- several files and folders

@pytest.fixture
def texts(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "b.txt").write_text(ACCENTED[::-1] * 3, encoding="utf-8")
    (folder / "a.txt").write_text(ACCENTED * 3, encoding="utf-8")
    (folder / "notes.md").write_text("not a .txt file: left out " * 9, encoding="utf-8")
    (folder / ".hidden.txt").write_text("hidden: left out " * 9, encoding="utf-8")
    (folder / "sub.txt").mkdir()  # a folder: left out, as is everything in it
    (folder / "sub.txt" / "deep.txt").write_text("in a subfolder " * 9, encoding="utf-8")
    os.mkfifo(folder / "pipe.txt")  # not a regular file: left out (reading it would block)
    return folder


def test_a_folder_trains_as_its_txt_files_in_name_order(tmp_path, texts):
    ok("train", texts, *TINY, "--max-steps", "3", "--out", tmp_path / "folder")
    ok("train", texts / "a.txt", texts / "b.txt", *TINY, "--max-steps", "3", "--out", tmp_path / "files")
    (fa, ma), (fb, mb) = checkpoint(only_run(tmp_path / "folder")), checkpoint(only_run(tmp_path / "files"))
    assert ma["corpus"] == mb["corpus"] == [str(texts / "a.txt"), str(texts / "b.txt")]
    assert ma["corpus_chars"] == 2 * len(ACCENTED) * 3
    same_arrays(fa, fb)


def test_several_files_on_the_command_line_train_as_the_python_api_does(tmp_path, texts):
    """The CLI passes the files to train() as the bundled corpus's files are passed."""
    ok("train", texts / "b.txt", texts / "a.txt", *TINY, "--max-steps", "3", "--lr", "0.002", "--weight-decay", "0",
       "--out", tmp_path / "cli")  # nothing left to the recipe: the API's configuration as given
    cfg = TrainConfig(model=ModelConfig(cell="lstm", hidden_size=8, num_layers=1, embedding_size=4, dropout=0.0),
                      seq_len=8, batch_size=2, max_steps=3, max_time=0, eval_every=2, threads=1,
                      out_dir=str(tmp_path / "api"))
    train_mod.train(cfg, [str(texts / "b.txt"), str(texts / "a.txt")])
    (fa, ma), (fb, _) = checkpoint(only_run(tmp_path / "cli")), checkpoint(only_run(tmp_path / "api"))
    assert ma["corpus"] == [str(texts / "b.txt"), str(texts / "a.txt")]
    same_arrays(fa, fb)


def test_resume_of_a_folder_run_finds_its_recorded_files(tmp_path, texts):
    ok("train", texts, *TINY, "--max-steps", "2", "--out", tmp_path / "r")
    folder = only_run(tmp_path / "r")
    ok("train", "--resume", folder / "latest.npz", "--max-steps", "4", "--threads", "1", "--quiet")
    _, meta = checkpoint(folder)
    assert meta["progress"]["step"] == 4 and meta["corpus"] == [str(texts / "a.txt"), str(texts / "b.txt")]


def test_a_folder_without_txt_files_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.md").write_text("text", encoding="utf-8")
    stderr = clean_failure(run("train", tmp_path / "empty", *TINY, "--max-steps", "2", "--out", tmp_path / "r"), 1)
    assert "no .txt files" in stderr
    assert not (tmp_path / "r").exists()


def test_a_corpus_argument_that_is_not_a_file_or_folder_is_a_usage_error(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    assert "not a regular file" in clean_failure(run("train", tmp_path / "pipe", *TINY, "--max-steps", "2"), 2)
    assert "does not exist" in clean_failure(run("train", tmp_path / "gone.txt", *TINY, "--max-steps", "2"), 2)


# ---------------------------------------------------------------- --init-from

@pytest.fixture
def base(tmp_path):
    """best.npz of a finished tiny run on ACCENTED."""
    text = tmp_path / "base.txt"
    text.write_text(ACCENTED * 4, encoding="utf-8")
    ok("train", text, *TINY, "--max-steps", "4", "--out", tmp_path / "base")
    return only_run(tmp_path / "base") / "best.npz"


def new_text(tmp_path, text):
    path = tmp_path / "new.txt"
    path.write_text(text, encoding="utf-8")
    return path


FINE = ["--seq-len", "8", "--batch-size", "2", "--eval-every", "2", "--max-time", "0", "--dropout", "0",
        "--threads", "1", "--quiet", "--weight-decay", "0"]


def test_init_from_starts_a_new_run_from_the_checkpoints_weights(tmp_path, base):
    new = new_text(tmp_path, ACCENTED[:60] * 5)  # a part of the vocabulary only
    # a rate so small that the weights stay where they started, to within float32 round-off
    ok("train", "--init-from", base, new, *FINE, "--lr", "1e-12", "--max-steps", "2", "--out", tmp_path / "ft")
    folder = only_run(tmp_path / "ft")
    arrays, meta = checkpoint(folder)
    start, start_meta = npz.load(str(base))
    assert folder != base.parent and meta["run_id"] != start_meta["run_id"]
    assert meta["vocab"] == start_meta["vocab"] and meta["model"] == start_meta["model"]
    assert meta["progress"]["step"] == 2 and meta["optimizer_steps"] == 2  # a fresh optimizer
    assert [s for s, _ in meta["progress"]["history"]["train"]] == [2]
    assert meta["corpus"] == [str(new)]
    for k in (k for k in start if k.startswith("param/")):
        np.testing.assert_allclose(arrays[k], start[k], atol=1e-6)
    # what a fresh start of the same shape would have drawn instead is far from it
    ok("train", new, *SHAPE, *FINE, "--lr", "1e-12", "--max-steps", "2", "--out", tmp_path / "fresh")
    fresh, _ = checkpoint(only_run(tmp_path / "fresh"))
    assert not np.allclose(fresh["param/l0.W_hh"], start["param/l0.W_hh"], atol=1e-3)


def test_init_from_takes_the_shape_the_options_leave_and_refuses_one_that_differs(tmp_path, base):
    new = new_text(tmp_path, ACCENTED * 2)
    ok("train", "--init-from", base, new, *FINE, "--max-steps", "2", "--out", tmp_path / "ft")  # no shape options
    _, meta = checkpoint(only_run(tmp_path / "ft"))
    assert meta["model"]["hidden_size"] == 8 and meta["model"]["cell"] == "lstm"
    for option, value in (("--hidden-size", "16"), ("--cell", "gru"), ("--layers", "2"), ("--embedding-size", "0")):
        stderr = clean_failure(run("train", "--init-from", base, new, *FINE, option, value, "--max-steps", "2",
                                   "--out", tmp_path / "no"), 2)
        assert option in stderr and "--init-from" in stderr
    assert not (tmp_path / "no").exists()


def test_characters_outside_the_vocabulary_are_counted_never_quoted(tmp_path, base):
    new = new_text(tmp_path, (ACCENTED + "Жжж Щ\n") * 3)
    stderr = clean_failure(run("train", "--init-from", base, new, *FINE, "--max-steps", "2", "--out", tmp_path / "r"), 1)
    assert "12 of its" in stderr and "(3 distinct)" in stderr and "--map-unknown" in stderr
    assert not any(c in stderr for c in "ЖжЩ")
    r = ok("train", "--init-from", base, new, *FINE, "--max-steps", "2", "--map-unknown", "--out", tmp_path / "m")
    assert "12 characters (3 distinct)" in r.stderr and "left out" in r.stderr
    assert not any(c in r.stderr for c in "ЖжЩ")
    _, meta = checkpoint(only_run(tmp_path / "m"))
    assert meta["corpus_chars"] == len(ACCENTED) * 3 + 2 * 3  # the space and newline of each line are known


def test_init_from_with_resume_and_map_unknown_alone_are_usage_errors(tmp_path, base):
    new = new_text(tmp_path, ACCENTED)
    stderr = clean_failure(run("train", "--init-from", base, "--resume", base.parent / "latest.npz", new, *FINE,
                               "--max-steps", "2"), 2)
    assert "--init-from cannot be given with --resume" in stderr
    stderr = clean_failure(run("train", "--map-unknown", new, *FINE, "--max-steps", "2", "--out", tmp_path / "r"), 2)
    assert "--map-unknown applies to --init-from only" in stderr
    assert not (tmp_path / "r").exists()


def test_the_python_api_refuses_init_from_with_resume(tmp_path, base):
    from rnncli.errors import UsageError

    with pytest.raises(UsageError, match="--init-from"):
        train_mod.train(TrainConfig(max_steps=1), [str(base)], resume=str(base), init_from=str(base))


def test_a_fine_tuned_run_records_where_its_weights_came_from(tmp_path):
    """Every checkpoint of an --init-from run names the checkpoint it started from, resumed or not."""
    import rnncli
    from rnncli.lm.checkpoint import run_identity

    text = "the cat sat on the mat and the dog sat on the log. " * 40
    first = rnncli.train(text=text, progress=False, out_dir=str(tmp_path), hidden_size=8, layers=1,
                         embedding_size=4, seq_len=8, batch_size=2, max_steps=4, eval_every=2, max_time=0)
    tuned = rnncli.train(text=text[::-1], init_from=first.latest, progress=False, out_dir=str(tmp_path),
                         max_steps=4, eval_every=2, max_time=0)
    origin = rnncli.load(tuned.best).meta["init_from"]
    assert origin == {"path": os.path.abspath(first.latest), "run_id": run_identity(rnncli.load(first.latest).meta),
                      "step": 4}
    more = rnncli.train(resume=tuned.latest, progress=False, max_steps=6)
    assert rnncli.load(more.latest).meta["init_from"] == origin
    assert "init_from" not in rnncli.load(first.best).meta
