"""Damaged and forged checkpoints, generated: the loaders either return a model equal to the
original (the damage hit nothing that matters, such as zip timestamps) that can actually be
used, or raise CheckpointError. Never another exception, never a hang.

The checkpoints are real ones, written once per module by tiny `rnn train` and
`rnn classify train` runs, so they carry optimizer state and the full metadata.
"""

import io
import json
import warnings
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers import deadline
from rnncli.classify import train as classify
from rnncli.lm import sample
from rnncli.cli import main
from rnncli.errors import CheckpointError

FUZZ = settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])


class Blob(bytes):
    """A checkpoint's bytes, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"<checkpoint of {len(self)} bytes>"


def run_cli(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip().split("\t")[0]  # train: path TAB loss; classify: path


@pytest.fixture(scope="module")
def lm_bytes(tmp_path_factory, tiny_corpus_text) -> bytes:
    d = tmp_path_factory.mktemp("lm")
    (d / "c.txt").write_text(tiny_corpus_text, encoding="utf-8")
    best = run_cli("train", d / "c.txt", "--cell", "gru", "--hidden-size", 4, "--layers", 2,
                   "--embedding-size", 3, "--seq-len", 6, "--batch-size", 2, "--max-steps", 2,
                   "--eval-every", 2, "--out", d / "runs", "--quiet")
    latest = best.replace("best.npz", "latest.npz")
    return Blob(open(latest, "rb").read())


@pytest.fixture(scope="module")
def clf_bytes(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("clf")
    rows = [f"{'pos' if i % 2 else 'neg'}\t{'good fine day' if i % 2 else 'bad sad day'} {i % 3}" for i in range(12)]
    (d / "d.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return Blob(open(run_cli("classify", "train", d / "d.tsv", "--cell", "lstm", "--hidden-size", 3,
                             "--dense", "2", "--embedding-size", 2, "--epochs", 1, "--min-freq", 1,
                             "--out", d / "runs", "--quiet"), "rb").read())


@pytest.fixture(scope="module")
def tiny_corpus_text() -> str:
    return "Le café de la gare: Zoé a dit « déjà ! »\nThe naïve fiancée ordered crème brûlée.\n" * 3


# ---------------------------------------------------------------- building mutated archives


def members(data: bytes) -> list:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def archive(items: list) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point of some cases
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, payload in items:
                zf.writestr(name, payload)
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def read_npy(payload: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False)


def meta_of(data: bytes) -> dict:
    return json.loads(str(read_npy(dict(members(data))["meta.npy"])))


def set_meta(items: list, meta_text: str) -> list:
    return [(n, npy(np.array(meta_text)) if n == "meta.npy" else p) for n, p in items]


def paths(d: dict, prefix=()) -> list:
    out = []
    for key, value in d.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += paths(value, prefix + (key,))
    return out


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([10**30, -(10**30), 2**63])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
    | st.sampled_from(["lm", "classifier", "rnn", "lstm", "gru", "max", "char", "\n ab", "<pad>"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)

BYTE_EDITS = st.lists(st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("set"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
), min_size=1, max_size=3)

MEMBER_EDITS = st.lists(st.one_of(
    st.tuples(st.just("drop"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("duplicate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("rename"), st.floats(0, 1, exclude_max=True),
              st.sampled_from(["meta.npy", "evil.py", "param/extra.npy", ".npy", "meta", "../meta.npy",
                               "param/W_hy.npy", "param/embed.npy", "opt/x.npy", "param/out.W.npy"])),
    st.tuples(st.just("array"), st.floats(0, 1, exclude_max=True),
              st.sampled_from(["big-endian", "float64", "fortran", "empty", "strings", "complex", "bool",
                               "scalar", "int8", "huge-header"])),
    st.tuples(st.just("meta-text"), st.text(max_size=40)),
    st.tuples(st.just("meta-json"), JSONISH),
), min_size=1, max_size=3)


def replaced_array(payload: bytes, how: str) -> bytes:
    try:
        a = read_npy(payload)
    except (ValueError, MemoryError):  # already replaced by something unreadable
        return payload
    if how == "huge-header":  # a header that claims far more data than the member holds
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {**np.lib.format.header_data_from_array_1_0(a),
                                                   "shape": (4 * 10**12,)})
        return buf.getvalue() + a.tobytes()
    variants = {"big-endian": lambda: a.astype(a.dtype.newbyteorder(">")),
                "float64": lambda: a.astype(np.float64) if a.dtype.kind == "f" else a,
                "fortran": lambda: np.asfortranarray(a),
                "empty": lambda: np.zeros((0,), np.float32),
                "strings": lambda: np.array(["a", "b"]),
                "complex": lambda: a.astype(np.complex64),
                "bool": lambda: a.astype(bool),
                "scalar": lambda: np.float32(1.5) * np.ones(()),
                "int8": lambda: a.astype(np.int8)}
    try:
        return npy(variants[how]())
    except (ValueError, TypeError):  # e.g. the renamed metadata string cannot become int8
        return payload


def apply_member_edits(items: list, edits: list) -> list:
    items = list(items)
    for edit in edits:
        if edit[0] in ("meta-text", "meta-json"):
            text = edit[1] if edit[0] == "meta-text" else json.dumps(edit[1])
            items = set_meta(items, text)
            continue
        if not items:
            continue
        i = int(edit[1] * len(items))
        name, payload = items[i]
        if edit[0] == "drop":
            del items[i]
        elif edit[0] == "duplicate":
            items.append((name, payload))
        elif edit[0] == "rename":
            items[i] = (edit[2], payload)
        elif edit[0] == "array" and name != "meta.npy":
            items[i] = (name, replaced_array(payload, edit[2]))
    return items


def apply_byte_edits(data: bytes, edits: list) -> bytes:
    data = bytearray(data)
    for edit in edits:
        if not data:
            break
        at = int(edit[1] * len(data))
        if edit[0] == "truncate":
            del data[at:]
        elif edit[0] == "flip":
            data[at] ^= 1 << edit[2]
        else:
            data[at] = edit[2]
    return bytes(data)


# ---------------------------------------------------------------- the property


def loaded_or_refused(path, load, original: dict):
    """What `load` makes of the file within 10 s: None if it refused it with a CheckpointError
    naming the file; otherwise the loaded model, which must hold exactly the original parameters."""
    try:
        with deadline(10):
            loaded = load(str(path))
    except CheckpointError as e:
        assert path.name in str(e)
        return None
    assert set(loaded.params) == set(original)
    for k, v in original.items():
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)
    return loaded


def check_lm(path, original: dict) -> None:
    lm = loaded_or_refused(path, sample.load_lm, original)
    if lm is None:
        return
    sample.prime_ids(lm, lm.vocab.chars[:3], drop_unknown=False)  # the model that loaded must also run
    gen = sample.Generator(lm)
    text = "".join(gen.stream(np.array([gen.start_token()]), 5, 1.0, 0, np.random.default_rng(0)))
    assert len(text) == 5 and set(text) <= set(lm.vocab.chars)


def check_classifier(path, original: dict) -> None:
    clf = loaded_or_refused(path, classify.load_classifier, original)
    if clf is None:
        return
    "\t".join(clf.labels).encode("utf-8")  # labels are printed by predict and eval
    probs = classify.predict_lines(clf, ["good day", "", "bad"])
    assert probs.shape == (3, len(clf.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


class Params(dict):
    """The original parameters; a short repr keeps hypothesis' failure reports readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} original parameters>"


