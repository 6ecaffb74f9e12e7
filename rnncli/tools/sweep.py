"""Sweeps: many ordinary `rnn train` runs over a grid (or random draws) of training options.

Each trial is one `python -m rnncli train ...` process with its own run folder under one sweep
folder, so a trial is exactly what a user could have run by hand, and stopping, resuming and
checkpoints work as for any run. Trials run on a local pool (threads that each wait on one
trial process) or on an existing Dask distributed cluster (`run_trial` is the task). Every
trial gets the same number of threads through --threads, NUMBA_NUM_THREADS and
OPENBLAS_NUM_THREADS, so workers × threads never oversubscribes the cores.

State lives only on disk: a trial whose folder holds result.json is finished and skipped; one
with a latest.npz and no result.json resumes from it; the others start fresh. A trial's result
is read back from its own checkpoint (the metadata training wrote), never re-measured.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from rnncli.data.files import FolderLock, replace_file
from rnncli.config import MAX_TRIALS
from rnncli.errors import ConfigError, UsageError

RESULT = "result.json"
PLAN = "sweep.json"
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DASK_HINT = "pip install 'rnncli[dask]'"


@dataclass(frozen=True)
class Axis:
    """One swept option: listed values, or (with --random) a range low..high, log-uniform when log."""

    option: str  # "--hidden-size"
    values: tuple = ()  # strings, as the trial's command line gets them
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None


def combinations(axes: list[Axis], random_trials: int = 0, seed: int = 0) -> list[dict]:
    """Every combination of the listed values (option -> value string), or random_trials draws:
    listed values uniformly, ranges uniformly (log-uniformly with :log), whole numbers rounded.
    The count is checked before anything is built: at most MAX_TRIALS."""
    count = random_trials or math.prod(len(a.values) for a in axes)
    if count > MAX_TRIALS:
        how = f"--random {random_trials}" if random_trials else "the grid's combinations"
        raise UsageError(f"{how}: {count:,} trials, more than {MAX_TRIALS:,} a sweep runs; "
                         f"draw fewer with --random N or list fewer values")
    if not random_trials:
        if any(a.is_range for a in axes):
            raise ConfigError("grid: a range (low..high) needs --random N; list values with commas instead")
        return [dict(zip([a.option for a in axes], values)) for values in itertools.product(*[a.values for a in axes])]
    rng = np.random.default_rng(seed)
    drawn = []
    for _ in range(random_trials):
        trial = {}
        for a in axes:
            if not a.is_range:
                trial[a.option] = a.values[int(rng.integers(len(a.values)))]
                continue
            if a.log:
                x = math.exp(rng.uniform(math.log(a.low), math.log(a.high)))
            else:
                x = rng.uniform(a.low, a.high)
            trial[a.option] = str(int(round(x))) if a.integer else f"{x:.4g}"
        drawn.append(trial)
    return drawn


def _slug(trial: dict) -> str:
    text = "-".join(f"{k.lstrip('-')}={v}" for k, v in trial.items())
    return "".join(c if c.isalnum() or c in "=.-_" else "_" for c in text)[:80]


@dataclass
class Plan:
    folder: str  # the sweep folder
    corpus: list  # absolute paths
    base_args: list  # train options shared by every trial (strings)
    threads: int  # per trial
    trials: list  # [{"name", "options": {option: value}}]

    def trial_dir(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def command(self, trial: dict) -> list:
        """The trial's `rnn train` arguments, without --out and --resume."""
        args = [*self.corpus, *self.base_args]
        for option, value in trial["options"].items():
            args += [option, value]
        return args + ["--threads", str(self.threads), "--quiet"]


