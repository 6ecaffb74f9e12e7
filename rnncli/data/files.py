"""Reading files safely: regular files only, each read bounded, one clear error line.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

from rnncli.errors import CorpusError, RnnError, TargetError


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


def read_small_text(path: str, wanted: str, limit: int, too_large: str, error=CorpusError) -> str:
    """The whole of a small UTF-8 file (a settings file, a prime): a regular file (open_input)
    of at most `limit` bytes, read bounded; larger is one `error` line ending with too_large
    (what to do instead), as is a byte that is not UTF-8."""
    with open_input(path, wanted) as f:
        try:
            raw = f.read(limit + 1)
        except OSError as e:
            raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > limit:
        raise error(f"{path}: larger than {limit >> 20} MiB; {too_large}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 at byte {e.start} (0x{raw[e.start]:02x}); re-save it as UTF-8") from None


def special_file(path: str, follow_links: bool = True) -> str:
    """What path is when it is not a regular file ("a directory", "a named pipe", ...), else "".

    Devices, pipes and sockets can block or never end (`/dev/zero`, a FIFO without a writer),
    so inputs are refused unless they are regular files (links to regular files are fine).
    With follow_links False a link is "a symbolic link" too: for files written in place, where
    a link would send the writes outside the folder. A path that cannot be examined is left to
    whoever opens it, which reports why.
    """
    try:
        mode = os.stat(path).st_mode if follow_links else os.lstat(path).st_mode
    except (OSError, ValueError):
        return ""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
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


def replace_file(path: str, data: bytes, what: str, error=RnnError) -> str:
    """Atomically write data to path (a new file or a regular one, see check_target): a
    temporary file beside it, synced, then renamed over it, so a reader sees the old file or
    the new one, never half of one. A failure to write is one `error` line naming path and
    `what`; the previous file, if any, is left as it was. Returns path."""
    check_target(path, what)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes files private; these are ordinary
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        if isinstance(e, OSError):
            raise error(f"{path}: cannot write {what} ({e.strerror or e}); "
                        f"the previous file, if any, is unchanged") from None
        raise
    return path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_in_place(path: str, what: str, append: bool = False) -> int:
    """A descriptor of path opened for reading and writing in place (created when new; with
    append, for appending): the files a run keeps open in its folder, its lock and its log.
    Anything but a regular file, or a link, is a TargetError naming `what`, checked before the
    open and again on what was opened, so nothing put there in between is written through."""
    kind = special_file(path, follow_links=False)
    if kind:
        raise TargetError(f"{path}: is {kind}; {what} is written only to a regular file or a new one")
    flags = os.O_RDWR | os.O_CREAT | (os.O_APPEND if append else 0)
    try:
        # O_NONBLOCK: a FIFO put there between the check and the open must not block us;
        # O_NOFOLLOW: nor may a link send the writes elsewhere
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise TargetError(f"{path}: cannot open {what} ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TargetError(f"{path}: is not a regular file; {what} is written only to one")
    return fd


def unusable_input(path: str) -> str:
    """Why path cannot be read as an input ("is not there", "is a named pipe, not a regular
    file", "cannot be read (Permission denied)"), or "" when it can. For paths that come from
    a file rather than from the user (a checkpoint's recorded corpus): they get the same rule a
    path on the command line gets, checked before anything is opened."""
    if not os.path.lexists(path):
        return "is not there"
    kind = special_file(path)
    if kind:
        return f"is {kind}, not a regular file"
    if not os.path.exists(path):
        return "is a link to nothing"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return ""


def unusable_recorded_input(path) -> str:
    """unusable_input for a path a file recorded (a checkpoint's corpus or training file): it must
    also be absolute, as rnncli records them, so that it never depends on where rnncli runs."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return "is not an absolute path, as recorded ones are"
    return unusable_input(path)


LOCK_NAME = ".lock"


class FolderLock:
    """One writer per run folder: an advisory lock (flock) on FOLDER/.lock, held for the life of
    the process (the kernel drops it when the process ends, however it ends). The file holds the
    holder's PID, so the refused process can say who has the folder. The file stays: removing it
    would let a third process lock a fresh file while the second still holds the old one."""

    def __init__(self, folder: str, what: str = "run folder"):
        self.folder, self.what = folder, what
        self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def acquire(self) -> None:
        import fcntl  # POSIX only, so imported where it is used

        path = os.path.join(self.folder, LOCK_NAME)
        fd = open_in_place(path, f"the {self.what}'s lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RnnError(f"{self.folder}: the {self.what} is in use by {who}; one run writes a "
                           f"folder at a time (wait for it to end, or work on a copy)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None