@pytest.fixture(scope="module")
def lm_params(lm_bytes, tmp_path_factory) -> Params:
    path = tmp_path_factory.mktemp("orig") / "lm.npz"
    path.write_bytes(lm_bytes)
    return Params(sample.load_lm(str(path)).params)


@pytest.fixture(scope="module")
def clf_params(clf_bytes, tmp_path_factory) -> Params:
    path = tmp_path_factory.mktemp("orig") / "clf.npz"
    path.write_bytes(clf_bytes)
    return Params(classify.load_classifier(str(path)).params)


@FUZZ
@given(edits=BYTE_EDITS)
def test_lm_byte_damage(tmp_path_factory, lm_bytes, lm_params, edits):
    path = tmp_path_factory.mktemp("f") / "fuzzed.npz"
    path.write_bytes(apply_byte_edits(lm_bytes, edits))
    check_lm(path, lm_params)


@FUZZ
@given(edits=MEMBER_EDITS, damage=st.lists(BYTE_EDITS, max_size=1))
def test_lm_member_and_meta_damage(tmp_path_factory, lm_bytes, lm_params, edits, damage):
    data = archive(apply_member_edits(members(lm_bytes), edits))
    path = tmp_path_factory.mktemp("f") / "fuzzed.npz"
    path.write_bytes(apply_byte_edits(data, damage[0]) if damage else data)
    check_lm(path, lm_params)


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_lm_meta_field_damage(tmp_path_factory, lm_bytes, lm_params, data):
    """One field of the real metadata (model sizes, vocabulary, kind, version...) replaced by
    anything JSON can hold, or removed."""
    meta = meta_of(lm_bytes)
    where = data.draw(st.sampled_from(paths(meta)))
    set_field(meta, where, data.draw(st.one_of(st.just(DELETE), JSONISH, twisted(get_field(meta, where)))))
    path = tmp_path_factory.mktemp("f") / "fuzzed.npz"
    path.write_bytes(archive(set_meta(members(lm_bytes), json.dumps(meta))))
    check_lm(path, lm_params)


