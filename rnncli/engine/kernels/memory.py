"""A streaming read: what the machine's memory (or a cache) delivers, for `rnn bench`'s bound on
sampling, where each character reads every weight once."""

from numba import njit


@njit(cache=True, nogil=True, fastmath=True)
def read_sum(a, lo, hi, passes):
    """Σ a[lo:hi], read `passes` times (float32, 1-D); fastmath lets LLVM keep several vector
    accumulators, so the loop runs at the speed of the loads, not of one dependent add chain.
    The sum is returned only so the reads cannot be dropped."""
    part = a[lo:hi]  # indexed from 0: no negative-index checks, so the loop vectorises
    total = a.dtype.type(0.0)
    for _ in range(passes):
        s = a.dtype.type(0.0)
        for k in range(part.size):
            s += part[k]
        total += s
    return total
