"""The project's own exceptions. The CLI turns any RnnError into one line and exit code 1."""


class RnnError(Exception):
    """Base class: a problem the user can fix (bad file, bad option, diverged run)."""


class CorpusError(RnnError):
    """A text or labelled-data file that cannot be used."""


class CheckpointError(RnnError):
    """A checkpoint that cannot be read, is not ours, or does not match its metadata."""


class ConfigError(RnnError):
    """Settings that do not fit together, or arrays of the wrong shape or kind."""


class DivergedError(RnnError):
    """Training produced a non-finite loss."""
