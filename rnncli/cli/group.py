"""The `rnn` group and its one error boundary: the project's errors become one `Error:` line.
"""

from __future__ import annotations

import click

from rnncli import __version__
from rnncli.cli.options import CONTEXT
from rnncli.errors import RnnError


class RnnGroup(click.Group):
    """Turns the project's own errors into one `Error: ...` line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RnnError as e:
            if (ctx.obj or {}).get("debug"):
                raise
            if getattr(e, "silent", False):  # another MPI rank reports this error
                ctx.exit(1)
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
    rnn eval best.npz text.txt  a model's loss on any text (bits/char, perplexity)
    rnn gradcheck               check every analytic gradient numerically
    rnn classify train FILE     label texts (train, then eval or predict)
    rnn bench                   measure training and sampling speed here
    rnn report                  an HTML report of the last run (curves, units, gradients)
    rnn sweep FILE --grid lr=1e-3,3e-3   many trainings (local or Dask), ranked
    """
    ctx.obj = {"debug": debug}
