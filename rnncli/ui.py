"""Rendering only: rich tables and tqdm bars, all on stderr unless they are the result."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# soft_wrap: lines (paths, commands) are never broken by inserted newlines when not on a terminal
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


def notice(message: str) -> None:
    err.print(message, markup=False)


def gradcheck_table(result) -> Table:
    dropout = f"dropout {result.dropout:g} with a fixed mask" if result.dropout else "dropout off"
    table = Table(title="Gradient check: analytic vs centered finite differences (float64)",
                  caption=f"eps {result.eps:g}, tolerance {result.tol:g} on max relative error; "
                          f"{dropout}; gradient clipping off",
                  title_justify="left", caption_justify="left")
    for col, justify in (("model", "left"), ("parameter", "left"), ("shape", "left"),
                         ("checked", "right"), ("max rel err", "right"), ("", "left")):
        table.add_column(col, justify=justify)
    for r in result.rows:
        err_text = "no signal" if r.max_rel_err != r.max_rel_err else f"{r.max_rel_err:.1e}"
        table.add_row(r.model, r.name, "×".join(map(str, r.shape)), str(r.checked),
                      err_text, "[green]pass[/]" if r.passed else "[bold red]FAIL[/]")
    return table


def print_result_table(table: Table) -> None:
    out.print(table)


def progress(total: int | None, desc: str, quiet: bool, unit: str = "step"):
    """A tqdm bar on stderr, off when quiet or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=True if quiet else None, dynamic_ncols=True)


def _fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


