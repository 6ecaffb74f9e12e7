"""The `rnn` group and its one error boundary: the project's errors become one `Error:` line.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import click

from rnncli import __version__
from rnncli.cli import streams
from rnncli.cli.options import CONTEXT, InputFile
from rnncli.errors import ConfigError, RnnError, StoppedAtOnce


INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for Ctrl-C
COMPILER_RETRY_SECONDS = 0.05  # how soon an interrupt that landed in Numba's compiler is sent again
CONFIG_MAX_BYTES = 1 << 20  # a settings file is a few lines


def _interrupt(signum, frame):
    """Ctrl-C as Python's default (KeyboardInterrupt), except inside Numba's compiler: LLVM calls
    back into Python there, and an exception raised in such a callback is dropped by ctypes with
    LLVM half done (the interrupt lost, or the process killed by the signal or a segfault later);
    the import machinery drops it likewise in its callbacks. There the signal is sent again a
    moment later, when the compiler or the import has returned."""
    while frame is not None:
        name = frame.f_code.co_filename
        if f"{os.sep}numba{os.sep}" in name or f"{os.sep}llvmlite{os.sep}" in name or name.startswith("<frozen importlib"):
            threading.Timer(COMPILER_RETRY_SECONDS, os.kill, (os.getpid(), signum)).start()
            return
        frame = frame.f_back
    raise KeyboardInterrupt


def _install(signum, handler):
    """signal.signal where it can be set (the main thread); the handler it replaced, or None."""
    if handler is None:
        return None
    try:
        return signal.signal(signum, handler)
    except ValueError:  # not the main thread: the caller's handling stays
        return None


class RnnGroup(click.Group):
    """The one error boundary. The project's own errors become one `Error: ...` line and exit
    code 1, usage errors exit 2 (Click), an interruption anywhere exits 130, and a failure to
    write the output follows the rules of cli/streams.py. Anything else is a bug and keeps its
    traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        saved = streams.install()
        previous = _install(signal.SIGINT, _interrupt)
        try:
            code = self._run(args, prog_name, complete_var, **extra)
        finally:
            sys.stdout, sys.stderr = saved
            _install(signal.SIGINT, previous)
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
        except (click.Abort, KeyboardInterrupt, EOFError) as e:
            stopped = e if isinstance(e, StoppedAtOnce) else e.__cause__  # Click wraps it in Abort
            streams.note(f"Interrupted: {stopped}" if isinstance(stopped, StoppedAtOnce) else "Interrupted.")
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
@click.option("--config", "config_file", type=InputFile(), default=None, metavar="FILE.toml", help="Option values for the commands, a TOML table per command ([train], [sample], [classify.train], ...); the command line wins.")
@click.pass_context
def main(ctx, debug, config_file):
    """Train, sample and check recurrent neural networks on the CPU.

    \b
    rnn train                   train a character model on the bundled corpus
    rnn sample --temp 0.8       write text with the best model of the last run
    rnn eval best.npz text.txt  a model's loss on any text (bits/char, perplexity)
    rnn info best.npz           what a checkpoint holds: model, vocabulary, run, scores
    rnn gradcheck               check every analytic gradient numerically
    rnn classify train FILE     label texts (train, then eval or predict)
    rnn bench                   measure training and sampling speed here
    rnn report                  an HTML report of the last run (curves, units, gradients)
    rnn export best.npz --html p.html  the model as a web page (or --onnx FILE)
    rnn sweep FILE --grid lr=1e-3,3e-3   many trainings (local or Dask), ranked
    """
    ctx.obj = {"debug": debug}
    if config_file is not None:
        # Click looks up every parameter it is not given in the context's default_map, and a
        # command's context takes its table of its parent's map
        ctx.default_map = config_defaults(config_file, ctx.command)


def config_defaults(path: str, group: click.Group) -> dict:
    """A TOML file of option values as Click's default_map: {command: {parameter name: value}},
    nested for the commands of a group ([classify.train]). Keys are option names without their
    dashes (hidden-size or hidden_size, also the short ones: n) or argument names. An unknown
    command or key is a usage error naming the file and the key; a file that cannot be read, is
    larger than CONFIG_MAX_BYTES, or is not UTF-8 or not TOML is one error line."""
    from rnncli.data.files import read_small_text

    text = read_small_text(path, "a TOML file", CONFIG_MAX_BYTES, "a settings file holds a few option values",
                           ConfigError)
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError("--config needs Python 3.11, or the tomli package (pip install tomli)") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not TOML ({e})") from None
    return _command_defaults(path, group, table, [])


def _command_defaults(path: str, command: click.Command, table: dict, where: list) -> dict:
    """table's values by parameter name for command (where: the command's names so far)."""
    out = {}
    spelled = _spellings(command) if where else {}  # the group itself takes no values from the file
    for key, value in table.items():
        if isinstance(command, click.Group) and isinstance(value, dict):
            sub = command.commands.get(key)
            if sub is None:
                known = ", ".join(f"[{'.'.join(where + [c])}]" for c in sorted(command.commands))
                raise click.UsageError(f"{path}: [{'.'.join(where + [key])}] is not a command of "
                                       f"`rnn{''.join(' ' + w for w in where)}`; the tables are {known}")
            out[key] = _command_defaults(path, sub, value, where + [key])
            continue
        if not where:
            raise click.UsageError(f"{path}: {key!r} is outside a command's table; put it under one, "
                                   f"e.g. [train]")
        found = spelled.get(key.replace("-", "_"))
        if found is None:
            raise click.UsageError(f"{path}: [{'.'.join(where)}] has no option {key!r}; "
                                   f"`rnn {' '.join(where)} --help` lists them")
        param, negated = found
        if param.name in out:
            raise click.UsageError(f"{path}: [{'.'.join(where)}] sets {param.name.replace('_', '-')!r} twice")
        if isinstance(value, dict):
            raise click.UsageError(f"{path}: [{'.'.join(where)}] {key!r} is a table; give it a value")
        if negated:
            if not isinstance(value, bool):
                raise click.UsageError(f"{path}: [{'.'.join(where)}] {key!r} takes true or false")
            value = not value
        if getattr(param, "multiple", False) and not isinstance(value, list):
            value = [value]
        out[param.name] = value
    return out


def _spellings(command: click.Command) -> dict:
    """Every way a key may name one of command's parameters -> (parameter, negated): its name,
    and each of its options without the dashes, with - read as _ (--no-x style ones negated).
    --help and --version are not settings."""
    found = {}
    for param in command.params:
        if param.is_eager or not param.expose_value:
            continue
        found[param.name] = (param, False)
        for opt in getattr(param, "opts", []):
            found[opt.lstrip("-").replace("-", "_")] = (param, False)
        for opt in getattr(param, "secondary_opts", []):
            found[opt.lstrip("-").replace("-", "_")] = (param, True)
    return found
