"""Every training run logs each evaluation to RUN/metrics.jsonl and RUN/metrics.csv (and with
--tensorboard to TensorBoard events): one row per evaluation, matching the checkpoint; a resumed
run first cuts what its checkpoint never saw; the log changes no checkpoint; `rnn report` reads
it only when it agrees with the checkpoint and reads damaged lines as the checkpoint history's.
"""

import csv
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from rnncli.config import ModelConfig, TrainConfig
from rnncli.engine import npz
from rnncli.lm import runlog
from rnncli.lm import train as train_mod
from rnncli.tools import inspection as ins
from rnncli.tools import report as rep
from tests.helpers import ACCENTED, clean_failure, ok, run

TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
        "--eval-every", "2", "--max-time", "0", "--dropout", "0", "--cell", "lstm", "--threads", "1", "--quiet"]


def corpus(tmp_path, name="c.txt"):
    path = tmp_path / name
    path.write_text(ACCENTED * 4, encoding="utf-8")
    return path


def train_run(tmp_path, *extra, steps=5, out="runs"):
    ok("train", corpus(tmp_path), *TINY, "--max-steps", steps, "--out", tmp_path / out, *extra)
    (name,) = os.listdir(tmp_path / out)
    return tmp_path / out / name


def jsonl(folder):
    return [json.loads(line) for line in (folder / runlog.JSONL).read_text().splitlines()]


def csv_rows(folder):
    with open(folder / runlog.CSV, newline="") as f:
        return list(csv.reader(f))


def history(folder, which="latest"):
    _, meta = npz.load(str(folder / f"{which}.npz"))
    return meta["progress"]["history"]


# ---------------------------------------------------------------- what a run writes

def test_each_evaluation_is_one_row_in_both_files_matching_the_checkpoint(tmp_path):
    folder = train_run(tmp_path, steps=5)
    rows = jsonl(folder)
    assert [r["step"] for r in rows] == [2, 4, 5]
    assert all(list(r) == list(runlog.COLUMNS) for r in rows)
    h = history(folder)
    assert [r["train_loss"] for r in rows] == [v for _, v in h["train"]]  # the same floats, not rounded
    assert [r["val_loss"] for r in rows] == [v for _, v in h["val"]]
    assert [r["seconds"] for r in rows] == [v for _, v in h["time"]]
    assert all(r["lr"] > 0 and r["chars_per_sec"] >= 0 and 0 < r["epoch"] < 1 for r in rows)
    best = min(range(3), key=lambda i: rows[i]["val_loss"])
    assert rows[best]["is_best"] and sum(r["is_best"] for r in rows) >= 1
    table = csv_rows(folder)
    assert table[0] == list(runlog.COLUMNS)
    assert [int(r[0]) for r in table[1:]] == [2, 4, 5]
    assert [float(r[3]) for r in table[1:]] == [r["train_loss"] for r in rows]
    assert {r[7] for r in table[1:]} <= {"true", "false"}


def test_without_a_validation_split_the_validation_loss_is_null(tmp_path):
    folder = train_run(tmp_path, "--val-fraction", "0", "--patience", "0", steps=2)
    (row,) = jsonl(folder)
    assert row["val_loss"] is None
    assert csv_rows(folder)[1][4] == ""


def test_the_python_api_writes_the_log_too(tmp_path):
    cfg = TrainConfig(model=ModelConfig(cell="gru", hidden_size=8, num_layers=1, embedding_size=4, dropout=0.0),
                      seq_len=8, batch_size=2, max_steps=3, max_time=0, eval_every=2, threads=1,
                      out_dir=str(tmp_path / "runs"))
    result = train_mod.train(cfg, [str(corpus(tmp_path))])
    assert [r["step"] for r in jsonl(tmp_path / "runs" / os.path.basename(result.run_dir))] == [2, 3]


