"""Words in other languages than English: French (and Italian) elisions split off, words such as
aujourd'hui kept whole, the language detected from the texts, one Snowball stemmer per language
(with the filter that skips words which cannot stem to a token, which must never lose a match),
word2vec/fastText `.vec` files, and old classifier checkpoints read with English rules."""

import json
import re
import zipfile
from collections import Counter

import numpy as np
import pytest
import snowballstemmer

from helpers import fails, invoke
from rnncli.config import LANGUAGE_CHOICES, STEMMERS
from rnncli.data import vectors as V
from rnncli.data.chars import default_corpus_files
from rnncli.data.languages import detect_language
from rnncli.data.vectors import match_glove
from rnncli.data.words import PAD, UNK, TokenVocab, tokenize
from rnncli.errors import CorpusError


@pytest.mark.parametrize("text, words", [
    ("L'école d'été", ["l'", "école", "d'", "été"]),
    ("qu'il jusqu'à lorsqu'on puisqu'elle quoiqu'il", ["qu'", "il", "jusqu'", "à", "lorsqu'", "on", "puisqu'",
                                                       "elle", "quoiqu'", "il"]),
    ("J'ai, n'est, s'il, c'est, m'a, t'es", ["j'", "ai", "n'", "est", "s'", "il", "c'", "est", "m'", "a", "t'", "es"]),
    ("aujourd'hui, quelqu'un, presqu'île, prud'homme", ["aujourd'hui", "quelqu'un", "presqu'île", "prud'homme"]),
    ("l’hôpital (typographic apostrophe)", ["l'", "hôpital", "typographic", "apostrophe"]),
    ("Qu'est-ce que l'on dit?", ["qu'", "est", "ce", "que", "l'", "on", "dit"]),
])
def test_french_elisions_are_split_off(text, words):
    assert tokenize(text, "word", "fr") == words


def test_other_languages_keep_apostrophes_as_they_are():
    assert tokenize("L'école don't it's", "word", "en") == ["l'école", "don't", "it's"]
    assert tokenize("dell'arte un'altra c'è", "word", "it") == ["dell'", "arte", "un'", "altra", "c'", "è"]
    assert tokenize("L'école", "word", "de") == ["l'école"]
    assert tokenize("l'école", "char", "fr") == list("l'école")


def _lines(prefix: str) -> list:
    return [line for path in default_corpus_files() if path.rsplit("/", 1)[-1].startswith(prefix)
            for line in open(path, encoding="utf-8")]


@pytest.mark.parametrize("texts, language", [
    (_lines("fr_"), "fr"),
    (_lines("en_"), "en"),
    (["Der Hund und die Katze sind nicht im Haus, aber das ist auch gut so."] * 20, "de"),
    (["El perro y el gato no están en la casa, pero es por la mañana con los niños."] * 20, "es"),
    (["Il cane e il gatto non sono in casa, ma la mattina è per la famiglia."] * 20, "it"),
])
def test_the_language_is_detected_from_the_texts(texts, language):
    found, why = detect_language(tokenize(t, "word") for t in texts)
    assert found == language and why.startswith("auto:")


def test_text_without_common_words_falls_back_to_english_and_says_so():
    found, why = detect_language([["x7", "qqq", "zzt"]] * 50)
    assert found == "en" and "English rules" in why


# pairs of forms of one word: the language's stemmer joins them, Porter (English) does not
FORMS = {"fr": ("économie", "économique"), "de": ("häuser", "hause"), "es": ("corriendo", "corrieron"),
         "it": ("parlando", "parlare"), "pt": ("falando", "falaram"), "nl": ("lopen", "loopt"),
         "ca": ("cantant", "cantava"), "sv": ("flickorna", "flickor"), "da": ("bilerne", "biler"),
         "no": ("bilene", "biler"), "fi": ("taloissa", "talossa"), "ro": ("frumoasele", "frumoasă"),
         "ru": ("книгами", "книги")}


@pytest.mark.parametrize("language", sorted(FORMS))
def test_each_language_stems_with_its_own_stemmer(language):
    a, b = FORMS[language]
    stem = V._stemmer(STEMMERS[language])
    assert stem(a) == stem(b)
    assert V._stemmer("porter")(a) != V._stemmer("porter")(b)


def test_every_language_choice_has_a_stemmer():
    assert set(LANGUAGE_CHOICES) == {"auto", *STEMMERS} and set(FORMS) | {"en"} == set(STEMMERS)
    for algorithm in STEMMERS.values():
        assert algorithm in snowballstemmer.algorithms()


