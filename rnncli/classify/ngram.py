"""The classifier's n-gram path: a multinomial logistic regression on TF-IDF n-grams.

The recurrent encoder reads word order; a bag of n-grams with a linear model is what a
practitioner would otherwise use, and on small labelled sets it is hard to beat. The two err on
different texts, so `rnn classify` mixes them: log p = α log p_rnn + (1 - α) log p_ngram, with α
and the regularisation C chosen on the validation split (choose_mix: the recurrent model gets
weight only as far as the validation texts show it helps beyond their noise). The score of each
part is reported, so the mix never hides a weak recurrent model.

Features, two blocks side by side:
- words: the text's word 1..n-grams (words as `text.tokenize` cuts them);
- characters: the 2..5-character pieces of each whitespace-separated, lower-cased token padded
  with a space at each end (so " th", "he ", and punctuation such as ":)" or "!!" count too):
  they match inflections, misspellings and stems that whole words miss.
Each block keeps the n-grams found in at least `min_df` training texts (the characters' block at
most MAX_CHAR_TERMS, the most widespread), weighs them (1 + log tf) · idf with
idf = log((1 + N) / (1 + df)) + 1, and scales each text's row to unit length; the two blocks are
then scaled by 1/√2 so a row stays of unit length. The model minimises
C · Σ_i w_i CE_i + ½ ‖W‖² (biases free) with SciPy's L-BFGS on the sparse matrix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from rnncli.config import STEMMERS
from rnncli.data.words import tokenize
from rnncli.memory import require_bytes

SEP = " "  # between the words of an n-gram: never inside a word as tokenize cuts them
CHARS = (2, 5)  # character n-gram lengths
MAX_TOKEN_CHARS = 40  # a longer token (a URL, a run of symbols) gives the pieces of its first 40
MAX_CHAR_TERMS = 300_000


def ngrams(tokens: list[str], n_max: int) -> list[str]:
    out = list(tokens)
    for n in range(2, n_max + 1):
        out += [SEP.join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return out


def char_grams(text: str, cache: dict) -> list[str]:
    """The CHARS-long pieces of every whitespace token of text, each token padded with spaces."""
    lo, hi = CHARS
    out = []
    for token in text.lower().split():
        grams = cache.get(token)
        if grams is None:
            padded = f" {token[:MAX_TOKEN_CHARS]} "
            grams = [padded[i:i + n] for n in range(lo, hi + 1) for i in range(len(padded) - n + 1)]
            if len(cache) < 1_000_000:  # bounded: a stream of unique tokens must not grow it forever
                cache[token] = grams
        out += grams
    return out


@dataclass
class Block:
    """One block of features: its terms (sorted) and their idf."""

    terms: tuple
    idf: np.ndarray  # (F,) float64

    @classmethod
    def fit(cls, gram_lists: list[list[str]], min_df: int, max_terms: int | None = None) -> "Block":
        df = Counter()
        for grams in gram_lists:
            df.update(set(grams))
        kept = [t for t, c in df.items() if c >= min_df]
        if max_terms is not None and len(kept) > max_terms:
            kept = sorted(kept, key=lambda t: (-df[t], t))[:max_terms]
        terms = tuple(sorted(kept))
        idf = np.log((1.0 + len(gram_lists)) / (1.0 + np.array([df[t] for t in terms], np.float64))) + 1.0
        return cls(terms, idf)

    def rows(self, gram_lists: list[list[str]]):
        """CSR matrix (N, F) of unit-length TF-IDF rows (a text with no known term is all zero)."""
        from scipy import sparse

        index = {t: i for i, t in enumerate(self.terms)}
        indptr, indices, values = [0], [], []
        for grams in gram_lists:
            counts = Counter(index[g] for g in grams if g in index)
            cols = np.fromiter(counts.keys(), np.int64, len(counts))
            tf = np.fromiter(counts.values(), np.float64, len(counts))
            v = (1.0 + np.log(tf)) * self.idf[cols]
            norm = np.sqrt((v * v).sum())
            indices.append(cols)
            values.append(v / norm if norm > 0 else v)
            indptr.append(indptr[-1] + len(cols))
        cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
        return sparse.csr_matrix((cat(values, np.float64), cat(indices, np.int64), np.array(indptr)),
                                 shape=(len(gram_lists), len(self.terms)))


@dataclass
class NgramFeatures:
    """The fitted feature map: a block of word n-grams and, unless chars is False, one of
    character n-grams."""

    words: Block
    chars: Block | None
    n_max: int
    language: str = "en"  # the word tokenizer's (config.STEMMERS)

    @staticmethod
    def grams(texts: list[str], n_max: int, with_chars: bool, language: str = "en") -> tuple[list, list | None]:
        word_grams = [ngrams(tokenize(t, "word", language), n_max) for t in texts]
        if not with_chars:
            return word_grams, None
        cache: dict = {}
        return word_grams, [char_grams(t, cache) for t in texts]

    @classmethod
    def fit_transform(cls, texts: list[str], n_max: int = 2, min_df: int = 2, chars: bool = True,
                      language: str = "en") -> tuple["NgramFeatures", object]:
        """The features fitted on texts, and the texts' matrix (as transform would give it)."""
        word_grams, char_lists = cls.grams(texts, n_max, chars, language)
        features = cls(Block.fit(word_grams, min_df),
                       Block.fit(char_lists, min_df, MAX_CHAR_TERMS) if chars else None, n_max, language)
        return features, features._matrix(word_grams, char_lists)

    @property
    def size(self) -> int:
        return len(self.words.terms) + (len(self.chars.terms) if self.chars else 0)

    def transform(self, texts: list[str]):
        """CSR matrix (N, F) of unit-length rows: the blocks side by side."""
        return self._matrix(*self.grams(texts, self.n_max, self.chars is not None, self.language))

    def _matrix(self, word_grams: list, char_lists: list | None):
        from scipy import sparse

        X = self.words.rows(word_grams)
        if self.chars is None:
            return X
        return (sparse.hstack([X, self.chars.rows(char_lists)], format="csr") * (1 / np.sqrt(2))).tocsr()


