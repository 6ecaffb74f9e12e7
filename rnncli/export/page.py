"""A language model as one self-contained HTML page that samples from it in the browser.

The page is page.html with page.js inlined, the model's settings and vocabulary as a JSON block,
and its weights as one base64 block of little-endian float32 in rnncli's own layout (gate row
blocks in config.GATES order), read by page.js. Layer 0's input is folded into its input table
(V, G·H), as rnncli's sampler folds it. Nothing is fetched: the Content-Security-Policy allows
no network at all, the one inline script (by its hash) and inline style only.

Under each character the page colours a few hidden units: those `rnn report` picks
(tools/inspection.find_units, over the same passage), or, when the model has too few units for
every pick, the ones that vary most over that passage.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from importlib import resources

import numpy as np

from rnncli.export import model_record

UNITS_PASSAGE_CHARS = 2000  # as `rnn report` measures units by default
# find_units picks at most 6 units by property and 2 by activity, each a different unit;
# page.html has a hide rule for each of .u0 … .u7
MAX_UNITS = 8


def _resource(name: str) -> str:
    return resources.files("rnncli.export").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(value) -> str:
    """JSON that can stand inside a <script> element: no character of it can close the element
    or open a comment, whatever text the value holds."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chosen_units(lm) -> list[dict]:
    """The units the page colours: layer, kind ("h" or "c"), index, a label, why it was picked
    and the scale its colours span (1 for a tanh-bounded h, else its largest |value| seen)."""
    from rnncli.tools import inspection as ins

    passage = ins._passage(lm, lm.meta, None, UNITS_PASSAGE_CHARS)
    act = ins.activity(lm.cfg, lm.params, lm.vocab.encode(passage.text))
    if act.h.shape[0] * act.h.shape[2] >= MAX_UNITS:
        picked = [(u.layer, u.kind, u.index, u.values, f"{u.why} (r = {u.r:+.2f})"
                   if u.why not in ("most active", "least active") else u.why)
                  for u in ins.find_units(act, passage.text).units]
    else:  # fewer hidden units than find_units picks (it needs one per pick): the most variable
        spread = act.h.std(axis=1)  # (L, H)
        order = np.argsort(-spread, axis=None)[:MAX_UNITS]
        picked = [(int(k), "h", int(j), act.h[k, :, j], "varies most")
                  for k, j in zip(*np.unravel_index(order, spread.shape))]
    bounded = lm.cfg.cell != "rnn" or lm.cfg.activation != "relu"
    units = []
    for layer, kind, index, values, why in picked[:MAX_UNITS]:
        top = float(np.abs(values).max()) if len(values) else 1.0
        scale = 1.0 if kind == "h" and bounded else (top if top > 0 else 1.0)
        units.append({"layer": int(layer), "kind": kind, "index": int(index), "scale": scale,
                      "label": f"layer {layer + 1} {'cell' if kind == 'c' else 'h'}[{index}]", "why": why})
    return units


def _weights(lm) -> tuple[dict, bytes]:
    """The tensors page.js reads, as (name -> offset and shape in floats, one float32 blob)."""
    from rnncli.engine import model as M

    cfg, p = lm.cfg, lm.params
    embed = p["embed"] if cfg.embedding_size > 0 else None
    tensors = {"table0": M.input_table(p["l0.W_xh"], p["l0.b"], embed)}
    for k in range(cfg.num_layers):
        if k > 0:
            tensors[f"l{k}.W_xh"], tensors[f"l{k}.b"] = p[f"l{k}.W_xh"], p[f"l{k}.b"]
        tensors[f"l{k}.W_hh"] = p[f"l{k}.W_hh"]
        if cfg.cell == "gru":
            tensors[f"l{k}.b_hn"] = p[f"l{k}.b_hn"]
    tensors["W_hy"], tensors["b_y"] = p["W_hy"], p["b_y"]
    index, parts, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, "<f4")
        index[name] = {"offset": offset, "shape": list(a.shape)}
        parts.append(a.tobytes())
        offset += a.size
    return index, b"".join(parts)


def _best_bits(meta: dict):
    progress = meta.get("progress") if isinstance(meta.get("progress"), dict) else {}
    best = progress.get("best_val")
    if isinstance(best, (int, float)) and not isinstance(best, bool) and math.isfinite(best) and 0 <= best < 1e6:
        return best / math.log(2.0)
    return None


def render(lm) -> str:
    """The page's HTML for a language model (lm.checkpoint.LanguageModel)."""
    from rnncli.lm.sample import start_token

    tensors, blob = _weights(lm)
    record = model_record(lm)
    spec = {"format": "rnncli-page-1", "config": record, "vocab": list(lm.vocab.chars),
            "start": start_token(lm.vocab), "units": chosen_units(lm), "tensors": tensors,
            "best_bits": _best_bits(lm.meta)}
    script = _resource("page.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    # 'unsafe-inline' only for browsers older than script hashes: a hash makes others ignore it
    csp = (f"default-src 'none'; script-src 'sha256-{digest}' 'unsafe-inline'; style-src 'unsafe-inline'; "
           f"base-uri 'none'; form-action 'none'")
    title = f"rnncli: {record['cell'].upper()} {record['num_layers']}\u00d7{record['hidden_size']}"
    fill = {"CSP": html.escape(csp), "TITLE": html.escape(title), "MODEL": _json_for_script(spec),
            "WEIGHTS": base64.b64encode(blob).decode("ascii"), "SCRIPT": script}
    # one pass: text put in is never searched for placeholders again
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: fill[m.group(1)], _resource("page.html"))


def export_page(lm, path: str) -> str:
    """Write the page to path (a new file or a regular one, replaced atomically)."""
    from rnncli.data.files import replace_file

    return replace_file(path, render(lm).encode("utf-8"), "the page")
