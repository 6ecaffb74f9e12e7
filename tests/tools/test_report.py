"""rnn report: the numbers (inspect.py), the page (report.py), the command, a real browser."""

import html.parser
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import clean_failure, deadline
from rnncli.engine import npz as checkpoint
from rnncli.tools import inspection as ins
from rnncli.engine import model as M
from rnncli.tools import report as rep
from rnncli import ui
from rnncli.cli import main
from rnncli.config import ModelConfig

HOSTILE = 'Say <script>alert("x")</script> & "quoted" </span><b>bold</b> (in brackets)\n'


def _text(n: int = 1500) -> str:
    base = ("ROMEO: What light through yonder window breaks?\n"
            "JULIET: (aside) \"O Romeo\" & all, </span> <script>alert(1)</script>\n\n")
    return (base * (n // len(base) + 1))[:n]


def invoke(args, **kw):
    return CliRunner().invoke(main, args, **kw)  # Click 8.2+: stdout and stderr kept apart


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny trained language model on a corpus full of HTML, in a file whose name is HTML too."""
    root = tmp_path_factory.mktemp("lm")
    corpus = root / 'a<b>&"q.txt'
    corpus.write_text(_text(3000), encoding="utf-8")
    r = invoke(["train", str(corpus), "--hidden-size", "8", "--layers", "2", "--embedding-size", "4",
                "--seq-len", "16", "--batch-size", "4", "--max-steps", "30", "--eval-every", "10",
                "--threads", "1", "--out", str(root / "runs"), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    best = Path(r.stdout.strip().splitlines()[-1].split("\t")[0])  # the path first on the line
    return best.parent


@pytest.fixture(scope="module")
def lm_report(lm_run, tmp_path_factory):
    r = invoke(["report", str(lm_run), "--chars", "600", "--show-chars", "300", "--steps", "20"],
               catch_exceptions=False)
    assert r.exit_code == 0, r.output
    path = Path(r.stdout.strip())
    assert path == lm_run / "report.html"
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- gradients through time

def _layer_params(p, cfg, m):
    names = ["W_xh", "W_hh", "b"] + (["b_hn"] if cfg.cell == "gru" else [])
    return {f"l0.{n}": p[f"l{m}.{n}"] for n in names}


def _bumped_top(cfg, p, x, k, t, j, eps):
    """The top layer's output when h^k_t (layer k's state after step t) is moved by eps in unit
    j: everything that reads it, the next step and the layer above at step t, sees the change."""
    one = ModelConfig(cell=cfg.cell, hidden_size=cfg.hidden_size, num_layers=1, embedding_size=0, dropout=0.0)
    layer_in = p["embed"][x]  # (T, B, E) float input
    T, B = x.shape
    for m in range(cfg.num_layers):
        lp = _layer_params(p, cfg, m)
        state = M.zero_state(one, B, np.float64)
        if m != k:
            out, _ = M.stack_forward(one, lp, np.ascontiguousarray(layer_in), state, M.Workspace(np.float64))
            layer_in = out.copy()
            continue
        first, s = M.stack_forward(one, lp, np.ascontiguousarray(layer_in[:t + 1]), state, M.Workspace(np.float64))
        first = first.copy()
        first[t, :, j] += eps
        s = s.copy()
        s[0, 0, :, j] += eps
        parts = [first]
        if t + 1 < T:
            rest, _ = M.stack_forward(one, lp, np.ascontiguousarray(layer_in[t + 1:]), s, M.Workspace(np.float64))
            parts.append(rest.copy())
        layer_in = np.concatenate(parts)
    return layer_in


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_state_gradients_match_finite_differences(cell, layers):
    cfg = ModelConfig(cell=cell, hidden_size=3, num_layers=layers, embedding_size=2, dropout=0.0)
    rng = np.random.default_rng(3)
    p = M.init_params(cfg, M.lm_shapes(cfg, 5), rng, np.float64)
    T, B = 4, 2
    x = rng.integers(0, 5, (T, B)).astype(np.int32)
    w = rng.standard_normal((B, 3))
    work = M.Workspace(np.float64)
    M.lm_forward(cfg, p, x, M.zero_state(cfg, B, np.float64), work)
    d_top = np.zeros((T, B, 3))
    d_top[-1] = w  # L = Σ w ⊙ top[T-1]
    g = M.stack_state_grads(cfg, p, d_top, work)
    assert g.shape == (layers, T, B, 3)
    eps = 1e-6
    for k in range(layers):
        for t in range(T):
            for j in range(3):
                up = (_bumped_top(cfg, p, x, k, t, j, eps)[-1] * w).sum(axis=1)
                down = (_bumped_top(cfg, p, x, k, t, j, -eps)[-1] * w).sum(axis=1)
                np.testing.assert_allclose(g[k, t, :, j], (up - down) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_vanilla_gradient_vanishes_faster_than_lstm_at_initialisation():
    like = ModelConfig(cell="rnn", hidden_size=32, num_layers=1, embedding_size=8)
    curves = ins.gradients_through_time(like, 20, ("rnn", "lstm", "gru"), steps=30, windows=4, seed=1)
    by = {c.name.split()[0]: c for c in curves}
    assert all(c.norms.shape == (31,) and (c.norms > 0).all() for c in curves)
    # W_hh ~ U(±1/√H) has spectral radius near 1/√3 and tanh' ≤ 1; the LSTM's cell path is scaled
    # by the forget gate, σ(1) ≈ 0.73 at initialisation
    assert by["rnn"].factor < 0.7 and by["rnn"].factor < by["lstm"].factor
    assert by["rnn"].norms[-1] < 1e-3 * by["rnn"].norms[0]
    assert np.isclose(by["lstm"].factor, 10 ** by["lstm"].slope)


def test_gradient_curve_slope_reads_a_planted_decay():
    """A linear model h_t = a h_{t-1} (+ input) with a = 0.5 I: dL/dh_{t-k} halves every step."""
    cfg = ModelConfig(cell="rnn", hidden_size=4, num_layers=1, embedding_size=0, activation="relu", dropout=0.0)
    p = M.init_params(cfg, M.lm_shapes(cfg, 3), np.random.default_rng(0), np.float64)
    p["l0.W_hh"] = 0.5 * np.eye(4)
    p["l0.W_xh"] = np.ones((4, 3))  # every state positive, so relu' = 1 everywhere
    inputs = np.zeros((12, 2), np.int32)
    curve = ins.gradient_curve("planted", cfg, p, inputs, np.array([0, 1]))
    np.testing.assert_allclose(curve.norms[1:] / curve.norms[:-1], 0.5, rtol=1e-12)
    assert curve.factor == pytest.approx(0.5)


def test_language_model_report_keeps_its_gradients_section(lm_report):
    assert re.findall(r"<h2>([^<]+)</h2>", lm_report) == ["Learning curves", "Samples", "Hidden units over text",
                                                          "Gate saturation", "Gradients through time"]
    section = lm_report[lm_report.index("<h2>Gradients through time</h2>"):]
    assert section.count("<img") == 1 and 'alt="gradients through time"' in section
    assert "<th>model</th><th>‖dL/dh‖ at k=0</th><th>at k=20</th>" in section
    assert "stack" not in section and "(forward)" not in section  # the classifier's wording stays its own


def test_gradient_curve_slope_is_the_least_squares_fit_of_its_norms():
    like = ModelConfig(cell="gru", hidden_size=6, num_layers=2, embedding_size=3)
    for c in ins.gradients_through_time(like, 7, ("rnn",), steps=12, windows=3, seed=2):
        k = np.arange(1, 13)
        assert c.slope == np.polyfit(k, np.log10(c.norms[1:]), 1)[0]


def _tiny_classifier(cell, pooling, bidirectional):
    from rnncli.classify.model import classifier_shapes, init_classifier
    from rnncli.config import ClassifyConfig

    cfg = ClassifyConfig(cell=cell, hidden_size=3, num_layers=2, embedding_size=2, bidirectional=bidirectional,
                         pooling=pooling, dense=(4,), dropout=0.0).validate()
    p = init_classifier(cfg, classifier_shapes(cfg, 6, 3), np.random.default_rng(5), np.float64)
    p["d0.b"][:] = [0.5, 0.5, -9.0, 0.5]  # three of the head's ReLUs open, one shut (its gradient must stop)
    return cfg, p


def _head_loss(cfg, p, tops, n, label):
    """The classifier's cross-entropy from its stacks' top outputs (n, 1, H), in plain numpy."""
    pool = {"max": lambda h: h.max(axis=0), "mean": lambda h: h.mean(axis=0), "last": lambda h: h[-1]}[cfg.pooling]
    z = np.concatenate([pool(top[:n, 0]) for top in tops])
    for i in range(len(cfg.dense)):
        z = np.maximum(p[f"d{i}.W"] @ z + p[f"d{i}.b"], 0.0)
    logits = p["out.W"] @ z + p["out.b"]
    m = logits.max()
    return m + np.log(np.exp(logits - m).sum()) - logits[label]


@pytest.mark.parametrize("cell,pooling,bidirectional", [("gru", "max", True), ("lstm", "mean", True),
                                                        ("rnn", "last", True), ("gru", "last", False)])
def test_classifier_state_gradients_match_finite_differences(cell, pooling, bidirectional):
    cfg, p = _tiny_classifier(cell, pooling, bidirectional)
    mcfg = cfg.model()
    ids, label = np.array([1, 4, 2, 5, 3], np.int32), 2
    n = len(ids)
    # what each stack reads: the forward one the text, the backward one the text last token first
    reads = {"forward": ids, "backward": ids[::-1].copy()}
    prefixes = {"forward": "fw.", "backward": "bw."}
    stacks = [d for d in ("forward", "backward") if bidirectional or d == "forward"]

    def params_of(d):
        pre = prefixes[d]
        return {"embed": p["embed"], **{k[len(pre):]: v for k, v in p.items() if k.startswith(pre)}}

    def top(d, k=0, t=0, j=0, eps=0.0):
        return _bumped_top(mcfg, params_of(d), reads[d].reshape(n, 1), k, t, j, eps)

    g = ins.classifier_state_grads(cfg, p, ids, label)
    assert sorted(g) == sorted(stacks)
    eps = 1e-6
    fd = {}
    for d in stacks:
        fd[d] = np.zeros((cfg.num_layers, n, cfg.hidden_size))
        for k in range(cfg.num_layers):
            for t in range(n):
                for j in range(cfg.hidden_size):
                    loss = [_head_loss(cfg, p, [top(e, k, t, j, s) if e == d else top(e) for e in stacks], n, label)
                            for s in (eps, -eps)]
                    fd[d][k, t, j] = (loss[0] - loss[1]) / (2 * eps)
        np.testing.assert_allclose(g[d], fd[d], rtol=1e-5, atol=1e-9)
    # the curve reads k = steps before the last step each stack reads, every layer together
    curves = ins.classifier_gradient_curves("tiny", cfg, p, [ids], [label], steps=10)
    for d in stacks:
        want = np.sqrt((fd[d] ** 2).sum(axis=(0, 2)))[::-1]
        np.testing.assert_allclose(curves[d].norms, want, rtol=1e-5)
        np.testing.assert_allclose(curves[d].per_layer, np.sqrt((fd[d] ** 2).sum(axis=2))[:, ::-1], rtol=1e-5)
        assert curves[d].name == f"tiny ({d})"


def test_classifier_gradients_average_texts_in_log_space():
    cfg, p = _tiny_classifier("gru", "mean", True)
    a, b = np.array([1, 4, 2, 5, 3], np.int32), np.array([2, 2, 0], np.int32)
    one = ins.classifier_gradient_curves("x", cfg, p, [a], [0], steps=10)
    two = ins.classifier_gradient_curves("x", cfg, p, [b], [1], steps=10)
    both = ins.classifier_gradient_curves("x", cfg, p, [a, b], [0, 1], steps=10)
    capped = ins.classifier_gradient_curves("x", cfg, p, [a, b], [0, 1], steps=1)
    for d in ("forward", "backward"):
        assert both[d].norms.shape == (3,) and capped[d].norms.shape == (2,)  # k up to the shortest text
        want = np.sqrt(one[d].norms[:3] * two[d].norms)
        np.testing.assert_allclose(both[d].norms, want, rtol=1e-12)
        np.testing.assert_allclose(both[d].per_layer, np.sqrt(one[d].per_layer[:, :3] * two[d].per_layer),
                                   rtol=1e-12)
        np.testing.assert_allclose(capped[d].norms, want[:2], rtol=1e-12)
    # a text that does not depend on a state at all is left out there, not averaged in as log 0
    np.testing.assert_allclose(ins._log_mean(np.array([[0.0, 4.0, 0.0], [0.0, 1.0, 9.0]])), [0.0, 2.0, 9.0],
                               rtol=1e-12)


# ---------------------------------------------------------------- units and gates

def test_text_properties_follow_their_definitions():
    text = 'ab (c)"d"\nXe'
    p = ins.text_properties(text)
    assert p["inside quotes or brackets"].tolist() == [0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    assert p["position in the line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert p["just read a newline"].tolist() == [0] * 9 + [1, 0, 0]
    assert p["vowel"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert p["upper case"].tolist() == [0] * 10 + [1, 0]
    assert ins.text_properties("é")["vowel"].tolist() == [1]  # accents ignored


def test_find_units_recovers_planted_units():
    text = _text(800)
    props = ins.text_properties(text)
    rng = np.random.default_rng(0)
    n, H = len(text), 12
    h = 0.05 * rng.standard_normal((2, n, H))
    h[1, :, 7] = np.tanh(props["upper case"] * 2 - 1) + 0.01 * rng.standard_normal(n)
    h[0, :, 2] = -props["position in the line"] / 60
    h[0, :, 5] = 0.0  # a dead unit
    search = ins.find_units(ins.Activity(h, None, None), text)
    picked = {u.why: u for u in search.units}
    assert (picked["upper case"].layer, picked["upper case"].index) == (1, 7)
    assert picked["upper case"].r > 0.99
    assert (picked["position in the line"].layer, picked["position in the line"].index) == (0, 2)
    assert picked["position in the line"].r < -0.99
    assert (picked["least active"].layer, picked["least active"].index) == (0, 5)
    assert len({(u.layer, u.kind, u.index) for u in search.units}) == len(search.units)  # each unit once
    r = ins.correlations(h[1], {"upper case": props["upper case"]})
    assert np.all(np.abs(r) <= 1 + 1e-12)


@pytest.mark.parametrize("H", [1, 2, 3])
def test_find_units_ends_on_a_model_with_fewer_units_than_properties(H):
    text = _text(300)
    h = np.random.default_rng(1).standard_normal((1, len(text), H))
    with deadline(20):
        search = ins.find_units(ins.Activity(h, None, None), text)
    assert 1 <= len(search.units) <= H
    assert len({(u.layer, u.kind, u.index) for u in search.units}) == len(search.units)  # each unit once


def test_report_of_a_model_of_two_units(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(_text(1500), encoding="utf-8")
    r = invoke(["train", str(corpus), "--hidden-size", "2", "--layers", "1", "--embedding-size", "2",
                "--seq-len", "8", "--batch-size", "2", "--max-steps", "4", "--eval-every", "2",
                "--out", str(tmp_path / "runs"), "-q"])
    assert r.exit_code == 0, r.output
    with deadline(60):
        page = invoke(["report", str(Path(r.stdout.split("\t")[0]).parent), "--chars", "200", "--steps", "5"])
    assert page.exit_code == 0, page.output


def test_gate_saturation_counts_fractions():
    gates = np.full((1, 10, 4, 2), 0.5)  # LSTM: i f g o
    gates[0, :3, 1, 0] = 0.05  # forget gate of unit 0: closed 3 of 10 steps
    gates[0, 3:, 1, 0] = 0.95  # and open the other 7
    gates[0, :, 2, :] = 0.0  # g is tanh, not a gate: ignored
    sat = ins.gate_saturation("lstm", gates)
    assert sat.gates == ("input", "forget", "output")
    assert sat.left[0, 1, 0] == pytest.approx(0.3) and sat.right[0, 1, 0] == pytest.approx(0.7)
    assert sat.left[0, 0].tolist() == [0, 0] and sat.right[0, 2].tolist() == [0, 0]
    assert ins.gate_saturation("rnn", None) is None


def test_curves_read_old_and_new_histories():
    old = {"progress": {"best_val": 2.0, "best_step": 20,
                        "history": {"train": [[10, 3.0], [20, 2.5], "junk"], "val": [[10, 2.8], [20, None]]}}}
    c = ins.lm_curves(old)
    assert c.steps.tolist() == [10, 20] and c.seconds is None
    assert c.train.tolist() == [3.0, 2.5] and c.val[0] == 2.8 and np.isnan(c.val[1])
    new = json.loads(json.dumps(old))
    new["progress"]["history"]["time"] = [[10, 1.5], [20, 3.0]]
    assert ins.lm_curves(new).seconds.tolist() == [1.5, 3.0]
    assert ins.lm_curves({}).steps.size == 0


# ---------------------------------------------------------------- the page

class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.urls = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster") and v]

    def handle_data(self, data):
        self.text.append(data)


def test_colour_spans_escape_every_character():
    out = rep.colour_spans('<&">\n', np.array([-1.0, -0.5, 0.0, 0.5, 1.0]), 1.0)
    assert "<&" not in out and '"">' not in out
    assert out.count("<i ") == 5 and 'class="u0"' in out and 'class="u20"' in out and "&lt;&amp;&quot;&gt;" \
        in re.sub(r"</?i[^>]*>", "", out)


def test_report_of_a_trained_model(lm_run, lm_report):
    page = lm_report
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags  # the corpus's <script> became text
    assert parser.tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "img", "pre",
                           "div", "i", "b", "span", "table", "tr", "th", "td"}
    text = "".join(parser.text)
    assert '<script>alert(1)</script>' in text and '</span>' in text and '"O Romeo" & all' in text
    assert 'a<b>&"q.txt' in text  # the file name, shown as text
    assert all(u.startswith("data:image/") for u in parser.urls) and len(parser.urls) >= 3
    for section in ("Learning curves", "Samples", "Hidden units over text", "Gate saturation",
                    "Gradients through time"):
        assert f"<h2>{section}</h2>" in page
    for t in ins.TEMPERATURES:
        assert f"temperature {t:g}" in page
    assert "inside quotes or brackets" in page and "r = " in page
    assert "trained lstm" in page and "gru at initialisation" in page
    assert "does not record wall time" not in page  # this run recorded it


def test_report_of_an_old_checkpoint_without_wall_time(lm_run, tmp_path):
    arrays, meta = checkpoint.load(str(lm_run / "best.npz"))
    meta["progress"]["history"].pop("time")
    old = tmp_path / "old.npz"
    checkpoint.save(str(old), arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    r = invoke(["report", str(old), "--chars", "300", "--steps", "5", "-o", str(tmp_path / "r.html")],
               catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(tmp_path / "r.html")
    assert "does not record wall time" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_report_with_text_file_leaves_out_unknown_characters(lm_run, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("ROMEO: window \u4e2d breaks\n" * 10, encoding="utf-8")
    out = tmp_path / "r.html"
    r = invoke(["report", str(lm_run), "--text", str(text), "--steps", "5", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "10 characters the model does not know were left out" in out.read_text(encoding="utf-8")


def test_gradients_only_draws_fresh_models(tmp_path):
    out = tmp_path / "g.html"
    r = invoke(["report", "--gradients-only", "--cell", "rnn", "--cell", "lstm", "--hidden-size", "16",
                "--layers", "1", "--steps", "10", "-o", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "rnn at initialisation" in page and "lstm at initialisation" in page and "gru at" not in page
    assert "Hidden units" not in page and page.count("<img") == 1


@pytest.fixture(scope="module")
def clf_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    data = root / "d.tsv"
    lines = [f"<i>pos</i>\tgood fine great nice {i}" if i % 2 else f"neg&\tbad awful poor sad {i}" for i in range(40)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = invoke(["classify", "train", str(data), "--hidden-size", "8", "--embedding-size", "8", "--dense", "",
                "--epochs", "3", "--threads", "1", "--out", str(root / "runs")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "rnn report" in r.stderr  # the summary names the report command
    return Path(r.stdout.strip().splitlines()[-1].split("\t")[0]).parent


def test_classifier_report(clf_run):
    r = invoke(["report", str(clf_run)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = Path(r.stdout.strip()).read_text(encoding="utf-8")
    assert "&lt;i&gt;pos&lt;/i&gt;" in page and "<i>pos" not in page and "neg&amp;" in page
    assert page.count("<img") == 4  # loss, accuracy/F1, validation confusion matrix, gradients through time
    assert 'alt="validation confusion matrix"' in page


def test_classifier_report_draws_gradients_through_time(clf_run, tmp_path):
    r = invoke(["report", str(clf_run), "--steps", "3", "-o", str(tmp_path / "page.html")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    section = page[page.index("<h2>Gradients through time</h2>"):]
    assert 'alt="classifier gradients through time"' in section and "at k=3" in section
    for name in ("trained gru (forward)", "gru at initialisation (forward)", "trained gru (backward)",
                 "gru at initialisation (backward)"):
        assert f"<td>{name}</td>" in section
    data = ins.inspect_run(str(clf_run), steps=100)
    g = data.gradients
    assert sorted(g.curves) == ["backward", "forward"] and len(g.lengths) == ins.GRADIENT_TEXTS
    assert g.lengths.tolist() == [5] * ins.GRADIENT_TEXTS  # "good fine great nice 7": five words
    for trained, fresh in g.curves.values():
        for c in (trained, fresh):
            assert c.norms.shape == (5,) and c.per_layer.shape == (1, 5) and np.isfinite(c.norms).all()
            # k = 0 is the last step a stack reads: under max pooling it is exactly zero for a text
            # where no unit peaks there, as nothing comes after it; every earlier state feeds a later one
            assert (c.norms[1:] > 0).all() and c.norms[0] >= 0
        assert not np.allclose(trained.norms, fresh.norms)


def test_classifier_report_shows_a_unit_for_each_class(clf_run, tmp_path):
    r = invoke(["report", str(clf_run), "-o", str(tmp_path / "page.html")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    section = page[page.index("Hidden units and the classes"):]
    assert section.count("<h3>") == 2 and "&lt;i&gt;pos&lt;/i&gt;: unit" in section and "neg&amp;: unit" in section
    words = re.sub(r"<[^>]+>", "", section)
    assert 'class="u' in section and "good" in words and "awful" in words  # each class's own text


def test_separating_units_find_a_planted_unit():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    pooled = rng.standard_normal((90, 12))
    pooled[y == 1, 7] += 3.0  # unit 7 fires for class 1
    pooled[y == 2, 2] += 2.0
    found = ins.separating_units(pooled, y, 4)
    assert found[1][0] == 7 and found[1][1] > 1 and found[2][0] == 2
    assert found[3] is None  # a class without texts
    assert len({f[0] for f in found if f}) == 3  # each unit once


def test_classifier_report_without_its_training_file_says_why(clf_run, tmp_path):
    from rnncli.engine import npz

    arrays, meta = npz.load(str(clf_run / "best.npz"))
    meta["data"] = str(tmp_path / "gone.tsv")
    folder = tmp_path / "moved"
    folder.mkdir()
    npz.save(str(folder / "best.npz"), arrays, meta)
    r = invoke(["report", str(folder)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "Not shown: the training file" in page and "is not there" in page and "--text" in page
    assert page[page.index("<h2>Gradients through time</h2>"):].count("Not shown: the training file") == 1


def test_default_run_is_the_most_recent(lm_run):
    r = invoke(["report", "--out", str(lm_run.parent), "--chars", "200", "--steps", "3", "-o",
                str(lm_run / "again.html")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (lm_run / "again.html").is_file()


@pytest.mark.parametrize("case", ["empty-folder", "no-runs", "bad-text"])
def test_bad_input_is_one_error_line(tmp_path, lm_run, case):
    if case == "empty-folder":
        (tmp_path / "empty").mkdir()
        args = ["report", str(tmp_path / "empty")]
    elif case == "no-runs":
        args = ["report", "--out", str(tmp_path)]
    else:
        bad = tmp_path / "bad.txt"
        bad.write_bytes(b"ok \xff\xfe")
        args = ["report", str(lm_run), "--text", str(bad)]
    clean_failure(invoke(args), 1)


def test_training_summary_names_the_report_and_no_chart_off_a_terminal(lm_run, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(_text(800), encoding="utf-8")
    r = invoke(["train", str(corpus), "--hidden-size", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "2",
                "--max-steps", "4", "--eval-every", "2", "--threads", "1", "--out", str(tmp_path / "runs")],
               catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "rnn report " in r.stderr
    assert "┤" not in r.stderr  # stderr is not a terminal here


def test_text_chart_places_points_by_value():
    lines = ui.text_chart({"a": [(0, 3.0), (10, 1.0)], "b": [(5, 2.0)]}, width=11, height=3)
    grid = lines[1:4]
    assert grid[0].endswith("┤·" + " " * 10) and "3.000" in grid[0]
    assert grid[1].endswith("┤" + " " * 5 + "•" + " " * 5)
    assert grid[2].endswith("┤" + " " * 10 + "·") and "1.000" in grid[2]
    assert ui.text_chart({"a": [(0, float("nan"))]}) == []


# ---------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def _chromium(page: Path, shot: Path, profile: Path, *extra) -> str:
    """Screenshot page in headless Chromium; returns its log (console messages included)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
           "--window-size=1200,2400", f"--screenshot={shot}", *extra, page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), proc.stderr[-2000:]
    return proc.stderr


