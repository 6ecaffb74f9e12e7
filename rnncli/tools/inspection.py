"""Numbers about a model, for the report: hidden units over text, gate saturation, gradients
through time, and what a run folder recorded. Arrays and dataclasses out; report.py draws them.

Import it as `from rnncli import inspect as ins` (the name is the standard library's too).

    units       every unit's activation over a passage, its correlation with simple properties
                of the text (inside quotes or brackets, position in the line, ...), and the
                units most tied to each property
    saturation  per layer and sigmoid gate, the fraction of steps each unit spends below 0.1
                (left-saturated) and above 0.9 (right-saturated)
    gradients   ||dL/dh_{t-k}|| against k, for a loss at step t only, read from the cells' own
                BPTT kernels one step at a time (model.stack_state_grads), in float64; for a
                classifier, its cross-entropy on a text against the state k steps before the
                last one each recurrent stack reads (classifier_gradients)
"""

from __future__ import annotations

import glob
import json
import math
import os
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from rnncli.config import CELLS, ModelConfig
from rnncli.data.chars import Vocab, read_text, split_train_val
from rnncli.engine import model as M
from rnncli.engine import npz as checkpoint
from rnncli.engine import threads as blas
from rnncli.errors import CheckpointError, CorpusError, RnnError

LN2 = math.log(2.0)
TEMPERATURES = (0.2, 0.5, 0.8, 1.2)
# sigmoid gates, by their index in the fused weights (config.GATES); tanh blocks are left out
SIGMOID_GATES = {"lstm": (("input", 0), ("forget", 1), ("output", 3)), "gru": (("reset", 0), ("update", 1))}
OPENERS, CLOSERS, TOGGLES = "([{«“‘", ")]}»”’", '"'
PROPERTIES = ("inside quotes or brackets", "position in the line", "just read a newline", "vowel",
              "upper case", "space")


# ---------------------------------------------------------------- runs and their history

@dataclass
class RunFiles:
    run_dir: str
    model: str  # the checkpoint whose weights are inspected (best.npz when there is one)
    history: str  # the checkpoint with the longest history (latest.npz when there is one)


def resolve_run(run: str | None, out_dir: str = "runs") -> RunFiles:
    """A run folder, a checkpoint in one, or (None) the most recently written run under out_dir."""
    if run is None:
        found = [p for p in glob.glob(os.path.join(out_dir, "*", "*.npz"))
                 if os.path.basename(p) in ("best.npz", "latest.npz")]
        if not found:
            raise CheckpointError(f"no run found under {out_dir}/; run `rnn train` first or give a run folder")
        run = os.path.dirname(max(found, key=os.path.getmtime))
    run = os.path.normpath(run)
    if os.path.isdir(run):
        best, latest = os.path.join(run, "best.npz"), os.path.join(run, "latest.npz")
        have = [p for p in (best, latest) if os.path.isfile(p)]
        if not have:
            raise CheckpointError(f"{run}: no best.npz or latest.npz in this folder; give a run folder "
                                  f"made by `rnn train` or `rnn classify train`, or a checkpoint")
        return RunFiles(run, have[0], have[-1])
    if not os.path.isfile(run):
        raise CheckpointError(f"{run}: no such run folder or checkpoint")
    run_dir = os.path.dirname(os.path.abspath(run))
    latest = os.path.join(run_dir, "latest.npz")
    return RunFiles(run_dir, run, latest if os.path.isfile(latest) else run)


@dataclass
class Curves:
    """A language model's learning curves (nats/char), from checkpoint metadata or the run's log."""

    steps: np.ndarray  # (n,) evaluation steps
    train: np.ndarray  # (n,) mean training loss since the previous evaluation
    val: np.ndarray  # (n,) validation loss, NaN where none
    seconds: np.ndarray | None  # (n,) wall time at each evaluation; None in older checkpoints
    best_step: int | None
    best_val: float | None
    lr: np.ndarray | None = None  # (n,) learning rate of the last step before each evaluation (the log only)
    source: str = "checkpoint"  # "checkpoint" (its history) or "log" (RUN/metrics.jsonl)


# A number a run records (a loss, an accuracy, seconds, a step) is never beyond this; one that is
# came from a damaged or crafted checkpoint, and the plotting library cannot scale an axis to it.
RECORDED_MAX = 1e30


