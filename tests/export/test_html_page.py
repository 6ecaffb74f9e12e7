"""`rnn export --html`: one self-contained page that samples from the model in a browser. The page
computes rnncli's probabilities (headless Chromium, every cell at 1 and 2 layers), generates text
when its button is pressed, escapes every character of the vocabulary, and allows nothing but its
own inline script and style; bad requests are refused in one line."""

import base64
import hashlib
import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from export_support import MODELS, engine_probabilities, open_page, page_answer, train
from helpers import clean_failure, ok, run

from rnncli.export import read_model

TOLERANCE = 1e-4
PAGE_JS = Path(__file__).resolve().parents[2] / "rnncli" / "export" / "page.js"


def export_page(checkpoint, folder) -> Path:
    target = folder / "page.html"
    result = ok("export", checkpoint, "--html", target)
    assert result.stdout.strip() == str(target)
    return target


def embedded_model(page: Path) -> dict:
    found = re.search(r'<script type="application/json" id="rnncli-model">(.*?)</script>', page.read_text("utf-8"),
                      re.DOTALL)
    return json.loads(found.group(1))


# ---------------------------------------------------------------- the page as a file

def test_the_page_fetches_nothing_and_allows_only_its_own_script(checkpoints, tmp_path):
    text = export_page(checkpoints["lstm", 2], tmp_path).read_text("utf-8")
    assert not re.search(r"https?://|<link|<iframe|\bsrc=|@import|url\(", text.split('id="rnncli-weights"')[0])
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text).group(1))
    assert "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    (script,) = re.findall(r"<script>(.*?)</script>", text, re.DOTALL)  # the one script that runs
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert 'name="viewport"' in text and "@media" in text  # laid out for a phone too


def test_the_page_holds_the_weights_and_the_chosen_units(checkpoints, tmp_path):
    lm = read_model(checkpoints["gru", 2])
    page = export_page(checkpoints["gru", 2], tmp_path)
    spec = embedded_model(page)
    assert "".join(spec["vocab"]) == lm.vocab.chars
    blob = re.search(r'id="rnncli-weights">([^<]*)</script>', page.read_text("utf-8")).group(1)
    floats = np.frombuffer(base64.b64decode(blob), "<f4")
    t = spec["tensors"]["l1.W_hh"]
    got = floats[t["offset"]:t["offset"] + np.prod(t["shape"])].reshape(t["shape"])
    assert np.array_equal(got, lm.params["l1.W_hh"])
    units = spec["units"]
    assert 1 <= len(units) <= 8 and len({(u["layer"], u["kind"], u["index"]) for u in units}) == len(units)
    assert all(0 <= u["layer"] < 2 and 0 <= u["index"] < 8 and u["kind"] == "h" for u in units)


def test_a_model_with_fewer_units_than_picks_colours_its_most_variable_ones(corpus, tmp_path):
    from helpers import deadline

    checkpoint = train(tmp_path / "runs", corpus, "--cell", "rnn", "--layers", "1", "--hidden-size", "2")
    with deadline(60):
        units = embedded_model(export_page(checkpoint, tmp_path))["units"]
    assert sorted(u["index"] for u in units) == [0, 1] and {u["why"] for u in units} == {"varies most"}


def test_the_page_script_never_writes_markup():
    script = PAGE_JS.read_text("utf-8")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", script)


def test_hostile_vocabulary_stays_text(corpus, tmp_path):
    hostile = tmp_path / "hostile.txt"
    hostile.write_text("a </script><img src=x onerror=alert(1)> <!-- & \"q\" 's' \\ \u2028 {{SCRIPT}}\n" * 40,
                       encoding="utf-8")
    lm = read_model(train(tmp_path / "runs", hostile, "--cell", "gru", "--layers", "1"))
    text = export_page(lm.path, tmp_path).read_text("utf-8")
    assert text.count("</script") == 3 and "<img" not in text and "<!--" not in text
    assert text.count("{{") == 0  # filled in one pass: no text put in was read as a placeholder
    assert "".join(embedded_model(tmp_path / "page.html")["vocab"]) == lm.vocab.chars


# ---------------------------------------------------------------- the page in a browser

@pytest.mark.parametrize("cell,layers", MODELS, ids=[f"{c}-{n}layer" for c, n in MODELS])
def test_the_page_gives_the_engines_next_character_probabilities(chromium, checkpoints, prefix, tmp_path,
                                                                   cell, layers):
    lm = read_model(checkpoints[cell, layers])
    page = export_page(checkpoints[cell, layers], tmp_path)
    got = np.array(page_answer(open_page(chromium, page, tmp_path / "profile", {"probs": prefix}))["probs"])
    want = engine_probabilities(lm, prefix)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOLERANCE, np.abs(got - want).max()


def generate_in_browser(chromium, page, profile, **hook):
    dom = open_page(chromium, page, profile, {"autostart": "1", **hook}, budget_ms=30000)
    return page_answer(dom), dom


