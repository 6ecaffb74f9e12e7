"""rnncli: recurrent neural networks on the CPU, from the command line."""

from rnncli import blas as _blas

__version__ = "0.1.0"

# Before anything loads SciPy's OpenBLAS, which reads its kernel choice once, at load time.
_blas.configure_openblas()
