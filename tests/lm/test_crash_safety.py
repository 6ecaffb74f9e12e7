"""Crash safety: a training process killed at any instant leaves a checkpoint that
loads; a save that cannot be written (no such directory, not allowed, disk full) is one clear
line and the previous checkpoint is left exactly as it was.

The kill test runs the real `python -m rnncli train` in a subprocess, saving after every step,
and SIGKILLs it at random moments: before, during and between saves.
"""

import errno
import os
import random
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from click.testing import CliRunner

from rnncli.data.files import LOCK_NAME
from rnncli.engine import npz as checkpoint
from rnncli.lm.checkpoint import load_lm
from rnncli.cli import main
from rnncli.errors import CheckpointError

TEXT = ("Le café de la gare: Zoé a dit « déjà ! » puis elle est partie.\n"
        "The naïve fiancée ordered crème brûlée at the café.\n")
# Big enough that a save takes a moment (about 150 kB with Adam state), small enough to step fast.
MODEL = ["--hidden-size", "48", "--layers", "1", "--embedding-size", "8", "--seq-len", "8", "--batch-size", "2"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, code=1) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [l for l in result.stderr.splitlines() if l.strip() and not l.startswith("Compiling the Numba")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def temp_files(run_dir) -> list:
    return sorted(n for n in os.listdir(run_dir) if n.startswith(checkpoint.TMP_PREFIX))


def assert_run_dir_is_sound(run_dir) -> int:
    """Every checkpoint in run_dir loads; anything else is a temporary file of a killed save.
    Returns the step of latest.npz."""
    names = set(os.listdir(run_dir))
    assert "latest.npz" in names, names
    assert names - {"latest.npz", "best.npz", LOCK_NAME, "metrics.jsonl", "metrics.csv"} == set(temp_files(run_dir)), names
    for tmp in temp_files(run_dir):
        assert tmp.endswith(".npz")
    step = load_lm(os.path.join(run_dir, "latest.npz")).meta["progress"]["step"]
    if "best.npz" in names:
        load_lm(os.path.join(run_dir, "best.npz"))
    return step


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def latest_step(path) -> int:
    try:
        return checkpoint.load(str(path))[1]["progress"]["step"]
    except CheckpointError:  # a reader racing the rename sees the old or the new file, never half
        raise AssertionError(f"{path} did not load while training was running")


def test_sigkill_at_random_moments_always_leaves_a_loadable_checkpoint(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 30, encoding="utf-8")
    out = tmp_path / "runs"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    forever = ["--max-steps", "1000000", "--quiet"]
    command = [sys.executable, "-m", "rnncli", "train", str(corpus), *MODEL, "--eval-every", "1",
               "--out", str(out), *forever]
    steps, leftovers = [], 0
    for attempt in range(6):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            if attempt == 0:
                wait_for(lambda: proc.poll() is not None or out.exists()
                         and any((d / "latest.npz").exists() for d in out.iterdir()), 60, "the first checkpoint")
                assert proc.poll() is None, proc.stderr.read().decode()
                run_dir = next(out.iterdir())
                latest = run_dir / "latest.npz"
                command = [sys.executable, "-m", "rnncli", "train", "--resume", str(latest), *forever]
            else:  # the resumed run has saved at least once more
                wait_for(lambda: latest_step(latest) > steps[-1] or proc.poll() is not None, 60, "a new save")
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(rng.uniform(0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        steps.append(assert_run_dir_is_sound(run_dir))
        leftovers += len(temp_files(run_dir))
        assert steps[-1] >= (steps[-2] if len(steps) > 1 else 1), (seed, steps)

    # A clean finish: the resumed run completes and its saves sweep away temporaries of the killed ones.
    result = subprocess.run([sys.executable, "-m", "rnncli", "train", "--resume", str(latest),
                             "--max-steps", str(steps[-1] + 2), "--quiet"], capture_output=True, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert assert_run_dir_is_sound(run_dir) == steps[-1] + 2
    assert temp_files(run_dir) == [], (seed, leftovers)


# ---------------------------------------------------------------- temporary files of killed saves

def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_a_save_removes_temp_files_of_dead_processes_only(tmp_path):
    path = str(tmp_path / "latest.npz")
    checkpoint.save(path, {"param/x": np.zeros(2)}, {"kind": "lm"})
    dead = tmp_path / f".tmp-{dead_pid()}-abc123.npz"
    dead.write_bytes(b"PK\x03\x04 half a checkpoint")
    mine = tmp_path / f".tmp-{os.getpid()}-def456.npz"  # a save still in progress (this process)
    mine.write_bytes(b"PK\x03\x04")
    other = tmp_path / ".tmp-notes.npz"  # not named by a pid: not ours to judge
    other.write_bytes(b"")
    checkpoint.load(path)  # loading ignores them
    checkpoint.save(path, {"param/x": np.ones(2)}, {"kind": "lm"})
    assert not dead.exists()
    assert mine.exists() and other.exists()
    np.testing.assert_array_equal(checkpoint.load(path)[0]["param/x"], np.ones(2))


def test_temp_files_never_confuse_sample_or_resume(tmp_path, tiny_corpus):
    corpus = tmp_path / "c.txt"
    corpus.write_text(tiny_corpus * 3, encoding="utf-8")
    result = cli("train", corpus, *MODEL, "--max-steps", 2, "--eval-every", 2, "--out", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.stderr
    run_dir = os.path.dirname(result.stdout.split("\t")[0])
    with open(os.path.join(run_dir, f".tmp-{dead_pid()}-x.npz"), "wb") as f:
        f.write(b"PK\x03\x04")
    assert cli("sample", "--out", tmp_path / "runs", "-n", 5).exit_code == 0
    result = cli("train", "--resume", os.path.join(run_dir, "latest.npz"), "--max-steps", 3, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert temp_files(run_dir) == []


# ---------------------------------------------------------------- output directories

@pytest.fixture
def corpus(tmp_path, tiny_corpus) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(tiny_corpus * 3, encoding="utf-8")
    return str(path)


def train(corpus, out, *extra):
    return cli("train", corpus, *MODEL, "--max-steps", 4, "--eval-every", 2, "--out", out, "--quiet", *extra)


def test_a_missing_output_directory_is_created(corpus, tmp_path):
    out = tmp_path / "deep" / "er" / "runs"
    result = train(corpus, out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(str(out))
    load_lm(result.stdout.split("\t")[0])


def test_an_output_directory_under_a_file(corpus, tmp_path):
    """Root can write anywhere, so the portable unwritable place is a path through a file."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    line = one_error_line(train(corpus, blocker / "runs"))
    assert "file.txt" in line and "Not a directory" in line
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_output_directory(corpus, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        line = one_error_line(train(corpus, out))
    finally:
        out.chmod(0o755)
    assert "ro" in line and "Permission denied" in line


def test_permission_denied_at_save_time_keeps_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    """The directory exists but refuses new files (what chmod 555 does to a non-root user)."""
    result = train(corpus, tmp_path / "runs")
    latest = os.path.join(os.path.dirname(result.stdout.split("\t")[0]), "latest.npz")
    before = open(latest, "rb").read()

    def refuse(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint, "tempfile", types.SimpleNamespace(mkstemp=refuse))
    line = one_error_line(cli("train", "--resume", latest, "--max-steps", 6, "--quiet"))
    assert "latest.npz" in line and "Permission denied" in line
    assert open(latest, "rb").read() == before


# ---------------------------------------------------------------- a full disk

@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_disk_full_at_save_time(corpus, tmp_path, monkeypatch, fail_at):
    """Saves succeed until the disk fills on save number fail_at (latest and best alternate):
    one error line naming the file, the file as it was before that save, no temporary left."""
    real = np.savez
    calls, previous = [0], {}

    def filling(f, **arrays):
        calls[0] += 1
        if calls[0] == fail_at:
            [run_dir] = (tmp_path / "runs").iterdir()
            previous.update({p.name: p.read_bytes() for p in run_dir.glob("*.npz") if not p.name.startswith(".")})
            f.write(b"PK\x03\x04 the first bytes")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays)

    monkeypatch.setattr(checkpoint.np, "savez", filling)
    result = cli("train", corpus, *MODEL, "--max-steps", 6, "--eval-every", 1, "--out", tmp_path / "runs", "--quiet")
    line = one_error_line(result)
    assert "No space left on device" in line and "unchanged" in line
    run_dir = os.path.join(tmp_path, "runs", os.listdir(tmp_path / "runs")[0])
    assert temp_files(run_dir) == []
    for name, data in previous.items():
        assert open(os.path.join(run_dir, name), "rb").read() == data, name
        load_lm(os.path.join(run_dir, name))


def test_fsync_failure_is_a_failed_save(corpus, tmp_path, monkeypatch):
    """fsync is where a full disk or a failing device often shows up (delayed allocation)."""
    result = train(corpus, tmp_path / "runs")
    latest = os.path.join(os.path.dirname(result.stdout.split("\t")[0]), "latest.npz")
    before = open(latest, "rb").read()

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    line = one_error_line(cli("train", "--resume", latest, "--max-steps", 6, "--quiet"))
    assert "latest.npz" in line and "Input/output error" in line
    monkeypatch.undo()
    assert open(latest, "rb").read() == before
    assert temp_files(os.path.dirname(latest)) == []