def recorded_number(v) -> float:
    """v as a float when it is a number a run could have recorded, else NaN (drawn as a gap)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return math.nan
    v = float(v) if abs(v) <= RECORDED_MAX else math.nan  # abs first: float(10**400) overflows
    return v if math.isfinite(v) else math.nan


def recorded_step(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 53  # exact in a float, fits int64


def lm_curves(meta: dict) -> Curves:
    """The loss history in meta["progress"]; entries that are not [step, number] are skipped.
    Wall time is matched to the steps it was recorded at (checkpoints written before it was
    recorded, or resumed from one, lack some or all of it)."""
    progress = meta.get("progress") if isinstance(meta.get("progress"), dict) else {}
    history = progress.get("history") if isinstance(progress.get("history"), dict) else {}

    def pairs(name: str) -> dict:
        rows = history.get(name) if isinstance(history.get(name), list) else []
        return {int(r[0]): recorded_number(r[1]) for r in rows if isinstance(r, list) and len(r) == 2 and recorded_step(r[0])}

    train, val, when = pairs("train"), pairs("val"), pairs("time")
    steps = np.array(sorted(train), dtype=np.int64)
    seconds = None
    if steps.size and all(s in when and math.isfinite(when[s]) for s in steps):
        seconds = np.array([when[s] for s in steps])
    best_val = recorded_number(progress.get("best_val"))
    best_step = progress.get("best_step")
    return Curves(steps, np.array([train[s] for s in steps]), np.array([val.get(s, math.nan) for s in steps]),
                  seconds, best_step if isinstance(best_step, int) and math.isfinite(best_val) else None,
                  best_val if math.isfinite(best_val) else None)


# The run log (lm/runlog.py) is read only up to this size: about a million evaluations' rows.
LOG_MAX_BYTES = 256 << 20
LOG_NAME = "metrics.jsonl"


def log_rows(run_dir: str) -> dict | None:
    """step -> row of RUN/metrics.jsonl, for the lines that are rows a run could have written
    (a JSON object whose step is a whole number); others, such as a partial last line left by a
    killed process, are skipped. None when there is no log, it is not a regular file, it is
    larger than LOG_MAX_BYTES, or two rows claim one step."""
    from rnncli.data.files import open_input

    path = os.path.join(run_dir, LOG_NAME)
    if not os.path.lexists(path):
        return None
    try:
        with open_input(path, "the run's log") as f:
            data = f.read(LOG_MAX_BYTES + 1)
    except (RnnError, OSError):
        return None
    if len(data) > LOG_MAX_BYTES:
        return None
    rows = {}
    for line in data.split(b"\n"):
        try:
            row = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
        if not isinstance(row, dict) or not recorded_step(row.get("step")):
            continue
        if row["step"] in rows:
            return None
        rows[row["step"]] = row
    return rows


def run_curves(run_dir: str, meta: dict) -> Curves:
    """The learning curves of a run: from its log (RUN/metrics.jsonl) when the log is there and
    agrees with the checkpoint's history (the same evaluation steps, the same training losses),
    with the learning rate the log records; otherwise from the checkpoint's history, as
    lm_curves reads it. Every number is read as recorded_number reads it."""
    c = lm_curves(meta)
    rows = log_rows(run_dir)
    if not rows or sorted(rows) != c.steps.tolist():
        return c
    logged = [rows[s] for s in c.steps.tolist()]
    train = np.array([recorded_number(r.get("train_loss")) for r in logged])
    if not np.array_equal(train, c.train, equal_nan=True):
        return c  # another run's log, or a checkpoint restored over the one the log describes
    val = np.array([recorded_number(r.get("val_loss")) for r in logged])
    seconds = np.array([recorded_number(r.get("seconds")) for r in logged])
    lr = np.array([recorded_number(r.get("lr")) for r in logged])
    return Curves(c.steps, train, val, seconds if np.isfinite(seconds).all() else c.seconds, c.best_step, c.best_val,
                  lr if np.isfinite(lr).any() else None, "log")


# ---------------------------------------------------------------- properties of text

def text_properties(text: str) -> dict[str, np.ndarray]:
    """Per character, float (n,): what a unit might track after reading it.

    inside quotes or brackets: 1 from an opening ( [ { « “ ‘ or a first " up to (not including)
    its closing one, or the end of the paragraph; position in the line: characters since the last newline; just read a
    newline; vowel (a e i o u, accents ignored); upper case; space.
    """
    n = len(text)
    inside = np.zeros(n)
    column = np.zeros(n)
    depth, quoted, col = 0, False, 0
    for t, ch in enumerate(text):
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth = max(0, depth - 1)
        elif ch in TOGGLES:
            quoted = not quoted
        inside[t] = 1.0 if depth > 0 or quoted else 0.0
        col = 0 if ch == "\n" else col + 1
        column[t] = col
        if ch == "\n" and t and text[t - 1] == "\n":
            depth, quoted = 0, False  # an unclosed quote or bracket ends with its paragraph
    base = [unicodedata.normalize("NFD", ch)[0].lower() for ch in text]
    return {
        "inside quotes or brackets": inside,
        "position in the line": column,
        "just read a newline": np.array([ch == "\n" for ch in text], float),
        "vowel": np.array([b in "aeiou" for b in base], float),
        "upper case": np.array([ch.isupper() for ch in text], float),
        "space": np.array([ch == " " for ch in text], float),
    }


def correlations(values: np.ndarray, props: dict[str, np.ndarray]) -> np.ndarray:
    """Pearson r of each column of values (n, U) with each property (n,): (P, U), in the order
    of props; 0 where either side is constant."""
    v = values - values.mean(axis=0)
    v_norm = np.sqrt((v * v).sum(axis=0))
    out = np.zeros((len(props), values.shape[1]))
    for i, p in enumerate(props.values()):
        q = p - p.mean()
        q_norm = math.sqrt(float(q @ q))
        if q_norm == 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (q @ v) / (q_norm * v_norm)
        out[i] = np.where(v_norm > 0, r, 0.0)
    return out


# ---------------------------------------------------------------- activations and units

@dataclass
class Activity:
    """What the model computed while reading a passage of n characters (B = 1)."""

    h: np.ndarray  # (L, n, H) hidden states
    c: np.ndarray | None  # (L, n, H) LSTM cells, else None
    gates: np.ndarray | None  # (L, n, G, H) activated gates (LSTM i f g o, GRU r z n), else None


def activity(cfg: ModelConfig, params: dict, ids: np.ndarray) -> Activity:
    """Run the model over ids (n,) from a zero state, no dropout, and keep every layer's states."""
    n = len(ids)
    dtype = next(iter(params.values())).dtype
    work = M.Workspace(dtype)
    inputs = np.ascontiguousarray(np.asarray(ids, np.int32).reshape(n, 1))
    M.lm_forward(cfg, params, inputs, M.zero_state(cfg, 1, dtype), work)
    layers = [M.layer_activity(cfg, work, n, 1, k) for k in range(cfg.num_layers)]
    h = np.stack([a["h"][:, 0] for a in layers]).astype(np.float64)
    c = np.stack([a["c"][:, 0] for a in layers]).astype(np.float64) if cfg.cell == "lstm" else None
    gates = np.stack([a["gates"][:, 0] for a in layers]).astype(np.float64) if cfg.cell != "rnn" else None
    return Activity(h, c, gates)


@dataclass
class Unit:
    """One unit picked for display."""

    layer: int  # 0-based
    kind: str  # "h" (hidden state) or "c" (LSTM cell)
    index: int
    why: str  # the property it was picked for, or "most active" / "least active"
    property: str  # the property it correlates with most strongly
    r: float  # that correlation
    mean_abs: float
    values: np.ndarray  # (n,) over the passage


@dataclass
class UnitSearch:
    units: list  # [Unit]
    table: dict  # property -> (best |r| unit label, r) over all candidate units
    candidates: int


def _candidates(act: Activity) -> tuple[np.ndarray, list]:
    """All units as columns (n, U) and their (layer, kind, index)."""
    cols, names = [], []
    for kind, arr in (("h", act.h), ("c", act.c)):
        if arr is None:
            continue
        L, n, H = arr.shape
        cols.append(arr.transpose(1, 0, 2).reshape(n, L * H))
        names += [(k, kind, j) for k in range(L) for j in range(H)]
    return np.concatenate(cols, axis=1), names


def find_units(act: Activity, text: str) -> UnitSearch:
    """For each property of the text, the unit (hidden state or LSTM cell, any layer) whose
    activation correlates with it most strongly, each unit at most once; then the hidden units
    with the largest and the smallest mean |activation|."""
    props = text_properties(text)
    values, names = _candidates(act)
    R = correlations(values, props)
    prop_names = list(props)
    used: set = set()
    units, table = [], {}

    def make(u: int, why: str) -> Unit:
        best = int(np.argmax(np.abs(R[:, u])))
        k, kind, j = names[u]
        return Unit(k, kind, j, why, prop_names[best], float(R[best, u]), float(np.abs(values[:, u]).mean()),
                    values[:, u].copy())

    shown = [i for i, name in enumerate(prop_names) if props[name].std()]  # others never vary here
    for i in shown:
        best = int(np.argmax(np.abs(R[i])))
        k, kind, j = names[best]
        table[prop_names[i]] = (f"layer {k + 1} {kind}[{j}]", float(R[i, best]))
    # the strongest (property, unit) pair first, so a unit that tracks one property well is not
    # spent on a property it tracks only a little
    A = np.abs(R[shown]) if shown else np.zeros((0, R.shape[1]))
    picked = {}
    # each unit once: a model with fewer units than properties leaves the weakest pairs out
    for _ in range(min(len(shown), A.shape[1])):
        i, u = np.unravel_index(int(np.argmax(A)), A.shape)
        picked[shown[i]] = int(u)
        A[i, :] = -1.0
        A[:, u] = -1.0
        used.add(int(u))
    for i in shown:
        if i in picked:
            units.append(make(picked[i], prop_names[i]))
            units[-1].property, units[-1].r = prop_names[i], float(R[i, picked[i]])
    hidden = [u for u, (_, kind, _) in enumerate(names) if kind == "h"]
    activeness = np.abs(values[:, hidden]).mean(axis=0)
    for why, order in (("most active", np.argsort(-activeness)), ("least active", np.argsort(activeness))):
        u = next((hidden[int(i)] for i in order if hidden[int(i)] not in used), None)
        if u is not None:
            used.add(u)
            units.append(make(u, why))
    return UnitSearch(units, table, len(names))


# ---------------------------------------------------------------- gate saturation

@dataclass
class Saturation:
    gates: tuple  # names, e.g. ("input", "forget", "output")
    left: np.ndarray  # (L, len(gates), H): fraction of steps below 0.1
    right: np.ndarray  # (L, len(gates), H): fraction of steps above 0.9


def gate_saturation(cell: str, gates: np.ndarray, low: float = 0.1, high: float = 0.9) -> Saturation | None:
    """gates (L, n, G, H) from activity(); None for the vanilla cell (no gates)."""
    if cell not in SIGMOID_GATES or gates is None:
        return None
    names = tuple(name for name, _ in SIGMOID_GATES[cell])
    picked = gates[:, :, [i for _, i in SIGMOID_GATES[cell]], :]  # (L, n, g, H)
    return Saturation(names, (picked < low).mean(axis=1), (picked > high).mean(axis=1))


# ---------------------------------------------------------------- gradients through time

@dataclass
class GradientCurve:
    name: str  # e.g. "trained lstm" or "gru at initialisation"
    norms: np.ndarray  # (K+1,) mean over windows of ||dL/dh_{t-k}||, all layers' states together
    per_layer: np.ndarray  # (L, K+1)
    slope: float  # least-squares slope of log10(norms[k]) over k = 1..K: decades per step back

    @property
    def factor(self) -> float:
        """What one step back multiplies the gradient norm by, on average."""
        return 10.0 ** self.slope


def gradient_curve(name: str, cfg: ModelConfig, params: dict, inputs: np.ndarray, targets: np.ndarray) -> GradientCurve:
    """||dL/dh_{t-k}|| for k = 0..T-1, where L is the cross-entropy of the last step t = T-1
    alone, averaged over the B windows. inputs (T, B) int32; targets (B,) the characters after.
    In float64: the norms of a vanishing gradient fall far below float32's range."""
    p64 = {k: np.ascontiguousarray(v, np.float64) for k, v in params.items()}
    cfg = ModelConfig(cell=cfg.cell, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                      embedding_size=cfg.embedding_size, activation=cfg.activation, dropout=0.0)
    T, B = inputs.shape
    work = M.Workspace(np.float64)
    logits, _, _, _ = M.lm_forward(cfg, p64, np.ascontiguousarray(inputs, np.int32), M.zero_state(cfg, B, np.float64), work)
    last = logits.reshape(T, B, -1)[-1]
    prob = np.exp(last - last.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    prob[np.arange(B), targets] -= 1.0  # d(mean cross-entropy)/d(logits) = (p - onehot) / B
    d_top = np.zeros((T, B, cfg.hidden_size))
    d_top[-1] = (prob / B) @ p64["W_hy"]
    g = M.stack_state_grads(cfg, p64, d_top, work)  # (L, T, B, H)
    back = g[:, ::-1]  # index k = steps back from t
    per_layer = np.sqrt((back ** 2).sum(axis=3)).mean(axis=2)
    norms = np.sqrt((back ** 2).sum(axis=(0, 3))).mean(axis=1)
    return GradientCurve(name, norms, per_layer, _decades_per_step(norms))


def _decades_per_step(norms: np.ndarray) -> float:
    """Least-squares slope of log10(norms[k]) over k = 1 .. K where norms[k] > 0; NaN with fewer
    than two such k."""
    k = np.arange(1, len(norms))
    ok = norms[1:] > 0
    return float(np.polyfit(k[ok], np.log10(norms[1:][ok]), 1)[0]) if ok.sum() >= 2 else math.nan


def fresh_params(cell: str, like: ModelConfig, vocab_size: int, seed: int) -> tuple[ModelConfig, dict]:
    """A model of the same size as `like` with another cell, as `rnn train` initialises it."""
    cfg = ModelConfig(cell=cell, hidden_size=like.hidden_size, num_layers=like.num_layers,
                      embedding_size=like.embedding_size, activation=like.activation, dropout=0.0)
    rng = np.random.default_rng(seed)
    return cfg, M.init_params(cfg, M.lm_shapes(cfg, vocab_size), rng, np.float64)


def gradient_windows(ids: np.ndarray | None, vocab_size: int, steps: int, windows: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (T, B), targets (B,)) with T = steps + 1: B windows of the text at random
    places, or random characters when there is no text (or too little of it)."""
    rng = np.random.default_rng(seed)
    T = steps + 1
    if ids is not None and len(ids) >= T + 1:
        starts = rng.integers(0, len(ids) - T, size=windows)
        block = np.stack([ids[s:s + T + 1] for s in starts], axis=1).astype(np.int32)
    else:
        block = rng.integers(0, vocab_size, size=(T + 1, windows)).astype(np.int32)
    return np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[-1])


def gradients_through_time(cfg: ModelConfig, vocab_size: int, cells: tuple, trained: dict | None = None,
                           ids: np.ndarray | None = None, steps: int = 100, windows: int = 16,
                           seed: int = 0) -> list:
    """Curves for the trained parameters (when given) and for each cell in `cells`, freshly
    initialised at the trained model's size, all on the same windows."""
    inputs, targets = gradient_windows(ids, vocab_size, steps, windows, seed)
    curves = []
    if trained is not None:
        curves.append(gradient_curve(f"trained {cfg.cell}", cfg, trained, inputs, targets))
    for cell in cells:
        fcfg, params = fresh_params(cell, cfg, vocab_size, seed)
        curves.append(gradient_curve(f"{cell} at initialisation", fcfg, params, inputs, targets))
    return curves


# ---------------------------------------------------------------- a whole run

@dataclass
class Passage:
    text: str
    source: str  # where it came from, in words
    dropped: int = 0  # characters of --text the model does not know, left out


@dataclass
class LMInspection:
    files: RunFiles
    meta: dict
    cfg: ModelConfig
    vocab_size: int
    params_count: int
    curves: Curves
    samples: list  # [(temperature, text)]
    passage: Passage
    units: UnitSearch
    saturation: Saturation | None
    gradients: list  # [GradientCurve]
    show_chars: int


@dataclass
class ClassifierInspection:
    files: RunFiles
    meta: dict
    labels: list
    epochs: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    accuracy: np.ndarray
    macro_f1: np.ndarray
    seconds: np.ndarray | None
    best_epoch: int | None
    confusions: list = field(default_factory=list)  # [(title, (C, C) int array)]
    class_units: list = field(default_factory=list)  # [ClassUnit], one per class (classifier_units)
    units_note: str = ""  # why there are none, when there are none
    gradients: ClassifierGradients | None = None  # None when there are no texts (units_note says why)


@dataclass
class ClassUnit:
    """The hidden unit of the classifier's forward stack (top layer) whose pooled activation most
    sets one class's texts apart, shown over the text of that class where it is highest."""

    label: str
    index: int
    separation: float  # (mean pooled value in the class - mean elsewhere) / its std over all texts
    tokens: list  # the text's tokens, as the classifier reads them
    values: np.ndarray  # (len(tokens),) the unit's activation after each token


@dataclass
class GradientsOnly:
    cfg: ModelConfig
    vocab_size: int
    gradients: list
    text_source: str


def _passage(lm, meta: dict, text_path: str | None, chars: int) -> Passage:
    """--text, else the validation part of the training corpus, else text the model writes."""
    vocab: Vocab = lm.vocab
    if text_path:
        raw = read_text(text_path)
        known = set(vocab.chars)
        kept = "".join(ch for ch in raw if ch in known)
        if len(kept) < 2:
            raise CorpusError(f"{os.path.basename(text_path)}: fewer than 2 characters the model knows; "
                              f"give a text in the model's alphabet")
        return Passage(kept[:chars], os.path.basename(text_path), len(raw) - len(kept))
    from rnncli.lm.checkpoint import recorded_corpus

    paths = recorded_corpus(meta)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    fraction = config.get("val_fraction", 0.05)
    if paths and all(os.path.isfile(p) for p in paths) and isinstance(fraction, (int, float)):
        try:
            text = "".join(read_text(p) for p in paths)
        except CorpusError:
            text = ""
        if text and not vocab.unknown(text[-10 * chars:]):
            start = split_train_val(len(text), fraction) if 0 < fraction < 1 else max(0, len(text) - chars)
            start = min(start, max(0, len(text) - chars))
            names = ", ".join(os.path.basename(p) for p in paths)
            return Passage(text[start:start + chars], f"validation text of {names}")
    from rnncli.lm.sample import Generator

    gen = Generator(lm)
    rng = np.random.default_rng(0)
    text = "".join(gen.stream(np.array([gen.start_token()]), chars, 0.8, 0, rng))
    return Passage(text, "written by the model at temperature 0.8 (the training corpus was not found)")


def samples(lm, temperatures=TEMPERATURES, length: int = 300, seed: int = 0) -> list:
    from rnncli.lm.sample import Generator

    gen = Generator(lm)
    return [(t, "".join(gen.stream(np.array([gen.start_token()]), length, t, 0, np.random.default_rng([seed, i]))))
            for i, t in enumerate(temperatures)]


def inspect_run(run: str | None, out_dir: str = "runs", text_path: str | None = None, chars: int = 2000,
                cells: tuple = CELLS, steps: int = 100, seed: int = 0, show_chars: int = 500):
    """Everything the report shows about a run, computed: an LMInspection or a ClassifierInspection.
    Its products are small (one sequence, or 16 windows): one BLAS thread is the fastest."""
    blas.set_threads(1)
    files = resolve_run(run, out_dir)
    arrays, meta = checkpoint.load(files.model)  # either kind: the report covers both
    if meta.get("kind") == "classifier":
        return inspect_classifier(files, text_path, steps, seed)
    from rnncli.lm.checkpoint import LMCheckpoint, read_lm_checkpoint

    # another kind is refused by the reader, whose message names it
    ckpt = LMCheckpoint(files.model, arrays, meta) if meta.get("kind") == "lm" else read_lm_checkpoint(files.model)
    lm = ckpt.model()
    hist_meta = meta
    if files.history != files.model:
        try:
            hist_meta = read_lm_checkpoint(files.history).meta
        except CheckpointError:
            hist_meta = meta
    passage = _passage(lm, lm.meta, text_path, chars)
    ids = lm.vocab.encode(passage.text)
    act = activity(lm.cfg, lm.params, ids)
    units = find_units(act, passage.text)
    grads = gradients_through_time(lm.cfg, lm.vocab.size, tuple(cells), lm.params, ids,
                                   min(steps, max(1, len(ids) - 2)), seed=seed)
    return LMInspection(files, lm.meta, lm.cfg, lm.vocab.size, int(sum(p.size for p in lm.params.values())),
                        run_curves(files.run_dir, hist_meta), samples(lm, seed=seed), passage, units,
                        gate_saturation(lm.cfg.cell, act.gates), grads, min(show_chars, len(passage.text)))


def inspect_classifier(files: RunFiles, text_path: str | None = None, steps: int = 100,
                       seed: int = 0) -> ClassifierInspection:
    from rnncli.classify.train import load_classifier

    clf = load_classifier(files.model)
    meta = clf.meta
    rows = [h for h in (meta.get("history") or []) if isinstance(h, dict)]

    def col(key):
        return np.array([recorded_number(h.get(key)) for h in rows])

    seconds = col("seconds")
    confusions = []
    for key, title in (("val", "validation"), ("test", "test")):
        m = meta.get(key)
        if isinstance(m, dict) and isinstance(m.get("confusion"), list):
            try:
                conf = np.array(m["confusion"], dtype=np.int64)
            except (TypeError, ValueError):
                continue
            if conf.shape == (len(clf.labels), len(clf.labels)):
                confusions.append((title, conf))
    best = meta.get("best_epoch")
    units, note, grads = [], "", None
    texts, why = _classifier_texts(clf, text_path)
    if texts:
        units = classifier_units(clf, *texts)
        source = os.path.basename(text_path) if text_path else f"the training file {os.path.basename(clf.meta['data'])}"
        grads = classifier_gradients(clf, *texts, steps=steps, seed=seed, source=source)
    else:
        note = why
    return ClassifierInspection(files, meta, list(clf.labels), col("epoch"), col("train_loss"), col("val_loss"),
                                col("val_accuracy"), col("val_macro_f1"),
                                seconds if seconds.size and np.isfinite(seconds).all() else None,
                                best if isinstance(best, int) else None, confusions, units, note, grads)


UNIT_TEXTS = 400  # labelled texts the classifier's units are measured on (the first of the file)


def _classifier_texts(clf, text_path: str | None) -> tuple[tuple | None, str]:
    """((texts, labels), "") from text_path, a labelled file, or from the training file the
    checkpoint names (read only under the rule every recorded path meets); (None, why) if none."""
    from rnncli.data.files import unusable_input, unusable_recorded_input
    from rnncli.data.words import read_labelled

    path = text_path or clf.meta.get("data")
    if not isinstance(path, str) or not path:
        return None, "the checkpoint names no training file; give a labelled file with --text"
    why = unusable_input(path) if text_path else unusable_recorded_input(path)
    if why:
        return None, f"the training file {path} the checkpoint names {why}; give a labelled file with --text"
    data = read_labelled(path, "replace")
    pairs = [(t, l) for t, l in zip(data.texts, data.labels) if l in clf.labels][:UNIT_TEXTS]
    if not pairs:
        return None, f"{path}: no labelled texts of this classifier's classes"
    return ([t for t, _ in pairs], [l for _, l in pairs]), ""


def forward_states(clf, text: str) -> tuple[list, np.ndarray]:
    """(tokens, (T, H) hidden states of the forward stack's top layer after each token), no dropout."""
    from rnncli.data.words import tokenize

    cfg = clf.cfg
    tokens = tokenize(text, cfg.tokens, cfg.language)[:cfg.max_len]
    ids = clf.encode([text])[0]
    mcfg = cfg.model()
    if len(ids) == 0:
        return [], np.zeros((0, cfg.hidden_size))
    dtype = clf.params["embed"].dtype
    x = np.ascontiguousarray(clf.params["embed"][np.asarray(ids).reshape(-1, 1)])
    top, _ = M.stack_forward(mcfg, clf.params, x, M.zero_state(mcfg, 1, dtype), M.Workspace(dtype), None, "fw.")
    return tokens[:len(ids)], np.asarray(top[:, 0, :], np.float64)


def separating_units(pooled: np.ndarray, y: np.ndarray, n_classes: int) -> list:
    """For each class, (unit, separation): the unit whose pooled value most sets the class's texts
    apart (mean in the class minus mean elsewhere, over the unit's std), each unit at most once;
    None for a class with no texts, or no texts outside it."""
    std = pooled.std(axis=0) + 1e-9
    out, used = [], set()
    for c in range(n_classes):
        inside, outside = pooled[y == c], pooled[y != c]
        if not len(inside) or not len(outside):
            out.append(None)
            continue
        score = (inside.mean(axis=0) - outside.mean(axis=0)) / std
        order = [int(j) for j in np.argsort(-score) if int(j) not in used]
        if not order:
            out.append(None)
            continue
        used.add(order[0])
        out.append((order[0], float(score[order[0]])))
    return out


def classifier_units(clf, texts: list, labels: list) -> list:
    """ClassUnit per class that has texts among texts (see separating_units)."""
    states = [forward_states(clf, t) for t in texts]
    keep = [i for i, (tok, _) in enumerate(states) if len(tok)]
    if not keep:
        return []
    pool = (lambda h: h.max(axis=0)) if clf.cfg.pooling == "max" else (lambda h: h[-1])
    pooled = np.stack([pool(states[i][1]) for i in keep])
    y = np.array([list(clf.labels).index(labels[i]) for i in keep])
    units = []
    for c, found in enumerate(separating_units(pooled, y, len(clf.labels))):
        if found is None:
            continue
        j, separation = found
        best = max((i for i, k in enumerate(keep) if y[i] == c), key=lambda i: pooled[i, j])
        tokens, h = states[keep[best]]
        units.append(ClassUnit(clf.labels[c], j, separation, list(tokens), h[:, j].copy()))
    return units


# ---------------------------------------------------------------- a classifier's gradients through time

GRADIENT_TEXTS = 8  # texts a classifier's gradients through time are averaged over: the longest read
DIRECTIONS = {"fw.": "forward", "bw.": "backward"}


@dataclass
class ClassifierGradients:
    """A classifier's gradients through time, trained and at initialisation, per recurrent stack.

    curves: {direction: [the trained model's GradientCurve, the fresh model's]}, direction
    "forward" and, for a bidirectional encoder, "backward". norms[k] is the geometric mean over
    the texts of ||dL/dh|| (every layer's state together) k steps before the last step that stack
    reads: the forward stack's k = 0 is the state after the last token, the backward stack's the
    state after the first token (it reads the text last token first)."""

    curves: dict
    lengths: np.ndarray  # (texts,) tokens each measured text is read as; k goes up to the shortest
    seed: int  # of the fresh weights
    tokens: str  # what a step reads, in words: "words" or "characters"
    source: str = ""  # where the texts came from, in words


def classifier_state_grads(cfg, params: dict, ids: np.ndarray, label: int) -> dict:
    """{direction: (L, n, H) dL/dh_t of every layer of that recurrent stack at its own steps
    t = 0 .. n-1} for L the classifier's cross-entropy on one text of n >= 1 token ids whose class
    is `label`, no dropout, in float64. The backward stack's step t reads token n-1-t. The head
    and the pooling are differentiated by classify.model.top_grads, the stacks by the cells' own
    BPTT kernels (model.stack_state_grads)."""
    from rnncli.classify import model as C

    p64 = {k: np.ascontiguousarray(v, np.float64) for k, v in params.items()}
    work = M.Workspace(np.float64)
    seq, rev, lengths = C.pad_batch([np.asarray(ids)])
    _, d_tops = C.top_grads(cfg, p64, seq, rev, lengths, np.array([label], np.int32), np.ones(1), work)
    mcfg = cfg.model()
    return {DIRECTIONS[prefix]: M.stack_state_grads(mcfg, p64, d_top, work, prefix)[:, :, 0]
            for prefix, d_top in d_tops.items()}


def _log_mean(values: np.ndarray) -> np.ndarray:
    """The geometric mean over axis 0, leaving out exact zeros: a state that no unit's pooling
    reads and that nothing later reaches (the last step, under max pooling), or one behind a head
    whose ReLUs are all shut, has no dependence to average in log space; 0 where all are zero."""
    pos = values > 0
    count = pos.sum(axis=0)
    total = np.log(np.where(pos, values, 1.0)).sum(axis=0)
    return np.where(count > 0, np.exp(total / np.maximum(count, 1)), 0.0)


def classifier_gradient_curves(name: str, cfg, params: dict, seqs: list, labels: list, steps: int) -> dict:
    """{direction: GradientCurve "NAME (direction)"} over texts of token ids seqs (each non-empty)
    and their classes labels (indices), for k = 0 .. min(steps, shortest - 1) steps before the
    last step each stack reads (see ClassifierGradients): every k is averaged over every text."""
    K = min(steps, min(len(s) for s in seqs) - 1)
    norms, layers = {}, {}
    for ids, label in zip(seqs, labels):
        for direction, g in classifier_state_grads(cfg, params, ids, label).items():
            back = g[:, ::-1][:, :K + 1]  # index k = steps before the last one this stack reads
            layers.setdefault(direction, []).append(np.sqrt((back ** 2).sum(axis=2)))
            norms.setdefault(direction, []).append(np.sqrt((back ** 2).sum(axis=(0, 2))))
    curves = {}
    for direction, per_text in norms.items():
        mean = _log_mean(np.stack(per_text))
        curves[direction] = GradientCurve(f"{name} ({direction})", mean, _log_mean(np.stack(layers[direction])),
                                          _decades_per_step(mean))
    return curves


def classifier_gradients(clf, texts: list, labels: list, steps: int = 100, seed: int = 0,
                         source: str = "") -> ClassifierGradients | None:
    """The classifier's gradients through time on the GRADIENT_TEXTS longest of texts (the first
    of equal length), beside the same architecture with fresh weights (init_classifier, seed);
    None when no text has a token."""
    from rnncli.classify.model import classifier_shapes, init_classifier

    seqs = clf.encode(texts)
    longest = sorted((i for i, s in enumerate(seqs) if len(s)), key=lambda i: -len(seqs[i]))[:GRADIENT_TEXTS]
    if not longest:
        return None
    chosen = [seqs[i] for i in longest]
    y = [list(clf.labels).index(labels[i]) for i in longest]
    cfg = clf.cfg
    fresh = init_classifier(cfg, classifier_shapes(cfg, clf.vocab.size, len(clf.labels)),
                            np.random.default_rng(seed), np.float64)
    trained = classifier_gradient_curves(f"trained {cfg.cell}", cfg, clf.params, chosen, y, steps)
    at_init = classifier_gradient_curves(f"{cfg.cell} at initialisation", cfg, fresh, chosen, y, steps)
    return ClassifierGradients({d: [trained[d], at_init[d]] for d in trained}, np.array([len(s) for s in chosen]),
                               seed, "characters" if cfg.tokens == "char" else "words", source)


def inspect_gradients(cells: tuple, hidden_size: int, num_layers: int, embedding_size: int = 64,
                      vocab_size: int = 65, steps: int = 100, seed: int = 0) -> GradientsOnly:
    """Fresh models only (no run): a teacher's picture of vanishing gradients."""
    blas.set_threads(1)
    like = ModelConfig(cell=cells[0], hidden_size=hidden_size, num_layers=num_layers,
                       embedding_size=embedding_size).validate()
    curves = gradients_through_time(like, vocab_size, tuple(cells), None, None, steps, seed=seed)
    return GradientsOnly(like, vocab_size, curves, f"random characters from a vocabulary of {vocab_size}")


def inspect_run_gradients(run: str | None, out_dir: str, cells: tuple, steps: int = 100, seed: int = 0) -> GradientsOnly:
    """The trained language model of a run beside fresh models of its size, on its own text."""
    blas.set_threads(1)
    from rnncli.lm.checkpoint import load_lm

    files = resolve_run(run, out_dir)
    lm = load_lm(files.model)
    passage = _passage(lm, lm.meta, None, max(2000, 4 * (steps + 2)))
    ids = lm.vocab.encode(passage.text)
    curves = gradients_through_time(lm.cfg, lm.vocab.size, tuple(cells), lm.params, ids,
                                    min(steps, max(1, len(ids) - 2)), seed=seed)
    return GradientsOnly(lm.cfg, lm.vocab.size, curves, passage.source)
