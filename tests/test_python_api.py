"""rnncli from Python: rnncli.train, rnncli.load, LanguageModel and TextClassifier give what the
`rnn` commands give for the same seed and options, raise the project's exceptions (never
SystemExit), and TextClassifier works where scikit-learn expects an estimator."""

import json
import os

import numpy as np
import pytest

import rnncli
from helpers import ACCENTED, invoke, lines, ok, write_corpus

# Nothing left to the clock: with a time budget the cosine schedule follows it, and the recipe
# chooses dropout from a measured speed
TINY = dict(hidden_size=8, layers=1, embedding_size=4, seq_len=8, batch_size=3, max_steps=12, eval_every=6,
            threads=1, seed=11, max_time=0, dropout=0.1)
TINY_ARGS = ["--hidden-size", 8, "--layers", 1, "--embedding-size", 4, "--seq-len", 8, "--batch-size", 3,
             "--max-steps", 12, "--eval-every", 6, "--threads", 1, "--seed", 11, "--max-time", 0, "--dropout", 0.1]
CLASSIFIER = dict(hidden_size=8, embedding_size=8, dense=(8,), epochs=2, batch_size=8, threads=1, seed=5)
CLASSIFIER_ARGS = ["--hidden-size", 8, "--embedding-size", 8, "--dense", 8, "--epochs", 2, "--batch-size", 8,
                   "--threads", 1, "--seed", 5]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return str(write_corpus(tmp_path_factory.mktemp("api"), 8))


@pytest.fixture(scope="module")
def api_run(corpus, tmp_path_factory):
    seen = []
    run = rnncli.train(corpus, progress=False, callback=seen.append, out_dir=str(tmp_path_factory.mktemp("runs")),
                       **TINY)
    return run, seen


def test_train_gives_the_weights_and_history_the_cli_gives(corpus, api_run, tmp_path):
    run, seen = api_run
    best = ok("train", corpus, *TINY_ARGS, "--out", tmp_path, "-q").stdout.split("\t")[0]
    with np.load(best) as cli, np.load(run.best) as api:
        names = [n for n in cli.files if n.startswith("param/") or n.startswith("opt/")]
        assert names and all(np.array_equal(api[n], cli[n]) for n in names)
        cli_meta = json.loads(str(cli["meta"]))
        api_meta = json.loads(str(api["meta"]))
    assert {k: v for k, v in api_meta["config"].items() if k != "out_dir"} == \
        {k: v for k, v in cli_meta["config"].items() if k != "out_dir"}
    for part in ("train", "val"):
        assert run.history[part] == cli_meta["progress"]["history"][part]
    assert [ev.step for ev in seen] == [6, 12] and run.stop_reason == "max-steps" and run.steps == 12
    assert os.path.dirname(run.best) == run.run_dir == os.path.dirname(run.latest)


def test_sample_is_what_rnn_sample_prints(api_run):
    run, _ = api_run
    lm = run.model
    one = lm.sample(120, prime="Le ", temperature=0.7, seed=4)
    assert ok("sample", run.best, "-n", 120, "-p", "Le ", "--temp", 0.7, "--seed", 4).stdout == one + "\n"
    several = lm.sample(40, temperature=1.2, seed=9, num_samples=3, top_k=5)
    printed = ok("sample", run.best, "-n", 40, "--temp", 1.2, "--seed", 9, "--num-samples", 3, "--top-k", 5).stdout
    assert isinstance(several, list) and len(several) == 3
    assert printed == "\n\n".join(several) + "\n"
    assert "".join(lm.stream(120, prime="Le ", temperature=0.7, seed=4)) == one[len("Le "):]


def test_score_of_a_string_is_rnn_eval_of_the_same_text_in_a_file(api_run, tmp_path):
    run, _ = api_run
    text = ACCENTED * 3 + "Ωmega unseen ✓\r\n"
    path = tmp_path / "held-out.txt"
    path.write_bytes(text.encode("utf-8"))
    s = run.model.score(text)
    printed = ok("eval", run.best, path).stdout
    assert f"{s.nats_per_char:.4f}" in printed and f"{s.bits_per_char:.4f}" in printed
    assert s.unseen.get("Ω") == 1 and s.unseen.get("✓") == 1 and s.predicted == s.chars - 1


