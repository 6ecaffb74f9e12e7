"""rnncli: recurrent neural networks on the CPU, from the command line."""

from rnncli.engine import openblas as _openblas

__version__ = "0.1.0"

# Before anything loads SciPy's OpenBLAS, which reads its kernel choice once, at load time.
_openblas.configure_openblas()