def test_the_log_changes_no_checkpoint(tmp_path, monkeypatch):
    """Same seed and options, with and without the log (and TensorBoard when it is installed):
    every array of both checkpoints is the same, bit for bit."""
    text = str(corpus(tmp_path))

    def checkpoints(out, **kw):
        cfg = TrainConfig(model=ModelConfig(cell="lstm", hidden_size=8, num_layers=1, embedding_size=4, dropout=0.1),
                          seq_len=8, batch_size=2, max_steps=5, max_time=0, eval_every=2, threads=1, streams=4,
                          ema=0.5, out_dir=str(tmp_path / out))
        result = train_mod.train(cfg, [text], **kw)
        return [npz.load(p) for p in (result.latest, result.best)]

    with_log = checkpoints("with", tensorboard=_has_tensorboardx())

    class NoLog:
        def __init__(self, *a, **k): ...
        def write(self, *a, **k): ...
        def close(self): ...
        def __enter__(self): return self
        def __exit__(self, *exc): return False

    monkeypatch.setattr(train_mod, "RunLog", NoLog)
    without = checkpoints("without")
    assert not list((tmp_path / "without").glob("*/metrics.*"))
    for (a, ma), (b, mb) in zip(with_log, without):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
        assert ma["rng"] == mb["rng"] and ma["optimizer_steps"] == mb["optimizer_steps"]


# ---------------------------------------------------------------- resuming

def test_resume_cuts_rows_past_its_checkpoint_and_a_partial_last_line(tmp_path):
    folder = train_run(tmp_path, steps=4)
    shutil.copy(folder / "latest.npz", folder / "at4.npz")  # the same run's checkpoint at step 4
    ok("train", "--resume", folder / "latest.npz", "--max-steps", "6", "--threads", "1", "--quiet")
    assert [r["step"] for r in jsonl(folder)] == [2, 4, 6]
    with open(folder / runlog.JSONL, "a") as f:  # what a process killed mid-write leaves
        f.write('{"step": 8, "epoch": 0.2, "sec')
    with open(folder / runlog.CSV, "a") as f:
        f.write("8,0.2,0.")
    ok("train", "--resume", folder / "at4.npz", "--max-steps", "8", "--threads", "1", "--quiet")
    rows = jsonl(folder)  # step 6 of the run the checkpoint lost, and the partial line, are gone
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert [r["train_loss"] for r in rows] == [v for _, v in history(folder)["train"]]
    table = csv_rows(folder)
    assert table[0] == list(runlog.COLUMNS) and [int(r[0]) for r in table[1:]] == [2, 4, 6, 8]
    assert ins.run_curves(str(folder), npz.load(str(folder / "latest.npz"))[1]).source == "log"


@pytest.mark.parametrize("name", [runlog.JSONL, runlog.CSV])
@pytest.mark.parametrize("kind", ["directory", "link", "fifo"])
def test_a_log_that_is_not_a_regular_file_is_refused_before_anything_is_written(tmp_path, name, kind):
    folder = train_run(tmp_path, steps=2)
    before = (folder / "latest.npz").read_bytes()
    target = folder / name
    target.unlink()
    if kind == "directory":
        target.mkdir()
    elif kind == "link":
        (tmp_path / "elsewhere").write_text("")
        target.symlink_to(tmp_path / "elsewhere")
    else:
        os.mkfifo(target)
    stderr = clean_failure(run("train", "--resume", folder / "latest.npz", "--max-steps", "4", "--quiet"), 2)
    assert name in stderr and "regular file" in stderr
    assert (folder / "latest.npz").read_bytes() == before
    assert (tmp_path / "elsewhere").read_text() == "" if kind == "link" else True


def test_a_resumed_run_of_a_folder_without_a_log_starts_one(tmp_path):
    folder = train_run(tmp_path, steps=2)
    for name in (runlog.JSONL, runlog.CSV):
        (folder / name).unlink()
    ok("train", "--resume", folder / "latest.npz", "--max-steps", "4", "--threads", "1", "--quiet")
    assert [r["step"] for r in jsonl(folder)] == [4]
    # the log lacks step 2, which the checkpoint has: the report keeps to the checkpoint
    assert ins.run_curves(str(folder), npz.load(str(folder / "latest.npz"))[1]).source == "checkpoint"


# ---------------------------------------------------------------- TensorBoard

def _has_tensorboardx() -> bool:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