def test_next_char_probs_are_the_probabilities_the_loss_is_made_of(api_run):
    lm = api_run[0].model
    probs = lm.next_char_probs("Le caf")
    assert set(probs) == set(lm.vocab) and abs(sum(probs.values()) - 1) < 1e-9
    # a two-character text is one prediction from the empty state: -log p(second | first)
    s = lm.score("Lé")
    assert s.predicted == 1
    assert lm.next_char_probs("L")["é"] == pytest.approx(np.exp(-s.nats_per_char), rel=1e-5)
    with pytest.raises(rnncli.ConfigError, match="never seen"):
        lm.next_char_probs("Ω")


def test_train_on_a_string_and_resume_it(tmp_path):
    run = rnncli.train(text=ACCENTED * 8, progress=False, out_dir=str(tmp_path), **TINY)
    (kept,) = os.listdir(tmp_path / "texts")
    assert open(tmp_path / "texts" / kept, encoding="utf-8").read() == ACCENTED * 8
    more = rnncli.train(resume=run.latest, progress=False, max_steps=18)
    assert more.steps == 18 and more.run_dir == run.run_dir
    assert isinstance(rnncli.load(more.best), rnncli.LanguageModel)


@pytest.mark.parametrize("call, error, words", [
    (lambda c: rnncli.train(c, hiden_size=8), rnncli.UsageError, "did you mean hidden_size"),
    (lambda c: rnncli.train(c, progress=False, hidden_size=0, max_steps=1), rnncli.ConfigError, "hidden-size"),
    (lambda c: rnncli.train("no-such-corpus", max_steps=1), rnncli.CorpusError, "text="),
    (lambda c: rnncli.train("/dev/zero", max_steps=1), rnncli.CorpusError, "not a regular file"),
    (lambda c: rnncli.train(c, text="abc"), rnncli.UsageError, "not both"),
    (lambda c: rnncli.load(c), rnncli.CheckpointError, "not an .npz"),
])
def test_errors_are_the_projects_exceptions(corpus, call, error, words):
    with pytest.raises(error, match=words):
        call(corpus)


# ---------------------------------------------------------------- the classifier

@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    rows = [line.split("\t", 1) for line in lines(30, 0)]
    texts, labels = [t for _, t in rows], [label for label, _ in rows]
    path = tmp_path_factory.mktemp("clf") / "train.txt"
    path.write_text("".join(f"{label}\t{text}\n" for label, text in zip(labels, texts)), encoding="utf-8")
    return texts, labels, path


def test_fit_is_rnn_classify_train_and_predicts_what_predict_prints(labelled, tmp_path):
    texts, labels, path = labelled
    clf = rnncli.TextClassifier(**CLASSIFIER).fit(texts, labels)
    ckpt = ok("classify", "train", path, *CLASSIFIER_ARGS, "--out", tmp_path, "-q").stdout.strip().splitlines()[-1]
    probe = texts[:5] + ["a text of words it has never seen"]
    printed = invoke("classify", "predict", ckpt, "--all-probs", input="\n".join(probe) + "\n").stdout
    assert list(clf.classes_) == sorted(set(labels))
    expected = clf.predict_proba(probe)
    rows = [line.split("\t") for line in printed.strip().splitlines()]
    assert [row[0] for row in rows] == list(clf.predict(probe))
    got = np.array([[float(cell.split("=")[1]) for cell in row[2:]] for row in rows])
    np.testing.assert_allclose(got, expected, atol=1e-4)  # printed with 4 decimals


