"""When the output cannot be written: a full disk, a closed descriptor, a reader that went away,
an encoding that cannot hold the text, a terminal that disappears under a training run, and
Ctrl-C at any moment. Real processes, since each case lives in the file descriptors."""

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import ACCENTED, ok, write_corpus

TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2",
        "--cell", "gru", "--dropout", "0", "--lr", "0.01", "--weight-decay", "0", "--max-time", "0"]
FULL = "/dev/full"


def rnn(*args, env=None, **kw):
    """`python -m rnncli ARGS` as a process; stdout and stderr captured unless given."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "rnncli", *map(str, args)], env={**os.environ, **(env or {})},
                          timeout=120, **kw)


def one_error_line(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith(("Sampling from", "Compiling"))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("out")
    corpus = write_corpus(folder, 40)
    line = ok("train", corpus, *TINY, "--max-steps", 4, "--eval-every", 2, "--out", folder / "runs", "-q").stdout
    return {"ckpt": line.split("\t")[0], "corpus": corpus, "dir": folder}


needs_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full here")


@needs_full
@pytest.mark.parametrize("args", [["--help"], ["sample", "CKPT", "-n", "50", "--seed", "1"],
                                  ["eval", "CKPT", "CORPUS"], ["gradcheck", "--cell", "rnn", "--layers", "1"]])
def test_a_full_disk_on_stdout_is_one_error_line(model, args):
    args = [{"CKPT": model["ckpt"], "CORPUS": model["corpus"]}.get(a, a) for a in args]
    with open(FULL, "w") as full:
        proc = rnn(*args, stdout=full)
    assert proc.returncode == 1
    assert "No space left" in one_error_line(proc.stderr)


def test_a_closed_stdout_is_one_error_line(model):
    proc = rnn("sample", model["ckpt"], "-n", 50, "--seed", 1, stdout=None, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1
    assert "standard output is closed" in one_error_line(proc.stderr)


def test_a_reader_that_goes_away_ends_the_command_quietly(model):
    proc = subprocess.Popen([sys.executable, "-m", "rnncli", "sample", model["ckpt"], "-n", "300000", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # like `| head -c 10`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def test_an_encoding_that_cannot_hold_the_text_switches_to_utf8(model, tmp_path):
    out = tmp_path / "sample.txt"
    with open(out, "w") as f:
        proc = rnn("sample", model["ckpt"], "-n", 400, "--seed", 3, "--prime", "caf", stdout=f,
                   env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    text = out.read_bytes().decode("utf-8")  # would raise if the bytes were not UTF-8
    assert set(text) <= set(ACCENTED + "caf"), text
    assert "writing UTF-8" in proc.stderr.decode()


def test_training_goes_on_and_saves_when_its_terminal_goes_away(model, tmp_path):
    """`rnn train ... 2>&1 | head -3`: the reader leaves after three lines; the run must still
    train to its end and leave its checkpoints."""
    proc = subprocess.Popen([sys.executable, "-m", "rnncli", "train", str(model["corpus"]), *TINY,
                             "--max-steps", "60", "--eval-every", "10", "--out", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) in (0, 141)
    (run,) = os.listdir(tmp_path / "runs")
    from rnncli.lm.sample import load_lm

    assert load_lm(str(tmp_path / "runs" / run / "latest.npz"))  # loads: the run ended and saved


@pytest.mark.parametrize("wait", [0.3, 1.5])
def test_ctrl_c_at_any_moment_exits_130(wait):
    """During start-up (imports) or inside a command's work, an interruption is one line and 130."""
    proc = subprocess.Popen([sys.executable, "-m", "rnncli", "gradcheck", "--samples", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(wait)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr and b"Aborted" not in stderr


def test_an_interrupt_inside_the_compiler_is_sent_again_after_it(monkeypatch):
    """Raised inside Numba's compiler (which LLVM calls back into), a KeyboardInterrupt would be
    dropped with LLVM half done; there the handler re-sends the signal a moment later instead."""
    import types

    from rnncli.cli import group

    sent = []
    monkeypatch.setattr(group.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(group, "COMPILER_RETRY_SECONDS", 0.0)

    def frame(path, back=None):
        return types.SimpleNamespace(f_code=types.SimpleNamespace(co_filename=path), f_back=back)

    inside = frame("/work/app.py", frame(os.path.join("", "site-packages", "numba", "core", "compiler.py")))
    group._interrupt(signal.SIGINT, inside)  # no exception: deferred
    deadline = time.time() + 5
    while not sent and time.time() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)]
    with pytest.raises(KeyboardInterrupt):
        group._interrupt(signal.SIGINT, frame("/work/app.py", frame("/work/main.py")))