def _console(log: str) -> list:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def _pixels(shot: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(str(shot))[..., :3]


def _has_colour(img: np.ndarray, rgb, tol: float = 0.08, least: int = 30) -> bool:
    return int((np.abs(img - np.array(rgb) / 255).max(axis=2) < tol).sum()) >= least


@needs_chromium
def test_console_check_catches_a_planted_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("planted")</script>', encoding="utf-8")
    assert any("planted" in line for line in _console(_chromium(page, tmp_path / "s.png", tmp_path / "p")))


@needs_chromium
def test_report_renders_in_chromium(lm_run, lm_report, tmp_path):
    log = _chromium(lm_run / "report.html", tmp_path / "shot.png", tmp_path / "profile")
    assert _console(log) == []
    img = _pixels(tmp_path / "shot.png")
    assert img.std() > 0.05 and (img.min(axis=2) < 0.9).mean() > 0.02  # not blank
    assert _has_colour(img, (0x1f, 0x77, 0xb4)) and _has_colour(img, (0xff, 0x7f, 0x0e))  # curves drawn


@needs_chromium
def test_report_opens_with_networking_disabled(lm_run, lm_report, tmp_path):
    parser = _Tags()
    parser.feed(lm_report)
    assert parser.urls and all(u.startswith("data:") for u in parser.urls)
    assert not re.search(r"(?i)(https?:|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\()", re.sub(r"data:[^\"]+", "", lm_report))
    # every request would go to a proxy on a closed port, and no host name resolves
    log = _chromium(lm_run / "report.html", tmp_path / "shot.png", tmp_path / "profile",
                    "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND")
    assert _console(log) == []
    img = _pixels(tmp_path / "shot.png")
    assert _has_colour(img, (0x1f, 0x77, 0xb4)) and _has_colour(img, (0xff, 0x7f, 0x0e))


# ---------------------------------------------------------------- where a report may be written

def _special(tmp_path, kind):
    """A device node of our own (never the system's /dev/null), a FIFO or a folder."""
    target = str(tmp_path / kind)
    if kind == "device":
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        os.mkdir(target)
    return target


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_report_never_replaces_what_is_not_a_regular_file(lm_run, tmp_path, kind):
    target = _special(tmp_path, kind)
    before = os.stat(target)
    stderr = clean_failure(invoke(["report", str(lm_run), "-o", target, "--chars", "100"]), 2)
    after = os.stat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert "regular file" in stderr or "directory" in stderr


def test_report_replaces_its_own_regular_file(lm_run, tmp_path):
    target = tmp_path / "page.html"
    target.write_text("old page")
    r = invoke(["report", str(lm_run), "-o", str(target), "--chars", "100", "--show-chars", "50"])
    assert r.exit_code == 0, r.output
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(os.listdir(tmp_path)) == ["page.html"]  # no temporary file left beside it


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_every_atomic_writer_refuses_special_targets(tmp_path, kind):
    from rnncli.data.files import replace_file
    from rnncli.errors import TargetError

    target = _special(tmp_path, kind)
    before = os.stat(target)
    with pytest.raises(TargetError):
        replace_file(target, b"data", "a record")
    assert os.stat(target).st_ino == before.st_ino and os.stat(target).st_mode == before.st_mode


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    from rnncli.data import files
    from rnncli.errors import ConfigError

    target = tmp_path / "record.json"
    target.write_bytes(b"old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(ConfigError, match="No space left on device.*unchanged"):
        files.replace_file(str(target), b"new", "a record", ConfigError)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["record.json"]


# ---------------------------------------------------------------- histories no run records

def test_report_of_a_history_beyond_any_run_draws_what_it_can(lm_run, tmp_path):
    arrays, meta = checkpoint.load(str(lm_run / "latest.npz"))
    history = meta["progress"]["history"]
    history["train"] = [[i, 1e308 if i % 2 else 3.0 - 0.1 * i] for i in range(10)] + [[10 ** 30, 2.0]]
    history["val"] = [[0, -1e308], [4, 2.5], [8, 10 ** 400]]
    history["time"] = [[i, float(i) if i < 5 else 1e300] for i in range(10)]
    meta["progress"]["best_val"] = 1e308
    damaged = checkpoint.save(str(tmp_path / "latest.npz"), arrays, meta)
    r = invoke(["report", damaged, "-o", str(tmp_path / "page.html"), "--chars", "100", "--show-chars", "50"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "data:image/svg+xml" in (tmp_path / "page.html").read_text()


def test_sweep_curves_leave_out_what_no_run_records():
    from rnncli.tools.sweep import curves

    (c,) = curves([{"name": "t00", "best_val": None,
                    "history": {"val": [[3, 1e308], [6, 2.0], ["x", 1.0], [9, None]],
                                "train": [[3, 2.5], [10 ** 40, 2.0], [6, True]]}}])
    assert c["val_steps"].tolist() == [6.0] and c["val"].tolist() == [2.0]
    assert c["train_steps"].tolist() == [3.0] and c["train"].tolist() == [2.5]
