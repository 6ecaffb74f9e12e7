"""Shared fixtures. Numba compiles each kernel on its first call, which can take seconds, so
hypothesis runs without a per-example deadline."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("rnncli", deadline=None)
settings.load_profile("rnncli")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def corpus_file(tmp_path, tiny_corpus) -> str:
    """tiny_corpus four times over, as a file."""
    path = tmp_path / "corpus.txt"
    path.write_text(tiny_corpus * 4, encoding="utf-8")
    return str(path)


@pytest.fixture
def tiny_corpus() -> str:
    """Accented English and French, with guillemets, curly quotes and a non-breaking space."""
    return (
        "Le café de la gare: Zoé a dit « déjà ! » puis elle est partie.\n"
        "The naïve fiancée ordered crème brûlée at the café; the maître d’hôtel smiled.\n"
        "Où est l’hôpital ? À gauche, après la forêt et le théâtre.\n"
        "Noël à Montréal: façade, cœur, garçon, élève, Ça va\u00a0?\n"
        "She said “voilà” and left — résumé in hand, señor.\n"
    )


@pytest.fixture
def data_dir() -> Path:
    """The shared data sets (tinyshakespeare, GloVe, R8, WebKB) beside the repository."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path