def make_plan(out_dir: str, corpus: list, axes: list[Axis], base_args: list, threads: int,
              random_trials: int = 0, seed: int = 0) -> Plan:
    """The sweep folder is named by a hash of everything that defines the trials, so running the
    same command again finds the same folder (and resumes it)."""
    corpus = [os.path.abspath(p) for p in corpus]
    combos = combinations(axes, random_trials, seed)
    if not combos:
        raise ConfigError("grid: no trials to run")
    description = {"corpus": corpus, "base_args": list(base_args), "threads": threads,
                   "axes": [vars(a) | {"values": list(a.values)} for a in axes],
                   "random": random_trials, "seed": seed}
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(corpus[0]))[0] if len(corpus) == 1 else "corpus"
    folder = os.path.abspath(os.path.join(out_dir, f"sweep-{stem}-{key}"))
    trials = [{"name": f"t{i:02d}-{_slug(c)}", "options": c} for i, c in enumerate(combos)]
    plan = Plan(folder, corpus, list(base_args), threads, trials)
    try:
        os.makedirs(folder, exist_ok=True)
        _write_json(os.path.join(folder, PLAN), {**description, "trials": trials})
    except OSError as e:
        raise ConfigError(f"{folder}: cannot create the sweep folder ({e.strerror or e})") from None
    return plan


def _write_json(path: str, data) -> None:
    replace_file(path, json.dumps(data).encode("utf-8"), "a sweep record", ConfigError)


def _latest(base: str) -> str | None:
    """The trial's run folder's latest.npz (relative to base), if training wrote one."""
    if not os.path.isdir(base):
        return None
    for name in sorted(os.listdir(base), reverse=True):
        if os.path.isfile(os.path.join(base, name, "latest.npz")):
            return os.path.join(name, "latest.npz")
    return None


# ---------------------------------------------------------------- one trial (runs on a worker)

def run_trial(spec: dict, stop=None) -> dict:
    """Run one trial to its end and return its result (see read_result) with status "done",
    "interrupted" or "failed". spec: name, dir (the trial folder), args (train arguments),
    threads, and optionally resume ((relative path, bytes) of a latest.npz to continue from)
    and ship (return the run's checkpoint files, for a worker that does not share the sweep
    folder's file system). stop: anything with is_set(); when set, the trial gets one SIGINT,
    saves its checkpoint and ends."""
    if stop is not None and stop.is_set():  # the sweep was stopped before this trial began
        return {"name": spec["name"], "status": "not started", "best_val": None, "steps": 0,
                "chars_per_sec": 0.0, "seconds": 0.0, "history": {}, "run": None}
    base = spec["dir"]
    try:
        os.makedirs(base, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=base)
        probe.close()
    except OSError:  # not this machine's folder: train in a scratch folder, ship the files back
        base = tempfile.mkdtemp(prefix="rnncli-trial-")
    if spec.get("resume"):
        rel, data = spec["resume"]
        target = os.path.join(base, rel)
        if not (os.path.isfile(target) and _same_bytes(target, data)):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            replace_file(target, data, "the trial's checkpoint", ConfigError)
    latest = _latest(base)
    # a resumed trial writes on in its checkpoint's own folder, under base
    args = list(spec["args"]) + (["--resume", os.path.join(base, latest)] if latest else ["--out", base])
    env = dict(os.environ, **{v: str(spec["threads"]) for v in THREAD_VARIABLES})
    t0 = time.perf_counter()
    with open(os.path.join(base, "train.log"), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rnncli", "train", *args], stdout=subprocess.DEVNULL,
                                stderr=log, env=env, start_new_session=True)
        try:
            signalled = False
            while True:
                try:
                    code = proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    if not signalled and stop is not None and stop.is_set():
                        proc.send_signal(signal.SIGINT)  # the trial saves and exits 130
                        signalled = True
        finally:
            if proc.poll() is None:  # this thread itself was interrupted
                proc.kill()
                proc.wait()
    status = "done" if code == 0 else "interrupted" if code == 130 else "failed"
    result = read_result(base, spec["name"], status)
    result["elapsed"] = time.perf_counter() - t0
    if status == "failed":
        result["error"] = _last_error(os.path.join(base, "train.log")) or f"rnn train exited with {code}"
    if spec.get("ship"):
        result["files"] = _files(base)
    return result


def _same_bytes(path: str, data: bytes) -> bool:
    return os.path.getsize(path) == len(data) and open(path, "rb").read() == data


