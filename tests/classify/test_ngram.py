"""The classifier's n-gram path (rnncli/ngram.py) and the baseline beside it: features from their
definition, the logistic regression against scikit-learn's, the choice of the mix on planted
validation sets, checkpoints that carry the path, and `--baseline` through the CLI."""

import json
import sys

import numpy as np
import pytest

from rnncli.classify import train as C
from rnncli.classify import ngram as N
from rnncli.config import ClassifyConfig
from helpers import TINY, fails, invoke, lines


def test_ngrams_are_the_words_then_the_joined_neighbours():
    assert N.ngrams(["a", "b", "c"], 2) == ["a", "b", "c", "a b", "b c"]
    assert N.ngrams(["a", "b", "c"], 3) == ["a", "b", "c", "a b", "b c", "a b c"]
    assert N.ngrams(["a"], 2) == ["a"]


def test_char_grams_are_the_pieces_of_each_padded_token():
    cache = {}
    grams = N.char_grams("Hi :)", cache)
    assert grams == [" h", "hi", "i ", " hi", "hi ", " hi ",
                     " :", ":)", ") ", " :)", ":) ", " :) "]
    assert "hi" in cache and N.char_grams("HI", cache)[:3] == [" h", "hi", "i "]
    long = "x" * 100
    assert max(len(g) for g in N.char_grams(long, {})) == 5
    assert len(N.char_grams(long, {})) == len(N.char_grams("x" * N.MAX_TOKEN_CHARS, {}))


def test_blocks_follow_the_tf_idf_definition():
    docs = [["x", "y", "x"], ["x", "z"], ["y", "y"], ["q"]]
    block = N.Block.fit(docs, min_df=2)
    assert block.terms == ("x", "y")  # z and q occur in one text each
    np.testing.assert_allclose(block.idf, np.log(5 / 3) + 1)
    X = block.rows([["x", "x", "y", "unseen"], ["nothing", "known"], []]).toarray()
    raw = np.array([(1 + np.log(2)) * block.idf[0], 1 * block.idf[1]])
    np.testing.assert_allclose(X[0], raw / np.linalg.norm(raw))
    assert not X[1].any() and not X[2].any()
    capped = N.Block.fit([["a", "b"], ["a", "c"], ["a", "b"], ["c"]], min_df=1, max_terms=2)
    assert capped.terms == ("a", "b")  # the most widespread two, ties broken by the term


def test_features_put_the_two_blocks_side_by_side_at_unit_length():
    texts = ["Good film, good plot!", "bad film", "a GOOD one", "bad bad plot"]
    features, X = N.NgramFeatures.fit_transform(texts, n_max=2, min_df=2)
    assert "good" in features.words.terms and "bad" in features.words.terms
    assert " go" in features.chars.terms and X.shape == (4, features.size)
    np.testing.assert_allclose((X.multiply(X)).sum(axis=1).A.ravel(), 1.0)
    np.testing.assert_allclose(features.transform(texts).toarray(), X.toarray())
    words_only, Xw = N.NgramFeatures.fit_transform(texts, 2, 2, chars=False)
    assert words_only.chars is None and Xw.shape[1] == len(words_only.words.terms)


