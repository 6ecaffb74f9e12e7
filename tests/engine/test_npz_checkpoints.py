"""Checkpoints: exact round trip, atomic replace, pickle refused, and every way a file can be bad.

Each refusal is a CheckpointError whose message names the file.
"""

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from rnncli.engine import npz as checkpoint
from rnncli.engine import model as M
from rnncli.lm import sample
from rnncli.config import ModelConfig
from rnncli.errors import CheckpointError, TargetError


def some_arrays(rng) -> dict:
    return {
        "param/l0.W_hh": rng.standard_normal((8, 4)).astype(np.float32),
        "param/b_y": rng.standard_normal(5).astype(np.float32),
        "opt/m/l0.W_hh": rng.standard_normal((8, 4)).astype(np.float32),
        "state/hidden": rng.standard_normal((1, 2, 3, 4)).astype(np.float64),
        "ngram/ids": np.arange(7, dtype=np.int32),  # integers: allowed outside the float groups
    }


META = {"kind": "lm", "vocab": "\n !,.Leéç«»\u00a0œ", "progress": {"step": 3, "best_val": None},
        "rng": {"state": {"state": 2**100 + 7, "inc": 2**90 + 1}}}


def raw_npz(path, **arrays) -> str:
    """Write an .npz directly with numpy, bypassing checkpoint.save."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return str(path)


def meta_array(**meta) -> np.ndarray:
    return np.array(json.dumps({"format": "rnncli", "version": 1, "kind": "lm", **meta}))


def refused(path, kind=None) -> str:
    """The CheckpointError message for path; it must name the file."""
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(str(path), kind=kind)
    message = str(info.value)
    assert os.path.basename(str(path).rstrip(os.sep)) in message
    return message


# ---------------------------------------------------------------- round trip and atomic replace

def test_round_trip_is_exact(tmp_path, rng):
    arrays = some_arrays(rng)
    path = tmp_path / "run" / "latest.npz"  # the directory is created
    assert checkpoint.save(str(path), arrays, META) == str(path)
    loaded, meta = checkpoint.load(str(path), kind="lm")
    assert set(loaded) == set(arrays)
    for key, a in arrays.items():
        assert loaded[key].dtype == a.dtype and loaded[key].shape == a.shape
        np.testing.assert_array_equal(loaded[key], a)
    assert meta == {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, **META}
    assert sorted(os.listdir(path.parent)) == ["latest.npz"]


def test_plain_numpy_reads_a_checkpoint(tmp_path, rng):
    path = checkpoint.save(str(tmp_path / "c.npz"), some_arrays(rng), META)
    with np.load(path, allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["format"] == "rnncli"
        assert "param/b_y" in npz.files


def test_save_replaces_an_existing_file(tmp_path, rng):
    path = str(tmp_path / "latest.npz")
    checkpoint.save(path, {"param/x": np.zeros(3)}, {"kind": "lm", "n": 1})
    checkpoint.save(path, {"param/x": np.ones(4)}, {"kind": "lm", "n": 2})
    arrays, meta = checkpoint.load(path)
    np.testing.assert_array_equal(arrays["param/x"], np.ones(4))
    assert meta["n"] == 2
    assert os.listdir(tmp_path) == ["latest.npz"]


def test_failed_save_leaves_the_old_file_untouched(tmp_path, rng, monkeypatch):
    path = str(tmp_path / "latest.npz")
    checkpoint.save(path, some_arrays(rng), META)
    before = open(path, "rb").read()

    def disk_full(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")  # a partial write, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", disk_full)
    with pytest.raises(CheckpointError) as info:
        checkpoint.save(path, some_arrays(np.random.default_rng(1)), {"kind": "lm", "n": 2})
    assert "latest.npz" in str(info.value)
    assert "No space left on device" in str(info.value)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["latest.npz"]  # no temporary file left behind
    _, meta = checkpoint.load(path, kind="lm")
    assert meta["progress"]["step"] == 3


def test_interrupted_save_removes_its_temp_file(tmp_path, monkeypatch):
    path = str(tmp_path / "latest.npz")
    checkpoint.save(path, {"param/x": np.zeros(2)}, {"kind": "lm"})

    def interrupted(f, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"param/x": np.ones(2)}, {"kind": "lm"})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["latest.npz"]
    np.testing.assert_array_equal(checkpoint.load(path)[0]["param/x"], np.zeros(2))


# ---------------------------------------------------------------- pickle is refused, and never runs

class Trap:
    """Unpickling this creates the directory `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_the_trap_would_fire_if_pickle_were_allowed(tmp_path):
    marker = tmp_path / "pwned"
    path = raw_npz(tmp_path / "evil.npz", meta=meta_array(), **{"param/x": np.array([Trap(marker)], dtype=object)})
    assert not marker.exists()  # saving does not fire it
    with np.load(path, allow_pickle=True) as npz:
        npz["param/x"]
    assert marker.exists()


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = raw_npz(tmp_path / "evil.npz", meta=meta_array(), **{"param/x": np.array([Trap(marker)], dtype=object)})
    message = refused(path)
    assert "pickle" in message
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        sample.load_lm(path)
    assert not marker.exists()


def test_pickled_meta_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = raw_npz(tmp_path / "evil.npz", meta=np.array([Trap(marker)], dtype=object))
    assert "pickle" in refused(path)
    assert not marker.exists()


# ---------------------------------------------------------------- damaged or foreign files

def test_truncated_file(tmp_path, rng):
    path = checkpoint.save(str(tmp_path / "latest.npz"), some_arrays(rng), META)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    refused(path)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_truncated_anywhere(tmp_path, rng, cut):
    path = checkpoint.save(str(tmp_path / "latest.npz"), some_arrays(rng), META)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * cut)])
    refused(path)


def test_corrupted_member(tmp_path, rng):
    """A flipped byte inside a stored array fails the zip CRC check at load, not later."""
    arrays = {"param/x": np.arange(4000, dtype=np.float32)}
    path = checkpoint.save(str(tmp_path / "c.npz"), arrays, META)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))
    refused(path)


@pytest.mark.parametrize("content", [b"", b"garbage!!", b"\x93NUMPY", b"PK\x03\x04 not really a zip"])
def test_not_a_zip(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    refused(path)


def test_garbage_is_not_called_pickle(tmp_path):
    """numpy says 'pickled data' about any file that is neither .npz nor .npy; a text file is
    not a pickle, so the message should say the file is not a checkpoint."""
    path = tmp_path / "x.npz"
    path.write_bytes(b"just some text, not a checkpoint\n")
    message = refused(path)
    assert "pickle" not in message, message


def test_missing_file(tmp_path):
    refused(tmp_path / "nope.npz")


def test_a_directory(tmp_path):
    (tmp_path / "ckpt.npz").mkdir()
    refused(tmp_path / "ckpt.npz")
    refused(str(tmp_path / "ckpt.npz") + os.sep)


def test_missing_meta(tmp_path):
    path = raw_npz(tmp_path / "nometa.npz", x=np.zeros(3))
    assert "meta" in refused(path)


@pytest.mark.parametrize("meta", [np.array("{not json"), np.array(""), np.array(b"{}"),
                                  np.array(["{}", "{}"]), np.array(3.0)])
def test_meta_not_json(tmp_path, meta):
    path = raw_npz(tmp_path / "badmeta.npz", meta=meta, x=np.zeros(3))
    assert "meta" in refused(path)


@pytest.mark.parametrize("meta", [[1, 2], {"format": "other", "version": 1}, {"version": 1}])
def test_not_ours(tmp_path, meta):
    path = raw_npz(tmp_path / "foreign.npz", meta=np.array(json.dumps(meta)))
    refused(path)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_version(tmp_path, version):
    path = checkpoint.save(str(tmp_path / "future.npz"), {"param/x": np.zeros(2)}, {"kind": "lm", "version": version})
    assert repr(version) in refused(path)


def test_kind_mismatch(tmp_path):
    path = checkpoint.save(str(tmp_path / "clf.npz"), {"param/x": np.zeros(2)}, {"kind": "classifier"})
    message = refused(path, kind="lm")
    assert "classifier" in message and "language-model" in message
    checkpoint.load(path, kind="classifier")
    checkpoint.load(path)


def test_non_numeric_entry(tmp_path):
    path = raw_npz(tmp_path / "strings.npz", meta=meta_array(), x=np.array(["a", "b"]))
    assert "'x'" in refused(path)


# ---------------------------------------------------------------- a language model against its metadata

def lm_checkpoint(path, rng, cell="lstm", drop_row=None, extra=None) -> str:
    cfg = ModelConfig(cell=cell, hidden_size=4, num_layers=2, embedding_size=3)
    vocab = "\n abcé"
    params = M.init_params(cfg, M.lm_shapes(cfg, len(vocab)), rng, np.float32)
    if drop_row:
        params[drop_row] = params[drop_row][:-1]
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update(extra or {})
    return checkpoint.save(str(path), arrays, {"kind": "lm", "model": vars(cfg).copy(), "vocab": vocab})


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_load_lm_accepts_a_consistent_checkpoint(tmp_path, rng, cell):
    lm = sample.load_lm(lm_checkpoint(tmp_path / "ok.npz", rng, cell))
    assert lm.cfg.cell == cell and lm.vocab.chars == "\n abcé"
    assert all(p.dtype == np.float32 and p.flags.c_contiguous for p in lm.params.values())


@pytest.mark.parametrize("name", ["W_hy", "b_y", "embed", "l1.W_hh"])
def test_load_lm_refuses_shapes_that_contradict_the_metadata(tmp_path, rng, name):
    path = lm_checkpoint(tmp_path / "shapes.npz", rng, drop_row=name)
    with pytest.raises(CheckpointError) as info:
        sample.load_lm(path)
    assert "shapes.npz" in str(info.value)
    assert name in str(info.value)


def test_load_lm_refuses_a_missing_parameter(tmp_path, rng):
    path = lm_checkpoint(tmp_path / "missing.npz", rng)
    arrays, meta = checkpoint.load(path)
    del arrays["param/W_hy"]
    checkpoint.save(path, arrays, meta)
    with pytest.raises(CheckpointError) as info:
        sample.load_lm(path)
    assert "missing.npz" in str(info.value) and "W_hy" in str(info.value)


def test_load_lm_refuses_non_finite_parameters(tmp_path, rng):
    path = lm_checkpoint(tmp_path / "nan.npz", rng)
    arrays, meta = checkpoint.load(path)
    arrays["param/b_y"][0] = np.nan
    checkpoint.save(path, arrays, meta)
    with pytest.raises(CheckpointError) as info:
        sample.load_lm(path)
    assert "nan.npz" in str(info.value)


@pytest.mark.parametrize("meta", [{"kind": "lm"}, {"kind": "lm", "model": {"cell": "tcn"}, "vocab": "ab"},
                                  {"kind": "lm", "model": {}, "vocab": "ba"}, {"kind": "lm", "model": {}, "vocab": 7}])
def test_load_lm_refuses_bad_metadata(tmp_path, meta):
    path = checkpoint.save(str(tmp_path / "meta.npz"), {"param/x": np.zeros(2, np.float32)}, meta)
    with pytest.raises(CheckpointError) as info:
        sample.load_lm(path)
    assert "meta.npz" in str(info.value)


def _npy_bytes(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _meta_member() -> bytes:
    return _npy_bytes(np.array(json.dumps({"format": "rnncli", "version": 1, "kind": "lm"})))


def test_many_small_bombs_are_one_big_one(tmp_path):
    """Each compressed member alone stays under the per-file floor, but together they would
    expand to 8 x 40 MiB: the bound is on all compressed members at once."""
    path = tmp_path / "bombs.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.npy", _meta_member())
        for i in range(8):
            zf.writestr(f"param/w{i}.npy", _npy_bytes(np.zeros((40 << 20) // 4, np.float32)))
    assert os.path.getsize(path) < 2 << 20
    with pytest.raises(CheckpointError, match="zip bomb"):
        checkpoint.load(str(path))


@pytest.mark.parametrize("member", ["extra.npy", "junk/x.npy", "param/.npy", "params/w.npy"])
def test_entries_outside_the_layout_are_refused_before_reading(tmp_path, member):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.npy", _meta_member())
        zf.writestr(member, _npy_bytes(np.zeros(4, np.float32)))
    with pytest.raises(CheckpointError, match="unexpected entry"):
        checkpoint.load(str(path))


@pytest.mark.parametrize("target", ["device", "fifo", "dir"])
def test_a_checkpoint_never_replaces_what_is_not_a_regular_file(tmp_path, target, rng):
    if target == "device":  # a null device of our own, not the system's /dev/null
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        target = str(tmp_path / "null")
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif target == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
    elif target == "dir":
        target = str(tmp_path / "dir")
        os.mkdir(target)
    before = os.stat(target)
    with pytest.raises(TargetError, match="regular file"):
        checkpoint.save(target, some_arrays(rng), META)
    after = os.stat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