def _last_error(log_path: str) -> str:
    try:
        lines = open(log_path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return ""
    errors = [line[len("Error:"):].strip() for line in lines if line.startswith("Error:")]
    return errors[-1] if errors else (lines[-1].strip() if lines else "")


def _files(base: str) -> dict:
    out = {}
    for root, _, names in os.walk(base):
        for name in names:
            if name.endswith(".npz") or name == "train.log":
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, base)] = f.read()
    return out


def read_result(base: str, name: str, status: str) -> dict:
    """A trial's numbers as its latest checkpoint records them: best validation loss, steps,
    chars/s (steps · B · T / time inside steps), wall time and the loss history."""
    from rnncli.lm.checkpoint import read_lm_checkpoint

    result = {"name": name, "status": status, "best_val": None, "steps": 0, "chars_per_sec": 0.0,
              "seconds": 0.0, "history": {}, "run": None}
    latest = _latest(base)
    if latest is None:
        return result
    meta = read_lm_checkpoint(os.path.join(base, latest)).meta
    p = meta.get("progress", {})
    steps = int(p.get("step", 0))
    chars = steps * int(meta.get("batch_size", 0)) * int(meta.get("seq_len", 0))
    result.update(best_val=p.get("best_val"), steps=steps, seconds=float(p.get("seconds", 0.0)),
                  chars_per_sec=chars / p["step_seconds"] if p.get("step_seconds") else 0.0,
                  history=p.get("history", {}), run=os.path.dirname(latest), model=meta.get("model"))
    return result


# ---------------------------------------------------------------- the sweep (runs on the client)

@dataclass
class SweepResult:
    plan: Plan
    rows: list  # results, best first
    interrupted: bool = False
    skipped: int = 0  # trials finished by an earlier run of the same command
    seconds: float = 0.0
    where: str = ""
    failures: list = field(default_factory=list)


def ranked(results: list) -> list:
    """Best validation loss first; trials without one (failed, not started) last."""
    def key(r):
        v = r.get("best_val")
        return (v is None or not math.isfinite(v), v if v is not None else 0.0, r["name"])
    return sorted(results, key=key)


def run_sweep(plan: Plan, workers: int = 0, address: str | None = None, on_result=None) -> SweepResult:
    """Run every unfinished trial of plan: locally on `workers` at once (default: cores /
    threads per trial), or on the Dask scheduler at address. on_result(result, all_results) is
    called as each trial ends. Ctrl-C stops every running trial cleanly (each saves its
    checkpoint); running the same sweep again resumes them. One sweep process at a time works
    a sweep folder (the same command run twice would train each trial twice)."""
    with FolderLock(plan.folder, "sweep folder"):
        return _run_unfinished(plan, workers, address, on_result)


def _run_unfinished(plan: Plan, workers: int, address: str | None, on_result) -> SweepResult:
    on_result = on_result or (lambda r, rows: None)
    t0 = time.perf_counter()
    results, todo = {}, []
    for trial in plan.trials:
        folder = plan.trial_dir(trial["name"])
        done = _read_done(folder)
        if done is not None:
            results[trial["name"]] = done
            continue
        spec = {"name": trial["name"], "dir": folder, "args": plan.command(trial), "threads": plan.threads}
        latest = _latest(folder)
        if latest and address:  # a worker elsewhere gets the checkpoint to continue from
            with open(os.path.join(folder, latest), "rb") as f:
                spec["resume"] = (latest, f.read())
        todo.append(spec)
    skipped = len(results)
    for r in results.values():
        on_result(r, ranked(list(results.values())))

    def finish(spec, result):
        files = result.pop("files", None)
        if files:
            _store_files(spec["dir"], files)
        if result["status"] == "done":
            _write_json(os.path.join(spec["dir"], RESULT), result)
        results[spec["name"]] = result
        on_result(result, ranked(list(results.values())))

    if address:
        interrupted, where = _run_dask(todo, address, finish)
    else:
        workers = workers or max(1, (os.cpu_count() or 1) // plan.threads)
        interrupted, where = _run_local(todo, workers, finish), f"{workers} local worker(s)"
    rows = ranked(list(results.values()))
    return SweepResult(plan, rows, interrupted, skipped, time.perf_counter() - t0, where,
                       [r for r in rows if r["status"] == "failed"])


def _read_done(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, RESULT), encoding="utf-8") as f:
            r = json.load(f)
        return r if isinstance(r, dict) and r.get("status") == "done" else None
    except (OSError, ValueError):
        return None