def test_pressing_generate_writes_the_models_characters(chromium, checkpoints, tmp_path):
    lm = read_model(checkpoints["lstm", 2])
    page = export_page(checkpoints["lstm", 2], tmp_path)
    hook = {"prime": "Le café", "seed": "7", "length": "300", "temp": "0.9"}
    answer, dom = generate_in_browser(chromium, page, tmp_path / "profile", **hook)
    assert len(answer["text"]) == 300 and not lm.vocab.unknown(answer["text"])
    assert answer["shown"] == 300 + len("Le café")  # a coloured cell per character, the prime's too
    assert dom.count('class="bar u') == answer["shown"] * len(embedded_model(page)["units"])
    again, _ = generate_in_browser(chromium, page, tmp_path / "profile", **hook)
    other, _ = generate_in_browser(chromium, page, tmp_path / "profile", **{**hook, "seed": "8"})
    assert again["text"] == answer["text"] and other["text"] != answer["text"]  # seeded
    greedy, _ = generate_in_browser(chromium, page, tmp_path / "profile", **{**hook, "temp": "0", "length": "5"})
    want = ""
    for _ in range(5):  # the likeliest character each time, by rnncli's own numbers
        want += lm.vocab.chars[int(np.argmax(engine_probabilities(lm, "Le café" + want)))]
    assert greedy["text"] == want


def test_model_text_is_shown_as_text_in_the_browser(chromium, tmp_path):
    hostile = tmp_path / "hostile.txt"
    hostile.write_text("<b>x</b><img src=x onerror=alert(1)>&amp;\n" * 60, encoding="utf-8")
    page = export_page(train(tmp_path / "runs", hostile, "--cell", "lstm", "--layers", "1"), tmp_path)
    answer, dom = generate_in_browser(chromium, page, tmp_path / "profile", prime="<img src=x", length="400")
    assert "<" in answer["text"]
    out = re.search(r'<div id="out"[^>]*>(.*?)</div>\s*<p id="picked"', dom, re.DOTALL).group(1)
    assert "<img" not in out and "<b>" not in out and "&lt;" in out


def test_a_phone_sized_screenshot(chromium, checkpoints, tmp_path):
    page = export_page(checkpoints["lstm", 1], tmp_path)
    shot = tmp_path / "shot.png"
    open_page(chromium, page, tmp_path / "profile", {"autostart": "1", "prime": "The ", "length": "200"},
              budget_ms=30000, extra=["--window-size=390,844", "--hide-scrollbars", f"--screenshot={shot}"])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


def test_a_2x256_lstm_page_loads_in_under_a_second(chromium, corpus, tmp_path):
    page = export_page(train(tmp_path / "runs", corpus, "--cell", "lstm", "--layers", "2", "--hidden-size", "256",
                             "--embedding-size", "64", "--max-steps", "1"), tmp_path)
    answer = page_answer(open_page(chromium, page, tmp_path / "profile", {"bench": "300"}))
    assert answer["load_ms"] < 1000, answer
    assert answer["chars_per_second"] > 20, answer


# ---------------------------------------------------------------- refusals

def test_neither_output_is_a_usage_error(checkpoints):
    assert "--onnx" in clean_failure(run("export", checkpoints["rnn", 1]), 2)


def test_a_classifier_is_refused_in_one_line(tmp_path):
    from helpers import TINY as CLASSIFIER
    from helpers import lines

    data = tmp_path / "data.tsv"
    data.write_text("\n".join(lines(6, 0)) + "\n", encoding="utf-8")
    ok("classify", "train", data, *CLASSIFIER, "--epochs", "1", "--out", tmp_path / "runs", "--quiet")
    (best,) = (tmp_path / "runs").glob("*/best.npz")
    try:
        import onnx  # noqa: F401  (without it, --onnx is refused for that reason first)

        options = ("--html", "--onnx")
    except ImportError:
        options = ("--html",)
    for option in options:
        err = clean_failure(run("export", best, option, tmp_path / "out"), 2)
        assert "classifier" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_damaged_checkpoint_is_refused_in_one_line(checkpoints, tmp_path):
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(Path(checkpoints["lstm", 1]).read_bytes()[:-200])
    clean_failure(run("export", damaged, "--html", tmp_path / "page.html"), 1)
    assert not (tmp_path / "page.html").exists()


def test_targets_that_are_not_regular_files_are_refused(checkpoints, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (tmp_path, fifo, Path("/dev/null")):
        err = clean_failure(run("export", checkpoints["lstm", 1], "--html", target), 2)
        assert "regular file" in err or "directory" in err
    assert fifo.is_fifo()


def test_an_unwritable_target_is_one_line_and_nothing_is_left(checkpoints, tmp_path):
    err = clean_failure(run("export", checkpoints["lstm", 1], "--html", tmp_path / "missing" / "page.html"), 1)
    assert "cannot write the page" in err
    assert not (tmp_path / "missing").exists()
