"""Corpora as Unicode code points: vocabulary, newlines, BOM, bad bytes, block reading, batches."""

import numpy as np
import pytest

from rnncli.data import chars as text
from rnncli.errors import ConfigError, CorpusError
from rnncli.data.chars import StreamBatches, Vocab, fit_batches
from rnncli.data.corpus import load_corpus


def write(tmp_path, data, name="corpus.txt") -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def decoded(corpus) -> str:
    return corpus.vocab.decode(corpus.ids)


# ---------------------------------------------------------------- characters and vocabulary

def test_accents_are_single_characters(tmp_path, tiny_corpus):
    corpus = load_corpus([write(tmp_path, tiny_corpus)])
    assert len(corpus) == len(tiny_corpus)
    for c in "éçœ«»\u00a0’—ñ":
        assert c in corpus.vocab.chars
    assert corpus.vocab.chars == "".join(sorted(set(tiny_corpus)))
    assert decoded(corpus) == tiny_corpus
    assert corpus.ids.dtype == np.uint8  # fewer than 256 distinct characters


def test_vocab_is_sorted_by_code_point(tmp_path):
    corpus = load_corpus([write(tmp_path, "zéa\u00a0Z œ«a")])
    chars = corpus.vocab.chars
    assert [ord(c) for c in chars] == sorted(ord(c) for c in set("zéa\u00a0Z œ«a"))
    np.testing.assert_array_equal(corpus.vocab.codepoints, [ord(c) for c in chars])


def test_ids_are_indices_into_the_vocab(tmp_path, tiny_corpus):
    corpus = load_corpus([write(tmp_path, tiny_corpus)])
    assert [corpus.vocab.chars[i] for i in corpus.ids] == list(tiny_corpus)
    np.testing.assert_array_equal(corpus.vocab.encode(tiny_corpus), corpus.ids)


def test_characters_beyond_the_bmp_and_a_large_vocab(tmp_path):
    body = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300)) + "😀𝄞"
    corpus = load_corpus([write(tmp_path, body)])
    assert corpus.ids.dtype == np.uint16 and len(corpus) == len(body)
    assert decoded(corpus) == body


def test_vocab_rejects_unsorted_or_repeated_characters():
    with pytest.raises(ConfigError):
        Vocab("ba")
    with pytest.raises(ConfigError):
        Vocab("aab")
    with pytest.raises(CorpusError):
        Vocab("")
    assert Vocab("\n ab").unknown("abzé z") == ["z", "é"]


def test_given_vocab_refuses_unknown_characters(tmp_path):
    path = write(tmp_path, "abcé")
    with pytest.raises(CorpusError) as info:
        load_corpus([path], vocab=Vocab("abc"))
    message = str(info.value)
    assert "corpus.txt" in message and "1 of its 4 characters" in message and "at character 4" in message
    assert "é" not in message  # content is never echoed: the file may not be the user's to read
    corpus = load_corpus([write(tmp_path, "cab", "b.txt")], vocab=Vocab("abcd"))
    assert list(corpus.ids) == [2, 0, 1]


def test_several_files_share_one_vocab(tmp_path):
    a, b = write(tmp_path, "ab\n", "a.txt"), write(tmp_path, "cé\n", "b.txt")
    corpus = load_corpus([a, b])
    assert decoded(corpus) == "ab\ncé\n"
    assert corpus.vocab.chars == "\nabcé"


# ---------------------------------------------------------------- newlines and BOM

@pytest.mark.parametrize("raw, expected", [
    ("a\r\nb\r\n", "a\nb\n"),
    ("a\rb\r", "a\nb\n"),
    ("a\r\rb", "a\n\nb"),
    ("a\r\n\rb\n\r\n", "a\n\nb\n\n"),
    ("\r", "\n"),
])
def test_line_endings_become_lf(tmp_path, raw, expected):
    assert decoded(load_corpus([write(tmp_path, raw)])) == expected


def test_bom_is_dropped(tmp_path):
    corpus = load_corpus([write(tmp_path, "\ufeffé\r\nb")])
    assert decoded(corpus) == "é\nb"
    assert "\ufeff" not in corpus.vocab.chars


def test_only_a_leading_bom_is_dropped(tmp_path):
    """U+FEFF inside the text is a (zero-width no-break space) character, kept as is."""
    assert decoded(load_corpus([write(tmp_path, "a\ufeffb")])) == "a\ufeffb"


# ---------------------------------------------------------------- invalid and empty input

def test_invalid_utf8_names_the_byte(tmp_path):
    with pytest.raises(CorpusError) as info:
        load_corpus([write(tmp_path, b"abc\xffdef", "bad.txt")])
    assert "bad.txt" in str(info.value)
    assert "byte 3" in str(info.value)


def test_truncated_character_at_end_of_file_names_its_byte(tmp_path):
    """b'abc' then the first byte of 'é' (0xc3): the bad byte is at offset 3, the file's last."""
    with pytest.raises(CorpusError) as info:
        load_corpus([write(tmp_path, b"abc\xc3", "cut.txt")])
    assert "byte 3 " in str(info.value), str(info.value)


def test_replace_mode_substitutes_u_fffd(tmp_path):
    corpus = load_corpus([write(tmp_path, b"abc\xffdef")], on_error="replace")
    assert decoded(corpus) == "abc\ufffddef"
    assert "\ufffd" in corpus.vocab.chars


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, data):
    with pytest.raises(CorpusError) as info:
        load_corpus([write(tmp_path, data, "empty.txt")])
    assert "empty.txt" in str(info.value) and "empty" in str(info.value)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(CorpusError):
        load_corpus([str(tmp_path)])
    with pytest.raises(CorpusError):
        load_corpus([str(tmp_path / "nope.txt")])


