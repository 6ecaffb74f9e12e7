"""The output side of the error boundary: what happens when stdout or stderr cannot be written.

Results go to stdout and everything else to stderr, and either may fail under a command that
has already done its work: a full disk (`> /dev/full`), a closed descriptor (`>&-`), a reader
that went away (`| head -1`), an encoding that cannot hold the text (`PYTHONIOENCODING=ascii`).
The rules, applied to every command at once by wrapping the two streams:

* a closed pipe on stdout ends the command quietly with 141 (128 + SIGPIPE), as `cat` does;
* any other failure to write a result is one `Error:` line on stderr and exit 1;
* an encoding that cannot hold the result switches stdout to UTF-8, with one note on stderr;
* stderr carries only diagnostics: when it cannot be written (the terminal or pipe went away),
  they are dropped and the command goes on, so a training run keeps training and saving.
"""

from __future__ import annotations

import errno
import os
import sys

from rnncli.errors import RnnError

SIGPIPE_EXIT = 141


class OutputError(RnnError):
    """stdout could not be written: the results did not reach their reader."""


class ClosedPipe(Exception):
    """stdout's reader went away; not an error, the command just ends."""


def _is_pipe_closed(e: OSError) -> bool:
    return isinstance(e, BrokenPipeError) or e.errno in (errno.EPIPE, errno.ECONNRESET)


class ResultStream:
    """stdout for results: failures become ClosedPipe or one OutputError naming the cause."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):  # encoding, buffer, isatty, fileno... of the real stream
        if self._stream is None:
            raise OutputError("standard output is closed; results cannot be written (run without >&-)")
        return getattr(self._stream, name)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def write(self, text: str) -> int:
        if self._stream is None:
            raise OutputError("standard output is closed; results cannot be written (run without >&-)")
        try:
            return self._stream.write(text)
        except UnicodeEncodeError:
            return self._write_as_utf8(text)
        except OSError as e:
            raise self._failure(e) from None

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as e:
            raise self._failure(e) from None

    def _write_as_utf8(self, text: str) -> int:
        encoding = getattr(self._stream, "encoding", "?")
        reconfigure = getattr(self._stream, "reconfigure", None)
        if reconfigure is None:
            raise OutputError(f"standard output's encoding ({encoding}) cannot hold the text; "
                              f"set PYTHONIOENCODING=utf-8") from None
        self._stream.flush()
        reconfigure(encoding="utf-8")
        note(f"note: standard output's encoding ({encoding}) cannot hold the text; writing UTF-8")
        return self._stream.write(text)

    @staticmethod
    def _failure(e: OSError) -> Exception:
        if _is_pipe_closed(e):
            return ClosedPipe()
        return OutputError(f"cannot write the results to standard output: {e.strerror or e}")


class DiagnosticStream:
    """stderr for progress and messages: once it cannot be written, it is dropped."""

    def __init__(self, stream):
        self._stream = stream
        self.lost = stream is None

    def __getattr__(self, name):
        return getattr(self._stream if self._stream is not None else sys.__stderr__, name)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return not self.lost and self._stream.isatty()

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except UnicodeEncodeError:
                return self._stream.write(text.encode(self._stream.encoding or "ascii", "replace")
                                          .decode(self._stream.encoding or "ascii"))
            except (OSError, ValueError):
                self.lost = True
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.lost = True


def note(message: str) -> None:
    sys.stderr.write(message + "\n")


def install() -> tuple:
    """Wrap sys.stdout and sys.stderr by the rules above; returns what to restore."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, ResultStream):
        sys.stdout = ResultStream(sys.stdout)
    if not isinstance(sys.stderr, DiagnosticStream):
        sys.stderr = DiagnosticStream(sys.stderr)
    return saved


def finish() -> int | None:
    """Flush the results; SIGPIPE_EXIT when their reader went away, OutputError when they could
    not be written, None when all is well."""
    try:
        sys.stdout.flush()
    except ClosedPipe:
        return quiet_after_closed_pipe()
    return None


def quiet_after_closed_pipe() -> int:
    """Point stdout at /dev/null so the interpreter's own flush at exit does not complain."""
    if getattr(sys.stdout, "_stream", None) is not sys.__stdout__:
        return SIGPIPE_EXIT  # a stream of the caller's (a test runner's): not ours to redirect
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass
    return SIGPIPE_EXIT
