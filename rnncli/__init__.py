"""rnncli: recurrent neural networks on the CPU, from the command line and from Python.

    import rnncli
    run = rnncli.train("input.txt", max_time=60)     # a Run: folder, history, best model
    lm = rnncli.load(run.best)                        # a LanguageModel
    lm.sample(300, prime="ROMEO:", temperature=0.8)
    clf = rnncli.TextClassifier().fit(texts, labels)  # scikit-learn's estimator interface

See rnncli.api for the whole interface.
"""

from rnncli.engine import openblas as _openblas
from rnncli.errors import CheckpointError, ConfigError, CorpusError, DivergedError, RnnError, TargetError, UsageError

__version__ = "0.1.0"

# Before anything loads SciPy's OpenBLAS, which reads its kernel choice once, at load time.
_openblas.configure_openblas()

_API = ("train", "load", "bundled_texts", "LanguageModel", "TextClassifier", "Run", "Score")
__all__ = ["__version__", *_API, "RnnError", "CorpusError", "CheckpointError", "ConfigError", "DivergedError",
           "TargetError", "UsageError"]


def __getattr__(name: str):
    # The API loads the engine (Numba, NumPy kernels) only when used, so `rnn --help` stays quick.
    if name in _API:
        from rnncli import api

        return getattr(api, name)
    raise AttributeError(f"module 'rnncli' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
