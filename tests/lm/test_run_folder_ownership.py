"""A run writes only its own folder and its own files: one writer per run folder (a lock), a
resumed run replaces only checkpoints that carry its run identity, paths a checkpoint records
are read only under the rule typed paths meet (and never quoted back), and every stop signal
ends a run with its checkpoint saved and exit 130.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rnncli.data.files import LOCK_NAME, FolderLock
from rnncli.engine import npz
from rnncli.lm.checkpoint import load_lm, run_identity
from tests.helpers import ACCENTED, clean_failure, deadline, ok, run

TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
        "--eval-every", "2", "--quiet"]


def train_run(tmp_path, name: str, steps: int = 2, text: str = ACCENTED * 3) -> str:
    """A finished tiny run under tmp_path/name; returns its folder."""
    corpus = tmp_path / f"{name}.txt"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / name
    ok("train", corpus, *TINY, "--max-steps", steps, "--out", out)
    (folder,) = os.listdir(out)
    return str(out / folder)


def file_bytes(folder: str) -> dict:
    return {n: open(os.path.join(folder, n), "rb").read() for n in ("latest.npz", "best.npz")}


def rewrite_meta(path: str, **changes) -> None:
    arrays, meta = npz.load(path)
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    npz.save(path, arrays, meta)


# ---------------------------------------------------------------- own files only

def test_resume_refuses_out_because_a_resumed_run_writes_its_own_folder(tmp_path):
    folder = train_run(tmp_path, "a")
    stderr = clean_failure(run("train", "--resume", os.path.join(folder, "latest.npz"), "--out", tmp_path / "x"), 2)
    assert "--out" in stderr
    assert not (tmp_path / "x").exists()


def test_a_checkpoint_copied_into_another_runs_folder_cannot_overwrite_that_runs_files(tmp_path):
    a, b = train_run(tmp_path, "a"), train_run(tmp_path, "b")
    before = file_bytes(b)
    shutil.copy(os.path.join(a, "latest.npz"), os.path.join(b, "some.npz"))
    stderr = clean_failure(run("train", "--resume", os.path.join(b, "some.npz"), tmp_path / "a.txt",
                               "--max-steps", 4), 2)
    assert "another run" in stderr
    assert file_bytes(b) == before  # nothing of run b was touched


def test_a_non_checkpoint_where_a_run_would_save_is_left_alone(tmp_path):
    folder = train_run(tmp_path, "a")
    best = os.path.join(folder, "best.npz")
    with open(best, "wb") as f:
        f.write(b"someone's notes")
    stderr = clean_failure(run("train", "--resume", os.path.join(folder, "latest.npz"), "--max-steps", 4), 2)
    assert "not this run's checkpoint" in stderr
    assert open(best, "rb").read() == b"someone's notes"


def test_a_resumed_run_keeps_replacing_its_own_files(tmp_path):
    folder = train_run(tmp_path, "a")
    latest = os.path.join(folder, "latest.npz")
    identity = npz.read_meta(latest)["run_id"]
    ok("train", "--resume", latest, "--max-steps", 4)
    meta = npz.read_meta(latest)
    assert meta["progress"]["step"] == 4 and meta["run_id"] == identity
    assert npz.read_meta(os.path.join(folder, "best.npz"))["run_id"] == identity


def test_checkpoints_written_before_runs_were_named_resume_in_their_own_folder(tmp_path):
    folder = train_run(tmp_path, "a", steps=4)
    latest, best = os.path.join(folder, "latest.npz"), os.path.join(folder, "best.npz")
    for path in (latest, best):
        rewrite_meta(path, run_id=None)
    assert run_identity(npz.read_meta(latest)) == run_identity(npz.read_meta(best))
    ok("train", "--resume", latest, "--max-steps", 6)
    assert npz.read_meta(latest)["progress"]["step"] == 6


def test_two_runs_never_share_the_identity_that_guards_their_files(tmp_path):
    a, b = train_run(tmp_path, "a"), train_run(tmp_path, "b")
    ids = {npz.read_meta(os.path.join(f, "latest.npz"))["run_id"] for f in (a, b)}
    assert len(ids) == 2


# ---------------------------------------------------------------- one writer per folder

def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(tmp_path):
    folder = train_run(tmp_path, "a")
    before = file_bytes(folder)
    with FolderLock(folder):
        stderr = clean_failure(run("train", "--resume", os.path.join(folder, "latest.npz"), "--max-steps", 4), 1)
    assert str(os.getpid()) in stderr and "in use" in stderr
    assert file_bytes(folder) == before
    ok("train", "--resume", os.path.join(folder, "latest.npz"), "--max-steps", 4)  # free again


def test_two_processes_resuming_one_checkpoint_one_is_refused(tmp_path):
    folder = train_run(tmp_path, "a")
    latest = os.path.join(folder, "latest.npz")
    cmd = [sys.executable, "-m", "rnncli", "train", "--resume", latest, "--max-steps", "100000", "--eval-every", "50"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock = os.path.join(folder, LOCK_NAME)
        end = time.monotonic() + 120
        while not (os.path.exists(lock) and open(lock).read().strip() == str(first.pid)):
            assert time.monotonic() < end and first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert second.stderr.strip().splitlines()[-1].startswith("Error: ")
        assert f"process {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    assert first.returncode == 130
    assert load_lm(latest).meta["progress"]["step"] > 2


def test_a_lock_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    folder = train_run(tmp_path, "a")
    os.remove(os.path.join(folder, LOCK_NAME))
    os.mkfifo(os.path.join(folder, LOCK_NAME))
    with deadline(60):
        stderr = clean_failure(run("train", "--resume", os.path.join(folder, "latest.npz"), "--max-steps", 4), 2)
    assert "named pipe" in stderr


# ---------------------------------------------------------------- paths a checkpoint records

@pytest.mark.parametrize("command", ["resume", "novelty"])
def test_a_recorded_corpus_that_is_a_device_is_named_as_one(tmp_path, command):
    folder = train_run(tmp_path, "a")
    latest = os.path.join(folder, "latest.npz")
    rewrite_meta(latest, corpus=["/dev/zero"])
    args = ("train", "--resume", latest) if command == "resume" else ("sample", latest, "-n", 5, "--novelty")
    with deadline(60):
        stderr = clean_failure(run(*args), 2)
    assert "/dev/zero" in stderr and "not a regular file" in stderr and "not there" not in stderr


def test_a_recorded_relative_path_is_not_followed(tmp_path, monkeypatch):
    folder = train_run(tmp_path, "a")
    latest = os.path.join(folder, "latest.npz")
    monkeypatch.chdir(tmp_path)
    rewrite_meta(latest, corpus=["a.txt"])  # exists relative to here, but checkpoints record absolute paths
    stderr = clean_failure(run("train", "--resume", latest, "--max-steps", 4), 2)
    assert "absolute" in stderr


def test_an_error_about_a_recorded_files_content_never_quotes_it(tmp_path):
    folder = train_run(tmp_path, "a")
    latest = os.path.join(folder, "latest.npz")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$QWERTYzxcv:19000:0:99999:7:::\n", encoding="utf-8")
    rewrite_meta(latest, corpus=[str(secret)])
    stderr = clean_failure(run("train", "--resume", latest, "--max-steps", 4), 1)
    assert "not in the model's vocabulary" in stderr
    for piece in ("QWERTY", "'Q'", "'$'", "'W'"):
        assert piece not in stderr
    assert "characters" in stderr  # how many, not which


# ---------------------------------------------------------------- every stop signal saves

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_kill_and_hang_up_save_and_exit_130_like_ctrl_c(tmp_path, sig):
    corpus = tmp_path / "c.txt"
    corpus.write_text(ACCENTED * 20, encoding="utf-8")
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "rnncli", "train", corpus, *TINY, "--max-steps", "1000000",
                             "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 120
    while not list(out.glob("*/latest.npz")):
        assert time.monotonic() < end and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr
    (latest,) = out.glob("*/latest.npz")
    assert load_lm(str(latest)).meta["progress"]["step"] >= 2


def test_a_second_ctrl_c_during_a_save_waits_for_the_save_to_end(tmp_path, monkeypatch):
    """Ctrl-C, then Ctrl-C again while the checkpoint is being written: the file is finished,
    then the run ends (130), and the checkpoint loads."""
    from rnncli.lm import checkpoint

    real = checkpoint.npz.save
    presses = []

    def slow_save(path, arrays, meta):
        if not presses:  # the user presses Ctrl-C twice: once to stop, once more while it saves
            presses.append(path)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(path, arrays, meta)

    corpus = tmp_path / "c.txt"
    corpus.write_text(ACCENTED * 3, encoding="utf-8")
    monkeypatch.setattr(checkpoint.npz, "save", slow_save)
    result = run("train", corpus, *TINY, "--max-steps", 50, "--out", tmp_path / "runs")
    assert result.exit_code == 130, (result.stderr, result.exception)
    assert "Traceback" not in result.output
    assert load_lm(presses[0]).meta["progress"]["step"] == 2
    last = result.stderr.strip().splitlines()[-1]  # the line says which checkpoint is kept
    assert last.startswith("Interrupted: stopped at once; the last checkpoint is") and presses[0] in last


def test_a_second_ctrl_c_between_checkpoints_names_the_last_one(tmp_path, monkeypatch):
    from rnncli.lm import train as T

    real, steps = T._step, []

    def step_then_press_twice(*args, **kwargs):
        real(*args, **kwargs)
        steps.append(1)
        if len(steps) == 5:  # after the checkpoint of step 2, before that of step 6
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    corpus = tmp_path / "c.txt"
    corpus.write_text(ACCENTED * 3, encoding="utf-8")
    monkeypatch.setattr(T, "_step", step_then_press_twice)
    result = run("train", corpus, *TINY, "--max-steps", 50, "--out", tmp_path / "runs")
    assert result.exit_code == 130, (result.stderr, result.exception)
    (latest,) = (tmp_path / "runs").glob("*/latest.npz")
    assert f"the last checkpoint is {latest}" in result.stderr.strip().splitlines()[-1]
    assert load_lm(str(latest)).meta["progress"]["step"] == 4


def test_lock_file_holds_the_holders_pid_and_is_released_on_exit(tmp_path):
    with FolderLock(str(tmp_path)):
        assert open(tmp_path / LOCK_NAME).read().strip() == str(os.getpid())
    with FolderLock(str(tmp_path)):  # released: taken again at once
        pass
