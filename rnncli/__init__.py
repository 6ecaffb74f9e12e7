"""rnncli: recurrent neural networks on the CPU, from the command line."""

__version__ = "0.1.0"