def test_logistic_regression_matches_scikit_learn():
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    docs = [list(rng.choice(list("abcdefgh"), size=int(rng.integers(2, 9)))) for _ in range(120)]
    y = np.array([("a" in d) + ("b" in d and "c" in d) for d in docs])
    X = N.Block.fit([N.ngrams(d, 2) for d in docs], 1).rows([N.ngrams(d, 2) for d in docs])
    mine = N.fit_logistic(X, y, 3, 10.0, np.ones(len(y)), max_iter=5000, tol=1e-9)
    ref = sklearn_lm.LogisticRegression(C=10.0, max_iter=5000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(np.exp(mine.log_proba(X)), ref.predict_proba(X), atol=2e-4)


def test_sample_weights_count_like_repeated_texts():
    rng = np.random.default_rng(1)
    docs = [list(rng.choice(list("abcd"), size=4)) for _ in range(40)]
    y = np.array([int("a" in d) for d in docs])
    X = N.Block.fit(docs, 1).rows(docs)
    w = np.where(np.arange(40) < 10, 2.0, 1.0)
    weighted = N.fit_logistic(X, y, 2, 3.0, w, max_iter=5000, tol=1e-9)
    from scipy import sparse
    rows = np.concatenate([np.arange(40), np.arange(10)])
    repeated = N.fit_logistic(sparse.csr_matrix(X[rows]), y[rows], 2, 3.0 * 50 / 50, np.ones(50), max_iter=5000, tol=1e-9)
    # weights are normalised to mean 1: 50 rows' worth over 40 texts, so scale C to compare
    scaled = N.fit_logistic(X, y, 2, 3.0 * 50 / 40, w, max_iter=5000, tol=1e-9)
    np.testing.assert_allclose(scaled.W, repeated.W, atol=1e-4)
    assert not np.allclose(weighted.W, scaled.W, atol=1e-3)


def planted(n: int, seed: int):
    """Two classes told apart by one word; texts also hold noise words."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    texts = [" ".join([("good" if c else "bad")] + list(rng.choice(["the", "a", "film", "plot", "it"], size=4)))
             for c in y]
    return texts, y


def test_the_mix_leans_on_whichever_part_knows():
    words_fit, y_fit = planted(200, 0)
    words_val, y_val = planted(100, 1)
    ones = np.ones(len(y_val))
    rng = np.random.default_rng(2)
    noise = N.log_softmax(rng.normal(size=(len(y_val), 2)))
    path = N.choose_mix(N.fit_candidates(words_fit, y_fit, np.ones(len(y_fit)), words_val, 2), noise, y_val, ones)
    assert path.alpha <= 0.1  # the recurrent part is noise: trust the n-grams
    # and the other way round: a recurrent part that is right and n-grams that carry nothing
    blank = ["the film"] * len(y_fit)
    sure = N.log_softmax(np.where(np.eye(2)[y_val] > 0, 3.0, -3.0))
    path = N.choose_mix(N.fit_candidates(blank, y_fit, np.ones(len(y_fit)), ["the film"] * len(y_val), 2),
                        sure, y_val, ones)
    assert path.alpha >= 0.9


def test_mix_ends_are_the_parts():
    rng = np.random.default_rng(3)
    a, b = N.log_softmax(rng.normal(size=(5, 3))), N.log_softmax(rng.normal(size=(5, 3)))
    np.testing.assert_allclose(N.mix(a, b, 1.0, 1.0), a, atol=1e-12)
    np.testing.assert_allclose(N.mix(a, b, 0.0, 1.0), b, atol=1e-12)
    np.testing.assert_allclose(np.exp(N.mix(a, b, 0.3, 1.7)).sum(axis=1), 1.0)


def test_auto_class_weights_turn_on_for_imbalanced_labels():
    cfg = ClassifyConfig()
    assert C.resolve_class_weights(cfg, np.array([0] * 50 + [1] * 40), 2) == "none"
    assert C.resolve_class_weights(cfg, np.array([0] * 100 + [1] * 20), 2) == "balanced"
    from dataclasses import replace
    assert C.resolve_class_weights(replace(cfg, class_weights="none"), np.array([0] * 100 + [1]), 2) == "none"


# ---------------------------------------------------------------- through the CLI

def data_file(tmp_path, name, per_class, seed, extra=()):
    path = tmp_path / name
    path.write_text("\n".join(lines(per_class, seed) + list(extra)) + "\n", encoding="utf-8")
    return path


def test_checkpoint_carries_the_path_and_predicts_the_same_after_loading(tmp_path):
    train = data_file(tmp_path, "train.txt", 30, 0)
    test = data_file(tmp_path, "test.txt", 10, 1)
    out = invoke("classify", "train", train, "--test", test, "--out", tmp_path / "runs", *TINY).stdout
    ckpt = out.strip().splitlines()[-1]
    clf = C.load_classifier(ckpt)
    assert clf.ngram is not None and clf.ngram.features.words.terms and clf.ngram.features.chars.terms
    meta = clf.meta
    assert {"rnn", "ngram"} <= set(meta["test"]["parts"]) and 0 <= meta["ngram"]["alpha"] <= 1
    texts = [line.split("\t", 1)[1] for line in test.read_text().splitlines()]
    again = C.evaluate_file(C.load_classifier(ckpt), str(test))
    assert again["accuracy"] == meta["test"]["accuracy"]
    probs = C.predict_lines(clf, texts)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # the recurrent model alone differs from the mix unless the mix gives the n-grams no weight
    alone = np.exp(clf.rnn_log_proba(clf.encode(texts)))
    assert clf.ngram.alpha == 1.0 or not np.allclose(alone, probs)


def test_ngram_zero_trains_the_recurrent_model_alone(tmp_path):
    train = data_file(tmp_path, "train.txt", 20, 0)
    out = invoke("classify", "train", train, "--out", tmp_path / "runs", "--ngram", "0", *TINY).stdout
    clf = C.load_classifier(out.strip().splitlines()[-1])
    assert clf.ngram is None and "ngram" not in clf.meta and "parts" not in clf.meta["val"]


def test_a_damaged_ngram_path_is_refused_in_one_line(tmp_path):
    train = data_file(tmp_path, "train.txt", 20, 0)
    ckpt = invoke("classify", "train", train, "--out", tmp_path / "runs", *TINY).stdout.strip().splitlines()[-1]
    arrays = dict(np.load(ckpt, allow_pickle=False))
    arrays["ngram/W"] = arrays["ngram/W"][:, :-1]  # one term short
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    err = fails("classify", "predict", bad, input="apple\n", code=1)
    assert "n-gram path" in err


def test_baseline_is_fitted_on_the_same_split_and_shown_beside(tmp_path):
    pytest.importorskip("sklearn")
    train = data_file(tmp_path, "train.txt", 30, 0)
    test = data_file(tmp_path, "test.txt", 10, 1)
    result = invoke("classify", "train", train, "--test", test, "--baseline", "--out", tmp_path / "runs", *TINY)
    ckpt = result.stdout.strip().splitlines()[-1]
    meta = json.loads(str(np.load(ckpt, allow_pickle=False)["meta"]))
    for split in ("val", "test"):
        assert set(meta[split]["baseline"]) == {"accuracy", "macro_f1"}
    text = " ".join(result.stderr.split())
    assert "baseline (TF-IDF+SVM)" in text and "lead over baseline" in text
    # eval refits the baseline on the same training texts: the same test scores come back
    evaluated = invoke("classify", "eval", ckpt, test, "--baseline").stdout
    lead = meta["test"]["accuracy"] - meta["test"]["baseline"]["accuracy"]
    assert f"{lead:+.4f}" in evaluated and f"{meta['test']['baseline']['accuracy']:.4f}" in evaluated


@pytest.mark.parametrize("change", ["renamed label", "data path relative", "data path a device"])
def test_baseline_refit_from_an_altered_checkpoint_is_one_line(tmp_path, change):
    pytest.importorskip("sklearn")
    from rnncli.engine import npz as checkpoint

    train = data_file(tmp_path, "train.txt", 30, 0)
    result = invoke("classify", "train", train, "--baseline", "--out", tmp_path / "runs", *TINY)
    arrays, meta = checkpoint.load(result.stdout.strip().splitlines()[-1])
    if change == "renamed label":
        meta["labels"][0] = "not-a-label-of-the-file"
    elif change == "data path relative":
        meta["data"] = "train.txt"
    else:
        meta["data"] = "/dev/zero"
    altered = checkpoint.save(str(tmp_path / "altered.npz"), arrays, meta)
    err = fails("classify", "eval", altered, train, "--baseline", code=1)
    assert "baseline:" in err
    if change == "renamed label":
        assert "do not match its training file" in err
    elif change == "data path a device":
        assert "not a regular file" in err


def test_baseline_without_scikit_learn_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    train = data_file(tmp_path, "train.txt", 10, 0)
    err = fails("classify", "train", train, "--baseline", "--out", tmp_path / "runs", *TINY, code=1)
    assert "pip install 'rnncli[baseline]'" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_eval_baseline_needs_a_model_trained_with_it(tmp_path):
    train = data_file(tmp_path, "train.txt", 20, 0)
    ckpt = invoke("classify", "train", train, "--out", tmp_path / "runs", *TINY).stdout.strip().splitlines()[-1]
    fails("classify", "eval", ckpt, train, "--baseline", code=2)


def test_rare_classes_are_named_with_what_was_done(tmp_path):
    rare = [f"harp\tviolin piano cello flute {w}" for w in ("one", "two", "three", "four", "five", "six")]
    train = data_file(tmp_path, "train.txt", 60, 0, rare)
    result = invoke("classify", "train", train, "--out", tmp_path / "runs", *TINY)
    text = " ".join(result.stderr.split())
    assert "class harp has only 5 training texts" in text
    assert "weighed by inverse frequency" in text


def test_the_mix_takes_the_smallest_alpha_within_one_standard_error():
    """On a recurrent part that is a slightly perturbed copy of the n-gram part, the lowest
    validation loss may sit at some α > 0, but only an α whose loss is within one standard error
    of the lowest is taken, and no smaller α qualifies."""
    words_fit, y_fit = planted(200, 4)
    words_val, y_val = planted(120, 5)
    ones = np.ones(len(y_val))
    cand = N.fit_candidates(words_fit, y_fit, np.ones(len(y_fit)), words_val, 2)
    rng = np.random.default_rng(6)
    shrunk = 0  # trials where the lowest loss sat at a larger α than the one taken
    for noise, trial in [(noise, trial) for noise in (0.1, 0.3) for trial in range(3)]:
        C = N.CS[trial % len(N.CS)]
        rnn = N.log_softmax(cand.val_log_proba[C] + rng.normal(scale=noise, size=(len(y_val), 2)))
        path = N.choose_mix(cand, rnn, y_val, ones)
        argmin = min((N.weighted_nll(N.mix(rnn, ng, a, s), y_val, ones), a)
                     for ng in cand.val_log_proba.values() for a in N.ALPHAS for s in N.SCALES)[1]
        shrunk += argmin > path.alpha
        ng = cand.val_log_proba[path.C]

        def per_text(a):
            return min((-N.mix(rnn, ng, a, s)[np.arange(len(y_val)), y_val] for s in N.SCALES),
                       key=lambda v: v.mean())

        lowest = min((per_text(a) for a in N.ALPHAS), key=lambda v: v.mean())
        def within(a):
            d = per_text(a) - lowest
            return d.mean() <= d.std(ddof=1) / np.sqrt(len(d)) + 1e-12
        assert within(path.alpha)
        assert not any(within(a) for a in N.ALPHAS if a < path.alpha - 1e-9)
    assert shrunk >= 1  # the rule did something the plain minimum would not


def _many_classes(tmp_path, classes: int, per_class: int = 3):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    rows = [f"class{c}\t{' '.join(rng.choice(words, 10))}" for c in range(classes) for _ in range(per_class)]
    path = tmp_path / "many.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_an_ngram_model_too_large_for_memory_is_refused_before_fitting(tmp_path, monkeypatch):
    from rnncli import memory

    fitted = []
    monkeypatch.setattr(N, "fit_logistic", lambda *a, **k: fitted.append(1))
    monkeypatch.setattr(memory, "physical_memory", lambda: 64 << 20)  # a machine of 64 MiB
    stderr = fails("classify", "train", _many_classes(tmp_path, 300), "--out", tmp_path / "runs", *TINY, "-q",
                   code=1)
    assert "the n-gram model of 300 classes x" in stderr and "--ngram 0" in stderr
    assert not fitted and not (tmp_path / "runs").exists()


def test_many_rare_classes_make_one_warning_and_a_bounded_summary(tmp_path):
    result = invoke("classify", "train", _many_classes(tmp_path, 300), "--out", tmp_path / "runs", *TINY,
                    "--ngram", "0", "--epochs", "1")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "300 classes have few training texts" in warnings[0]
    assert "and 295 more" in warnings[0]
    summary = next(line for line in result.stderr.splitlines() if "validation texts (" in line)
    assert "300 classes:" in summary and len(summary) < 600


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_classifier_whose_output_overflows_is_an_error_naming_the_checkpoint(tmp_path, command):
    """Weights of 3e38 are finite float32s, so the checkpoint loads; what they compute is not."""
    from rnncli.engine import npz as checkpoint

    train = data_file(tmp_path, "train.txt", 20, 0)
    arrays, meta = checkpoint.load(invoke("classify", "train", train, "--out", tmp_path / "runs", *TINY)
                                   .stdout.strip().splitlines()[-1])
    for name in arrays:
        if name.startswith("param/"):
            arrays[name] = np.full_like(arrays[name], 3e38)
    huge = checkpoint.save(str(tmp_path / "huge.npz"), arrays, meta)
    if command == "eval":
        err = fails("classify", "eval", huge, train, code=1)
    else:
        err = fails("classify", "predict", huge, input="apple pie\n", code=1)
    assert "huge.npz" in err and "not a finite number" in err