def test_save_and_load_keep_the_predictions(labelled, tmp_path):
    texts, labels, _ = labelled
    clf = rnncli.TextClassifier(**CLASSIFIER).fit(texts, [labels.index(l) for l in labels])  # int labels
    path = clf.save(tmp_path / "clf.npz")
    again = rnncli.load(path)
    assert isinstance(again, rnncli.TextClassifier)
    np.testing.assert_array_equal(again.predict_proba(texts), clf.predict_proba(texts))
    assert again.predict(texts).tolist() == clf.predict(texts).tolist()  # the int labels come back as ints
    classes = sorted(set(labels.index(l) for l in labels))
    assert clf.classes_.tolist() == classes and all(type(c) is int for c in clf.predict(texts))


def test_parameters_follow_scikit_learns_conventions():
    clf = rnncli.TextClassifier(hidden_size=16, epochs=1)
    params = clf.get_params()
    assert params["hidden_size"] == 16 and params["epochs"] == 1 and "layers" in params
    assert clf.set_params(lr=0.01) is clf and clf.lr == 0.01
    with pytest.raises(rnncli.UsageError):
        clf.set_params(learning_rate=1)
    with pytest.raises(rnncli.ConfigError, match="not fitted"):
        clf.predict(["x"])
    with pytest.raises(rnncli.ConfigError, match="one string"):
        rnncli.TextClassifier(**CLASSIFIER).fit("one text", ["a"])


def test_cross_val_score_and_clone(labelled):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    texts, labels, _ = labelled
    clf = rnncli.TextClassifier(**CLASSIFIER)
    assert clone(clf).get_params() == clf.get_params()
    scores = cross_val_score(clf, texts, labels, cv=3)
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert np.mean(scores) > 1.0 / len(set(labels))  # the planted words are learnable
    assert sklearn.__version__


def test_an_interrupted_train_returns_the_run_and_resumes(corpus, tmp_path):
    """As a notebook's interrupt does: SIGINT during rnncli.train saves and returns."""
    import signal
    import subprocess
    import sys
    import time

    script = (f"import json, rnncli\n"
              f"run = rnncli.train({corpus!r}, progress=False, out_dir={str(tmp_path)!r}, hidden_size=8, layers=1,"
              f" embedding_size=4, seq_len=8, batch_size=3, eval_every=5, max_steps=10**9, patience=0,"
              f" max_time=120, threads=1)\n"
              f"print(json.dumps([run.stop_reason, run.steps, run.latest]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob("*/latest.npz")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    reason, steps, latest = json.loads(out.strip().splitlines()[-1])
    assert reason == "interrupted" and steps > 0
    more = rnncli.train(resume=latest, progress=False, max_steps=steps + 5)
    assert more.steps == steps + 5


def test_fine_tuning_and_folders_as_the_cli_has_them(api_run, corpus, tmp_path):
    run, _ = api_run
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "b.txt").write_text(ACCENTED * 4, encoding="utf-8")
    (folder / "a.txt").write_text(ACCENTED[::-1] * 4, encoding="utf-8")
    tuned = rnncli.train(folder, init_from=run.best, progress=False, out_dir=str(tmp_path / "runs"),
                         max_steps=6, eval_every=3, max_time=0, threads=1)
    assert tuned.run_dir != run.run_dir and tuned.model.vocab == run.model.vocab
    assert tuned.model.meta["corpus"] == [str(folder / "a.txt"), str(folder / "b.txt")]
    (folder / "c.txt").write_text("Ω" + ACCENTED, encoding="utf-8")
    with pytest.raises(rnncli.CorpusError, match="not in the"):
        rnncli.train(folder, init_from=run.best, progress=False, out_dir=str(tmp_path / "runs"), max_steps=2)
    rnncli.train(folder, init_from=run.best, map_unknown=True, progress=False, out_dir=str(tmp_path / "runs"),
                 max_steps=2, max_time=0)
    with pytest.raises(rnncli.UsageError, match="hidden-size 16 differs"):
        rnncli.train(folder, init_from=run.best, hidden_size=16, progress=False, max_steps=2)
    assert os.path.isfile(os.path.join(tuned.run_dir, "metrics.jsonl"))