@FUZZ
@given(edits=BYTE_EDITS)
@example(edits=[("set", 0.015625, 40)])  # cut numpy's header parser mid-expression: a TokenError
def test_classifier_byte_damage(tmp_path_factory, clf_bytes, clf_params, edits):
    path = tmp_path_factory.mktemp("f") / "fuzzed.npz"
    path.write_bytes(apply_byte_edits(clf_bytes, edits))
    check_classifier(path, clf_params)


@FUZZ
@given(edits=MEMBER_EDITS)
def test_classifier_member_and_meta_damage(tmp_path_factory, clf_bytes, clf_params, edits):
    path = tmp_path_factory.mktemp("f") / "fuzzed.npz"
    path.write_bytes(archive(apply_member_edits(members(clf_bytes), edits)))
    check_classifier(path, clf_params)


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_classifier_meta_field_damage(tmp_path_factory, clf_bytes, clf_params, data):
    meta = meta_of(clf_bytes)
    where = data.draw(st.sampled_from(paths(meta)))
    set_field(meta, where, data.draw(st.one_of(st.just(DELETE), JSONISH, twisted(get_field(meta, where)))))
    path = tmp_path_factory.mktemp("f") / "fuzzed.npz"
    path.write_bytes(archive(set_meta(members(clf_bytes), json.dumps(meta))))
    check_classifier(path, clf_params)


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()  # as a drawn value: remove the field


def twisted(value) -> st.SearchStrategy:
    """The same value in another type or out of range: 3 -> 3.0, True, "3", 10^30·3, -3, [3]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, list)):
        return st.just(value)
    if isinstance(value, str):
        return st.sampled_from([value.encode("utf-8").hex(), value * 2, [value], value[::-1], "",
                                value[:-1] + "\udfff"])  # a lone surrogate: valid JSON, not text
    if isinstance(value, list):
        return st.sampled_from([tuple(value)[:0], value[:-1], value * 2, {"a": value}, [str(v) for v in value]])
    return st.sampled_from([float(value), bool(value), str(value), value * 10**30, -value, [value], value + 0.5])


def get_field(meta: dict, where: tuple):
    for key in where:
        meta = meta[key]
    return meta


def set_field(meta: dict, where: tuple, value) -> None:
    d = meta
    for key in where[:-1]:
        d = d[key]
    if value is DELETE:
        del d[where[-1]]
    else:
        d[where[-1]] = value


# ---------------------------------------------------------------- exhaustive sweeps, deterministic


def test_lm_every_truncation_point(tmp_path, lm_bytes, lm_params):
    for cut in range(0, len(lm_bytes), 61):
        path = tmp_path / f"cut{cut}.npz"
        path.write_bytes(lm_bytes[:cut])
        with pytest.raises(CheckpointError):
            sample.load_lm(str(path))


def test_rebuilt_archive_is_equivalent(tmp_path, lm_bytes, lm_params, clf_bytes, clf_params):
    """The harness itself: an archive rebuilt from the same members, and the legitimate array
    variants (big-endian, float64, Fortran order) load as the same model."""
    for how in ("big-endian", "float64", "fortran"):
        items = [(n, replaced_array(p, how) if n.startswith("param/") else p) for n, p in members(lm_bytes)]
        path = tmp_path / f"{how}.npz"
        path.write_bytes(archive(items))
        lm = sample.load_lm(str(path))
        for k, v in lm_params.items():
            np.testing.assert_array_equal(lm.params[k], v)
    path = tmp_path / "clf.npz"
    path.write_bytes(archive(members(clf_bytes)))
    check_classifier(path, clf_params)


# ---------------------------------------------------------------- resuming from damaged metadata


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_resume_meta_field_damage(tmp_path_factory, lm_bytes, data):
    """`rnn train --resume` reads much more of the metadata than sampling does (configuration,
    progress counters, RNG state, optimizer steps): damage there is a clean refusal or a run."""
    meta = meta_of(lm_bytes)
    where = data.draw(st.sampled_from([p for p in paths(meta) if p[0] != "which"]))
    set_field(meta, where, data.draw(st.one_of(st.just(DELETE), JSONISH, twisted(get_field(meta, where)))))
    path = tmp_path_factory.mktemp("r") / "latest.npz"
    path.write_bytes(archive(set_meta(members(lm_bytes), json.dumps(meta))))
    with deadline(20):
        result = CliRunner().invoke(main, ["train", "--resume", str(path), "--max-steps", "3", "--quiet"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code:
        assert result.exit_code in (1, 2), result.exit_code
        assert "Error: " in result.stderr, result.stderr
