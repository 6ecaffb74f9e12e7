"""The memory-mapped id cache of large corpora: built once, reused only while it matches the
text, rebuilt when stale, truncated or tampered with, and trained from like an in-memory corpus."""

import json
import os

import numpy as np
import pytest

from rnncli.config import ModelConfig, TrainConfig
from rnncli.data import corpus as CO
from rnncli.errors import TargetError


@pytest.fixture
def corpus_file(tmp_path, tiny_corpus):
    path = tmp_path / "corpus.txt"
    path.write_text(tiny_corpus * 40, encoding="utf-8")
    return str(path)


def _fresh(paths):
    return CO.load_corpus(paths)


def test_built_once_then_reused_and_equal_to_the_in_memory_ids(corpus_file, monkeypatch):
    first = CO.cached_ids([corpus_file])
    assert isinstance(first.ids, np.memmap)
    stem = CO.cache_location([corpus_file])
    assert os.path.dirname(stem) == os.path.dirname(corpus_file)  # beside a writable corpus
    want = _fresh([corpus_file])
    assert first.vocab == want.vocab and np.array_equal(first.ids, want.ids)

    def no_rebuild(*a, **k):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(CO, "scan_vocab", no_rebuild)
    again = CO.cached_ids([corpus_file])
    assert again.vocab == want.vocab and np.array_equal(again.ids, want.ids)


@pytest.mark.parametrize("damage", ["edit corpus", "truncate ids", "flip id", "bad json", "other mtime"])
def test_a_stale_or_damaged_cache_is_rebuilt(corpus_file, damage):
    CO.cached_ids([corpus_file])
    stem = CO.cache_location([corpus_file])
    if damage == "edit corpus":  # same size, different text
        data = open(corpus_file, "rb").read()
        open(corpus_file, "wb").write(data.replace(b"cat", b"dog") + b"Z")
    elif damage == "truncate ids":
        with open(stem + ".bin", "r+b") as f:
            f.truncate(os.path.getsize(stem + ".bin") - 1)
    elif damage == "flip id":
        with open(stem + ".bin", "r+b") as f:
            b = f.read(1)
            f.seek(0)
            f.write(bytes([b[0] ^ 1]))
    elif damage == "bad json":
        open(stem + ".json", "w").write("{not json")
    else:
        st = os.stat(corpus_file)
        os.utime(corpus_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    got = CO.cached_ids([corpus_file])
    want = _fresh([corpus_file])
    assert got.vocab == want.vocab and np.array_equal(got.ids, want.ids)
    assert json.load(open(stem + ".json"))["n"] == len(want)


def test_unwritable_corpus_folder_uses_the_user_cache(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(CO.os, "access", lambda path, mode: False)
    stem = CO.cache_location([corpus_file])
    assert stem.startswith(str(tmp_path / "xdg" / "rnncli" / "corpora"))
    got = CO.cached_ids([corpus_file])
    assert np.array_equal(got.ids, _fresh([corpus_file]).ids) and os.path.isfile(stem + ".bin")


def test_only_large_corpora_are_cached(corpus_file, monkeypatch):
    assert not isinstance(CO.load_corpus([corpus_file], cache=True).ids, np.memmap)
    monkeypatch.setattr(CO, "CACHE_MIN_BYTES", 0)
    assert isinstance(CO.load_corpus([corpus_file], cache=True).ids, np.memmap)


def test_training_and_resuming_read_the_cache(corpus_file, tmp_path, monkeypatch):
    from rnncli.lm import train as TR

    monkeypatch.setattr(CO, "CACHE_MIN_BYTES", 0)
    cfg = TrainConfig(model=ModelConfig(hidden_size=6, num_layers=1, embedding_size=4, dropout=0.0),
                      seq_len=8, batch_size=4, max_steps=6, max_time=0, eval_every=3, threads=1,
                      out_dir=str(tmp_path / "runs"))
    whole = TR.train(cfg, [corpus_file])
    half = TR.train(TrainConfig(**{**vars(cfg), "max_steps": 3}), [corpus_file])
    assert os.path.isfile(CO.cache_location([corpus_file]) + ".bin")
    resumed = TR.train(cfg, [corpus_file], resume=half.latest)
    assert resumed.steps == whole.steps == 6
    assert np.isfinite(resumed.best_val)


def test_a_link_planted_at_a_fixed_name_is_never_followed(corpus_file, tmp_path):
    """The description is written through a fresh temporary name: a link waiting at the old
    fixed name `.json.tmp` (pointing at a file of someone else's) is left alone."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    stem = CO.cache_location([corpus_file])
    os.symlink(victim, stem + ".json.tmp")
    CO.cached_ids([corpus_file])
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert json.loads(open(stem + ".json", encoding="utf-8").read())["n"] > 0


@pytest.mark.parametrize("suffix", [".bin", ".json"])
def test_the_cache_never_replaces_a_pipe_or_a_folder(corpus_file, suffix):
    stem = CO.cache_location([corpus_file])
    os.mkfifo(stem + suffix)
    with pytest.raises(TargetError, match="named pipe"):
        CO.cached_ids([corpus_file])
    assert os.path.exists(stem + suffix) and not os.path.isfile(stem + suffix)
