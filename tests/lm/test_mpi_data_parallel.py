"""Data-parallel training under mpiexec: 2 ranks × 16 streams take the steps 1 process × 32
streams takes (to float32 round-off), resume with another rank count, and faults give one line."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rnncli.engine import npz as checkpoint

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec") or (os.path.join(os.path.dirname(sys.executable), "mpiexec")
                                      if os.path.exists(os.path.join(os.path.dirname(sys.executable), "mpiexec")) else None)
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install mpich)")

TRAIN = ["--layers", "1", "--hidden-size", "8", "--embedding-size", "4", "--dropout", "0", "--seq-len", "8",
         "--batch-size", "32", "--eval-every", "5", "--max-time", "0", "--threads", "1", "--patience", "0", "-q"]
ENV = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpi") / "c.txt"
    path.write_text("The cat sat on the mat; le chat est sur le tapis. Où est l’hôpital ? " * 80, encoding="utf-8")
    return str(path)


def rnn(args, ranks=0, timeout=120, extra=()):
    cmd = [sys.executable, "-m", "rnncli", "train", *args]
    if ranks:
        cmd = [MPIEXEC, *extra, "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def run_dir(out):
    (name,) = os.listdir(out)
    return os.path.join(out, name)


def load(out, which="latest"):
    arrays, meta = checkpoint.load(os.path.join(run_dir(out), f"{which}.npz"))
    return {k: v for k, v in arrays.items() if k.startswith(("param/", "opt/"))}, meta


def test_two_ranks_take_the_steps_of_one_process(corpus, tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    a = rnn([corpus, *TRAIN, "--max-steps", "20", "--out", one])
    b = rnn([corpus, *TRAIN, "--max-steps", "20", "--out", two], ranks=2)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert len(b.stdout.strip().splitlines()) == 1  # rank 0 alone prints its result line
    pa, ma = load(one)
    pb, mb = load(two)
    assert mb["progress"]["step"] == 20 and mb["batch_size"] == 32
    worst = max(float(np.max(np.abs(pa[k] - pb[k]))) for k in pa)
    assert worst < 1e-4, worst  # float32 round-off of sums taken in another order
    for kind in ("train", "val"):
        la = np.array([v for _, v in ma["progress"]["history"][kind]])
        lb = np.array([v for _, v in mb["progress"]["history"][kind]])
        np.testing.assert_allclose(la, lb, rtol=1e-5)


def test_resume_with_another_rank_count(corpus, tmp_path):
    const = ["--schedule", "constant"]
    whole, part = str(tmp_path / "whole"), str(tmp_path / "part")
    assert rnn([corpus, *TRAIN, *const, "--max-steps", "20", "--out", whole]).returncode == 0
    assert rnn([corpus, *TRAIN, *const, "--max-steps", "10", "--out", part], ranks=2).returncode == 0
    latest = os.path.join(run_dir(part), "latest.npz")
    r = rnn([corpus, "--resume", latest, "--max-steps", "20", "--threads", "1", "-q"])
    assert r.returncode == 0, r.stderr
    pw, _ = load(whole)
    pp, mp = load(part)
    assert mp["progress"]["step"] == 20
    assert max(float(np.max(np.abs(pw[k] - pp[k]))) for k in pw) < 1e-4


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Compiling the Numba")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_corpus_that_differs_between_ranks_is_one_line(corpus, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(open(corpus, encoding="utf-8").read().replace("chat", "chien"), encoding="utf-8")
    cmd = [sys.executable, "-m", "rnncli", "train"]
    args = [*TRAIN, "--max-steps", "5", "--out", str(tmp_path / "o")]
    r = subprocess.run([MPIEXEC, "-n", "1", *cmd, corpus, *args, ":", "-n", "1", *cmd, str(other), *args],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode != 0
    assert "rank 1's corpus differs from rank 0's" in _one_error_line(r.stderr)


def test_a_batch_that_does_not_split_is_one_line(corpus, tmp_path):
    args = [a if a != "32" else "5" for a in TRAIN]
    r = rnn([corpus, *args, "--max-steps", "5", "--out", str(tmp_path / "o")], ranks=2)
    assert r.returncode != 0
    assert "do not split evenly over 2 ranks" in _one_error_line(r.stderr)


def _rank_pid(rank: int, parent: int) -> int | None:
    """The pid of the process mpiexec started as this rank (its PMI_RANK)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            if f"PMI_RANK={rank}".encode() in env and b"rnncli" in open(f"/proc/{pid}/cmdline", "rb").read() \
                    and f"RNNCLI_TEST_PARENT={parent}".encode() in env:
                return int(pid)
        except OSError:
            continue
    return None


def test_a_rank_that_dies_stops_the_others_with_one_line(corpus, tmp_path):
    out = str(tmp_path / "o")
    env = dict(ENV, RNNCLI_TEST_PARENT=str(os.getpid()))
    proc = subprocess.Popen([MPIEXEC, "-disable-auto-cleanup", "-n", "2", sys.executable, "-m", "rnncli", "train",
                             corpus, *TRAIN, "--max-steps", "1000000", "--out", out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.isdir(out) and os.listdir(out)
                                               and os.path.exists(os.path.join(run_dir(out), "latest.npz"))):
            time.sleep(0.2)
        pid = _rank_pid(1, os.getpid())
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    lost = [ln for ln in stderr.splitlines() if ln.startswith("Error: rank 0:")]
    assert len(lost) == 1 and "the last checkpoint" in lost[0] and "is valid" in lost[0], stderr
    checkpoint.load(os.path.join(run_dir(out), "latest.npz"))  # still valid
