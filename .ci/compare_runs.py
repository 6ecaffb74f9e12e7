"""Compare the outputs that .ci/same_behaviour.sh wrote for two commits.

    python .ci/compare_runs.py OLD_DIR NEW_DIR      everything, one line per item, exit 1 on any difference
    python .ci/compare_runs.py --npz A.npz B.npz    two checkpoints alone

An output folder holds cmds/<name>.{argv,stdout,stderr,rc}, runs/<name>/<run folder>/*.npz,
data/ (the generated inputs), env.txt and paths.json (where its worktree and folder were when it
ran: those prefixes are written into paths, stdout and checkpoint metadata, and are replaced by
placeholders before comparing). Commands named cross.<name> exist only in the newer folder: the
newer code run on the older folder's checkpoints; each is compared with <name> of the older folder.

Only stdout, exit codes, argv, inputs, the environment and checkpoints count. stderr carries
speeds and timings, so it is compared with those neutralised and reported for information only.
"""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np

# Metadata keys that differed between two runs of one commit (every key of every checkpoint was
# diffed): clocks, and the run id each run draws at random. Paths are not here: they are normalised, not dropped, so a checkpoint
# that recorded another file still differs.
VOLATILE = {
    ("saved_at",),                     # LM: wall-clock time of the save
    ("run_id",),                       # LM: drawn when a run starts (absent before it was recorded)
    ("progress", "seconds"),           # LM: training time so far (a resumed run's clock goes on from it)
    ("progress", "step_seconds"),      # LM: summed step durations (the mean speed)
    ("progress", "history", "time"),   # LM: [step, seconds] at each evaluation
    ("history", "*", "seconds"),       # classifier: seconds at the end of each epoch
}

# A resumed run writes into its checkpoint's folder and keeps the output folder the first half was
# given, so against the uninterrupted run (another --out) only that setting may differ.
PAIR_ONLY = {("config", "out_dir")}

# The run in which a checkpoint was resumed, and the uninterrupted run it must equal.
RESUME_PAIRS = [("resume-continued", "resume-full")]

TIME_RE = re.compile(r"\d{8}-\d{6}(-\d+)?")  # run folders are <name>-YYYYmmdd-HHMMSS[-N]
# stderr: speeds and durations are neutralised (the losses on the same lines stay compared), and the
# compile notice goes (it depends on whether a cache was there, not on the code); table padding,
# which follows the width of those numbers, is collapsed
STDERR_SPEED = re.compile(r"\d[\d,.]*k? chars/s")
STDERR_SECONDS = re.compile(r"\b\d[\d,.]* s\b")
STDERR_DROP = re.compile(r"^Compiling the Numba kernels")


class Paths:
    """Turns the absolute locations recorded by both runs into placeholders."""

    def __init__(self, *dirs: str):
        subs = []
        for d in dirs:
            recorded = {}
            p = os.path.join(d, "paths.json")
            if os.path.exists(p):
                with open(p, encoding="utf-8") as f:
                    recorded = json.load(f)
            # "from": the older folder whose checkpoints the cross commands read
            for key, mark in (("tree", "<TREE>"), ("out", "<OUT>"), ("from", "<OUT>")):
                if recorded.get(key):
                    subs.append((recorded[key].rstrip("/"), mark))
            # a folder copied elsewhere after its run (a kept baseline) is its own <OUT> as well
            subs.append((os.path.realpath(d).rstrip("/"), "<OUT>"))
            subs.append((os.path.abspath(d).rstrip("/"), "<OUT>"))
        # longest first, so a tree inside an output folder is not half replaced
        self.subs = sorted(set(subs), key=lambda s: -len(s[0]))

    def text(self, s: str) -> str:
        for prefix, mark in self.subs:
            s = s.replace(prefix, mark)
        s = TIME_RE.sub("<TIME>", s)
        return s.replace("/runs/cross.", "/runs/")

    def value(self, v):
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        return v


def _drop(meta, keys: set):
    """meta without the keys named by paths (tuples; "*" matches every list item or key)."""
    def walk(v, path):
        if isinstance(v, dict):
            return {k: walk(x, path + (k,)) for k, x in v.items() if not _matches(path + (k,), keys)}
        if isinstance(v, list):
            return [walk(x, path + ("*",)) for x in v]
        return v
    return walk(meta, ())


def _matches(path: tuple, keys: set) -> bool:
    return any(len(k) == len(path) and all(a == "*" or a == b for a, b in zip(k, path)) for k in keys)


def _differences(a, b, where="meta") -> list[str]:
    """Every leaf at which a and b differ, as "where: a != b"."""
    if type(a) is not type(b):
        return [f"{where}: {_short(a)} != {_short(b)}"]
    if isinstance(a, dict):
        found = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                found.append(f"{where}.{k}: only in the {'new' if k in b else 'old'} one")
            else:
                found += _differences(a[k], b[k], f"{where}.{k}")
        return found
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    # floats by their bits: -0.0 and 0.0, or two NaNs, are not taken for each other
    if a != b or (isinstance(a, float) and np.float64(a).tobytes() != np.float64(b).tobytes()):
        return [f"{where}: {_short(a)} != {_short(b)}"]
    return []


