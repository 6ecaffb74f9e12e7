"""Nucleus sampling (--top-p) in the draw kernel, the one sampling entry point (draw_samples)
that `rnn sample` prints from, and --prime-file."""

import numpy as np
import pytest

from helpers import ACCENTED, clean_failure, ok, run, write_corpus
from rnncli.config import ModelConfig
from rnncli.data.chars import Vocab
from rnncli.engine import model as M
from rnncli.engine.kernels import sampling as K
from rnncli.errors import ConfigError
from rnncli.lm import sample as S

TINY = ["--hidden-size", "8", "--layers", "1", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "3",
        "--threads", "1"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("nucleus")
    corpus = write_corpus(d, 6)
    out = ok("train", corpus, *TINY, "--max-steps", 12, "--eval-every", 6, "--out", d / "runs", "--quiet").stdout
    return out.split("\t")[0]


# ---------------------------------------------------------------- the draw rule against numpy


def probabilities(logits, inv_temp, top_k):
    """The kernel's unnormalised float64 weights: softmax numerators after the top-k cut."""
    V = len(logits)
    cutoff = np.sort(logits)[V - top_k] if 0 < top_k < V else -np.inf
    m = logits[int(np.argmax(logits))]
    return np.where(logits >= cutoff, np.exp((logits - m).astype(np.float64) * inv_temp), 0.0)


def old_rule(logits, inv_temp, top_k, u):
    """The draw as it was before nucleus sampling: the first index whose running sum passes
    u times the total (both summed in index order)."""
    best = int(np.argmax(logits))
    if inv_temp == 0:
        return best
    probs = probabilities(logits, inv_temp, top_k)
    running = np.cumsum(probs)  # sequential, as the kernel adds
    hits = np.nonzero((running > u * running[-1]) & (probs > 0))[0]
    return int(hits[0]) if len(hits) else best


def nucleus(logits, inv_temp, top_k, top_p) -> set:
    """The characters top-p keeps: the likeliest first (ties in index order) until their
    weights reach top_p times the total."""
    probs = probabilities(logits, inv_temp, top_k)
    order = np.argsort(-probs, kind="stable")
    running = np.cumsum(probs[order])
    j = int(np.argmax(running >= top_p * np.cumsum(probs)[-1]))
    return set(order[:j + 1].tolist())


def random_cases(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        V = int(rng.integers(2, 90))
        logits = (rng.standard_normal(V) * rng.uniform(0.5, 4)).astype(np.float32)
        if rng.random() < 0.3:  # ties: logits rounded to a few values
            logits = np.round(logits).astype(np.float32)
        inv_temp = float(rng.choice([0.0, 0.5, 1.0, 1 / 0.7, 3.0]))
        top_k = int(rng.choice([0, 0, 1, 3, V - 1, V, V + 5]))
        yield rng, logits, inv_temp, top_k


def test_top_p_one_draws_what_the_old_rule_drew():
    """top_p = 1 is the draw exactly as before it existed: the same index for every logits,
    temperature, top-k and uniform number (so every seed gives the same text)."""
    probs = np.empty(128)
    checked = 0
    for rng, logits, inv_temp, top_k in random_cases(300, 1):
        for u in np.concatenate([rng.random(40), [0.0, 1 - 2**-53]]):
            assert K._draw(logits, inv_temp, top_k, 1.0, float(u), probs) == old_rule(logits, inv_temp, top_k, u)
            checked += 1
    assert checked == 300 * 42


def test_nucleus_draws_exactly_the_characters_numpy_keeps():
    """Over a fine grid of uniform numbers the kernel draws every character of the nucleus and
    nothing else (skipping cases where a kept share is too small for the grid to hit)."""
    probs = np.empty(128)
    grid = (np.arange(4000) + 0.5) / 4000
    compared = 0
    for rng, logits, inv_temp, top_k in random_cases(150, 2):
        if inv_temp == 0:
            continue
        top_p = float(rng.choice([0.05, 0.3, 0.5, 0.8, 0.9, 0.95, 0.999]))
        kept = nucleus(logits, inv_temp, top_k, top_p)
        drawn = {K._draw(logits, inv_temp, top_k, top_p, float(u), probs) for u in grid}
        assert drawn <= kept, (logits, inv_temp, top_k, top_p)
        weights = probabilities(logits, inv_temp, top_k)
        if min(weights[i] for i in kept) / sum(weights[i] for i in kept) > 3 / len(grid):
            assert drawn == kept
            compared += 1
    assert compared > 50


def test_nucleus_frequencies_are_the_renormalised_probabilities():
    logits = np.array([2.0, 1.5, 1.0, 0.2, -0.5, -1.0, 0.9, -3.0], np.float32)
    inv_temp, top_p, draws = 1 / 0.8, 0.85, 60_000
    kept = sorted(nucleus(logits, inv_temp, 0, top_p))
    assert 2 < len(kept) < len(logits)
    weights = probabilities(logits, inv_temp, 0)
    expected = np.zeros(len(logits))
    expected[kept] = weights[kept] / weights[kept].sum() * draws
    probs = np.empty(len(logits))
    counts = np.bincount([K._draw(logits, inv_temp, 0, top_p, float(u), probs)
                          for u in np.random.default_rng(3).random(draws)], minlength=len(logits))
    assert (counts[expected == 0] == 0).all()
    assert (np.abs(counts - expected) <= 5 * np.sqrt(expected) + 1).all(), (counts, expected)


def test_nucleus_ties_are_taken_in_index_order():
    probs = np.empty(4)
    logits = np.array([0.0, 1.0, 1.0, 1.0], np.float32)  # three equal likeliest, about 0.3 each
    drawn = {K._draw(logits, 1.0, 0, 0.5, u, probs) for u in np.linspace(0, 0.999, 500)}
    assert drawn == {1, 2}


def test_nucleus_after_top_k():
    """top-k cuts first; the nucleus is then taken of what is left."""
    probs = np.empty(5)
    logits = np.array([3.0, 2.9, 2.8, 0.0, 2.7], np.float32)
    drawn = {K._draw(logits, 1.0, 2, 0.99, u, probs) for u in np.linspace(0, 0.999, 500)}
    assert drawn == {0, 1}


# ---------------------------------------------------------------- through the generator


def random_lm(cell="gru", seed=3):
    cfg = ModelConfig(cell=cell, hidden_size=40, num_layers=2, embedding_size=8)
    vocab = Vocab("".join(sorted(set("abcdefghij\n .,;:!?'ABCDEFGHIJKLMNOPQRSTUVWXYZéèàçù-klmnopqrst"))))
    params = M.init_params(cfg, M.lm_shapes(cfg, vocab.size), np.random.default_rng(seed), np.float32)
    params = {k: v * 4 for k, v in params.items()}  # peaked distributions, so a nucleus cuts something
    return S.LanguageModel(cfg, vocab, params, {})


def test_a_tiny_top_p_is_greedy():
    lm = random_lm()
    prime = np.array([3, 1], np.int32)
    gen = S.Generator(lm, threads=1)
    greedy = "".join(gen.stream(prime, 200, 0.0, 0, np.random.default_rng(0)))
    assert "".join(gen.stream(prime, 200, 1.0, 0, np.random.default_rng(1), top_p=1e-9)) == greedy
    free = "".join(gen.stream(prime, 200, 1.0, 0, np.random.default_rng(1)))
    cut = "".join(gen.stream(prime, 200, 1.0, 0, np.random.default_rng(1), top_p=0.5))
    assert free != cut != greedy


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nucleus_split_over_threads_draws_the_same_text(monkeypatch, cell):
    from rnncli.engine import threads as blas

    gen = S.Generator(random_lm(cell))
    monkeypatch.setattr(blas, "usable_cores", lambda: 2)
    monkeypatch.setattr(S, "SPLIT_MIN_BYTES", 0)
    texts = []
    try:
        for threads in (1, 2):
            blas.set_threads(threads)
            assert gen.parties() == threads
            texts.append("".join(gen.stream(np.array([1, 2, 3]), 150, 1.0, 0, np.random.default_rng(5),
                                            top_p=0.7)))
    finally:
        blas.set_threads(0)
    assert texts[0] == texts[1]


# ---------------------------------------------------------------- draw_samples


def test_draw_samples_is_stream_batch_with_one_stream_per_sample(monkeypatch):
    """Sample i is drawn from default_rng([seed, i]), whatever the batch it falls in."""
    lm = random_lm("lstm")
    monkeypatch.setattr(S, "BATCH_SAMPLES", 2)  # five samples: batches of 2, 2 and 1
    drawing = S.draw_samples(lm, prime="ab", length=130, temperature=0.9, top_k=10, top_p=0.9, seed=4,
                             num_samples=5, stop="e", threads=1)
    assert drawing.seed == 4 and drawing.prefix == "ab"
    chunks = list(drawing.pieces())
    assert all(len(c) == 5 for c in chunks)
    texts = drawing.texts()
    assert texts == ["".join(c[i] for c in chunks) for i in range(5)]
    gen = S.Generator(lm, threads=1)
    alone = ["".join(gen.stream(lm.vocab.encode("ab"), 130, 0.9, 10, np.random.default_rng([4, i]), "e", 0.9))
             for i in range(5)]
    assert texts == alone and len(set(texts)) == 5


def test_draw_samples_draws_and_reports_a_seed_when_none_is_given():
    lm = random_lm()
    first = S.draw_samples(lm, length=40, threads=1)
    assert 0 <= first.seed < 2**31 and first.prefix == ""
    again = S.draw_samples(lm, length=40, seed=first.seed, threads=1)
    assert again.texts() == first.texts()


@pytest.mark.parametrize("kwargs", [{"top_p": 0.0}, {"top_p": 1.5}, {"top_p": float("nan")}, {"temperature": -1},
                                    {"top_k": -1}, {"num_samples": 0}, {"seed": -1}, {"length": 2.5},
                                    {"prime": "\u2713"}])
def test_draw_samples_refuses_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        S.draw_samples(random_lm(), **kwargs)


@pytest.mark.parametrize("args, kwargs", [
    (["-n", 150, "--seed", 1], {"length": 150, "seed": 1}),
    (["-n", 100, "--seed", 7, "--temp", 0.7, "--prime", "Le ", "--top-k", 5],
     {"length": 100, "seed": 7, "temperature": 0.7, "prime": "Le ", "top_k": 5}),
    (["-n", 120, "--seed", 3, "--top-p", 0.6], {"length": 120, "seed": 3, "top_p": 0.6}),
    (["-n", 80, "--seed", 2, "--num-samples", 3, "--stop", "\\n", "--top-p", 0.9, "--top-k", 8],
     {"length": 80, "seed": 2, "num_samples": 3, "stop": "\n", "top_p": 0.9, "top_k": 8}),
    (["-n", 60, "--argmax", "--prime", "Zo\\n"], {"length": 60, "temperature": 0.0, "prime": "Zo\n", "seed": 0}),
])
def test_rnn_sample_prints_what_draw_samples_draws(ckpt, args, kwargs):
    result = ok("sample", ckpt, *args, "--seed", kwargs["seed"])
    drawing = S.draw_samples(S.load_lm(ckpt), **kwargs, threads=1)
    assert result.stdout == "\n\n".join(drawing.prefix + t for t in drawing.texts()) + "\n"
    assert f"seed {drawing.seed})" in result.stderr.replace("\n", "")
    assert len(set(drawing.texts())) == kwargs.get("num_samples", 1)


def test_top_p_in_the_header_only_when_given(ckpt):
    assert "top-p" not in ok("sample", ckpt, "-n", 5, "--seed", 1).stderr
    assert "top-p 0.5" in ok("sample", ckpt, "-n", 5, "--seed", 1, "--top-p", 0.5).stderr.replace("\n", "")


def test_tiny_top_p_is_argmax_on_the_command_line(ckpt):
    greedy = ok("sample", ckpt, "-n", 60, "--argmax", "--prime", "Le").stdout
    assert ok("sample", ckpt, "-n", 60, "--top-p", 1e-9, "--seed", 8, "--prime", "Le").stdout == greedy


@pytest.mark.parametrize("value", ["0", "-0.1", "1.01", "nan", "inf", "x"])
def test_bad_top_p(ckpt, value):
    clean_failure(run("sample", ckpt, "--top-p", value), 2)


# ---------------------------------------------------------------- --prime-file


def test_prime_file_is_the_prime_as_written(ckpt, tmp_path):
    path = tmp_path / "prime.txt"
    path.write_bytes("\ufeffLe café\r\nZoé".encode("utf-8"))  # BOM dropped, CRLF read as LF
    from_file = ok("sample", ckpt, "-n", 50, "--seed", 4, "--prime-file", path).stdout
    assert from_file == ok("sample", ckpt, "-n", 50, "--seed", 4, "--prime", "Le café\\nZoé").stdout
    assert from_file.startswith("Le café\nZoé")
    backslash = tmp_path / "escape.txt"
    backslash.write_text("Le\\n", encoding="utf-8")  # no escapes in a file: a backslash the model never saw
    assert "never seen" in clean_failure(run("sample", ckpt, "--prime-file", backslash), 1)


def test_prime_file_with_prime_is_a_usage_error(ckpt, tmp_path):
    path = tmp_path / "prime.txt"
    path.write_text("Le ", encoding="utf-8")
    assert "--prime" in clean_failure(run("sample", ckpt, "--prime-file", path, "--prime", "Le"), 2)


def test_prime_file_above_one_mib_is_refused(ckpt, tmp_path):
    path = tmp_path / "big.txt"
    path.write_text(ACCENTED * (S.PRIME_FILE_MAX_BYTES // len(ACCENTED.encode()) + 1), encoding="utf-8")
    assert "1 MiB" in clean_failure(run("sample", ckpt, "--prime-file", path), 1)
    fits = tmp_path / "fits.txt"
    fits.write_text("L" * S.PRIME_FILE_MAX_BYTES, encoding="utf-8")
    assert len(ok("sample", ckpt, "-n", 3, "--prime-file", fits).stdout) == S.PRIME_FILE_MAX_BYTES + 4


def test_prime_file_not_utf8_or_not_a_file(ckpt, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Le caf\u00e9".encode("latin-1"))
    assert "not UTF-8 at byte 6" in clean_failure(run("sample", ckpt, "--prime-file", path), 1)
    clean_failure(run("sample", ckpt, "--prime-file", tmp_path), 2)
    clean_failure(run("sample", ckpt, "--prime-file", "/dev/zero"), 2)
    clean_failure(run("sample", ckpt, "--prime-file", tmp_path / "absent.txt"), 2)
