"""Reading files safely: regular files only, each read bounded, one clear error line.
"""

from __future__ import annotations

import os
import stat

from rnncli.errors import CorpusError, TargetError


def open_input(path: str, wanted: str):
    """path opened for reading bytes, or one CorpusError line saying why not (not a regular
    file, a directory, unreadable) and what to give instead (`wanted`, e.g. "a text file")."""
    what = special_file(path)
    if what:
        raise CorpusError(f"{path}: is {what}, not a regular file; give {wanted}") from None
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise CorpusError(f"{path}: is a directory; give {wanted}") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from None


def special_file(path: str) -> str:
    """What path is when it is not a regular file ("a directory", "a named pipe", ...), else "".

    Devices, pipes and sockets can block or never end (`/dev/zero`, a FIFO without a writer),
    so inputs are refused unless they are regular files (links to regular files are fine).
    A path that cannot be examined is left to whoever opens it, which reports why.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return ""
    if stat.S_ISREG(mode):
        return ""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def check_target(path: str, what: str) -> None:
    """Every writer's rule: it may create a new file or replace a regular one, nothing else.
    An atomic write renames its temporary file over the target, which would turn a device
    (`-o /dev/null` as root), a pipe or a socket into a regular file, so those are refused
    before anything is written, as are directories."""
    kind = special_file(path)
    if kind:
        raise TargetError(f"{path}: is {kind}; {what} is written only to a regular file or a new one")