def log_softmax(z: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are the callers' to judge
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass
class LinearModel:
    W: np.ndarray  # (K, F)
    b: np.ndarray  # (K,)

    def log_proba(self, X) -> np.ndarray:
        return log_softmax(np.asarray(X @ self.W.T) + self.b)


LBFGS_MEMORY = 10  # scipy's default count of correction pairs kept


def fit_bytes(n_classes: int, n_features: int) -> int:
    """What fit_logistic holds at its peak, in float64 vectors of all K x F weights: L-BFGS's
    correction pairs (2 x LBFGS_MEMORY) and about sixteen more (the point, its gradient, the
    search step, W*W, the objective's temporaries and scipy's copies), 36 in all as measured
    with K = 400, F = 20,000."""
    return (2 * LBFGS_MEMORY + 16) * n_classes * n_features * 8


def fit_logistic(X, y: np.ndarray, n_classes: int, C: float, sample_weight: np.ndarray,
                 max_iter: int = 150, start: LinearModel | None = None, tol: float = 1e-4) -> LinearModel:
    """Multinomial logistic regression: minimise C Σ_i w_i CE_i + ½‖W‖² with L-BFGS.
    sample_weight is normalised to mean 1, so C means what it means in scikit-learn."""
    from scipy.optimize import minimize

    N, F = X.shape
    K = n_classes
    w = sample_weight * (N / sample_weight.sum())
    Y = np.zeros((N, K))
    Y[np.arange(N), y] = 1.0
    Xt = X.T.tocsr()

    def objective(theta):
        W, b = theta[:K * F].reshape(K, F), theta[K * F:]
        logp = log_softmax(np.asarray(X @ W.T) + b)
        loss = -C * (w * (logp * Y).sum(axis=1)).sum() + 0.5 * (W * W).sum()
        d = C * w[:, None] * (np.exp(logp) - Y)  # dLoss/dlogits (N, K)
        dW = np.asarray(Xt @ d).T + W
        return loss, np.concatenate([dW.ravel(), d.sum(axis=0)])

    theta0 = np.zeros(K * F + K) if start is None else np.concatenate([start.W.ravel(), start.b])
    # A loose tolerance: the argmax and the log-loss settle long before the last digits of W.
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": tol * 1e-3})
    return LinearModel(res.x[:K * F].reshape(K, F).copy(), res.x[K * F:].copy())


# ---------------------------------------------------------------- the path beside the recurrent model

ALPHAS = np.linspace(0.0, 1.0, 11)  # weight of the recurrent model's log-probabilities
SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)  # sharpness of the mix (calibration; argmax depends on α only)
CS = (10.0, 30.0)  # inverse regularisation tried on the validation split


