"""`rnn sample --interactive`, driven through a pseudo-terminal as a person would drive it: the
continuations are the texts draw_samples gives for the same settings and seeds; end of input and
:quit exit 0, Ctrl-C 130; without a terminal on stdin it refuses."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from helpers import clean_failure, ok, run, write_corpus
from rnncli.cli.interactive import Quit, Settings, command
from rnncli.lm import sample as S

TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "3",
        "--threads", "1"]
TIMEOUT = 180  # the first run in a fresh checkout compiles the kernels


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("interactive")
    corpus = write_corpus(d, 6)
    best = ok("train", corpus, *TINY, "--max-steps", 12, "--eval-every", 6, "--out", d / "runs", "--quiet").stdout
    best = best.split("\t")[0]
    S.draw_samples(S.load_lm(best), length=3, seed=0, threads=1).texts()  # compiled here, cached for the child
    return best


# Run in the child's new session before rnn starts: the pty on stdin becomes its controlling
# terminal, so ^C typed there reaches it as SIGINT (a wrapper rather than preexec_fn, which is
# unsafe in a process with threads)
WITH_TERMINAL = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                 "os.execv(sys.executable, [sys.executable, '-m', 'rnncli'] + sys.argv[1:])")


class Terminal:
    """`rnn sample CKPT ARGS --interactive` with a pseudo-terminal on stdin (its controlling
    terminal), stdout and stderr on pipes."""

    def __init__(self, ckpt, *args):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-c", WITH_TERMINAL, "sample", str(ckpt), "--interactive",
                                      "--threads", "1", *map(str, args)],
                                     stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        os.close(slave)
        self.err = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode("utf-8"))

    def wait_for_prompt(self, count: int = 1) -> None:
        """Read stderr until `count` prompts in all have been written."""
        end = time.monotonic() + TIMEOUT
        while self.err.count(b"> ") < count:
            assert time.monotonic() < end, self.err
            ready, _, _ = select.select([self.proc.stderr], [], [], 1)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                assert chunk, self.err  # ended before prompting
                self.err += chunk

    def finish(self):
        """(exit code, stdout, stderr) once it ends."""
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)
        return self.proc.returncode, out.decode("utf-8"), (self.err + err).decode("utf-8")


def test_a_session_streams_what_draw_samples_draws(ckpt):
    term = Terminal(ckpt, "--seed", 5, "-n", 40)
    term.type("Le \n:temp 0.5\n:topk 3\n:topp 0.9\n:n 25\nZo\\n\n:bogus\nQ\u2713\n:seed 2\n\n:quit\n")
    code, out, err = term.finish()
    assert code == 0, err
    lm = S.load_lm(ckpt)
    first = S.draw_samples(lm, "Le ", 40, seed=5, threads=1).texts()[0]
    second = S.draw_samples(lm, "Zo\n", 25, 0.5, 3, 0.9, seed=6, threads=1).texts()[0]
    third = S.draw_samples(lm, "", 25, 0.5, 3, 0.9, seed=2, threads=1).texts()[0]
    assert out == f"Le {first}\nZo\n{second}\n{third}\n"
    for note in ("(seed 5)", "(seed 6)", "(seed 2)", "temperature 0.5", "top-k 3", "top-p 0.9",
                 "25 characters", "unknown command ':bogus'", "never seen"):
        assert note in err, (note, err)
    assert "Traceback" not in err


def test_end_of_input_ends_cleanly(ckpt):
    term = Terminal(ckpt, "-n", 10)
    term.type("Le \n")
    term.wait_for_prompt(2)  # the continuation is written, the next prompt is up
    term.type("\x04")  # Ctrl-D on an empty line: end of input
    code, out, err = term.finish()
    assert code == 0, err
    assert out.startswith("Le ") and len(out) == len("Le ") + 10 + 1
    assert "Traceback" not in err


def test_ctrl_c_exits_130(ckpt):
    term = Terminal(ckpt, "-n", 10)
    term.wait_for_prompt()
    term.type("\x03")  # the terminal turns ^C into SIGINT for the foreground process
    code, out, err = term.finish()
    assert code == 130, err
    assert out == "" and "Traceback" not in err


def test_without_a_terminal_it_refuses(ckpt):
    """CliRunner's stdin is not a terminal, nor is a pipe."""
    stderr = clean_failure(run("sample", ckpt, "--interactive", input="Le \n"), 2)
    assert "terminal" in stderr
    proc = subprocess.run([sys.executable, "-m", "rnncli", "sample", ckpt, "--interactive"], input=b"Le \n",
                          capture_output=True, timeout=TIMEOUT, check=False)
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == b""
    assert lines[-1].startswith("Error: ") and "terminal" in lines[-1] and "Traceback" not in proc.stderr.decode()


@pytest.mark.parametrize("other", [["--num-samples", 2], ["--prime", "Le"], ["--novelty"]])
def test_options_it_cannot_take(ckpt, other, monkeypatch):
    monkeypatch.setattr("rnncli.cli.interactive._is_terminal", lambda stream: True)
    assert "--interactive cannot be given with" in clean_failure(run("sample", ckpt, "--interactive", *other), 2)


def test_commands_change_the_settings():
    s = Settings(1.0, 0, 1.0, 100, None)
    assert command(":temp 0.7", s) == "temperature 0.7" and s.temperature == 0.7
    command(":topk 20", s)
    command(":topp 0.9", s)
    command(":n 300", s)
    command(":seed 5", s)
    assert (s.top_k, s.top_p, s.length, s.seed) == (20, 0.9, 300, 5)
    command(":seed", s)
    assert s.seed is None
    for bad in (":temp -1", ":temp x", ":temp nan", ":topk -2", ":topk 1.5", ":topp 0", ":topp 1.1", ":n 0",
                ":seed -1", ":what 3"):
        with pytest.raises(ValueError):
            command(bad, s)
    assert (s.temperature, s.top_k, s.top_p, s.length) == (0.7, 20, 0.9, 300)  # unchanged by the bad ones
    with pytest.raises(Quit):
        command(":quit", s)