class _BarReporter:
    """What both reporters share: quiet flag, an optional tqdm bar, warnings."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def warn(self, message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TrainReporter(_BarReporter):
    """tqdm bar (loss, chars/s, ETA) and a short rich summary at each evaluation, on stderr."""

    def start(self, info: dict) -> None:
        if self.quiet:
            return
        resumed = f", resumed at step {info['resumed_at']}" if info["resumed_at"] else ""
        err.print(f"Training {info['params']:,} parameters on {info['train_chars']:,} characters "
                  f"({info['vocab']} distinct; {info['val_chars']:,} held out for validation), "
                  f"batch {info['batch_size']} × {info['seq_len']} steps{resumed}.", markup=False)
        if info.get("model"):
            ema = f"; {info['ema']}" if info.get("ema", "off") != "off" else ""
            err.print(f"Model {info['model']}; {info['schedule']}{ema}.", markup=False)
        for reason in info.get("recipe", ()):
            err.print(f"  chosen: {reason}", markup=False)
        err.print(f"Checkpoints: {info['run_dir']}/", markup=False)
        self.bar = progress(info["total_steps"], "train", self.quiet)
        self.bar.update(info["resumed_at"])  # a resumed run continues the bar where it stopped

    def step(self, step: int, loss: float, chars_per_sec: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_postfix_str(f"loss {loss:.3f} · {_fmt_rate(chars_per_sec)} chars/s · lr {lr:.2g}")

    def evaluate(self, ev) -> None:
        if self.quiet:
            return
        val = (f"val {ev.val_loss:.4f} nats/char ({ev.val_bits:.3f} bits)" if ev.val_loss is not None
               else "no validation split")
        best = " [green]best[/]" if ev.is_best else ""
        line = (f"step {ev.step} · epoch {ev.epoch:.2f} · train {ev.train_loss:.4f} · {val} · "
                f"{_fmt_rate(ev.chars_per_sec)} chars/s{best}")
        writer = self.bar.write if self.bar is not None and not self.bar.disable else None
        if writer:
            self.bar.clear()
        err.print(line, highlight=False)
        sample = ev.preview.replace("\n", "⏎ ")[:160]
        err.print(f"  [dim]sample:[/] {escape(sample)}", highlight=False)
        if self.bar is not None:
            self.bar.refresh()


def train_summary(result) -> Table:
    table = Table(title="Training finished" if result.stop_reason != "interrupted" else "Training interrupted",
                  title_justify="left", show_header=False)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("")
    table.add_row("stopped by", result.stop_reason)
    table.add_row("steps", f"{result.steps:,} ({result.epoch:.2f} epochs, {result.seconds:.0f} s)")
    table.add_row("speed", f"{result.chars_per_sec:,.0f} chars/s")
    table.add_row("last validation loss", _nats(result.last_val))
    table.add_row("best validation loss", _nats(result.best_val))
    return table


def _nats(v) -> str:
    return "—" if v is None else f"{v:.4f} nats/char ({v / 0.6931471805599453:.3f} bits/char)"


def text_chart(series: dict, width: int = 56, height: int = 8, unit: str = "") -> list[str]:
    """A small line chart in characters: series maps a name to [(x, y), ...]; each series gets
    its own mark, the last one drawn on top. Non-finite points are left out."""
    marks = "·•*+"
    pts = {name: [(float(x), float(y)) for x, y in p if y is not None and math.isfinite(y)]
           for name, p in series.items()}
    every = [pt for p in pts.values() for pt in p]
    if not every:
        return []
    x0, x1 = min(x for x, _ in every), max(x for x, _ in every)
    y0, y1 = min(y for _, y in every), max(y for _, y in every)
    grid = [[" "] * width for _ in range(height)]
    for mark, p in zip(marks, pts.values()):
        for x, y in p:
            col = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (width - 1))
            row = 0 if y1 == y0 else round((y1 - y) / (y1 - y0) * (height - 1))
            grid[row][col] = mark
    top, bottom = f"{y1:.3f}", f"{y0:.3f}"
    pad = max(len(top), len(bottom))
    lines = [f"{top if r == 0 else bottom if r == height - 1 else '':>{pad}} ┤" + "".join(row)
             for r, row in enumerate(grid)]
    lines.append(" " * pad + " └" + "─" * width)
    left, right = f"{x0:g}", f"{x1:g}"
    lines.append(" " * (pad + 2) + left + right.rjust(width - len(left)))
    legend = "   ".join(f"{m} {name}" for m, name in zip(marks, pts))
    lines.insert(0, " " * (pad + 2) + legend + (f"   ({unit})" if unit else ""))
    return lines


def loss_chart(series: dict, unit: str) -> None:
    """The chart on stderr, only when stderr is a terminal (never into a log file or a pipe)."""
    if sys.stderr.isatty():
        for line in text_chart(series, unit=unit):
            err.print(line, markup=False, highlight=False)


def print_train_summary(result) -> None:
    """The summary table, then each checkpoint path whole on its own line (a table cell would
    break a long path in the middle of a name, and it could not be copied)."""
    err.print(train_summary(result))
    err.print(f"best checkpoint:   {result.best}", markup=False, highlight=False)
    err.print(f"latest checkpoint: {result.latest}", markup=False, highlight=False)
    err.print(f"report:            rnn report {result.run_dir}", markup=False, highlight=False)


def train_result_line(result) -> str:
    """The one-line result on stdout: the best checkpoint, a TAB, then its loss (so
    `cut -f1` gives the path even when it holds spaces)."""
    which = "validation" if result.last_val is not None or result.best_val is None else "training"
    loss = "no loss recorded" if result.best_val is None else f"best {which} loss {_nats(result.best_val)}"
    return f"{result.best}\t{loss}"


def eval_table(score) -> Table:
    """`rnn eval`: the loss of a model on a text, and what was left out."""
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column("", style="bold", no_wrap=True)
    t.add_column("", justify="right")
    t.add_column("")
    t.add_row("loss", f"{score.nats_per_char:.4f}", "nats/char")
    t.add_row("", f"{score.bits_per_char:.4f}", "bits/char")
    t.add_row("perplexity", f"{score.perplexity:.3f}", "per character")
    t.add_row("characters", f"{score.predicted:,}", f"predicted, of {score.chars:,} read (the first is only read)")
    shown = " ".join(repr(c) for c in sorted(score.unseen, key=lambda c: (-score.unseen[c], c))[:12])
    more = " ..." if len(score.unseen) > 12 else ""
    t.add_row("unseen", f"{score.unseen_count:,}",
              f"left out of the text and the loss ({len(score.unseen)} distinct: {escape(shown)}{more})"
              if score.unseen else "every character is in the model's vocabulary")
    return t


def print_novelty(rows, corpus_paths) -> None:
    """`rnn sample --novelty`, on stderr so the samples on stdout stay clean."""
    t = Table(title="Novelty: the samples' character n-grams found verbatim in the training text",
              title_justify="left")
    for col in ("n", "n-grams", "in the training text", "share"):
        t.add_column(col, justify="right")
    for r in rows:
        share = "—" if r.share is None else f"{100 * r.share:.1f}%"
        t.add_row(str(r.n), f"{r.total:,}", f"{r.found:,}", share)
    err.print(t)
    for path in corpus_paths:
        err.print(f"training text: {path}", markup=False, highlight=False)


# Why a labelled line was left out, by the count's key in the reader's summary.
SKIP_REASONS = (("skipped_no_tab", "without a TAB"),
                ("skipped_no_label", "with an empty label (only whitespace before the TAB)"))


CLASSES_LISTED = 20  # classes a summary line names; more are counted


def rare_classes(rare: list, named: int = 5) -> str:
    """One phrase for any number of rare classes: the count, the first few with their texts."""
    shown = ", ".join(f"{label} ({n})" for label, n in rare[:named])
    more = f" and {len(rare) - named:,} more" if len(rare) > named else ""
    if len(rare) == 1:
        return f"class {rare[0][0]} has only {rare[0][1]} training texts"
    return f"{len(rare):,} classes have few training texts: {shown}{more}"


def skipped_lines(info: dict, lines: str = "lines") -> list[str]:
    """'3 lines without a TAB', ... for each reason a labelled file had lines left out."""
    return [f"{info[key]} {lines} {reason}" for key, reason in SKIP_REASONS if info.get(key)]


class ClassifyReporter(_BarReporter):
    """A tqdm bar per epoch and one summary line per epoch, on stderr."""

    def start(self, info: dict) -> None:
        if self.quiet:
            return
        skipped = skipped_lines(info)
        if info["skipped_empty"]:
            skipped.append(f"{info['skipped_empty']} empty texts")
        pairs = list(zip(info["labels"], info["class_counts"]))
        counts = ", ".join(f"{label} {n}" for label, n in pairs[:CLASSES_LISTED])
        if len(pairs) > CLASSES_LISTED:
            counts = f"{len(pairs):,} classes: {counts}, ..."
        err.print(f"{info['train']} training and {info['val']} validation texts ({counts}); "
                  f"vocabulary {info['vocab']:,}; {info['params']:,} parameters.", markup=False)
        if skipped:
            err.print(f"Skipped: {'; '.join(skipped)}.", markup=False)
        if info.get("language"):
            err.print(f"Language {info['language']} ({info['language_why']}).", markup=False)
        if info["truncated"]:
            err.print(f"{info['truncated']} texts were cut to --max-len tokens.", markup=False)
        if info["class_weights"] == "balanced":
            err.print("Classes are weighed by inverse frequency (--class-weights "
                      f"{'auto: the classes are imbalanced' if info.get('auto_weights') else 'balanced'}).",
                      markup=False)
        if info["rare"]:
            err.print(f"[yellow]Warning:[/] {escape(rare_classes(info['rare']))}; "
                      + ("they are weighed up by inverse frequency" if info["class_weights"] == "balanced"
                         else "consider --class-weights balanced")
                      + (" and the n-gram path sees their words whole." if info["ngram"] else "."),
                      highlight=False)
        if info["coverage"]:
            c = info["coverage"]
            types, tokens = max(1, c["types"]), max(1, c["tokens"])

            def share(found):
                return f"{found[0]:,} of {c['types']:,} vocabulary words ({100 * found[0] / types:.1f}%), " \
                       f"{100 * found[1] / tokens:.1f}% of training tokens"

            used = c["stem"] if c["match"] == "stem" else c["exact"]
            err.print(f"GloVe coverage: {share(used)}; dimension {info['embedding_size']}, "
                      f"{c['words']:,} vectors read from {c['source']}.", markup=False, highlight=False)
            how = ("by Porter stem, a stem's vector being "
                   + ("the mean of its GloVe words' weighted by 1/rank" if c["stem_vector"] == "weighted"
                      else "its most frequent GloVe word's")) if c["match"] == "stem" else "exactly"
            why = f"--glove-match {c['match']}" if c["why"] == "asked" else c["why"]
            stem = f"by stem {share(c['stem'])}" if c["stem"] else "stems not looked up"
            err.print(f"Words matched {how} ({why}). Exactly: {share(c['exact'])}; {stem}.",
                      markup=False, highlight=False)

    def epoch_start(self, epoch: int, batches: int) -> None:
        self.bar = progress(batches, f"epoch {epoch}", self.quiet, unit="batch")

    def stage(self, message: str) -> None:
        if not self.quiet:
            err.print(message[:1].upper() + message[1:] + "…", markup=False, highlight=False)

    def batch(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)

    def epoch_end(self, s: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.quiet:
            return
        best = " [green]best[/]" if s["best"] else ""
        err.print(f"epoch {s['epoch']} · train loss {s['train_loss']:.4f} · val loss {s['val_loss']:.4f} · "
                  f"val accuracy {s['val_accuracy']:.4f} · val macro-F1 {s['val_macro_f1']:.4f} · "
                  f"{s['seconds']:.0f} s{best}", highlight=False)



def metrics_tables(m: dict, labels, title: str) -> list:
    """Per-class precision/recall/F1 and the confusion matrix."""
    t = Table(title=f"{title}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} ({m['n']} texts)",
              title_justify="left")
    for col in ("class", "precision", "recall", "F1", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for i, label in enumerate(labels):
        t.add_row(label, f"{m['precision'][i]:.3f}", f"{m['recall'][i]:.3f}", f"{m['f1'][i]:.3f}", str(m["support"][i]))
    c = Table(title=f"{title}: confusion matrix (rows true, columns predicted)", title_justify="left")
    c.add_column("")
    for label in labels:
        c.add_column(label, justify="right")
    for i, label in enumerate(labels):
        c.add_row(label, *(str(v) if j != i else f"[bold]{v}[/]" for j, v in enumerate(m["confusion"][i])))
    return [t, c]


def comparison_table(val: dict | None, test: dict | None, seconds: float | None) -> Table:
    """Accuracy and macro-F1 of the classifier, of its parts alone, and of the baseline when it
    was fitted, on validation and test, with the classifier's lead over the baseline."""
    splits = [(name, m) for name, m in (("validation", val), ("test", test)) if m]
    title = "Accuracy and macro-F1" + (f" (trained in {seconds:.0f} s)" if seconds is not None else "")
    t = Table(title=title, title_justify="left")
    t.add_column("model")
    for name, _ in splits:
        t.add_column(f"{name[:4].rstrip('i')} acc", justify="right")
        t.add_column(f"{name[:4].rstrip('i')} F1", justify="right")
    rows = [("classifier" + (" (mix)" if any("parts" in m for _, m in splits) else ""),
             [m for _, m in splits])]
    if any("parts" in m for _, m in splits):
        rows.append(("  recurrent alone", [m.get("parts", {}).get("rnn") for _, m in splits]))
        rows.append(("  n-gram alone", [m.get("parts", {}).get("ngram") for _, m in splits]))
    if any("baseline" in m for _, m in splits):
        rows.append(("baseline (TF-IDF+SVM)", [m.get("baseline") for _, m in splits]))
        rows.append(("lead over baseline",
                     [{k: m[k] - m["baseline"][k] for k in ("accuracy", "macro_f1")} if "baseline" in m else None
                      for _, m in splits]))
    for label, cells in rows:
        diff = label.startswith("lead")
        fmt = (lambda v: f"{v:+.4f}") if diff else (lambda v: f"{v:.4f}")
        values = []
        for m in cells:
            values += [fmt(m["accuracy"]), fmt(m["macro_f1"])] if m else ["—", "—"]
        t.add_row(label, *values)
    return t


