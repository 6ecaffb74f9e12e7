"""Checkpoints: one .npz per file, written atomically, read without pickle.

Layout (any numpy can read it: ``np.load(path, allow_pickle=False)``):

    meta                 0-d unicode array holding JSON: {"format": "rnncli", "version": 1,
                         "kind": "lm" | "classifier", ...}
    param/<name>         every parameter, by name (model.py lists them)
    opt/<slot>/<name>    optimizer state (e.g. opt/m/l0.W_hh for Adam)
    state/<name>         other arrays the kind needs (e.g. the carried hidden state)

Saving writes a temporary file in the target directory, flushes and fsyncs it, then renames it
over the target: a crash at any instant leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from rnncli.errors import CheckpointError

FORMAT = "rnncli"
VERSION = 1


def save(path: str, arrays: dict[str, np.ndarray], meta: dict) -> str:
    """Atomically write arrays and meta to path; returns path. Raises CheckpointError."""
    directory = os.path.dirname(os.path.abspath(path))
    meta = {"format": FORMAT, "version": VERSION, **meta}
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write checkpoint ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            # Through a file object, so np.savez does not append ".npz" to the name.
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as e:
        _remove_quietly(tmp)
        raise CheckpointError(f"{path}: cannot write checkpoint ({e.strerror or e}); "
                              f"the previous file, if any, is unchanged") from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def load(path: str, kind: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read every array and the metadata. Anything unexpected raises CheckpointError naming path.

    Arrays are read eagerly, so a truncated or corrupted member fails here, not later.
    """
    name = os.path.basename(path) or path
    if os.path.isdir(path):
        raise CheckpointError(f"{name}: is a directory, not a checkpoint file")
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{name}: not an .npz checkpoint (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise CheckpointError(f"{name}: contains pickled objects, which are refused "
                                  f"(loading them could run code)") from None
        raise CheckpointError(f"{name}: not a readable checkpoint ({_short(e)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError, TypeError, MemoryError) as e:
        raise CheckpointError(f"{name}: not a readable checkpoint ({_short(e)})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{name}: not an rnncli checkpoint (no 'meta' entry)")
    raw = arrays.pop("meta")
    if raw.shape != () or raw.dtype.kind != "U":
        raise CheckpointError(f"{name}: 'meta' is not a JSON string")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError:
        raise CheckpointError(f"{name}: 'meta' is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not an rnncli checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{name}: checkpoint format version {meta.get('version')!r}; this "
                              f"rnncli reads version {VERSION}")
    if kind is not None and meta.get("kind") != kind:
        what = {"lm": "a language-model", "classifier": "a classifier"}
        raise CheckpointError(f"{name}: is {what.get(meta.get('kind'), 'an unknown')} checkpoint, "
                              f"expected {what.get(kind, kind)} checkpoint")
    for key, a in arrays.items():
        if a.dtype.kind not in "fiu":
            raise CheckpointError(f"{name}: entry {key!r} has dtype {a.dtype}, expected numbers")
    return arrays, meta


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


def group(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Entries under prefix/, with the prefix stripped."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}
