"""What the export tests share: tiny models trained by `rnn train`, rnncli's own probabilities,
and headless Chromium driven through a page's URL hash."""

import html
import json
import re
import subprocess
import urllib.parse

import numpy as np
from helpers import ok

TINY = ["--hidden-size", "8", "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2", "--max-steps", "4",
        "--dropout", "0", "-q"]
# the models every parity test covers: each cell at 1 and 2 layers
MODELS = [(cell, layers) for cell in ("lstm", "gru", "rnn") for layers in (1, 2)]
PREFIX_CHARS = 200


def train(folder, corpus, *extra) -> str:
    """best.npz of a fresh `rnn train` run in folder."""
    ok("train", corpus, *TINY, "--out", folder, *extra)
    (best,) = folder.glob("*/best.npz")
    return str(best)


def engine_probabilities(lm, text: str) -> np.ndarray:
    """rnncli's own forward pass (engine/model.py) over text from a zero state: the softmax of
    the last step's logits, in float64."""
    from rnncli.engine import model as M

    ids = np.ascontiguousarray(lm.vocab.encode(text).reshape(-1, 1))
    logits, _, _, _ = M.lm_forward(lm.cfg, lm.params, ids, M.zero_state(lm.cfg, 1, np.float32),
                                   M.Workspace(np.float32))
    z = logits[-1].astype(np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


def open_page(browser: str, page, profile, hook: dict, *, budget_ms: int = 0, extra=()) -> str:
    """The page's DOM after loading it with `hook` in its URL's hash (page.js reads it); with
    budget_ms, timers run that long in virtual time first (for generation, which yields to the
    browser between chunks)."""
    url = page.resolve().as_uri() + "#" + urllib.parse.urlencode(hook, quote_via=urllib.parse.quote)
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
            *extra]
    if budget_ms:
        args.append(f"--virtual-time-budget={budget_ms}")
    proc = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def page_answer(dom: str):
    """What the page's test hook wrote (JSON in #rnncli-test), checking that nothing was
    reported into its error box."""
    errors = re.search(r'<pre id="rnncli-errors"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    assert errors is not None and errors.group(1) == "", errors and html.unescape(errors.group(1))
    found = re.search(r'<pre id="rnncli-test" data-done="1">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, "the page's test hook wrote nothing"
    return json.loads(html.unescape(found.group(1)))