@pytest.mark.parametrize("language", ["fr", "de", "es"])
def test_the_stemming_filter_never_loses_a_match(language):
    """Every word of a text whose stem is a token must reach the stemmer."""
    words = {w for line in _lines("fr_" if language == "fr" else "en_") for w in tokenize(line, "word", language)}
    words |= {w for pair in FORMS.values() for w in pair}
    stem = snowballstemmer.stemmer(STEMMERS[language]).stemWord
    tokens = {stem(w) for w in list(words)[::3]}  # the stems of a third of the words
    f = V._StemFilter(tokens, STEMMERS[language])
    for w in words:
        if stem(w) in tokens:
            assert f(w) == stem(w), w
    # a word no token could be the stem of is skipped without running the stemmer
    f = V._StemFilter({"économ", "écol", "maison"}, STEMMERS[language])
    assert f.shortcut("xylophone") is None and f.shortcut("quartz") is None
    assert f.shortcut("economiques") is not None and f.shortcut("maisons") is not None  # é folded


def test_french_vectors_are_matched_by_french_stems(tmp_path):
    path = tmp_path / "vectors.vec"
    rows = [("économie", [1, 0]), ("économique", [0, 1]), ("écoles", [2, 2]), ("the", [3, 3])]
    path.write_text(f"{len(rows)} 2\n" + "".join(f"{w} {v[0]} {v[1]}\n" for w, v in rows), encoding="utf-8")
    vocab = TokenVocab((PAD, UNK, "économ", "écol", "the"))
    m = match_glove(str(path), vocab, match="stem", language="fr")
    np.testing.assert_array_equal(m.vectors[2], [1, 0])  # the first (most frequent) word of the stem
    np.testing.assert_array_equal(m.vectors[3], [2, 2])
    assert m.coverage["stem"][0] == 3 and m.words == len(rows)


@pytest.mark.parametrize("packed", ["vec", "zip"])
def test_vec_files_with_a_header_line_load(tmp_path, packed):
    body = "3 4\nchat 0.1 0.2 0.3 0.4\nchien 1 2 3 4\nmaison 5 6 7 8\n"
    if packed == "vec":
        path = tmp_path / "cc.fr.4.vec"
        path.write_text(body, encoding="utf-8")
    else:
        path = tmp_path / "cc.fr.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("cc.fr.4.vec", body)
    m = match_glove(str(path), TokenVocab((PAD, UNK, "chien", "chat", "loup")), match="exact")
    assert m.dim == 4 and m.words == 3 and m.coverage["exact"][0] == 2
    np.testing.assert_allclose(m.vectors[2], [1, 2, 3, 4])


def test_a_vec_header_that_disagrees_with_the_vectors_is_named(tmp_path):
    path = tmp_path / "bad.vec"
    path.write_text("2 300\nchat 0.1 0.2\nchien 1 2\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 2 has 2 values; the header line says 300"):
        match_glove(str(path), TokenVocab((PAD, UNK, "chat")), match="exact")


# ---------------------------------------------------------------- through the classifier

TINY = ["--hidden-size", "8", "--embedding-size", "8", "--dense", "8", "--epochs", "1", "--batch-size", "8",
        "--threads", "1"]


def _french_labelled(tmp_path) -> str:
    rows = [f"{path.rsplit('/', 1)[-1][3:-4]}\t{line.strip()}" for path in default_corpus_files()
            if path.rsplit("/", 1)[-1].startswith("fr_") for line in open(path, encoding="utf-8")
            if len(line.split()) >= 6][:400]
    path = tmp_path / "fr.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def test_classify_train_detects_french_and_keeps_it_in_the_checkpoint(tmp_path):
    result = invoke("classify", "train", _french_labelled(tmp_path), *TINY, "--out", tmp_path / "runs")
    assert re.search(r"Language fr \(auto: \d+% of the words are common fr words", " ".join(result.stderr.split()))
    ckpt = result.stdout.strip().splitlines()[-1]
    with np.load(ckpt) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["config"]["language"] == "fr" and meta["ngram"]["language"] == "fr"
    assert "l'" in meta["vocab"] and "école" not in meta["vocab"][:2]


def test_an_unknown_language_is_a_usage_error(tmp_path):
    assert "--language" in fails("classify", "train", _french_labelled(tmp_path), "--language", "xx", code=2)


def test_old_checkpoints_read_with_english_rules(tmp_path):
    from rnncli.classify.train import load_classifier
    from rnncli.engine import npz as checkpoint

    result = invoke("classify", "train", _french_labelled(tmp_path), *TINY, "--language", "en",
                    "--out", tmp_path / "runs")
    path = result.stdout.strip().splitlines()[-1]
    arrays, meta = checkpoint.load(path)
    del meta["config"]["language"], meta["ngram"]["language"]  # as checkpoints were written before
    old = checkpoint.save(str(tmp_path / "old.npz"), arrays, meta)
    texts = ["L'école d'été est fermée aujourd'hui.", "Le moulin tourne."]
    np.testing.assert_array_equal(load_classifier(old).predict_proba(texts), load_classifier(path).predict_proba(texts))
    assert load_classifier(old).cfg.language == "en"
    assert Counter(tokenize(texts[0], "word", "en"))["l'école"] == 1
