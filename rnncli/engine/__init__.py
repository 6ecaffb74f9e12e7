"""The numerical engine: parameters, the cell registry, stacked forward and backward passes,
optimizers, the training step, threads and OpenBLAS set-up, FLOP counts, and the Numba kernels.
It knows nothing of language models or classifiers as products."""
