"""Draws what inspect.py computed into one self-contained HTML file: no scripts, no fonts or
styles fetched, pictures embedded as SVG data (matplotlib, Agg), per-character colours as spans.

Every piece of text that comes from a corpus, a label, a file name or checkpoint metadata goes
through html.escape (and, inside a plot, through _plain, so matplotlib does not read `$` as
math). Nothing here computes a number the picture shows; it only lays out arrays.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os

import numpy as np

from rnncli.data.files import replace_file
from rnncli.errors import ConfigError

LN2 = math.log(2.0)
LEVELS = 10  # colour steps on each side of zero for the per-character backgrounds
CELL_COLOURS = {"rnn": "#d62728", "lstm": "#1f77b4", "gru": "#2ca02c"}

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1em;margin:1.2em 0 .3em} .meta{color:#555} .teach{color:#444;background:#f6f8fa;padding:.5em .8em;border-left:3px solid #9ab}
img{max-width:100%;height:auto} table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre.sample{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:.5em;margin:.2em 0 1em}
.units{font:13px/1.35 ui-monospace,"DejaVu Sans Mono",monospace;white-space:pre-wrap;word-break:break-all;border:1px solid #eee;padding:.4em}
.units i{font-style:normal} .nl{color:#999}
.scale{display:inline-block;width:220px;height:12px;vertical-align:middle;border:1px solid #ccc;
background:linear-gradient(to right,#2166ac,#f7f7f7,#b2182b)}
"""


# ---------------------------------------------------------------- helpers

def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _plain(text) -> str:
    """Text for a matplotlib label: `$` would start math mode."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "svg.hashsalt": "rnncli", "figure.dpi": 100})
    return plt


def _img(fig, alt: str, fmt: str = "svg") -> str:
    """The figure as an <img> holding SVG (or, for many-point scatters, PNG) data: an image
    cannot run scripts or fetch anything."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f'<img alt="{_e(alt)}" src="data:{mime};base64,{data}">'


def _colour(v: float) -> str:
    """Diverging blue-white-red for v in [-1, 1]."""
    v = max(-1.0, min(1.0, v))
    lo, mid, hi = (0x21, 0x66, 0xac), (0xf7, 0xf7, 0xf7), (0xb2, 0x18, 0x2b)
    end = hi if v >= 0 else lo
    a = abs(v)
    return "#" + "".join(f"{round(m + (e - m) * a):02x}" for m, e in zip(mid, end))


def _level_css() -> str:
    return "".join(f".u{k + LEVELS}{{background:{_colour(k / LEVELS)}}}" for k in range(-LEVELS, LEVELS + 1))


def colour_spans(text: str, values: np.ndarray, scale: float) -> str:
    """One <i class="uK"> per character, K the activation's colour step; the text escaped.
    A newline shows as a grey ↵ in its colour, then breaks the line."""
    parts = []
    s = scale if scale > 0 else 1.0
    for ch, v in zip(text, values):
        k = int(round(max(-1.0, min(1.0, float(v) / s)) * LEVELS)) + LEVELS
        shown = '<b class="nl">↵</b>' if ch == "\n" else _e(ch)
        parts.append(f'<i class="u{k}">{shown}</i>' + ("\n" if ch == "\n" else ""))
    return "".join(parts)


def _page(title: str, body: list) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{CSS}{_level_css()}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write(html_text: str, path: str) -> str:
    """Atomically write the page (a new file or a regular one); returns path."""
    return replace_file(path, html_text.encode("utf-8"), "the report", ConfigError)


# ---------------------------------------------------------------- pictures

def _bits_axis(ax):
    ax.secondary_yaxis("right", functions=(lambda x: x / LN2, lambda x: x * LN2)).set_ylabel("bits/char")


