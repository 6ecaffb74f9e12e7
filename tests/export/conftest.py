"""Fixtures of the export tests: tiny trained models (each once per test session), the prefix
the parity tests read, and the Chromium binary."""

import shutil

import pytest
from export_support import MODELS, PREFIX_CHARS, train
from helpers import ACCENTED


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(ACCENTED * 20, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, corpus) -> dict:
    """(cell, layers) -> best.npz of a tiny trained model."""
    return {(cell, layers): train(tmp_path_factory.mktemp(f"{cell}{layers}"), corpus, "--cell", cell,
                                  "--layers", layers)
            for cell, layers in MODELS}


@pytest.fixture(scope="session")
def prefix(corpus) -> str:
    """The 200 characters every parity test reads before comparing the next character's odds."""
    text = corpus.read_text(encoding="utf-8")
    assert len(text) >= PREFIX_CHARS
    return text[:PREFIX_CHARS]


@pytest.fixture(scope="session")
def chromium():
    """The Chromium binary (Debian's `chromium`, or Chrome); the test skips without one."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium to run the page in (apt-get install chromium)")