def _events(folder):
    """(tag, step, value) of every scalar in the TensorBoard event files under folder."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_tensorboard_events_hold_each_evaluation(tmp_path):
    pytest.importorskip("tensorboardX")
    folder = train_run(tmp_path, "--tensorboard", steps=4)
    events = _events(folder / runlog.TENSORBOARD)
    rows = jsonl(folder)
    assert [(s, v) for t, s, v in events if t == "loss/train"] == [
        (r["step"], pytest.approx(r["train_loss"], rel=1e-6)) for r in rows]
    assert {s for t, s, _ in events if t == "learning_rate"} == {2, 4}


def test_tensorboard_without_tensorboardx_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as when it is not installed
    stderr = clean_failure(run("train", corpus(tmp_path), *TINY, "--max-steps", "2", "--out", tmp_path / "r",
                               "--tensorboard"), 2)
    assert "pip install 'rnncli[tensorboard]'" in stderr
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- the report

def _write_log(folder, lines):
    (folder / runlog.JSONL).write_bytes(b"".join(line if isinstance(line, bytes) else line.encode() + b"\n"
                                                 for line in lines))


def test_report_prefers_the_log_and_draws_the_learning_rate(tmp_path):
    folder = train_run(tmp_path, steps=5)
    meta = npz.load(str(folder / "latest.npz"))[1]
    c = ins.run_curves(str(folder), meta)
    assert c.source == "log" and c.steps.tolist() == [2, 4, 5]
    assert c.lr.tolist() == [r["lr"] for r in jsonl(folder)]
    r = run("report", folder, "--chars", "200", "--show-chars", "50", "--steps", "3", "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert "Learning rate" in page and "metrics.jsonl" in page


def test_report_reads_crafted_log_lines_as_it_reads_crafted_histories(tmp_path):
    folder = train_run(tmp_path, steps=4)
    meta = npz.load(str(folder / "latest.npz"))[1]
    good = jsonl(folder)
    crafted = [dict(good[0], lr=1e308, val_loss="3.1", seconds=True), dict(good[1], lr=float("inf"))]
    _write_log(folder, [
        json.dumps(crafted[0]),
        "[1, 2, 3]", "null", '{"step": true, "train_loss": 1}', '{"step": 1e400}', '{"step": -1}',
        '{"step": 99999999999999999999999}', "[" * 100_000, "not json", b"\xff\xfe\n",
        json.dumps(crafted[1]).replace("Infinity", "NaN"),
        b'{"step": 6, "train_loss": 1.0, "lr": 0.0',  # a partial last line
    ])
    c = ins.run_curves(str(folder), meta)
    assert c.source == "log" and c.steps.tolist() == [2, 4]
    assert c.lr is None  # no rate a run could have recorded: no learning-rate plot
    assert np.isnan(c.val[0]) and c.val[1] == good[1]["val_loss"]
    assert c.seconds.tolist() == [v for _, v in meta["progress"]["history"]["time"]]  # not all finite in the log
    rep.lm_curves_figure(c)  # draws


@pytest.mark.parametrize("change", ["missing row", "other loss", "extra row", "repeated step"])
def test_a_log_that_disagrees_with_the_checkpoint_is_not_used(tmp_path, change):
    folder = train_run(tmp_path, steps=4)
    meta = npz.load(str(folder / "latest.npz"))[1]
    rows = jsonl(folder)
    if change == "missing row":
        rows = rows[:1]
    elif change == "other loss":
        rows[1]["train_loss"] += 1e-9
    elif change == "extra row":
        rows.append(dict(rows[-1], step=6))
    else:
        rows.append(rows[-1])
    _write_log(folder, [json.dumps(r) for r in rows])
    c = ins.run_curves(str(folder), meta)
    assert c.source == "checkpoint" and c.lr is None
    assert c.steps.tolist() == [2, 4]


def test_a_log_that_is_not_a_regular_file_is_not_read(tmp_path):
    folder = train_run(tmp_path, steps=2)
    meta = npz.load(str(folder / "latest.npz"))[1]
    (folder / runlog.JSONL).unlink()
    os.mkfifo(folder / runlog.JSONL)
    assert ins.run_curves(str(folder), meta).source == "checkpoint"  # and it did not block on the pipe


# ---------------------------------------------------------------- MPI

MPIEXEC = shutil.which("mpiexec") or (os.path.join(os.path.dirname(sys.executable), "mpiexec")
                                      if os.path.exists(os.path.join(os.path.dirname(sys.executable), "mpiexec")) else None)


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install mpich)")
def test_under_mpi_rank_0_alone_writes_the_log(tmp_path):
    text = tmp_path / "c.txt"
    text.write_text("The cat sat on the mat; le chat est sur le tapis. " * 40, encoding="utf-8")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    args = [*TINY, "--batch-size", "4", "--max-steps", "4", "--out", str(tmp_path / "r")]
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "rnncli", "train", str(text), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    (name,) = os.listdir(tmp_path / "r")
    assert [r["step"] for r in jsonl(tmp_path / "r" / name)] == [2, 4]