def _short(v) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def compare_npz(a_path: str, b_path: str, paths: Paths, ignore: set = frozenset()) -> str | None:
    """None when the two checkpoints are the same, else why not."""
    with np.load(a_path, allow_pickle=False) as a, np.load(b_path, allow_pickle=False) as b:
        if set(a.files) != set(b.files):
            only_a, only_b = sorted(set(a.files) - set(b.files)), sorted(set(b.files) - set(a.files))
            return f"members differ (only old: {only_a[:5]}, only new: {only_b[:5]})"
        if a.files != b.files:
            return "same members in another order"
        for name in a.files:
            x, y = a[name], b[name]
            if name == "meta":
                if x.shape != () or y.shape != () or x.dtype.kind != "U" or y.dtype.kind != "U":
                    return "meta is not a 0-d string"
                ma = _drop(paths.value(json.loads(str(x))), VOLATILE | ignore)
                mb = _drop(paths.value(json.loads(str(y))), VOLATILE | ignore)
                found = _differences(ma, mb)
                if found:
                    more = f" (and {len(found) - 1} more: {', '.join(d.split(':')[0] for d in found[1:4])}" \
                           f"{', ...' if len(found) > 4 else ''})" if len(found) > 1 else ""
                    return found[0] + more
                continue
            if x.dtype != y.dtype:
                return f"{name}: dtype {x.dtype} != {y.dtype}"
            if x.shape != y.shape:
                return f"{name}: shape {x.shape} != {y.shape}"
            if not np.array_equal(np.ascontiguousarray(x).view(np.uint8), np.ascontiguousarray(y).view(np.uint8)):
                diff = np.flatnonzero(np.ascontiguousarray(x).reshape(-1).view(np.uint8)
                                      != np.ascontiguousarray(y).reshape(-1).view(np.uint8))
                k = int(diff[0]) // max(1, x.dtype.itemsize)
                return (f"{name}: {len(diff)} bytes differ, first at element {k} "
                        f"({x.reshape(-1)[k]!r} != {y.reshape(-1)[k]!r})")
    return None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _text(path: str, paths: Paths) -> str | None:
    raw = _read(path)
    return None if raw is None else paths.text(raw.decode("utf-8", "surrogateescape"))


# The run log's clocks: wall time and speed, which differ between two runs of one commit.
LOG_VOLATILE = ("seconds", "chars_per_sec")


def _run_file(path: str, paths: Paths) -> str | None:
    """A run folder's text file, the run log's clock columns dropped (metrics.jsonl, .csv)."""
    text = _text(path, paths)
    name = os.path.basename(path)
    if text is None or name not in ("metrics.jsonl", "metrics.csv"):
        return text
    lines = text.splitlines()
    if name == "metrics.jsonl":
        return "\n".join(json.dumps({k: v for k, v in json.loads(line).items() if k not in LOG_VOLATILE})
                         for line in lines if line.strip())
    header = lines[0].split(",") if lines else []
    keep = [i for i, col in enumerate(header) if col not in LOG_VOLATILE]
    return "\n".join(",".join(cells[i] for i in keep if i < len(cells)) for cells in (ln.split(",") for ln in lines))


