"""rnn sweep: grid validation, random draws, a 2x2 grid on the local pool and on a Dask
LocalCluster (same results), the ranked table against the trials' own checkpoints, resume."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from rnncli.engine import npz as checkpoint
from rnncli.cli import main
from rnncli.tools.sweep import Axis, combinations
from tests.helpers import clean_failure

# tiny, deterministic trainings: sizes and layers given (no speed-measuring recipe), no time budget
TRAIN = ["--layers", "1", "--embedding-size", "4", "--batch-size", "4", "--seq-len", "8", "--max-steps", "6",
         "--eval-every", "3", "--max-time", "0", "--patience", "0", "--schedule", "constant"]
GRID = ["--grid", "hidden-size=4,8", "--grid", "dropout=0,0.2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "c.txt"
    text = "The cat sat on the mat. Le chat est sur le tapis. " * 60
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(args):
    return CliRunner().invoke(main, ["sweep", *args])


@pytest.mark.parametrize("grid, needle", [
    ("hiden-size=4,8", "hiden-size: is not an option of rnn train"),
    ("hidden-size=0,8", "hidden-size=0"),
    ("lr=fast", "lr=fast"),
    ("dropout=", "dropout: no values"),
    ("dropout", "expected OPTION=V1,V2"),
    ("out=a,b", "out: is set by the sweep itself"),
    ("lr=1e-3..1e-2:log", "a range needs --random"),
])
def test_grid_usage_errors_name_the_option(corpus, tmp_path, grid, needle):
    result = run([corpus, "--grid", grid, "--out", str(tmp_path)])
    err = clean_failure(result, 2)
    assert needle in err
    assert not os.listdir(tmp_path)  # nothing started


@pytest.mark.parametrize("args", [
    ["--random", "1000000000", "--grid", "lr=1e-3..1e-2:log"],
    ["--grid", "hidden-size=" + ",".join(str(n) for n in range(1, 41)),
     "--grid", "lr=" + ",".join(f"0.{n:03d}" for n in range(1, 41)),
     "--grid", "dropout=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7"],
])
def test_a_sweep_too_large_is_refused_before_anything_is_built(corpus, tmp_path, args):
    stderr = clean_failure(run([corpus, *args, "--out", str(tmp_path)]), 2)
    assert "more than 10,000" in stderr and stderr.count("\n") == 1
    assert not os.listdir(tmp_path)


def test_bad_train_options_and_no_grid(corpus, tmp_path):
    assert "--nonsense" in clean_failure(run([corpus, "--grid", "lr=0.1", "--nonsense", "3"]), 2)
    assert "--max-steps" in clean_failure(run([corpus, "--grid", "lr=0.1", "--max-steps", "-1"]), 2)
    assert "--grid" in clean_failure(run([corpus, "--max-steps", "3"]), 2)
    assert "lr: also given" in clean_failure(run([corpus, "--grid", "lr=0.1", "--lr", "0.2"]), 2)


def test_random_draws_stay_in_their_ranges_and_repeat_with_the_seed():
    axes = [Axis("--lr", low=1e-3, high=1e-2, log=True), Axis("--hidden-size", low=16, high=64, integer=True),
            Axis("--cell", values=("lstm", "gru"))]
    a, b = combinations(axes, 50, seed=3), combinations(axes, 50, seed=3)
    assert a == b and len(a) == 50
    lrs = [float(t["--lr"]) for t in a]
    assert all(1e-3 <= x <= 1e-2 for x in lrs)
    assert sum(x < math.sqrt(1e-5) for x in lrs) > 10  # log-uniform: about half below the geometric mean
    assert all(16 <= int(t["--hidden-size"]) <= 64 for t in a)
    assert {t["--cell"] for t in a} == {"lstm", "gru"}
    assert len(combinations([Axis("--a", values=("1", "2")), Axis("--b", values=("x", "y", "z"))])) == 6


def _sweep_folder(out):
    (name,) = [d for d in os.listdir(out) if d.startswith("sweep-")]
    return os.path.join(out, name)


def _trials(folder):
    """trial name -> (best loss and step from its own best.npz, its best.npz parameters)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if not name.startswith("t"):
            continue
        (run_dir,) = [d for d in os.listdir(os.path.join(folder, name)) if os.path.isdir(os.path.join(folder, name, d))]
        arrays, meta = checkpoint.load(os.path.join(folder, name, run_dir, "best.npz"))
        out[name] = (meta["progress"]["best_val"], meta["progress"]["step"],
                     {k: v for k, v in arrays.items() if k.startswith("param/")})
    return out


