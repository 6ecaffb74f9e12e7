"""The `rnn` command: parse options, call one core function, render the result.

Core modules are imported inside the commands so `rnn --help` never loads numpy or Numba.
"""

from __future__ import annotations

import os
import sys

import click

from rnncli import __version__
from rnncli.config import ACTIVATIONS, CELLS, GradcheckConfig
from rnncli.errors import RnnError

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class RnnGroup(click.Group):
    """Turns the project's own errors into one `Error: ...` line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RnnError as e:
            if (ctx.obj or {}).get("debug"):
                raise
            raise click.ClickException(str(e)) from None


@click.group(cls=RnnGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def main(ctx, debug):
    """Train, sample and check recurrent neural networks on the CPU.

    \b
    rnn train                   train a character model on the bundled corpus
    rnn sample --temp 0.8       write text with the best model of the last run
    rnn gradcheck               check every analytic gradient numerically
    """
    ctx.obj = {"debug": debug}


def announce_compile() -> None:
    """Numba compiles the kernels on the first run and caches them beside the code."""
    kernels = os.path.join(os.path.dirname(__file__), "kernels", "__pycache__")
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    has_cache = any(name.endswith(".nbi") for d in (kernels, cache_dir) if d and os.path.isdir(d)
                    for name in os.listdir(d))
    if not has_cache:
        from rnncli import ui

        ui.notice("Compiling the Numba kernels (first run only; cached afterwards)...")


# ---------------------------------------------------------------- gradcheck

@main.command(context_settings=CONTEXT)
@click.option("--cell", "cells", type=click.Choice(CELLS), multiple=True,
              help="Cell to check (repeat for several).  [default: all]")
@click.option("--layers", "layers", type=click.IntRange(min=1), multiple=True,
              help="Number of stacked layers (repeat for several).  [default: 1 and 2]")
@click.option("--hidden-size", type=click.IntRange(min=1), default=GradcheckConfig.hidden_size, help="Hidden units per layer.")
@click.option("--embedding-size", type=click.IntRange(min=0), default=GradcheckConfig.embedding_size, help="Input embedding size; 0 checks one-hot input.")
@click.option("--vocab-size", type=click.IntRange(min=2), default=GradcheckConfig.vocab_size, help="Vocabulary (and output) size.")
@click.option("--seq-len", type=click.IntRange(min=1), default=GradcheckConfig.seq_len, help="Time steps of BPTT.")
@click.option("--batch-size", type=click.IntRange(min=1), default=GradcheckConfig.batch_size, help="Sequences in the batch.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=GradcheckConfig.activation, help="Vanilla RNN activation.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.25, help="Dropout rate; the mask is drawn once and held fixed.")
@click.option("--samples", type=click.IntRange(min=1), default=GradcheckConfig.samples, help="Entries checked per tensor (all entries when the tensor is this small).")
@click.option("--eps", type=click.FloatRange(min=0, min_open=True), default=GradcheckConfig.eps, help="Finite-difference step.")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=GradcheckConfig.tol, help="Maximum relative error to pass.")
@click.option("--seed", type=int, default=GradcheckConfig.seed, help="Random seed for the model, data and sampled entries.")
@click.option("--classifier/--no-classifier", default=GradcheckConfig.classifier, help="Also check the classifier (pooling, dense layers, masking).")
def gradcheck(cells, layers, hidden_size, embedding_size, vocab_size, seq_len, batch_size,
              activation, dropout, samples, eps, tol, seed, classifier):
    """Check every analytic gradient against finite differences.

    Exits 0 when every parameter passes, 1 otherwise.

    \b
    Example:  rnn gradcheck --cell lstm --layers 2 --seq-len 6
    """
    cfg = GradcheckConfig(cells=tuple(cells) or CELLS, layers=tuple(layers) or (1, 2),
                          hidden_size=hidden_size, embedding_size=embedding_size,
                          vocab_size=vocab_size, seq_len=seq_len, batch_size=batch_size,
                          activation=activation, seed=seed, eps=eps, tol=tol, samples=samples,
                          classifier=classifier).validate()
    announce_compile()
    from rnncli import ui
    from rnncli.gradcheck import run_gradcheck

    result = run_gradcheck(cfg, dropout=dropout)
    ui.print_result_table(ui.gradcheck_table(result))
    failed = [r for r in result.rows if not r.passed]
    if failed:
        ui.notice(f"FAILED: {len(failed)} of {len(result.rows)} parameter tensors exceed tolerance {tol:g}")
        sys.exit(1)
    ui.notice(f"All {len(result.rows)} parameter tensors pass (tolerance {tol:g}).")
