"""The `rnn` group and its one error boundary: the project's errors become one `Error:` line.
"""

from __future__ import annotations

import sys

import click

from rnncli import __version__
from rnncli.cli import streams
from rnncli.cli.options import CONTEXT
from rnncli.errors import RnnError


INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for Ctrl-C


class RnnGroup(click.Group):
    """The one error boundary. The project's own errors become one `Error: ...` line and exit
    code 1, usage errors exit 2 (Click), an interruption anywhere exits 130, and a failure to
    write the output follows the rules of cli/streams.py. Anything else is a bug and keeps its
    traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        saved = streams.install()
        try:
            code = self._run(args, prog_name, complete_var, **extra)
        finally:
            sys.stdout, sys.stderr = saved
        sys.exit(code)

    def _run(self, args, prog_name, complete_var, **extra) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            return streams.finish() or (rv if isinstance(rv, int) else 0)
        except streams.ClosedPipe:
            return streams.quiet_after_closed_pipe()
        except streams.OutputError as e:  # raised after the command, by the last flush
            click.echo(f"Error: {e}", err=True)
            return 1
        except click.ClickException as e:
            e.show()
            return e.exit_code
        except (click.Abort, KeyboardInterrupt, EOFError):
            streams.note("Interrupted.")
            return INTERRUPTED_EXIT
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            return streams.finish() or code

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RnnError as e:
            if (ctx.obj or {}).get("debug"):
                raise
            if getattr(e, "silent", False):  # another MPI rank reports this error
                ctx.exit(1)
            failure = click.ClickException(str(e))
            failure.exit_code = e.exit_code
            raise failure from None


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