def lm_curves_figure(curves) -> str:
    plt = _pyplot()
    panels = 2 if curves.seconds is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.2), squeeze=False)
    xs = [("step", curves.steps)] + ([("wall time (s)", curves.seconds)] if curves.seconds is not None else [])
    for ax, (label, x) in zip(axes[0], xs):
        ax.plot(x, curves.train, color="#1f77b4", lw=1.5, label="training")
        if np.isfinite(curves.val).any():
            ax.plot(x, curves.val, color="#ff7f0e", lw=1.5, marker="o", ms=2.5, label="validation")
        if curves.best_step is not None and curves.best_step in set(curves.steps.tolist()):
            i = int(np.flatnonzero(curves.steps == curves.best_step)[0])
            ax.plot([x[i]], [curves.best_val], marker="*", ms=13, color="#d62728", ls="none",
                    label=f"best {curves.best_val:.3f} (step {curves.best_step})")
        ax.set_xlabel(label)
        ax.set_ylabel("loss (nats/char)")
        _bits_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    fig.tight_layout()
    return _img(fig, "learning curves")


def lr_figure(curves) -> str:
    """The learning rate the run's log records at each evaluation, against step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    ax.plot(curves.steps, curves.lr, color="#2ca02c", lw=1.5, marker="o", ms=2.5)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _img(fig, "learning rate")


def classifier_figures(c) -> list:
    plt = _pyplot()
    out = []
    fig, axes = plt.subplots(1, 2 if c.seconds is not None else 1, figsize=(10.4 if c.seconds is not None else 5.2, 3.2),
                             squeeze=False)
    xs = [("epoch", c.epochs)] + ([("wall time (s)", c.seconds)] if c.seconds is not None else [])
    for ax, (label, x) in zip(axes[0], xs):
        ax.plot(x, c.train_loss, marker="o", ms=3, label="training loss")
        ax.plot(x, c.val_loss, marker="o", ms=3, label="validation loss")
        if c.best_epoch is not None and c.best_epoch in set(c.epochs.tolist()):
            i = int(np.flatnonzero(c.epochs == c.best_epoch)[0])
            ax.plot([x[i]], [c.val_loss[i]], marker="*", ms=13, color="#d62728", ls="none",
                    label=f"best (epoch {c.best_epoch})")
        ax.set_xlabel(label)
        ax.set_ylabel("cross-entropy (nats)")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    fig.tight_layout()
    out.append(_img(fig, "loss per epoch"))
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    ax.plot(c.epochs, c.accuracy, marker="o", ms=3, label="validation accuracy")
    ax.plot(c.epochs, c.macro_f1, marker="s", ms=3, label="validation macro-F1")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    out.append(_img(fig, "accuracy and macro-F1 per epoch"))
    for title, conf in c.confusions:
        n = len(c.labels)
        size = min(9.0, 2.5 + 0.45 * n)
        fig, ax = plt.subplots(figsize=(size, size * 0.85))
        rows = conf.sum(axis=1, keepdims=True)
        share = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        labels = [_plain(l[:20]) for l in c.labels]
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.6 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: share of each true class")
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        out.append(_img(fig, f"{title} confusion matrix"))
    return out


def saturation_figure(sat) -> str:
    plt = _pyplot()
    L, G = sat.left.shape[0], len(sat.gates)
    fig, axes = plt.subplots(L, G, figsize=(2.6 * G, 2.5 * L), squeeze=False, sharex=True, sharey=True)
    for k in range(L):
        for g in range(G):
            ax = axes[k][g]
            ax.plot([0, 1], [1, 0], color="#bbb", lw=0.8)
            ax.scatter(sat.left[k, g], sat.right[k, g], s=6, alpha=0.6, color="#1f77b4", lw=0)
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"layer {k + 1} {sat.gates[g]} gate", fontsize=9)
            if k == L - 1:
                ax.set_xlabel("fraction < 0.1 (closed)")
            if g == 0:
                ax.set_ylabel("fraction > 0.9 (open)")
    fig.tight_layout()
    return _img(fig, "gate saturation", "png")


def gradients_figure(curves) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for c in curves:
        cell = c.name.split()[1] if c.name.startswith("trained") else c.name.split()[0]
        trained = c.name.startswith("trained")
        k = np.arange(len(c.norms))
        ok = c.norms > 0
        ax.semilogy(k[ok], c.norms[ok], color=CELL_COLOURS.get(cell, "#333"), lw=2.4 if trained else 1.4,
                    ls="-" if trained else "--",
                    label=f"{_plain(c.name)}: ×{c.factor:.3g} per step")
    ax.set_xlabel("k, steps back from the loss at step t")
    ax.set_ylabel("‖dL/dh(t−k)‖")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return _img(fig, "gradients through time")


def _factor(c) -> str:
    return f"×{c.factor:.3g} per step" if math.isfinite(c.slope) else "too few steps for a slope"


def classifier_gradients_figure(g) -> str:
    """One panel per recurrent stack: the trained model (solid) and the fresh one (dashed)."""
    plt = _pyplot()
    directions = list(g.curves)
    fig, axes = plt.subplots(1, len(directions), figsize=(5.2 * len(directions), 3.4), squeeze=False, sharey=True)
    one = g.tokens[:-1]
    where = {"forward": f"k = 0: after the last {one}", "backward": f"k = 0: after the first {one}, read last"}
    for ax, direction in zip(axes[0], directions):
        for c in g.curves[direction]:
            trained = c.name.startswith("trained")
            cell = c.name.split()[1] if trained else c.name.split()[0]
            k = np.arange(len(c.norms))
            ok = c.norms > 0
            ax.semilogy(k[ok], c.norms[ok], color=CELL_COLOURS.get(cell, "#333"), lw=2.4 if trained else 1.4,
                        ls="-" if trained else "--", marker="o" if len(k) <= 40 else None, ms=2.5,
                        label=f"{_plain(c.name.rsplit(' (', 1)[0])}: {_factor(c)}")
        ax.set_title(f"{direction} stack", fontsize=9)
        ax.set_xlabel(f"k, {g.tokens} before its last step ({where.get(direction, '')})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(frameon=False, fontsize=8)
    axes[0][0].set_ylabel("‖dL/dh‖, geometric mean over texts")
    fig.tight_layout()
    return _img(fig, "classifier gradients through time")


# ---------------------------------------------------------------- sections

TEACH = {
    "curves": "Training loss falls as the model fits the text; validation loss is scored on text it never "
              "trains on. When validation stops falling while training keeps falling, the model has begun to "
              "memorise (overfit); the star marks the checkpoint kept as best. Loss is in nats per character "
              "(left) and bits per character (right): 1 bit/char means the model hesitates, on average, "
              "between two equally likely characters.",
    "samples": "Temperature divides the logits before the softmax. Low temperatures pick the likeliest "
               "characters and repeat safe phrases; high temperatures take more risks and misspell more.",
    "units": "Each character is coloured by one unit's activation after reading it: red positive, blue "
             "negative, white near zero. Units are picked automatically as the ones whose activation "
             "correlates most (Pearson r) with a simple property of the text; r near ±1 means the unit tracks "
             "that property closely, near 0 that it does not. Most units do several things at once, so a "
             "clean tracker is rare and worth noticing.",
    "saturation": "Each dot is one unit's gate: how often it is nearly closed (< 0.1, right is closed more) "
                  "and nearly open (> 0.9, up is open more). Dots near the diagonal line are switches, "
                  "almost always fully open or closed; dots near the origin hover in between and mix "
                  "information. Forget gates that are often open (high up) keep memories for many steps.",
    "gradients": "How much the loss at one step depends on the hidden state k steps earlier. On a log scale "
                 "a straight falling line is exponential decay: the vanishing gradient. The factor per step "
                 "is the average shrinkage from one step to the one before. The vanilla RNN's gradient "
                 "vanishes fastest; the LSTM's cell and the GRU's update gate give gradients a path that "
                 "shrinks more slowly, so they can learn longer dependencies.",
    "classifier gradients": "How much the classification depends on the hidden state k steps before the last "
                            "one each recurrent stack reads. Unlike a language model's loss at one step, the "
                            "pooling reads many steps (max pooling: the step where each unit peaks; mean: every "
                            "step; last: the final state only), so the gradient at a state is its own share of "
                            "the pooled value plus what flows back from later steps. A falling curve means the "
                            "decision rests on what the stack read last; a flat one, that earlier text counts "
                            "as much. With last pooling the curve is the vanishing gradient itself.",
}


def _teach(key: str) -> str:
    return f'<p class="teach">{_e(TEACH[key])}</p>'


def _gradients_section(curves, intro: str) -> list:
    rows = "".join(f"<tr><td>{_e(c.name)}</td><td class=n>{c.norms[0]:.3g}</td>"
                   f"<td class=n>{c.norms[-1]:.3g}</td><td class=n>{c.slope:+.4f}</td>"
                   f"<td class=n>×{c.factor:.4g}</td></tr>" for c in curves)
    K = len(curves[0].norms) - 1 if curves else 0
    return ["<h2>Gradients through time</h2>", f"<p class=meta>{_e(intro)}</p>", gradients_figure(curves),
            f"<table><tr><th>model</th><th>‖dL/dh‖ at k=0</th><th>at k={K}</th>"
            f"<th>slope (decades per step)</th><th>factor per step</th></tr>{rows}</table>", _teach("gradients")]


def _classifier_gradients_section(data) -> list:
    head = ["<h2>Gradients through time</h2>"]
    g = data.gradients
    if g is None:
        why = data.units_note or "no text has a token the classifier reads"
        return head + [f"<p class=meta>Not shown: {_e(why)}.</p>"]
    curves = [c for pair in g.curves.values() for c in pair]
    K = len(curves[0].norms) - 1
    one = g.tokens[:-1]
    backward = (f" The backward stack reads each text last {one} first, so its last step reads the first {one}."
                if "backward" in g.curves else "")
    short, long = int(g.lengths.min()), int(g.lengths.max())
    span = f"{long} {g.tokens} each" if short == long else f"{short} to {long} {g.tokens}"
    intro = (f"The classifier's cross-entropy on each of {len(g.lengths)} texts, the longest of {g.source} "
             f"({span}), differentiated with respect to every layer's hidden state k {g.tokens} before the "
             f"last step each recurrent stack reads, for k up to {K}, and averaged in log space over the "
             f"texts; a text whose gradient there is exactly zero (a step no unit's pooling reads, with "
             f"nothing after it) is left out, and 0 means every text's is. "
             f"The forward stack's last step reads the text's last {one}.{backward} The trained weights beside "
             f"the same architecture with fresh weights (seed {g.seed}); float64, no dropout.")
    rows = "".join(f"<tr><td>{_e(c.name)}</td><td class=n>{c.norms[0]:.3g}</td><td class=n>{c.norms[-1]:.3g}</td>"
                   + (f"<td class=n>{c.slope:+.4f}</td><td class=n>×{c.factor:.4g}</td></tr>"
                      if math.isfinite(c.slope) else "<td class=n>–</td><td class=n>–</td></tr>") for c in curves)
    table = (f"<table><tr><th>model (stack)</th><th>‖dL/dh‖ at k=0</th><th>at k={K}</th>"
             f"<th>slope (decades per step)</th><th>factor per step</th></tr>{rows}</table>")
    return head + [f"<p class=meta>{_e(intro)}</p>", classifier_gradients_figure(g), table,
                   _teach("classifier gradients")]


def _unit_label(u) -> str:
    kind = "cell" if u.kind == "c" else "hidden"
    return f"layer {u.layer + 1} {kind} unit {u.index}"


def render_lm(data) -> str:
    cfg, files = data.cfg, data.files
    run = os.path.basename(os.path.abspath(files.run_dir))
    title = f"rnn report: {run}"
    progress = data.meta.get("progress") if isinstance(data.meta.get("progress"), dict) else {}
    body = [f"<h1>{_e(title)}</h1>",
            f"<p class=meta>{_e(cfg.cell)} {cfg.num_layers}×{cfg.hidden_size}, embedding {cfg.embedding_size}, "
            f"{data.params_count:,} parameters, vocabulary of {data.vocab_size} characters. "
            f"Weights: {_e(files.model)}"
            + (f", step {progress.get('step')}" if isinstance(progress.get("step"), int) else "") + ".</p>"]
    c = data.curves
    body.append("<h2>Learning curves</h2>")
    if c.steps.size:
        if c.seconds is None:
            body.append("<p class=meta>This checkpoint does not record wall time at each evaluation "
                        "(written by an older rnncli); only the curve against steps is drawn.</p>")
        if c.source == "log":
            body.append(f"<p class=meta>Read from the run's log, {_e(os.path.join(files.run_dir, 'metrics.jsonl'))}, "
                        f"which agrees with the checkpoint's history.</p>")
        body.append(lm_curves_figure(c))
        if c.lr is not None:
            body.append("<h3>Learning rate</h3>")
            body.append(lr_figure(c))
        if c.best_val is not None:
            body.append(f"<p>Best validation loss {c.best_val:.4f} nats/char "
                        f"({c.best_val / LN2:.3f} bits/char) at step {c.best_step}.</p>")
    else:
        body.append("<p class=meta>No loss history in this checkpoint.</p>")
    body.append(_teach("curves"))
    body.append("<h2>Samples</h2>")
    for t, text in data.samples:
        body.append(f"<h3>temperature {t:g}</h3><pre class=sample>{_e(text)}</pre>")
    body.append(_teach("samples"))

    p = data.passage
    n = data.show_chars
    dropped = f"; {p.dropped} characters the model does not know were left out" if p.dropped else ""
    body += ["<h2>Hidden units over text</h2>",
             f"<p class=meta>Passage: {len(p.text):,} characters, {_e(p.source)}{dropped}. "
             f"{data.units.candidates:,} units searched (hidden states"
             + (" and cells" if cfg.cell == "lstm" else "") + f" of every layer); the first {n:,} characters "
             f"are shown. <span class=scale></span> −1 … +1 (cells: ± their largest value here)</p>",
             _teach("units")]
    if data.units.table:
        rows = "".join(f"<tr><td>{_e(prop)}</td><td>{_e(label)}</td><td class=n>{r:+.3f}</td></tr>"
                       for prop, (label, r) in data.units.table.items())
        body.append(f"<table><tr><th>property</th><th>most correlated unit</th><th>r</th></tr>{rows}</table>")
    for u in data.units.units:
        scale = 1.0 if u.kind == "h" else float(np.abs(u.values).max())
        if u.why in ("most active", "least active"):
            head = (f"{u.why}: {_unit_label(u)} (mean |activation| {u.mean_abs:.3f}); "
                    f"tracks {u.property} most, r = {u.r:+.2f}")
        else:
            head = f"{u.why}: {_unit_label(u)}, r = {u.r:+.2f}"
        body.append(f"<h3>{_e(head)}</h3><div class=units>{colour_spans(p.text[:n], u.values[:n], scale)}</div>")

    body.append("<h2>Gate saturation</h2>")
    if data.saturation is None:
        body.append("<p class=meta>A vanilla RNN has no gates.</p>")
    else:
        s = data.saturation
        rows = "".join(f"<tr><td>layer {k + 1}</td><td>{_e(g)}</td><td class=n>{s.left[k, i].mean():.3f}</td>"
                       f"<td class=n>{s.right[k, i].mean():.3f}</td></tr>"
                       for k in range(s.left.shape[0]) for i, g in enumerate(s.gates))
        body += [saturation_figure(s),
                 f"<table><tr><th>layer</th><th>gate</th><th>mean fraction &lt; 0.1</th>"
                 f"<th>mean fraction &gt; 0.9</th></tr>{rows}</table>", _teach("saturation")]
    body += _gradients_section(data.gradients, f"Loss at the last step of {len(data.gradients[0].norms)}-character "
                                               f"windows of the passage; the trained model beside fresh models of "
                                               f"the same size (float64).")
    return _page(title, body)


def render_classifier(data) -> str:
    run = os.path.basename(os.path.abspath(data.files.run_dir))
    title = f"rnn report: {run}"
    cfg = data.meta.get("config") if isinstance(data.meta.get("config"), dict) else {}
    body = [f"<h1>{_e(title)}</h1>",
            f"<p class=meta>Classifier: {_e(cfg.get('cell', '?'))}, {len(data.labels)} classes "
            f"({_e(', '.join(data.labels))}). Weights: {_e(data.files.model)}.</p>",
            "<h2>Learning curves</h2>"]
    if data.epochs.size:
        body += classifier_figures(data)
    else:
        body.append("<p class=meta>No per-epoch history in this checkpoint.</p>")
    body.append(_teach("curves"))
    body.append('<p class=teach>The confusion matrix counts texts by true class (rows) and predicted class '
                '(columns); the colour is the share of each row, so a dark diagonal is a good classifier and a '
                'dark cell off the diagonal names the classes it mixes up.</p>')
    body.append("<h2>Hidden units and the classes</h2>")
    if data.class_units:
        body.append('<p class=teach>For each class, the unit of the forward recurrent stack (top layer) whose '
                    'pooled value most sets that class\'s texts apart from the others (its separation: the '
                    'difference of the means over the unit\'s spread), shown after each word of the text of '
                    'that class where it fires most: red is positive, blue negative.</p>')
        for u in data.class_units:
            text = " ".join(u.tokens)
            values = np.concatenate([np.full(len(t) + (i > 0), v) for i, (t, v) in enumerate(zip(u.tokens, u.values))]) \
                if u.tokens else np.zeros(0)
            scale = float(np.abs(values).max()) if values.size and np.abs(values).max() > 0 else 1.0
            body.append(f"<h3>{_e(u.label)}: unit {u.index}, separation {u.separation:+.2f}</h3>"
                        f"<div class=units>{colour_spans(text, values, scale)}</div>")
    else:
        body.append(f"<p class=meta>Not shown: {_e(data.units_note)}.</p>")
    body += _classifier_gradients_section(data)
    return _page(title, body)


def render_gradients(data) -> str:
    title = "rnn report: gradients through time"
    cfg = data.cfg
    intro = (f"Fresh models ({cfg.num_layers}×{cfg.hidden_size}, embedding {cfg.embedding_size}) at "
             f"initialisation, loss at the last step of windows of {data.text_source} (float64).")
    return _page(title, [f"<h1>{_e(title)}</h1>"] + _gradients_section(data.gradients, intro))


def render(data) -> str:
    from rnncli.tools import inspection as ins

    if isinstance(data, ins.LMInspection):
        return render_lm(data)
    if isinstance(data, ins.ClassifierInspection):
        return render_classifier(data)
    return render_gradients(data)


# ---------------------------------------------------------------- sweeps

def sweep_curves_figure(curves: list) -> str:
    """Every trial's validation loss (training loss where a trial has no validation) against
    step, one line each, in the ranked order of the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.6))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(1, len(curves))))
    for colour, c in zip(colours, curves):
        x, y = (c["val_steps"], c["val"]) if c["val"].size else (c["train_steps"], c["train"])
        if y.size:
            best = f"{c['best_val']:.3f}" if c["best_val"] is not None else "-"
            ax.plot(x, y, color=colour, lw=1.4, marker="o", ms=2, label=_plain(f"{best}  {c['name']}"))
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats/char)")
    _bits_axis(ax)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    fig.tight_layout()
    return _img(fig, "learning curves of every trial")


def render_sweep(title: str, rows: list, curves: list) -> str:
    """The sweep page: the ranked table (rows as run_sweep returns them) and the overlay."""
    head = "<tr><th>#</th><th>trial</th><th>best val (nats/char)</th><th>bits/char</th><th>steps</th>" \
           "<th>chars/s</th><th>wall time (s)</th><th>status</th></tr>"
    lines = []
    for i, r in enumerate(rows, 1):
        v = r.get("best_val")
        lines.append(f"<tr><td class=n>{i}</td><td>{_e(r['name'])}</td>"
                     f"<td class=n>{'' if v is None else f'{v:.4f}'}</td>"
                     f"<td class=n>{'' if v is None else f'{v / LN2:.3f}'}</td><td class=n>{r.get('steps', 0)}</td>"
                     f"<td class=n>{r.get('chars_per_sec', 0):,.0f}</td><td class=n>{r.get('seconds', 0):.1f}</td>"
                     f"<td>{_e(r['status'])}</td></tr>")
    return _page(title, [f"<h1>{_e(title)}</h1>", "<h2>Trials, best first</h2>",
                         f"<table>{head}{''.join(lines)}</table>", "<h2>Learning curves</h2>",
                         sweep_curves_figure(curves)])
