"""Assertions shared by the CLI test files."""

import contextlib
import signal

import numpy as np
from click.testing import CliRunner


# Accented French and English: the corpus the CLI tests train their tiny models on.
ACCENTED = ("Le café de la gare: Zoé a dit « déjà ! » puis elle est partie.\n"
        "The naïve fiancée ordered crème brûlée at the café.\n")


def write_corpus(folder, repeats: int):
    path = folder / "corpus.txt"
    path.write_text(ACCENTED * repeats, encoding="utf-8")
    return path


def write_two_classes(folder, n: int):
    """A labelled file of n texts, alternately neg and pos, each class with its own words."""
    path = folder / "data.tsv"
    rows = [f"{'pos' if i % 2 else 'neg'}\t{'good fine day' if i % 2 else 'bad sad night'} {i}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def run(*args, input=None):
    """`rnn ARGS` through Click's runner (arguments as strings), exceptions caught."""
    from rnncli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def ok(*args, input=None):
    """`rnn ARGS`, which must exit 0."""
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return result


def clean_failure(result, code: int) -> str:
    """A clean refusal: exit `code`, no traceback, nothing on stdout; for exit 1 exactly one
    `Error: ...` line on stderr (besides the one-time compile notice). Returns stderr."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith("Compiling the Numba kernels")]
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    else:
        assert any(line.startswith("Error: ") for line in lines), result.stderr
    return result.stderr


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail the test instead of hanging it (a forged or huge size must be refused at once)."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except TimeoutError as e:
        # A fresh exception: the interrupted frame may have no line number, which pytest cannot render.
        raise AssertionError(str(e)) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# A tiny, easy labelled set for the classifier's command tests: three classes with their own words.
WORDS = {"fruit": "apple banana cherry mango grape lemon peach plum".split(),
         "car": "engine wheel brake gear clutch tyre piston axle".split(),
         "music": "violin piano cello flute drum guitar harp oboe".split()}
FILLER = "the a and with very my some".split()
LABELS = sorted(WORDS)
TINY = ["--hidden-size", "8", "--embedding-size", "8", "--dense", "8", "--epochs", "3", "--batch-size", "8"]


def invoke(*args, ok=True, input=None):
    """Run `rnn ARGS`; with ok, exceptions propagate and the exit code must be 0."""
    result = CliRunner().invoke(_main(), [str(a) for a in args], catch_exceptions=not ok, input=input)
    if ok:
        assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result


def fails(*args, code: int, input=None):
    """Run `rnn ARGS`, expecting a clean failure with exit code `code`; returns stderr."""
    return clean_failure(invoke(*args, ok=False, input=input), code)


def lines(per_class: int, seed: int, labels=None) -> list:
    """`label<TAB>text` lines: 3-6 words of the class and 1-3 shared fillers, shuffled."""
    rng = np.random.default_rng(seed)
    out = []
    for label, words in WORDS.items():
        for _ in range(per_class):
            tokens = list(rng.choice(words, size=int(rng.integers(3, 7))))
            tokens += list(rng.choice(FILLER, size=int(rng.integers(1, 4))))
            rng.shuffle(tokens)
            out.append(f"{(labels or {}).get(label, label)}\t{' '.join(tokens)}")
    return [out[i] for i in rng.permutation(len(out))]




def _main():
    from rnncli.cli import main

    return main
