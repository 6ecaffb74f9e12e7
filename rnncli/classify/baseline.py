"""The baseline of `rnn classify --baseline`: TF-IDF word 1-2-grams (sublinear tf) and a linear
SVM (C = 1), from scikit-learn, the model a practitioner would otherwise reach for. It is fitted
on exactly the texts the classifier was trained on (its training split, not the validation split)
and scored on the same validation and test texts, so the two rows of the summary compare like
with like. scikit-learn is an optional extra: `pip install 'rnncli[baseline]'`.
"""

from __future__ import annotations

from rnncli.errors import ConfigError

INSTALL = "pip install 'rnncli[baseline]'"
DESCRIPTION = "TF-IDF (word 1-2-grams, sublinear tf) + LinearSVC (C=1), scikit-learn"


def require() -> None:
    """Fail before any training when scikit-learn is missing."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(f"baseline: needs scikit-learn, which is not installed; {INSTALL}") from None


def fit(texts: list[str], labels: list[int]):
    """A fitted scikit-learn pipeline; predict(texts) gives class indices."""
    require()
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LinearSVC(C=1.0))
    return model.fit(texts, labels)
