"""The `rnn` command: parse options, call one core function, render the result.

Core modules are imported inside the commands so `rnn --help` never loads numpy or Numba.
Each command family has its module; importing them registers their commands on the group.
"""

from rnncli.cli import classify, export, info, lm, tools  # noqa: F401  (register the commands)
from rnncli.cli.group import main

__all__ = ["main"]