@dataclass
class NgramPath:
    features: NgramFeatures
    model: LinearModel
    C: float
    alpha: float
    scale: float

    def log_proba(self, texts: list[str]) -> np.ndarray:
        return self.model.log_proba(self.features.transform(texts))

    def mix(self, rnn_log_proba: np.ndarray, texts: list[str]) -> np.ndarray:
        return mix(rnn_log_proba, self.log_proba(texts), self.alpha, self.scale)

    def arrays(self) -> dict:
        f = self.features
        out = {"ngram/W": self.model.W.astype(np.float32), "ngram/b": self.model.b.astype(np.float32),
               "ngram/idf": f.words.idf.astype(np.float32)}
        if f.chars is not None:
            out["ngram/char_idf"] = f.chars.idf.astype(np.float32)
        return out

    def meta(self) -> dict:
        f = self.features
        return {"terms": "\n".join(f.words.terms), "n_max": f.n_max,
                "char_terms": None if f.chars is None else "\n".join(f.chars.terms),
                "C": self.C, "alpha": self.alpha, "scale": self.scale, "language": f.language}


def mix(rnn_log_proba: np.ndarray, ngram_log_proba: np.ndarray, alpha: float, scale: float) -> np.ndarray:
    return log_softmax(scale * (alpha * rnn_log_proba + (1.0 - alpha) * ngram_log_proba))


