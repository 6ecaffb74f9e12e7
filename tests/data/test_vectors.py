"""GloVe vectors for a vocabulary: matching by Porter stem (stemmed corpora such as WebKB and R8),
how a stem's vector is made, the coverage counts, the zip archive (glove.6B.zip layout) and
its errors, and the stemming shortcut that must never lose a match."""

import re
import zipfile

import numpy as np
import pytest
import snowballstemmer
from click.testing import CliRunner

from helpers import clean_failure
from rnncli.cli import main
from rnncli.errors import CorpusError
from rnncli.data.words import PAD, UNK, TokenVocab
from rnncli.data.vectors import match_glove
from rnncli.data import vectors as V
from rnncli.data import words as W

PORTER = snowballstemmer.stemmer("porter").stemWord

# Rank order matters: GloVe files list the most frequent words first.
ROWS = [("the", [1, 0, 0]), ("computer", [0, 2, 0]), ("university", [0, 0, 3]), ("computing", [4, 4, 0]),
        ("universe", [0, 5, 5]), ("computers", [6, 0, 6]), ("student", [7, 7, 7]), ("comput", [9, 9, 9])]


def write_glove(path, rows) -> str:
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows), encoding="utf-8")
    return str(path)


def vector(word):
    return np.float32(dict(ROWS)[word])


@pytest.fixture
def stemmed(tmp_path):
    """A vocabulary of stems, as in webkb-train-stemmed.txt, and texts using them."""
    vocab = TokenVocab((PAD, UNK, "the", "comput", "univers", "student", "zzyzx"))
    texts = [["the", "comput", "univers", "comput"], ["comput", "zzyzx", "the", "studi"]]
    return vocab, texts, write_glove(tmp_path / "glove.txt", ROWS)


def test_exact_matching_finds_only_whole_words(stemmed):
    vocab, texts, path = stemmed
    m = match_glove(path, vocab, texts, match="exact")
    assert m.match == "exact" and m.coverage["stem"] is None
    # the, comput (a rare GloVe word of its own), student; not univers, not zzyzx
    assert m.coverage["exact"] == (3, 5)  # tokens: the 2 + comput 3 (student is not in the texts)
    np.testing.assert_array_equal(m.vectors[3], vector("comput"))
    assert np.isnan(m.vectors[[0, 1, 4, 6]]).all()


def test_stem_matching_takes_the_most_frequent_words_vector(stemmed):
    vocab, texts, path = stemmed
    m = match_glove(path, vocab, texts, match="stem", stem_vector="frequent")
    assert m.match == "stem"
    np.testing.assert_array_equal(m.vectors[3], vector("computer"))  # rank 2, before computing (4)
    np.testing.assert_array_equal(m.vectors[4], vector("university"))
    np.testing.assert_array_equal(m.vectors[2], vector("the"))
    assert np.isnan(m.vectors[6]).all()
    # types: the, comput, univers, student; tokens: 8 in all, the 2 + comput 3 + univers 1 = 6
    assert m.coverage["stem"] == (4, 6) and m.coverage["types"] == 5 and m.coverage["tokens"] == 8


def test_stem_matching_weighted_by_frequency(stemmed):
    vocab, texts, path = stemmed
    m = match_glove(path, vocab, texts, match="stem", stem_vector="weighted")
    # computer (rank 2), computing (4), computers (6), comput (8): weights 1/rank
    ranks = {"computer": 2, "computing": 4, "computers": 6, "comput": 8}
    want = sum(vector(w) / r for w, r in ranks.items()) / sum(1 / r for r in ranks.values())
    np.testing.assert_allclose(m.vectors[3], want, rtol=1e-6)
    want = (vector("university") / 3 + vector("universe") / 5) / (1 / 3 + 1 / 5)
    np.testing.assert_allclose(m.vectors[4], want, rtol=1e-6)
    assert m.vectors.dtype == np.float32


def test_auto_matches_stemmed_text_by_stem_and_plain_text_exactly(stemmed, tmp_path):
    vocab, texts, path = stemmed
    m = match_glove(path, vocab, texts, match="auto")
    assert m.match == "stem" and "looks stemmed" in m.why
    plain = TokenVocab((PAD, UNK, "the", "computer", "university", "student"))
    m = match_glove(path, plain, [["the", "computer", "university", "student", "the"]], match="auto")
    assert m.match == "exact" and "not look stemmed" in m.why
    np.testing.assert_array_equal(m.vectors[3], vector("computer"))