def _store_files(folder: str, files: dict) -> None:
    """Write a remote trial's files into its folder (unless the worker already wrote them there)."""
    for rel, data in files.items():
        target = os.path.normpath(os.path.join(folder, rel))
        if not target.startswith(os.path.abspath(folder) + os.sep):
            continue  # a path that escapes the trial folder is not ours to write
        if os.path.isfile(target) and _same_bytes(target, data):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        replace_file(target, data, "the trial's file", ConfigError)


def _run_local(todo: list, workers: int, finish) -> bool:
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rnn-sweep")
    futures = {pool.submit(run_trial, spec, stop): spec for spec in todo}
    pending = set(futures)
    interrupted = False
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                finish(futures[f], f.result())
    except KeyboardInterrupt:
        interrupted = True
        stop.set()  # running trials save and stop; queued ones never start
        for f in pending:
            f.cancel()
        for f in pending:
            if not f.cancelled():
                finish(futures[f], f.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return interrupted


def require_dask():
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--address needs Dask distributed, which is not installed; {DASK_HINT}") from None
    return distributed


def _run_dask(todo: list, address: str, finish) -> tuple:
    distributed = require_dask()
    try:
        client = distributed.Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"{address}: cannot reach the Dask scheduler ({e}); start one with "
                          f"`dask scheduler` and workers with `dask worker {address}`") from None
    interrupted = False
    with client:
        workers = len(client.scheduler_info().get("workers", {}))
        stop = distributed.Event(f"rnncli-sweep-stop-{os.getpid()}-{time.time_ns()}", client=client)
        futures = {}
        for spec in todo:
            f = client.submit(run_trial, {**spec, "ship": True}, stop, pure=False, key=f"rnn-{spec['name']}-{time.time_ns()}")
            futures[f] = spec
        try:
            for f in distributed.as_completed(list(futures)):
                finish(futures[f], f.result())
        except KeyboardInterrupt:
            interrupted = True
            # each running trial gets one SIGINT, saves and returns "interrupted"; queued ones
            # return "not started" at once
            stop.set()
            for f in futures:
                if not f.done():
                    try:
                        finish(futures[f], f.result(timeout=120))
                    except Exception:  # noqa: BLE001 - a worker lost while stopping: its last checkpoint stays
                        pass
    return interrupted, f"Dask cluster at {address} ({workers} worker(s))"


# ---------------------------------------------------------------- the curves page

def curves(rows: list) -> list:
    """(name, steps, validation loss, train loss) arrays per trial, best first, for report.py;
    points that are not [step, number] a run could record are left out (see recorded_number)."""
    from rnncli.tools.inspection import recorded_number, recorded_step

    def points(name: str, h: dict) -> tuple[np.ndarray, np.ndarray]:
        rows = h.get(name) if isinstance(h.get(name), list) else []
        kept = [(s, recorded_number(v)) for s, v in (r for r in rows if isinstance(r, list) and len(r) == 2)
                if recorded_step(s)]
        kept = [(s, v) for s, v in kept if math.isfinite(v)]
        return np.array([s for s, _ in kept], float), np.array([v for _, v in kept], float)

    out = []
    for r in rows:
        h = r.get("history") if isinstance(r.get("history"), dict) else {}
        (val_steps, val), (train_steps, train) = points("val", h), points("train", h)
        out.append({"name": r["name"], "best_val": r.get("best_val"), "val_steps": val_steps, "val": val,
                    "train_steps": train_steps, "train": train})
    return out
