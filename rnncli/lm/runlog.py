"""A run's log: one row per evaluation in RUN/metrics.jsonl and RUN/metrics.csv, and with
--tensorboard the same numbers as TensorBoard events under RUN/tensorboard/.

Rows are appended and handed to the operating system at each evaluation, one whole line per
write, after the checkpoints of that evaluation are saved: a killed process leaves at most a
partial last line, which readers skip and the next resumed run cuts off. A resumed run writes on
in the same files, first cutting every row past its checkpoint's step, so the log describes the
run the checkpoint continues and not the steps it lost.

The log reads nothing the run uses and draws no random numbers: checkpoints are the same with
and without it.
"""

from __future__ import annotations

import json
import math
import os

from rnncli.data.files import open_in_place, special_file
from rnncli.errors import TargetError, UsageError

JSONL, CSV, TENSORBOARD = "metrics.jsonl", "metrics.csv", "tensorboard"
COLUMNS = ("step", "epoch", "seconds", "train_loss", "val_loss", "lr", "chars_per_sec", "is_best")
HEADER = ",".join(COLUMNS) + "\n"
INSTALL_TENSORBOARD = "pip install 'rnncli[tensorboard]'"
# A resumed run scans the log for the first row past its step in blocks of this size.
SCAN_BYTES = 1 << 20


def require_tensorboard() -> None:
    """One usage line when tensorboardX is missing, before the run starts."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise UsageError(f"--tensorboard needs tensorboardX; install it with {INSTALL_TENSORBOARD}") from None


def check_log_targets(run_dir: str, tensorboard: bool = False) -> None:
    """Refuse (TargetError, before the run writes anything) when a log file of run_dir is there
    but is not a regular file, or the TensorBoard folder is there but is not a folder."""
    for name in (JSONL, CSV):
        kind = special_file(os.path.join(run_dir, name), follow_links=False)
        if kind:
            raise TargetError(f"{os.path.join(run_dir, name)}: is {kind}; the run's log is written only to "
                              f"a regular file or a new one (move it away)")
    if tensorboard:
        path = os.path.join(run_dir, TENSORBOARD)
        if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
            raise TargetError(f"{path}: is not a folder; TensorBoard events are written only into a folder "
                              f"of the run (move it away)")


def _row_step(line: bytes, csv: bool):
    """The step a complete log line records, None for a line that is not a row (a header, damage)."""
    try:
        if csv:
            first = line.split(b",", 1)[0]
            return int(first) if first.isdigit() else None
        row = json.loads(line)
        step = row.get("step") if isinstance(row, dict) else None
        return step if type(step) is int else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _cut_offset(fd: int, keep_step: int, csv: bool) -> int | None:
    """Where the rows to keep end: the offset of the first row past keep_step, or of a partial
    last line; None when the whole file stays. Reads one block at a time."""
    offset, pending = 0, b""
    while True:
        block = os.read(fd, SCAN_BYTES)
        if not block:
            return offset if pending else None  # a partial last line: cut it off
        data = pending + block
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            step = _row_step(data[start:end], csv)
            if step is not None and step > keep_step:
                return offset + start
            start = end + 1
        offset += start
        pending = data[start:]


def _open_append(path: str, keep_step: int, csv: bool) -> int:
    """path opened for appending (created when new), rows past keep_step cut off first."""
    fd = open_in_place(path, "the run's log", append=True)
    try:
        cut = _cut_offset(fd, keep_step, csv)
        if cut is not None:
            os.ftruncate(fd, cut)
        if csv and os.fstat(fd).st_size == 0:
            os.write(fd, HEADER.encode())
    except OSError as e:
        os.close(fd)
        raise TargetError(f"{path}: cannot write the run's log ({e.strerror or e})") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _number(v):
    return v if v is None or (isinstance(v, (int, float)) and math.isfinite(v)) else None


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


class RunLog:
    """The log files of one run folder, open for appending while the run holds the folder's lock."""

    def __init__(self, run_dir: str, keep_step: int, tensorboard: bool = False):
        """Open (or create) the log of run_dir, cutting rows past keep_step (0 for a fresh run)."""
        self.run_dir = run_dir
        check_log_targets(run_dir, tensorboard)
        self.fds = []
        self.writer = None
        try:
            self.fds = [_open_append(os.path.join(run_dir, JSONL), keep_step, csv=False)]
            self.fds.append(_open_append(os.path.join(run_dir, CSV), keep_step, csv=True))
            if tensorboard:
                from tensorboardX import SummaryWriter

                # purge_step: events a killed run wrote past the checkpoint are hidden from TensorBoard
                self.writer = SummaryWriter(os.path.join(run_dir, TENSORBOARD),
                                            purge_step=keep_step + 1 if keep_step else None)
        except BaseException:
            self.close()
            raise

    def write(self, step: int, epoch: float, seconds: float, train_loss: float, val_loss: float | None,
              lr: float | None, chars_per_sec: float, is_best: bool) -> dict:
        """Append one evaluation's row to both files (and TensorBoard); returns the row."""
        row = {"step": int(step), "epoch": _number(float(epoch)), "seconds": _number(float(seconds)),
               "train_loss": _number(float(train_loss)), "val_loss": _number(None if val_loss is None else float(val_loss)),
               "lr": _number(None if lr is None else float(lr)), "chars_per_sec": _number(float(chars_per_sec)),
               "is_best": bool(is_best)}
        lines = (json.dumps(row, allow_nan=False) + "\n", ",".join(_csv_value(row[c]) for c in COLUMNS) + "\n")
        for fd, line in zip(self.fds, lines):
            try:
                os.write(fd, line.encode())  # one write per line: a whole row or, if killed, a partial last one
            except OSError as e:
                raise TargetError(f"{self.run_dir}: cannot append to the run's log ({e.strerror or e})") from None
        if self.writer is not None:
            for tag, key in (("loss/train", "train_loss"), ("loss/validation", "val_loss"), ("learning_rate", "lr"),
                             ("chars_per_sec", "chars_per_sec"), ("epoch", "epoch")):
                if row[key] is not None:
                    self.writer.add_scalar(tag, row[key], row["step"], walltime=None)
            self.writer.flush()
        return row

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