def weighted_nll(log_proba: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    return float(-(w * log_proba[np.arange(len(y)), y]).sum() / w.sum())


@dataclass
class Candidates:
    """The n-gram models fitted on the training texts, one per C, with their validation
    log-probabilities: fitted before the recurrent model trains, mixed with it afterwards."""

    features: NgramFeatures
    models: dict  # C -> LinearModel
    val_log_proba: dict  # C -> (N_val, K)
    seconds_per_fit: float


def fit_candidates(texts_fit: list, y_fit: np.ndarray, w_fit: np.ndarray, texts_val: list, n_classes: int,
                   n_max: int = 2, min_df: int = 2, language: str = "en") -> Candidates:
    import time

    started = time.perf_counter()
    features, X_fit = NgramFeatures.fit_transform(texts_fit, n_max, min_df, language=language)
    require_bytes(fit_bytes(n_classes, X_fit.shape[1]),
                  f"the n-gram model of {n_classes:,} classes x {X_fit.shape[1]:,} features",
                  "give --ngram 0 (the recurrent model alone) or merge rare classes")
    X_val = features.transform(texts_val)
    models, val, model = {}, {}, None
    for C in CS:  # each C starts from the last one's solution
        model = models[C] = fit_logistic(X_fit, y_fit, n_classes, C, w_fit, start=model)
        val[C] = model.log_proba(X_val)
    return Candidates(features, models, val, (time.perf_counter() - started) / len(CS))


def choose_mix(candidates: Candidates, rnn_val_log_proba: np.ndarray, y_val: np.ndarray,
               w_val: np.ndarray) -> NgramPath:
    """C, α and the scale of the mix, from the weighted validation log-loss.

    C comes from the lowest loss over every (C, α, scale). α is then the smallest (the most weight
    on the n-gram model, the steadier of the two: convex, and fitted to the optimum) whose loss is
    within one standard error of that lowest loss, the standard error of the per-text difference
    in loss: the recurrent model gets weight only where the validation texts show it helps by more
    than their own noise. Each α keeps its best scale."""
    best = None
    for C, ng in candidates.val_log_proba.items():
        for alpha in ALPHAS:
            for scale in SCALES:
                loss = weighted_nll(mix(rnn_val_log_proba, ng, alpha, scale), y_val, w_val)
                if best is None or loss < best[0] - 1e-12:
                    best = (loss, C, float(alpha), scale)
    _, C, alpha, scale = best
    ng, rows = candidates.val_log_proba[C], np.arange(len(y_val))
    w = w_val / w_val.mean()

    def per_text(a: float, s: float) -> np.ndarray:
        return -w * mix(rnn_val_log_proba, ng, a, s)[rows, y_val]

    lowest = per_text(alpha, scale)
    for a in ALPHAS[ALPHAS < alpha]:
        s = min(SCALES, key=lambda s: per_text(a, s).mean())
        diff = per_text(a, s) - lowest
        if len(diff) > 1 and diff.mean() <= diff.std(ddof=1) / np.sqrt(len(diff)):
            alpha, scale = float(a), s
            break
    return NgramPath(candidates.features, candidates.models[C], C, alpha, scale)


def refit(path: NgramPath, texts: list, y: np.ndarray, w: np.ndarray) -> NgramPath:
    """The same path with its linear model fitted again on more texts (training + validation),
    from the chosen solution and with the same features."""
    n_classes = path.model.W.shape[0]
    model = fit_logistic(path.features.transform(texts), y, n_classes, path.C, w, start=path.model)
    return NgramPath(path.features, model, path.C, path.alpha, path.scale)


def path_from_checkpoint(arrays: dict, meta: dict, n_classes: int) -> NgramPath:
    """Rebuild the path; raises ValueError when shapes or values do not fit together."""
    def block(terms_key: str, idf_key: str) -> Block:
        joined = meta[terms_key]
        terms = tuple(joined.split("\n")) if joined else ()
        idf = np.asarray(arrays[idf_key], np.float64)
        if idf.shape != (len(terms),) or not np.isfinite(idf).all():
            raise ValueError(f"{idf_key} does not hold one finite idf per term")
        return Block(terms, idf)

    words = block("terms", "ngram/idf")
    chars = None if meta.get("char_terms") is None else block("char_terms", "ngram/char_idf")
    W, b = (np.asarray(arrays[k], np.float64) for k in ("ngram/W", "ngram/b"))
    F = len(words.terms) + (len(chars.terms) if chars else 0)
    if W.shape != (n_classes, F) or b.shape != (n_classes,):
        raise ValueError(f"n-gram weights do not match {F} terms and {n_classes} classes")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise ValueError("n-gram weights hold non-finite values")
    n_max, C, alpha, scale = meta["n_max"], float(meta["C"]), float(meta["alpha"]), float(meta["scale"])
    if not (isinstance(n_max, int) and 1 <= n_max <= 5 and 0 <= alpha <= 1 and 0 < scale <= 100):
        raise ValueError("n-gram settings out of range")
    language = meta.get("language", "en")  # saved before languages: English rules
    if language not in STEMMERS:
        raise ValueError(f"language {language!r} is not one rnncli knows")
    return NgramPath(NgramFeatures(words, chars, n_max, language), LinearModel(W, b), C, alpha, scale)
