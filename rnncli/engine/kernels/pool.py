"""Max pooling over each text's valid time steps: the classifier's summary of a padded batch.

top (T, B, H) holds the states of B texts side by side; text b is valid for its first
lengths[b] steps, and the steps after that (padding) must not count. One pass over the valid
steps keeps the running maximum and the step it came from, which the backward pass routes the
gradient to; ties go to the earliest step, as numpy's argmax does.
"""

from numba import njit


@njit(cache=True, nogil=True)
def max_over_valid(top, lengths, feat, arg):
    """feat[b, j] = max over t < lengths[b] of top[t, b, j]; arg[b, j] = that t (the first
    one). top (T, B, H); lengths (B,) all ≥ 1; feat (B, H) and arg (B, H) int written."""
    B, H = feat.shape
    for b in range(B):
        best, where = feat[b], arg[b]
        first = top[0, b]
        for j in range(H):
            best[j] = first[j]
            where[j] = 0
        for t in range(1, lengths[b]):
            row = top[t, b]
            for j in range(H):
                # a select, not a branch, so the loop vectorises
                better = row[j] > best[j]
                best[j] = row[j] if better else best[j]
                where[j] = t if better else where[j]