def _line_diff(a: str, b: str) -> str:
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            col = next((j for j, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            lo = max(0, col - 30)
            return f"line {i + 1} col {col + 1}: {x[lo:lo + 60]!r} != {y[lo:lo + 60]!r}"
    if len(la) != len(lb):
        return f"{len(la)} lines != {len(lb)}"
    return "trailing bytes differ"


def _stderr_kept(s: str) -> str:
    kept = (re.sub(r" +", " ", re.sub(r"[─━]+", "─", STDERR_SECONDS.sub("<T> s", STDERR_SPEED.sub("<SPEED> chars/s", line))))
            for line in s.splitlines() if not STDERR_DROP.search(line))
    return "\n".join(kept)


def checkpoints(d: str) -> dict:
    """{"<command>/<run folder>/<file>": path} for every file under runs/, the run folder's
    time stamp replaced (one run folder per command, so the command and file name pair them)."""
    found = {}
    root = os.path.join(d, "runs")
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n == ".lock":  # the run folder's lock: it holds the writer's PID, nothing of the run
                continue
            p = os.path.join(dirpath, n)
            found[TIME_RE.sub("<TIME>", os.path.relpath(p, root))] = p
    return found


class Tally:
    def __init__(self):
        self.same = self.different = 0

    def item(self, what: str, why: str | None) -> None:
        if why is None:
            self.same += 1
            print(f"same       {what}")
        else:
            self.different += 1
            print(f"DIFFERENT  {what}: {why}")


def compare_dirs(old: str, new: str) -> int:
    paths = Paths(old, new)
    t = Tally()
    info = []

    for what in ("env.txt",):
        a, b = _text(os.path.join(old, what), paths), _text(os.path.join(new, what), paths)
        t.item(what, None if a == b and a is not None else
               ("missing" if a is None or b is None else "runs made on different setups: " + _line_diff(a, b)))

    data_old, data_new = os.path.join(old, "data"), os.path.join(new, "data")
    names = sorted(set(os.listdir(data_old) if os.path.isdir(data_old) else [])
                   | set(os.listdir(data_new) if os.path.isdir(data_new) else []))
    for n in names:
        a, b = _read(os.path.join(data_old, n)), _read(os.path.join(data_new, n))
        t.item(f"input {n}", "missing on one side" if a is None or b is None else
               None if a == b else "bytes differ")

    cmds_old, cmds_new = os.path.join(old, "cmds"), os.path.join(new, "cmds")

    def commands(d):
        return sorted({os.path.splitext(n)[0] for n in os.listdir(d) if n.endswith(".argv")}) if os.path.isdir(d) else []

    old_names, new_names = commands(cmds_old), commands(cmds_new)
    pairs = [(n, n) for n in sorted(set(old_names) | set(n for n in new_names if not n.startswith("cross.")))]
    pairs += [(n[len("cross."):], n) for n in new_names if n.startswith("cross.")]
    for o, n in pairs:
        label = f"stdout {n}" if o == n else f"stdout {n} (new code, old checkpoint) vs old {o}"
        base_o, base_n = os.path.join(cmds_old, o), os.path.join(cmds_new, n)
        if not os.path.exists(base_o + ".argv") or not os.path.exists(base_n + ".argv"):
            t.item(label, f"command run only by the {'new' if os.path.exists(base_n + '.argv') else 'old'} folder")
            continue
        why = None
        argv_o, argv_n = _text(base_o + ".argv", paths), _text(base_n + ".argv", paths)
        rc_o, rc_n = (_read(base_o + ".rc") or b"?").strip(), (_read(base_n + ".rc") or b"?").strip()
        out_o, out_n = _text(base_o + ".stdout", paths), _text(base_n + ".stdout", paths)
        if argv_o != argv_n:
            why = "not the same command: " + _line_diff(argv_o, argv_n)
        elif rc_o != rc_n:
            why = f"exit code {rc_o.decode()} != {rc_n.decode()}"
        elif out_o != out_n:
            why = _line_diff(out_o or "", out_n or "")
        t.item(label + f" (exit {rc_n.decode()})", why)
        err_o, err_n = _text(base_o + ".stderr", paths), _text(base_n + ".stderr", paths)
        if err_o is not None and err_n is not None and _stderr_kept(err_o) != _stderr_kept(err_n):
            info.append(f"stderr {n}: {_line_diff(_stderr_kept(err_o), _stderr_kept(err_n))}")

    ck_old, ck_new = checkpoints(old), checkpoints(new)
    keys = sorted(set(ck_old) | {k for k in ck_new if not k.startswith("cross.")})
    keys = [(k, k) for k in keys] + [(k[len("cross."):], k) for k in sorted(ck_new) if k.startswith("cross.")]
    for ko, kn in keys:
        label = f"file {kn}" if ko == kn else f"file {kn} (new code resumed an old checkpoint) vs old {ko}"
        if ko not in ck_old or kn not in ck_new:
            t.item(label, f"only in the {'new' if kn in ck_new else 'old'} folder")
        elif kn.endswith(".npz"):
            t.item(label, compare_npz(ck_old[ko], ck_new[kn], paths))
        else:
            a, b = _run_file(ck_old[ko], paths), _run_file(ck_new[kn], paths)
            t.item(label, None if a == b else _line_diff(a, b))

    for side, ck in (("old", ck_old), ("new", ck_new)):
        for resumed, full in RESUME_PAIRS:
            for which in ("latest.npz", "best.npz"):
                a = [p for k, p in ck.items() if k.startswith(resumed + "/") and k.endswith("/" + which)]
                b = [p for k, p in ck.items() if k.startswith(full + "/") and k.endswith("/" + which)]
                label = f"{side}: {resumed}/{which} = {full}/{which} (resumed = uninterrupted)"
                if len(a) != 1 or len(b) != 1:
                    t.item(label, "checkpoint missing")
                else:
                    t.item(label, compare_npz(a[0], b[0], paths, PAIR_ONLY))

    for line in info:
        print(f"info       {line} (stderr, not counted)")
    print(f"{t.same} same, {t.different} different")
    return 1 if t.different else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--npz":
        why = compare_npz(argv[1], argv[2], Paths(os.path.dirname(argv[1]), os.path.dirname(argv[2])))
        t = Tally()
        t.item(f"{argv[1]} vs {argv[2]}", why)
        print(f"{t.same} same, {t.different} different")
        return 1 if why else 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    return compare_dirs(*argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
