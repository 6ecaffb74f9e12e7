"""What the commands share: option types (finite numbers, input files, durations), defaults
read from rnncli.config, and option decorators declared once.
"""

from __future__ import annotations

import math
import os

import click

from rnncli.config import (
    ClassifyConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

M_DEF, O_DEF, T_DEF, C_DEF = ModelConfig(), OptimConfig(), TrainConfig(), ClassifyConfig()


CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf (every comparison with nan is false, so
    FloatRange alone lets `--lr nan` through)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


SEED = click.IntRange(min=0)  # numpy's generators take no negative seeds


PREDICT_MAX_CHARS = 1 << 27  # `rnn classify predict` reads its input whole


class InputFile(click.Path):
    """An existing regular file (or a link to one). A directory, device, pipe or socket is a usage
    error: `/dev/zero` never ends and a FIFO without a writer blocks the first read."""

    def __init__(self):
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        from rnncli.data.files import special_file

        what = special_file(rv)
        if what:
            self.fail(f"{click.format_filename(rv)!r} is {what}, not a regular file", param, ctx)
        return rv


class InputText(click.File):
    """A text file opened for reading, or `-` for stdin; named files must be regular files."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value != "-":
            InputFile().convert(value, param, ctx)
        return super().convert(value, param, ctx)


def announce_compile() -> None:
    """Numba compiles the kernels on the first run and caches them: beside the code, or only in
    NUMBA_CACHE_DIR when that is set."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(os.path.dirname(__file__)), "engine", "kernels", "__pycache__")
    has_cache = os.path.isdir(cache_dir) and any(
        name.endswith(".nbi") for _, _, names in os.walk(cache_dir) for name in names)
    if not has_cache:
        from rnncli import ui

        ui.notice("Compiling the Numba kernels (first run only; cached afterwards)...")


class Duration(click.ParamType):
    """Seconds, or numbers with h, m and s: 90, 90s, 10m, 1.5h, 9m30s."""

    name = "duration"
    units = {"h": 3600, "m": 60, "s": 1, "": 1}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            import re

            text = str(value).strip().lower()
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", text)
            if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms]?)", "", text).strip():
                self.fail(f"{value!r} is not a duration such as 90, 90s, 10m, 1.5h or 9m30s", param, ctx)
            seconds = sum(float(number) * self.units[unit] for number, unit in parts)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a duration such as 90, 90s, 10m or 1.5h", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds

    @staticmethod
    def format(seconds: float) -> str:
        if not seconds:
            return "0"
        minutes, rest = divmod(int(round(seconds)), 60)
        return (f"{minutes}m" if minutes else "") + (f"{rest}s" if rest else "")


MAX_THREADS = 1024
THREADS_HELP = "CPU threads for matrix products (0 = all cores)."


def threads_option(default: int = 0, help: str = THREADS_HELP, minimum: int = 0):
    """The --threads option every command that computes takes (0 = all cores, where allowed)."""
    return click.option("--threads", type=click.IntRange(minimum, MAX_THREADS), default=default, help=help)