def _table_rows(stdout):
    """(trial, loss) in the printed table's order (names fold over lines: join the trial column)."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 8 and cells[0].isdigit():
            rows.append([cells[1], cells[2]])
        elif len(cells) == 8 and rows and cells[1] and not cells[0]:
            rows[-1][0] += cells[1]
    return rows


def _check_table_matches_checkpoints(result, folder):
    trials = _trials(folder)
    assert len(trials) == 4
    rows = _table_rows(result.stdout)
    assert [name for name, _ in rows] == sorted(trials, key=lambda n: trials[n][0])  # ranked, best first
    for name, loss in rows:
        assert float(loss) == pytest.approx(trials[name][0], abs=5e-5)
        assert trials[name][1] == 6
    return trials


@pytest.fixture(scope="module")
def local_sweep(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("local"))
    result = run([corpus, *GRID, *TRAIN, "--out", out, "--workers", "2"])
    assert result.exit_code == 0, (result.output, result.exception)
    return out, result


def test_local_pool_table_matches_the_trials_checkpoints(corpus, local_sweep):
    out, result = local_sweep
    folder = _sweep_folder(out)
    _check_table_matches_checkpoints(result, folder)
    page = open(os.path.join(folder, "sweep.html"), encoding="utf-8").read()
    assert page.count("<tr>") == 5 and "data:image/svg+xml" in page
    again = run([corpus, *GRID, *TRAIN, "--out", out])
    assert again.exit_code == 0 and "4 finished earlier" in again.stderr  # nothing re-run


def test_interrupted_trial_resumes_from_its_latest_checkpoint(corpus, local_sweep, tmp_path):
    """A trial stopped at step 3 (as Ctrl-C leaves it) continues to exactly the weights of the
    uninterrupted one (a constant schedule, so stopping early by --max-steps changes no rate)."""
    out = str(tmp_path)
    first = run([corpus, *GRID, *TRAIN, "--out", out, "--random", "1"])  # creates the plan; one trial
    assert first.exit_code == 0
    folder = _sweep_folder(out)
    plan = json.load(open(os.path.join(folder, "sweep.json")))
    (trial,) = plan["trials"]
    tdir = os.path.join(folder, trial["name"])
    import shutil

    shutil.rmtree(tdir)
    args = [corpus, *TRAIN, *sum(([k, v] for k, v in trial["options"].items()), [])]
    args[args.index("--max-steps") + 1] = "3"
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "rnncli", "train", *args, "--threads", "1", "--out", tdir, "-q"],
                   check=True, env=env, capture_output=True)
    again = run([corpus, *GRID, *TRAIN, "--out", out, "--random", "1"])
    assert again.exit_code == 0, again.output
    resumed = _trials(folder)[trial["name"]]
    assert resumed[1] == 6
    log = open(os.path.join(tdir, "train.log")).read()
    assert "Traceback" not in log
    # the same trial, uninterrupted, in the full grid of the local sweep
    opts = trial["options"]
    name = [n for n in _trials(_sweep_folder(local_sweep[0]))
            if f"hidden-size={opts['--hidden-size']}-dropout={opts['--dropout']}" in n][0]
    whole = _trials(_sweep_folder(local_sweep[0]))[name]
    for k, v in whole[2].items():
        np.testing.assert_array_equal(resumed[2][k], v)


def test_dask_localcluster_gives_the_local_pools_results(corpus, local_sweep, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = str(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        result = run([corpus, *GRID, *TRAIN, "--out", out, "--address", cluster.scheduler_address])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Dask cluster" in result.stderr
    dask_trials = _check_table_matches_checkpoints(result, _sweep_folder(out))
    local_trials = _trials(_sweep_folder(local_sweep[0]))
    assert sorted(dask_trials) == sorted(local_trials)
    for name, (loss, step, params) in dask_trials.items():
        assert loss == local_trials[name][0] and step == local_trials[name][1]
        for k, v in params.items():
            np.testing.assert_array_equal(v, local_trials[name][2][k])


def test_missing_dask_is_one_line(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    result = run([corpus, *GRID, *TRAIN, "--out", str(tmp_path), "--address", "tcp://127.0.0.1:1"])
    assert "pip install 'rnncli[dask]'" in clean_failure(result, 1)


def test_ctrl_c_stops_every_trial_with_a_checkpoint(corpus, tmp_path):
    args = [corpus, "--grid", "hidden-size=4,5", *TRAIN, "--out", str(tmp_path), "--workers", "2", "-q"]
    args[args.index("--max-steps") + 1] = "100000"
    args[args.index("--eval-every") + 1] = "50"
    proc = subprocess.Popen([sys.executable, "-m", "rnncli", "sweep", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # both trials have written a checkpoint
        found = [f for root, _, names in os.walk(tmp_path) for f in names if f == "latest.npz"]
        if len(found) == 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "run the same command to resume" in stderr
    folder = _sweep_folder(str(tmp_path))
    for name in os.listdir(folder):
        if name.startswith("t"):
            assert not os.path.exists(os.path.join(folder, name, "result.json"))
            assert "interrupted" in stdout
    for root, _, names in os.walk(folder):
        for f in names:
            if f.endswith(".npz"):
                checkpoint.load(os.path.join(root, f))  # valid


def test_one_sweep_process_works_a_sweep_folder(corpus, tmp_path):
    from rnncli.data.files import FolderLock

    args = [corpus, "--grid", "hidden-size=4,8", *TRAIN, "--out", str(tmp_path)]
    first = run(args)  # creates the folder and runs both trials
    assert first.exit_code == 0, first.output
    folder = _sweep_folder(str(tmp_path))
    with FolderLock(folder, "sweep folder"):  # as a sweep still running would
        refused = run(args)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    last = refused.stderr.splitlines()[-1]  # after the notice naming the folder
    assert last.startswith("Error: ") and f"in use by process {os.getpid()}" in last
