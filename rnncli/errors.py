"""The project's own exceptions. The CLI turns any RnnError into one line and its exit code:
1 for bad data (the default), 2 for a bad request (usage)."""


class RnnError(Exception):
    """Base class: a problem the user can fix (bad file, bad option, diverged run)."""

    exit_code = 1


class CorpusError(RnnError):
    """A text or labelled-data file that cannot be used."""


class CheckpointError(RnnError):
    """A checkpoint that cannot be read, is not ours, or does not match its metadata."""


class ConfigError(RnnError):
    """Settings that do not fit together, or arrays of the wrong shape or kind."""


class DivergedError(RnnError):
    """Training produced a non-finite loss."""


class UsageError(RnnError):
    """A request that is wrong as given, whatever the data (a sweep of a billion trials): exit 2,
    as Click's own usage errors."""

    exit_code = 2


class TargetError(UsageError):
    """An output path that may not be written: a device, pipe, socket or directory, or a file
    that belongs to something else. A usage error: the command was pointed at the wrong place."""


class StoppedAtOnce(KeyboardInterrupt):
    """A second interrupt ended a run at once, between two checkpoints: the message says which
    checkpoint is the last one kept. Exit 130, as any interruption."""