def test_exact_match_is_kept_when_no_word_stems_to_the_token(tmp_path):
    vocab = TokenVocab((PAD, UNK, "gener", "apple"))
    path = write_glove(tmp_path / "g.txt", [("apple", [1, 2]), ("gener", [3, 4])])
    m = match_glove(path, vocab, [["gener", "apple"]], match="stem")
    np.testing.assert_array_equal(m.vectors[2], [3, 4])
    assert PORTER("apple") != "apple"  # so no GloVe word stems to the token "apple": its exact match stays
    np.testing.assert_array_equal(m.vectors[3], [1, 2])


TRICKY = ["usefulness", "sensibility", "flying", "happy", "relational", "organization", "hopping", "agreed",
          "generalization", "ays", "eyed", "responsibilities", "conditional", "electricity", "running", "as",
          "is", "1990s", "don't", "café", "e-mail", "u.s.", "xylophones", "nationally", "dying"]


def test_the_stemming_shortcut_never_loses_a_match():
    """The filter skips the stemmer only for words that cannot stem to a token."""
    words = TRICKY
    tokens = {PORTER(w) for w in words}
    stems = V._StemFilter(tokens)
    for w in words:
        assert stems(w) == PORTER(w), w
    # a token set without these stems: no word may claim one
    stems = V._StemFilter({"zzz", "qq"})
    assert all(stems(w) is None for w in words)


def test_the_stemming_shortcut_on_real_words(data_dir):
    words = [line.split(" ", 1)[0] for line in open(data_dir / "glove.6B.50d.10k.txt", encoding="utf-8")]
    rng = np.random.default_rng(0)
    stems = [PORTER(w) for w in words]
    tokens = {s for s in stems if rng.random() < 0.5 and W.WORD_PATTERN.fullmatch(s)}  # stems a text can hold
    shortcut = V._StemFilter(tokens)
    for w, s in zip(words, stems):
        assert shortcut(w) == (s if s in tokens else None), w


def test_words_without_a_possible_stem_are_not_stemmed():
    stems = V._StemFilter({"comput", "univers"})
    before = V._stemmer("porter").cache_info()
    assert stems("xylophone") is None and stems("quartz") is None and stems("12,000") is None
    after = V._stemmer("porter").cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)
    assert stems("computing") == "comput"


# ---------------------------------------------------------------- glove.6B.zip layout

DIMS = (50, 100, 200, 300)
WORDS = ("the", "comput", "student")


