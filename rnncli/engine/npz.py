"""Checkpoints: one .npz per file, written atomically, read without pickle.

Layout (any numpy can read it: ``np.load(path, allow_pickle=False)``):

    meta                 0-d unicode array holding JSON: {"format": "rnncli", "version": 1,
                         "kind": "lm" | "classifier", ...}
    param/<name>         every parameter, by name (model.py lists them)
    raw/<name>           with weight averaging (--ema): the trained weights a resumed run continues
                         from; param/ then holds the average, which sampling and evaluation use
    opt/<slot>/<name>    optimizer state (e.g. opt/m/l0.W_hh for Adam)
    state/<name>         other arrays the kind needs (e.g. the carried hidden state)
    ngram/<name>         the classifier's n-gram part

Saving writes a temporary file in the target directory, flushes and fsyncs it, then renames it
over the target: a crash at any instant leaves either the old file or the new one. A process
killed mid-save (SIGKILL, power loss) leaves its `.tmp-<pid>-*.npz` behind; the next save into
that directory removes temporary files whose process is gone.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import struct
import tempfile
import time
import tokenize
import zipfile
import zlib

import numpy as np

from rnncli.data.files import check_target, current_umask, special_file
from rnncli.errors import CheckpointError

FORMAT = "rnncli"
VERSION = 1
TMP_PREFIX = ".tmp-"
INFLATE_RATIO = 50  # float weights deflate to ~90%; only long runs of one value shrink more
INFLATE_FLOOR = 64 << 20
# The entries a checkpoint may hold: meta, and arrays under these prefixes (the layout above).
KNOWN_PREFIXES = ("param/", "raw/", "opt/", "state/", "ngram/")


def save(path: str, arrays: dict[str, np.ndarray], meta: dict) -> str:
    """Atomically write arrays and meta to path; returns path. Raises CheckpointError, or
    TargetError when path is not a regular file (or a new one)."""
    check_target(path, "a checkpoint")
    directory = os.path.dirname(os.path.abspath(path))
    meta = {"format": FORMAT, "version": VERSION, **meta}
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=".npz", dir=directory)
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes files private; a checkpoint is an ordinary file
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
        _remove_stale_temps(directory)
    except OSError as e:
        _remove_quietly(tmp)
        raise CheckpointError(f"{path}: cannot write checkpoint ({e.strerror or e}); "
                              f"the previous file, if any, is unchanged") from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


def new_run_dir(out_dir: str, name: str) -> str:
    """Create and return out_dir/name-<time>, adding -2, -3 ... when that folder exists
    (two runs started in the same second never share a folder)."""
    base = os.path.join(out_dir, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = base, 1
    while True:
        try:
            os.makedirs(path, exist_ok=False)
            return path
        except FileExistsError:
            n += 1
            path = f"{base}-{n}"
        except OSError as e:
            raise CheckpointError(f"{out_dir}: cannot create the run folder ({e.strerror or e})") from None


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


def _remove_stale_temps(directory: str) -> None:
    """Delete `.tmp-<pid>-*.npz` files left by saves whose process no longer exists."""
    if os.name != "posix":  # os.kill(pid, 0) only probes on POSIX
        return
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        pid = entry[len(TMP_PREFIX):].split("-", 1)[0]
        if entry.startswith(TMP_PREFIX) and entry.endswith(".npz") and pid.isdigit() and not _alive(int(pid)):
            _remove_quietly(os.path.join(directory, entry))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# What zipfile, zlib and the .npy header parser raise on damaged or hostile bytes.
# tokenize.TokenError: numpy's .npy header parser tokenizes the header text, and a damaged
# header can stop it mid-expression (found by the fuzz test)
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, OverflowError,
               RuntimeError, MemoryError, SyntaxError, struct.error, zlib.error, lzma.LZMAError,
               zipfile.BadZipFile, tokenize.TokenError)
_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_meta(path: str, kind: str | None = None) -> dict:
    """The metadata alone (every entry's name and size checked as load checks them, the arrays
    left unread): what a writer asks of a file before it replaces it."""
    return load(path, kind, arrays=False)[1]


def load(path: str, kind: str | None = None, arrays: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Read every array and the metadata. Anything unexpected raises CheckpointError naming path.
    arrays=False reads the metadata only (the arrays returned are then empty).

    The archive is read member by member with zipfile and numpy's .npy header parser, never with
    pickle: every member must be one .npy array of numbers (meta: a JSON string) whose header
    matches the bytes it holds, so a forged header cannot make us allocate more than the file
    holds. Arrays are read eagerly and their CRCs checked, so damage fails here, not later.
    """
    name = path  # named as the user gave it: a basename can hide which file was meant
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    kind_of_file = special_file(path)
    if kind_of_file:
        raise CheckpointError(f"{name}: is {kind_of_file}, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if not zipfile.is_zipfile(path):
            if head == b"PK\x03\x04":
                raise CheckpointError(f"{name}: truncated or damaged (the zip archive has no directory "
                                      f"at its end)")
            raise CheckpointError(f"{name}: not an .npz checkpoint (not a zip archive)")
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            keys = [_member_key(info.filename, name) for info in infos]
            _check_sizes(infos, name)
            seen = set()
            for key in keys:
                if key in seen:
                    raise CheckpointError(f"{name}: entry {key!r} appears twice")
                seen.add(key)
            found = {}
            for info, key in zip(infos, keys):
                if arrays or key == "meta":
                    found[key] = _read_member(zf, info, key, name)
    except CheckpointError:
        raise
    except _UNREADABLE as e:
        raise CheckpointError(f"{name}: not a readable checkpoint ({_short(e)})") from None
    if "meta" not in found:
        raise CheckpointError(f"{name}: not an rnncli checkpoint (no 'meta' entry)")
    raw = found.pop("meta")
    if raw.shape != () or raw.dtype.kind != "U":
        raise CheckpointError(f"{name}: 'meta' is not a JSON string")
    try:
        meta = json.loads(str(raw))
    except (ValueError, RecursionError):
        raise CheckpointError(f"{name}: 'meta' is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not an rnncli checkpoint")
    version = meta.get("version")
    if type(version) is not int or version != VERSION:
        raise CheckpointError(f"{name}: checkpoint format version {version!r}; this "
                              f"rnncli reads version {VERSION}")
    if kind is not None and meta.get("kind") != kind:
        what = {"lm": "a language-model", "classifier": "a classifier"}
        found = meta.get("kind")
        found = what.get(found, "an unknown") if isinstance(found, str) else "an unknown"
        raise CheckpointError(f"{name}: is {found} checkpoint, expected {what.get(kind, kind)} checkpoint")
    for key, a in found.items():
        if key.startswith(("param/", "raw/", "opt/", "state/")) and a.dtype.kind != "f":
            raise CheckpointError(f"{name}: entry {key!r} has dtype {a.dtype}, expected floating-point numbers")
        if a.dtype.kind not in "fiu":
            raise CheckpointError(f"{name}: entry {key!r} has dtype {a.dtype}, expected numbers")
    return found, meta


def _check_sizes(infos: list, name: str) -> None:
    """Bound what decompression may produce before anything is read or allocated.

    Each member's size as declared in the zip directory is what zipfile lets it expand to, and
    _read_member then requires the .npy header to declare exactly that. So the declared sizes
    are the bound, and here they are held to the bytes the file really has: a stored member
    holds its size in the file; compressed members together may expand INFLATE_RATIO times their
    packed bytes or up to INFLATE_FLOOR, whichever is larger (deflated zeros reach about 1000x: a
    zip bomb, and many small bombs are one big one); and all members together must fit in this
    machine's memory.
    """
    total = inflated = packed_total = 0
    for info in infos:
        size, packed = info.file_size, info.compress_size
        if info.compress_type == zipfile.ZIP_STORED:
            if size != packed:
                raise CheckpointError(f"{name}: entry {info.filename!r} declares {size:,} bytes but stores "
                                      f"{packed:,}; truncated or forged")
        else:
            inflated += size
            packed_total += packed
        total += size
    if inflated > max(INFLATE_FLOOR, INFLATE_RATIO * packed_total):
        raise CheckpointError(f"{name}: its compressed entries would expand from {packed_total:,} to "
                              f"{inflated:,} bytes ({inflated / max(1, packed_total):,.0f}x); refused as a likely "
                              f"zip bomb (compressed entries may expand {INFLATE_RATIO}x in all, or to "
                              f"{INFLATE_FLOOR >> 20} MiB)")
    memory = _physical_memory()
    if memory and total > memory:
        raise CheckpointError(f"{name}: its arrays declare {total / 2**30:,.1f} GiB, more than this machine's "
                              f"{memory / 2**30:,.1f} GiB of memory; refused")


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: no bound from memory
        return 0


def _member_key(filename: str, name: str) -> str:
    """np.savez names every member `<key>.npy`; anything else, or a key outside the layout, is
    not ours (and is refused before it is read: unknown members cost memory and prove nothing)."""
    if not filename.endswith(".npy") or len(filename) == 4:
        raise CheckpointError(f"{name}: unexpected entry {filename!r} (not a numpy array)")
    key = filename[:-4]
    if key != "meta" and not (key.startswith(KNOWN_PREFIXES) and len(key) > key.index("/") + 1):
        raise CheckpointError(f"{name}: unexpected entry {key!r}; a checkpoint holds meta and "
                              f"{', '.join(p + '...' for p in KNOWN_PREFIXES)} only")
    return key


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, name: str) -> np.ndarray:
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in _HEADERS:
            raise CheckpointError(f"{name}: entry {key!r} uses .npy format version {version}, "
                                  f"expected 1.0 or 2.0")
        shape, fortran, dtype = _HEADERS[version](f)
        if dtype.hasobject:
            raise CheckpointError(f"{name}: contains pickled objects, which are refused "
                                  f"(loading them could run code)")
        if any(n < 0 for n in shape):
            raise CheckpointError(f"{name}: entry {key!r} has a negative dimension {shape}")
        count = math.prod(shape)
        held = info.file_size - f.tell()
        if count * dtype.itemsize != held:
            raise CheckpointError(f"{name}: entry {key!r} declares {count * dtype.itemsize} bytes of "
                                  f"data but holds {held}; truncated or forged")
        flat = np.empty(count, dtype)
        if flat.nbytes:
            view = memoryview(flat.view(np.uint8))
            done = 0
            while done < flat.nbytes:
                got = f.readinto(view[done:])
                if not got:
                    raise CheckpointError(f"{name}: entry {key!r} is truncated")
                done += got
        if f.read(1):  # also reaches the end, where zipfile checks the CRC
            raise CheckpointError(f"{name}: entry {key!r} has bytes after its data")
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


def group(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Entries under prefix/, with the prefix stripped."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}
