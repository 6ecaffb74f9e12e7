"""Scalar activations and their derivatives, written in terms of the output where that is cheaper.

Constants are built from the argument's own type (``type(x)(1)`` is not available in nopython
mode, so callers pass ``one``): a bare Python float literal would promote float32 math to float64.
"""

import numpy as np
from numba import njit

TANH, RELU, SIGMOID = 0, 1, 2  # vanilla RNN activation codes, in config.ACTIVATIONS order


@njit(cache=True, error_model="numpy")
def sigmoid(x, one):
    return one / (one + np.exp(-x))


@njit(cache=True, error_model="numpy")
def activate(a, code, one):
    if code == TANH:
        return np.tanh(a)
    if code == RELU:
        return a if a > 0 else a * 0
    return sigmoid(a, one)


@njit(cache=True, error_model="numpy")
def activation_grad(y, code, one):
    """d act / d a, from the output y = act(a)."""
    if code == TANH:
        return one - y * y  # through tanh: 1 - h²
    if code == RELU:
        return one if y > 0 else y * 0
    return y * (one - y)  # through sigmoid: s(1 - s)