def glove_zip(path, dims=DIMS, stored=False):
    """An archive laid out like glove.6B.zip: glove.6B.<d>d.txt members, values i + d/1000."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for d in dims:
            z.writestr(f"glove.6B.{d}d.txt",
                       "".join(f"{w} {' '.join(f'{i + d / 1000:g}' for _ in range(d))}\n" for i, w in enumerate(WORDS)))
    return str(path)


@pytest.mark.parametrize("dim", DIMS)
def test_zip_member_chosen_by_dimension(tmp_path, dim):
    path = glove_zip(tmp_path / "glove.6B.zip")
    vocab = TokenVocab((PAD, UNK, "student", "the"))
    m = match_glove(path, vocab, [["the", "student"]], match="exact", dim=dim)
    assert m.dim == dim and m.vectors.shape == (4, dim)
    np.testing.assert_allclose(m.vectors[2], 2 + dim / 1000, rtol=1e-6)  # student is the third word
    np.testing.assert_allclose(m.vectors[3], 0 + dim / 1000, rtol=1e-6)
    assert m.source.endswith(f"glove.6B.zip:glove.6B.{dim}d.txt") and m.words == 3


def test_zip_with_one_member_needs_no_dimension(tmp_path):
    path = glove_zip(tmp_path / "one.zip", dims=(100,), stored=True)
    m = match_glove(path, TokenVocab((PAD, UNK, "the")), match="exact")
    assert m.dim == 100


@pytest.mark.parametrize("make, dim, words", [
    (lambda p: glove_zip(p), 75, ["no 75-dimensional", "50, 100, 200, 300", "--glove-dim"]),
    (lambda p: glove_zip(p), 0, ["several", "50, 100, 200, 300", "--glove-dim"]),
    (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip") and str(p), 100, ["not a readable zip"]),
    (lambda p: p.write_bytes(b"the 1 2 3\n") and str(p), 50, ["not a readable zip"]),  # named .zip
])
def test_zip_errors_are_one_line(tmp_path, make, dim, words):
    path = tmp_path / "glove.6B.zip"
    make(path)
    with pytest.raises(CorpusError) as info:
        match_glove(str(path), TokenVocab((PAD, UNK, "the")), match="exact", dim=dim)
    message = str(info.value)
    assert "\n" not in message and "glove.6B.zip" in message
    for word in words:
        assert word in message, message


def test_damaged_zip_member_is_an_error(tmp_path):
    path = tmp_path / "glove.6B.zip"
    glove_zip(path, dims=(50,), stored=True)
    data = bytearray(path.read_bytes())
    at = data.index(b"student ") + 9
    data[at] = ord("7") if data[at] != ord("7") else ord("8")  # the CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError) as info:
        match_glove(str(path), TokenVocab((PAD, UNK, "the")), match="exact")
    assert "damaged" in str(info.value) and "\n" not in str(info.value)


def test_text_file_dimension_is_checked(tmp_path):
    path = write_glove(tmp_path / "glove.txt", ROWS)
    with pytest.raises(CorpusError) as info:
        match_glove(path, TokenVocab((PAD, UNK, "the")), dim=50)
    assert "3 values" in str(info.value) and "--glove-dim 50" in str(info.value)


def test_non_finite_value_is_refused(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 1 2\nstudent 1 nan\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"line 2 .*finite"):
        match_glove(str(path), TokenVocab((PAD, UNK, "student")), match="exact")


# ---------------------------------------------------------------- through the CLI

TINY = ["--hidden-size", "8", "--dense", "8", "--epochs", "1", "--batch-size", "8", "--ngram", "0",
        "--min-freq", "1", "--val-fraction", "0.3"]


@pytest.fixture
def stemmed_data(tmp_path):
    rng = np.random.default_rng(0)
    words = {"course": ["comput", "univers", "the"], "student": ["student", "the", "studi"]}
    rows = [f"{label}\t{' '.join(rng.choice(ws, 6))}" for label, ws in words.items() for _ in range(12)]
    path = tmp_path / "data.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_reports_coverage_exact_and_by_stem(stemmed_data, tmp_path):
    glove = write_glove(tmp_path / "glove.txt", ROWS)
    result = run("classify", "train", stemmed_data, *TINY, "--glove", glove, "--freeze-embeddings",
                 "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert "by Porter stem" in err and "looks stemmed" in err
    # vocabulary: the, comput, univers, student, studi; found by stem: the, comput, univers, student
    assert re.search(r"GloVe coverage: 4 of 5 vocabulary words \(80\.0%\)", err), err
    assert re.search(r"Exactly: 3 of 5 vocabulary words \(60\.0%\)", err), err  # the, comput, student
    ckpt = result.stdout.strip().splitlines()[-1]
    with np.load(ckpt, allow_pickle=False) as z:
        import json
        vocab = json.loads(str(z["meta"]))["vocab"]
        embed = z["param/embed"]
    np.testing.assert_array_equal(embed[vocab.index("comput")], vector("computer"))  # frozen, most frequent


def test_cli_exact_match_asked(stemmed_data, tmp_path):
    glove = write_glove(tmp_path / "glove.txt", ROWS)
    result = run("classify", "train", stemmed_data, *TINY, "--glove", glove, "--glove-match", "exact",
                 "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert "Words matched exactly (--glove-match exact)" in err and "stems not looked up" in err
    assert "GloVe coverage: 3 of 5 vocabulary words" in err


def test_cli_zip_dimension_and_errors(stemmed_data, tmp_path):
    archive = glove_zip(tmp_path / "glove.6B.zip")
    result = run("classify", "train", stemmed_data, *TINY, "--glove", archive, "--glove-dim", "100",
                 "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    assert "dimension 100" in " ".join(result.stderr.split())
    for extra, words in ((["--glove-dim", "64"], ["no 64-dimensional"]), ([], ["several", "--glove-dim"])):
        failed = CliRunner().invoke(main, [str(a) for a in ("classify", "train", stemmed_data, *TINY, "--glove",
                                                            archive, *extra, "--out", tmp_path / "runs")])
        stderr = clean_failure(failed, 1)
        assert all(w in stderr for w in words), stderr
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"\x00" * 100)
    failed = CliRunner().invoke(main, [str(a) for a in ("classify", "train", stemmed_data, *TINY, "--glove", bad,
                                                        "--out", tmp_path / "runs")])
    assert "not a readable zip" in clean_failure(failed, 1)


@pytest.mark.parametrize("stem_vector", ["frequent", "weighted"])
def test_batched_and_parallel_stemming_give_the_same_vectors(tmp_path, monkeypatch, stem_vector):
    """Words the stemmer must place come back later, in batches, from worker processes for a large
    file: the most frequent word must still win and the weighted mean stay the same."""
    rows = [("pianos", [1, 0]), ("comput", [0, 1]), ("computer", [2, 2]), ("piano", [3, 1]),
            ("computing", [5, 0]), ("pianissimo", [0, 7])]
    path = write_glove(tmp_path / "g.txt", rows)
    vocab = TokenVocab((PAD, UNK, "piano", "comput"))
    texts = [["piano", "comput"]]
    alone = match_glove(path, vocab, texts, match="stem", stem_vector=stem_vector)
    # "piano" (rank 4) is its own stem at once; "pianos" (rank 1) waits for the stemmer
    np.testing.assert_array_equal(alone.vectors[2], [1, 0] if stem_vector == "frequent"
                                  else np.float32((np.float64([1, 0]) + np.float64([3, 1]) / 4) / (1 + 1 / 4)))
    monkeypatch.setattr(V._StemQueue, "BATCH", 2)
    monkeypatch.setattr(V._StemQueue, "IN_FLIGHT", 1)
    monkeypatch.setattr(V, "PARALLEL_STEM_BYTES", 0)
    monkeypatch.setattr(V, "_cpus", lambda: 2)
    pools = []
    start = V._stem_pool
    monkeypatch.setattr(V, "_stem_pool", lambda n: pools.append(start(n)) or pools[-1])
    both = match_glove(path, vocab, texts, match="stem", stem_vector=stem_vector)
    assert len(pools) == 1 and pools[0] is not None  # the workers did stem
    np.testing.assert_array_equal(both.vectors, alone.vectors)
    assert both.coverage == alone.coverage


# ---------------------------------------------------------------- bounded reads of a vector file

def _one_long_line(values: int) -> bytes:
    return b"the " + b"0.5 " * (values - 1) + b"0.5\n"


@pytest.mark.parametrize("packed", ["text", "zip"])
def test_a_line_too_long_is_refused_naming_the_file_and_line(tmp_path, packed):
    body = b"student 1 2 3\n" + _one_long_line(1_000_000)  # 4 MB: far past any real vector line
    if packed == "text":
        path = tmp_path / "glove.txt"
        path.write_bytes(body)
    else:
        path = tmp_path / "glove.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("glove.6B.3d.txt", body)
    with pytest.raises(CorpusError, match=r"line 2 is longer than 1 MiB") as info:
        match_glove(str(path), TokenVocab((PAD, UNK, "student")), match="exact")
    assert str(path) in str(info.value)


def test_a_member_without_newlines_is_refused_at_the_first_megabyte(tmp_path):
    path = tmp_path / "glove.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("glove.6B.50d.txt", b"x" * (64 << 20))  # deflates to ~64 KB; would take minutes to parse
    with pytest.raises(CorpusError, match=r"line 1 is longer than 1 MiB"):
        match_glove(str(path), TokenVocab((PAD, UNK, "student")), match="exact")


def test_too_many_dimensions_are_refused(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes(_one_long_line(V.MAX_VECTOR_DIM + 1))  # 16 KB: short enough, but too wide
    with pytest.raises(CorpusError, match=r"line 1 has 4,097 values; word vectors have at most 4,096"):
        match_glove(str(path), TokenVocab((PAD, UNK, "the")), match="exact")


def test_a_member_expanding_past_the_bound_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "glove.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("glove.6B.3d.txt", b"student 1 2 3\n" * 1000)
    monkeypatch.setattr(V, "MAX_MEMBER_BYTES", 1000)
    read = []
    monkeypatch.setattr(V, "_read_glove", lambda *a, **k: read.append(1))
    with pytest.raises(CorpusError, match=r"glove.6B.3d.txt: expands to .* not a GloVe archive"):
        match_glove(str(path), TokenVocab((PAD, UNK, "student")), match="exact")
    assert not read


def test_vectors_too_wide_for_memory_blame_the_vector_file(stemmed_data, tmp_path, monkeypatch):
    from rnncli import memory

    glove = write_glove(tmp_path / "glove.txt", [(w, v * 100) for w, v in ROWS])  # 300 dimensions
    monkeypatch.setattr(memory, "physical_memory", lambda: 10_000)  # a machine of 10 kB
    failed = CliRunner().invoke(main, [str(a) for a in ("classify", "train", stemmed_data, *TINY, "--glove", glove,
                                                        "--out", tmp_path / "runs")])
    stderr = clean_failure(failed, 1)
    assert "300-dimensional vectors" in stderr and "--glove-dim" in stderr
    assert "--hidden-size" not in stderr