def print_tables(tables: list, to_stdout: bool = False) -> None:
    console = out if to_stdout else err
    for t in tables:
        console.print(t)


def bench_table(report) -> Table:
    memory = (f"; memory read {report.memory_gbs:.0f} GB/s streaming, {report.cache_gbs:.0f} GB/s from cache"
              if report.memory_gbs else "")
    t = Table(title=f"rnn bench: {report.threads} thread(s); float32 matrix-multiply peak "
                    f"{report.peak_gflops:.0f} GFLOP/s (OpenBLAS {report.openblas or '?'} kernels){memory}",
              title_justify="left",
              caption="training: forward + BPTT + clip + Adam per chunk; sampling: 2,000 characters per "
                      "sample, batch = samples drawn together; weights GB/s = weights read per second "
                      "(once per step for the whole batch), against the memory bounds in the title; "
                      "medians of the repetitions", caption_justify="left")
    for col, justify in (("model", "left"), ("task", "left"), ("batch × seq", "right"),
                         ("chars/s", "right"), ("GFLOP/s", "right"), ("% of peak", "right"),
                         ("weights GB/s", "right")):
        t.add_column(col, justify=justify)
    for r in report.rows:
        shape = f"{r.batch} × {r.seq_len}" if r.task == "train" else f"{r.batch}"
        t.add_row(f"{r.cell} {r.layers}×{r.hidden}", r.task, shape, f"{r.chars_per_sec:,.0f}",
                  f"{r.gflops:.1f}", f"{100 * r.fraction_of_peak:.0f}%",
                  f"{r.weights_gbs:.1f}" if r.task == "sample" else "")
    return t


