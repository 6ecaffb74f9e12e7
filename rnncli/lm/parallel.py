"""Data-parallel training over MPI (`mpiexec -n N rnn train ...`): the allreduce and the rank rules.

Imported only when mpiexec started this process as one of several ranks (train._data_parallel).
Every rank holds the whole model, optimizer and random generator, and draws exactly what one
process would draw (dropout masks and state resets for the whole batch), so all ranks stay
identical without sending parameters. Each step:

* rank r reads columns [r·B/N, (r+1)·B/N) of the step's B streams: its share of the batch;
* one allreduce (sum) of one buffer carries every gradient, each rank's new hidden states in its
  own slot (zeros elsewhere, so the sum is the whole batch's state, exactly), the loss, rank 0's
  clock and the ranks' stop requests; gradients and loss are then divided by N, which gives the
  whole batch's mean, as one process computes it, up to float round-off;
* every rank clips and applies the same update; time limits and Ctrl-C follow the agreed clock
  and votes, so all ranks stop at the same step.

Rank 0 alone reports and writes checkpoints; a checkpoint is the same whatever N wrote it, so a
run can resume with another N. Errors every rank sees alike (a corpus that differs between ranks,
a batch that does not split) are one line from rank 0; the others exit quietly.

A rank that dies: with MPICH's `mpiexec -disable-auto-cleanup`, the survivors are told by
SIGUSR1 and each exits with one line saying the last checkpoint is valid; by default mpiexec
kills them at once and prints its own notice. Checkpoints are written to a temporary file and
renamed, so the last one is valid either way. The allreduce is polled (Iallreduce + Test) so
these signals are handled while waiting, and MPI is finalized only after a clean run, so a lost
peer cannot hang the exit.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time

import numpy as np

from rnncli.errors import ConfigError, CorpusError, RnnError

MPI_HINT = "pip install 'rnncli[mpi]'"


class Silent(RnnError):
    """An error rank 0 reports for every rank: the others exit 1 without a line of their own."""

    silent = True


class PeerLost(RnnError):
    """Another rank stopped: this one cannot go on alone."""


class DataParallel:
    def __init__(self):
        try:
            import mpi4py

            mpi4py.rc.finalize = False  # close() finalizes after a clean run; see the module notes
            from mpi4py import MPI
        except ImportError:
            raise ConfigError(f"mpiexec started this process as one of several ranks, but mpi4py is not "
                              f"installed; {MPI_HINT}") from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.elapsed = 0.0  # rank 0's seconds since the start, as of the last step
        self.stop = False  # some rank asked to stop (Ctrl-C), as of the last step
        self.run_dir = None
        self.share = slice(0, 0)
        self._buffer = None
        signal.signal(signal.SIGUSR1, self._peer_lost)  # MPICH's notice that a process failed
        signal.signal(signal.SIGTERM, self._terminated)

    @property
    def root(self) -> bool:
        return self.rank == 0

    def _kept(self) -> str:
        if self.run_dir is None:
            return "no checkpoint was written"
        latest = f"{self.run_dir}/latest.npz"
        return f"the last checkpoint, {latest}, is valid; continue with `mpiexec -n N rnn train --resume {latest}`"

    def _peer_lost(self, signum, frame):
        raise PeerLost(f"rank {self.rank}: another of the {self.size} ranks stopped, so training cannot go on; "
                       f"{self._kept()}")

    def _terminated(self, signum, frame):
        raise PeerLost(f"rank {self.rank}: terminated; {self._kept()}")

    def threads_per_rank(self) -> int:
        """This host's cores divided among the ranks running on it (at least 1)."""
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED).Get_size()
        return max(1, (os.cpu_count() or 1) // local)

    def fail(self, error, message: str):
        """Raise a collective error: the message from rank 0, silence from the others."""
        raise (error(message) if self.root else Silent(message))

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def check_corpus(self, corpus) -> None:
        """Every rank must read the same text: same length, vocabulary and first and last MiB of ids."""
        ids = corpus.ids
        head, tail = np.asarray(ids[:1 << 20]), np.asarray(ids[-(1 << 20):])
        mine = (len(corpus), hashlib.sha256(corpus.vocab.chars.encode("utf-8")).hexdigest(),
                hashlib.sha256(head.tobytes() + tail.tobytes()).hexdigest())
        every = self.comm.allgather(mine)
        bad = [r for r, f in enumerate(every) if f != every[0]]
        if bad:
            r = bad[0]
            what = (f"{every[r][0]:,} characters against {every[0][0]:,}" if every[r][0] != every[0][0]
                    else "another vocabulary" if every[r][1] != every[0][1] else "other text")
            self.fail(CorpusError, f"rank {r}'s corpus differs from rank 0's ({what}); every rank must read "
                                   f"the same file")

    def split(self, batch_size: int) -> None:
        """This rank's columns of the batch; the batch must split evenly."""
        if batch_size % self.size:
            self.fail(ConfigError, f"batch-size: {batch_size} streams do not split evenly over {self.size} ranks; "
                                   f"give a multiple of {self.size}")
        b = batch_size // self.size
        self.share = slice(self.rank * b, (self.rank + 1) * b)

    def part(self, inputs: np.ndarray, targets: np.ndarray, masks):
        """This rank's columns of the step's (T, B) inputs and targets and (T, B, H) dropout masks."""
        s = self.share
        masks = None if masks is None else [np.ascontiguousarray(m[:, s]) for m in masks]
        return np.ascontiguousarray(inputs[:, s]), np.ascontiguousarray(targets[:, s]), masks

    def average(self, grads: dict, loss: float, new_state: np.ndarray, batch_size: int, elapsed: float,
                stop: bool) -> tuple[float, np.ndarray]:
        """One allreduce: grads become the mean over ranks (in place); returns the mean loss and
        the whole batch's new state (layers, k, B, H). Sets self.elapsed and self.stop."""
        L, k, b, H = new_state.shape
        sizes = [g.size for g in grads.values()]
        n_grads, n_state = sum(sizes), L * k * batch_size * H
        if self._buffer is None or self._buffer.size != n_grads + n_state + 3:
            self._buffer = np.empty(n_grads + n_state + 3, np.float64)
        buf = self._buffer
        at = 0
        for g, n in zip(grads.values(), sizes):
            buf[at:at + n] = g.ravel()
            at += n
        slots = buf[at:at + n_state].reshape(L, k, batch_size, H)
        slots[...] = 0.0
        slots[:, :, self.share] = new_state
        buf[-3:] = (loss, elapsed if self.root else 0.0, 1.0 if stop else 0.0)
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        while not request.Test():  # polled, so signals (a lost peer, Ctrl-C) are handled meanwhile
            time.sleep(0.0002)
        at = 0
        for g, n in zip(grads.values(), sizes):
            g[...] = (buf[at:at + n] / self.size).reshape(g.shape)
            at += n
        self.elapsed, self.stop = float(buf[-2]), bool(buf[-1] > 0)
        return float(buf[-3] / self.size), slots.astype(new_state.dtype)

    def close(self) -> None:
        """Finalize MPI after a clean run (every rank reaches this at the same step)."""
        if not self.MPI.Is_finalized():
            self.comm.Barrier()
            self.MPI.Finalize()