# ---------------------------------------------------------------- reading in blocks

BLOCK_TEXTS = [
    "\ufeffCafé crème, «\u00a0déjà\u00a0», cœur — 😀 fin.\r\nLigne 2\rLigne 3\r\n",
    "ab\r\ncdef\r\ngh\r\r\nij\r",  # CRs and CRLFs at many offsets, so some straddle a boundary
    "ééééééé\r\nçççç\r\n" * 5,
]


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 11])
@pytest.mark.parametrize("body", BLOCK_TEXTS)
def test_block_reading_matches_one_read(tmp_path, monkeypatch, body, block):
    path = write(tmp_path, body)
    whole = load_corpus([path])
    monkeypatch.setattr(text, "BLOCK_BYTES", block)
    pieces = list(text.iter_text_blocks(path))
    assert len(pieces) > 1
    blocked = load_corpus([path])
    assert blocked.vocab == whole.vocab
    np.testing.assert_array_equal(blocked.ids, whole.ids)
    expected = body.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    assert "".join(pieces) == expected == decoded(blocked)


def test_crlf_split_exactly_at_a_boundary(tmp_path, monkeypatch):
    path = write(tmp_path, "abcdef\r\nghijkl\r")  # '\r' is byte 6, '\n' byte 7
    monkeypatch.setattr(text, "BLOCK_BYTES", 7)
    assert decoded(load_corpus([path])) == "abcdef\nghijkl\n"


def test_bad_byte_offset_does_not_depend_on_blocks(tmp_path, monkeypatch):
    """The reported offset is the byte's position in the file, whatever the block size."""
    data = "abcdef".encode() + "é".encode() + b"\xffxyz"  # 0xff is byte 8
    path = write(tmp_path, data)
    for block in (1 << 24, 7, 3):
        monkeypatch.setattr(text, "BLOCK_BYTES", block)
        with pytest.raises(CorpusError) as info:
            load_corpus([path])
        assert "byte 8 " in str(info.value), (block, str(info.value))


# ---------------------------------------------------------------- batches

def test_stream_batches_chunks():
    ids = np.arange(103, dtype=np.uint8)
    B, T = 4, 5
    batches = StreamBatches(ids, B, T)
    S = (len(ids) - 1) // B
    assert batches.stream_len == S == 25
    assert batches.chunks == S // T == 5
    for k in range(batches.chunks):
        inputs, targets = batches.chunk(k)
        assert inputs.shape == targets.shape == (T, B)
        assert inputs.dtype == targets.dtype == np.int32
        assert inputs.flags.c_contiguous and targets.flags.c_contiguous
        for b in range(B):
            # stream b is the contiguous slice ids[b*S : (b+1)*S + 1]; chunk k is its k-th window
            start = b * S + k * T
            np.testing.assert_array_equal(inputs[:, b], ids[start:start + T])
            np.testing.assert_array_equal(targets[:, b], ids[start + 1:start + T + 1])
        np.testing.assert_array_equal(targets[:-1], inputs[1:])


def test_stream_chunks_follow_each_other():
    """Consecutive chunks continue each stream: the carried hidden state sees contiguous text."""
    ids = np.arange(61, dtype=np.uint16)
    batches = StreamBatches(ids, 3, 4)
    streams = np.concatenate([batches.chunk(k)[0] for k in range(batches.chunks)], axis=0)
    S = batches.stream_len
    for b in range(3):
        np.testing.assert_array_equal(streams[:, b], ids[b * S:b * S + batches.chunks * 4])


def test_stream_targets_never_read_past_the_text():
    for n in range(2, 40):
        ids = np.arange(n, dtype=np.uint8)
        for B in (1, 2, 3):
            for T in (1, 2, 5):
                batches = StreamBatches(ids, B, T)
                for k in range(batches.chunks):
                    _, targets = batches.chunk(k)
                    assert targets.max() < n


def test_fit_batches_keeps_what_fits():
    assert fit_batches(1000, 4, 10) == (4, 10, [])


def test_fit_batches_shrinks_batch_then_seq_len():
    B, T, notes = fit_batches(30, 32, 50)
    assert B == 1 and 1 <= T < 50
    assert (30 - 1) // B >= T
    assert len(notes) == 2
    assert "batch size" in notes[0] and "32" in notes[0]
    assert "sequence length" in notes[1] and "50" in notes[1]


def test_fit_batches_shrinks_only_the_batch_when_that_is_enough():
    B, T, notes = fit_batches(101, 32, 10)
    assert (B, T) == (8, 10)
    assert len(notes) == 1 and "batch size" in notes[0]


@pytest.mark.parametrize("n", [2, 3, 7, 50, 999])
@pytest.mark.parametrize("B, T", [(1, 1), (32, 100), (3, 7)])
def test_fit_batches_always_gives_a_chunk(n, B, T):
    b, t, _ = fit_batches(n, B, T)
    assert 1 <= b <= B and 1 <= t <= T
    assert StreamBatches(np.zeros(n, np.uint8), b, t).chunks >= 1


@pytest.mark.parametrize("n", [0, 1])
def test_fit_batches_needs_two_characters(n):
    with pytest.raises(CorpusError):
        fit_batches(n, 4, 4)