# ---------------------------------------------------------------- sweeps

def sweep_table(rows: list, total: int, title: str = "") -> Table:
    """Trials ranked by best validation loss; trials still running or queued are counted below."""
    table = Table(title=title or "Sweep: trials ranked by best validation loss", title_justify="left",
                  caption=(f"{sum(r['status'] == 'done' for r in rows)} of {total} trials finished"
                           if sum(r["status"] == "done" for r in rows) < total else None),
                  caption_justify="left")
    for col, justify in (("#", "right"), ("trial", "left"), ("val nats/char", "right"), ("bits/char", "right"),
                         ("steps", "right"), ("chars/s", "right"), ("wall s", "right"), ("status", "left")):
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col != "trial")
    for i, r in enumerate(rows, 1):
        v = r.get("best_val")
        status = r["status"] if r["status"] != "failed" else "[red]failed[/]"
        table.add_row(str(i), escape(r["name"]), "" if v is None else f"{v:.4f}", "" if v is None else f"{v / math.log(2):.3f}",
                      str(r.get("steps", 0)), _fmt_rate(r.get("chars_per_sec", 0.0)), f"{r.get('seconds', 0.0):.1f}", status)
    return table


def print_sweep_table(rows: list, total: int) -> None:
    """The ranked table on stdout; 120 columns when stdout is not a terminal (a file, a pipe)."""
    (out if out.is_terminal else Console(highlight=False, width=120)).print(sweep_table(rows, total))


class SweepLive:
    """The ranked table redrawn on stderr as trials finish (a terminal), or one line per trial."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.live = total, quiet, None
        if not quiet and err.is_terminal:
            from rich.live import Live

            self.live = Live(sweep_table([], total), console=err, transient=True, auto_refresh=False)
            self.live.start()

    def result(self, r: dict, rows: list) -> None:
        if self.live is not None:
            self.live.update(sweep_table(rows, self.total), refresh=True)
        elif not self.quiet:
            v = r.get("best_val")
            notice(f"[{len(rows)}/{self.total}] {r['name']}: {r['status']}"
                   + (f", best validation {v:.4f} nats/char" if v is not None else "")
                   + (f" ({r['error']})" if r.get("error") else ""))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
