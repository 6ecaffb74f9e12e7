"""In-place optimizer updates and global-norm clipping over flat (1-D, contiguous) views.

Scalars arrive as Python floats (float64); each update converts once to the array's dtype.
Weight decay is L2 added to the gradient (for adam it is decoupled, as in AdamW).
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def sum_squares(g, chunk, sums, c0, c1):
    """sums[c] = Σ g[k]² over the chunk-long pieces c = c0..c1-1 of g, in float64. The pieces are
    fixed, so threads that split them, then add the pieces' sums in order, get the same norm as
    one thread."""
    n = g.shape[0]
    for c in range(c0, c1):
        s = 0.0
        for k in range(c * chunk, min(n, (c + 1) * chunk)):
            s += g[k] * g[k]
        sums[c] = s


@njit(cache=True)
def scale(g, factor):
    f = g.dtype.type(factor)
    for k in range(g.shape[0]):
        g[k] *= f


@njit(cache=True, error_model="numpy")
def sgd(p, g, velocity, lr, momentum, weight_decay):
    """v = μ v + (g + λ p);  p -= lr v."""
    lr_, mu, wd = p.dtype.type(lr), p.dtype.type(momentum), p.dtype.type(weight_decay)
    for k in range(p.shape[0]):
        velocity[k] = mu * velocity[k] + g[k] + wd * p[k]
        p[k] -= lr_ * velocity[k]


@njit(cache=True, error_model="numpy")
def adagrad(p, g, sum_sq, lr, eps, weight_decay):
    """m += g²;  p -= lr g / (√m + ε)   (min-char-rnn's choice)."""
    lr_, eps_, wd = p.dtype.type(lr), p.dtype.type(eps), p.dtype.type(weight_decay)
    for k in range(p.shape[0]):
        gk = g[k] + wd * p[k]
        sum_sq[k] += gk * gk
        p[k] -= lr_ * gk / (np.sqrt(sum_sq[k]) + eps_)


@njit(cache=True, error_model="numpy")
def rmsprop(p, g, mean_sq, lr, rho, eps, weight_decay):
    """m = ρ m + (1-ρ) g²;  p -= lr g / (√m + ε)."""
    lr_, rho_, eps_, wd = p.dtype.type(lr), p.dtype.type(rho), p.dtype.type(eps), p.dtype.type(weight_decay)
    one = p.dtype.type(1.0)
    for k in range(p.shape[0]):
        gk = g[k] + wd * p[k]
        mean_sq[k] = rho_ * mean_sq[k] + (one - rho_) * gk * gk
        p[k] -= lr_ * gk / (np.sqrt(mean_sq[k]) + eps_)


@njit(cache=True, error_model="numpy", nogil=True)
def adam(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay):
    """Adam with bias correction; step counts from 1. Decoupled weight decay: p -= lr λ p."""
    corr1 = 1.0 - beta1**step
    corr2 = 1.0 - beta2**step
    lr_t = p.dtype.type(lr * np.sqrt(corr2) / corr1)
    b1, b2 = p.dtype.type(beta1), p.dtype.type(beta2)
    eps_t = p.dtype.type(eps * np.sqrt(corr2))
    decay = p.dtype.type(1.0 - lr * weight_decay)
    one = p.dtype.type(1.0)
    for k in range(p.shape[0]):
        gk = g[k]
        m[k] = b1 * m[k] + (one - b1) * gk
        v[k] = b2 * v[k] + (one - b2) * gk * gk
        p[k] = p[k] * decay - lr_t * m[k] / (np.sqrt(v[k]) + eps_t)
