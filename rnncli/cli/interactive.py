"""`rnn sample --interactive`: a prime typed at a terminal, its continuation streamed back, again
and again; lines starting with `:` change the settings. The text goes to stdout, the prompt and
the notes to stderr, so stdout holds only primes and their continuations.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import click

from rnncli.errors import RnnError

COMMANDS = ":temp T  :topk K  :topp P  :n N  :seed S (or :seed alone: random)  :quit"
PROMPT = "> "
# Options that write something else than one streamed sample, or that would take the place of the
# primes typed at the prompt
NOT_WITH = {"prime": "--prime", "prime_file": "--prime-file", "num_samples": "--num-samples",
            "novelty": "--novelty", "corpus_paths": "--corpus"}


@dataclass
class Settings:
    """What the next continuation is drawn with; seed None draws one."""

    temperature: float
    top_k: int
    top_p: float
    length: int
    seed: int | None


class Quit(Exception):
    """`:quit` was typed."""


def refused(ctx: click.Context, stdin) -> str:
    """Why --interactive cannot run as asked ("" when it can): stdin must be a terminal, and the
    options that replace the typed primes or write more than one sample are left out."""
    if not _is_terminal(stdin):
        return ("--interactive needs a terminal on standard input (it reads one prime per line); "
                "to sample from a file, use --prime-file")
    for name, option in NOT_WITH.items():
        if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
            return f"--interactive cannot be given with {option}"
    return ""


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def command(line: str, settings: Settings) -> str:
    """Apply one `:name value` line to settings; returns what now holds (to show), raises
    ValueError with the message to show when the line is not a command or its value is wrong,
    Quit for :quit."""
    name, _, value = line[1:].strip().partition(" ")
    value = value.strip()
    if name in ("quit", "q", "exit"):
        raise Quit
    if name == "temp":
        t = _number(value, name)
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(":temp needs a number, 0 (greedy) or more")
        settings.temperature = t
        return f"temperature {t:g}"
    if name == "topk":
        settings.top_k = _whole(value, name, 0)
        return f"top-k {settings.top_k}" + (" (all characters)" if settings.top_k == 0 else "")
    if name == "topp":
        p = _number(value, name)
        if not 0 < p <= 1:
            raise ValueError(":topp needs a number above 0 and at most 1")
        settings.top_p = p
        return f"top-p {p:g}"
    if name == "n":
        settings.length = _whole(value, name, 1)
        return f"{settings.length} characters per continuation"
    if name == "seed":
        settings.seed = None if value == "" else _whole(value, name, 0)
        return "random seeds" if settings.seed is None else f"seed {settings.seed} next"
    raise ValueError(f"unknown command {line.strip()!r}; the commands: {COMMANDS}")


def _number(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f":{name} needs a number, e.g. :{name} {'0.9' if name == 'topp' else '0.7'}") from None


def _whole(value: str, name: str, low: int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = low - 1
    if n < low:
        raise ValueError(f":{name} needs a whole number, {low} or more")
    return n


def converse(lm, path: str, settings: Settings, stop: str, drop_unknown: bool, threads) -> None:
    """The loop: read a line from stdin; a `:` line changes settings, any other is a prime
    (escapes such as \\n understood; an empty line starts from nothing) whose continuation is
    streamed to stdout. Each continuation prints its seed on stderr, and the next one takes the
    seed after it, so any of them can be drawn again with `rnn sample --prime ... --seed S`.
    Returns at end of input (Ctrl-D) or :quit; Ctrl-C reaches the group (exit 130)."""
    from rnncli import ui
    from rnncli.lm import sample as core

    ui.notice(f"Sampling from {path}. Type a prime and Enter; {COMMANDS}")
    while True:
        _note(PROMPT, end="")
        line = sys.stdin.readline()
        if not line:  # end of input
            _note("")
            return
        line = line.rstrip("\r\n")
        if line.startswith(":"):
            try:
                _note(command(line, settings))
            except Quit:
                return
            except ValueError as e:
                _note(f"Error: {e}")
            continue
        try:
            drawing = core.draw_samples(lm, core.decode_escapes(line, "prime"), settings.length,
                                        settings.temperature, settings.top_k, settings.top_p, settings.seed,
                                        1, stop, drop_unknown, threads)
        except RnnError as e:  # a prime the model cannot read: say so and ask again
            _note(f"Error: {e}")
            continue
        _note(f"(seed {drawing.seed})")
        sys.stdout.write(drawing.prefix)
        for (piece,) in drawing.pieces():
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        if settings.seed is not None:
            settings.seed = drawing.seed + 1


def _note(text: str, end: str = "\n") -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()
