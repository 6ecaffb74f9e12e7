"""`rnn info`: what a checkpoint holds, read from its metadata (rnncli/tools/info.py gathers it).
"""

from __future__ import annotations

import json

import click

from rnncli.cli.group import main
from rnncli.cli.options import CONTEXT, InputFile


@main.command("info", context_settings=CONTEXT, short_help="What a checkpoint holds: model, vocabulary, run, scores.")
@click.argument("checkpoint", type=InputFile())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead (its keys are in docs/cli.md).")
def info(checkpoint, as_json):
    """Describe a checkpoint (language model or classifier) from its metadata.

    The kind, cell and sizes, parameter count, vocabulary, the training text and run (steps,
    epochs, wall time, best validation loss), a classifier's labels and scores, and the options
    of the run. The weights are not read, so even a large checkpoint answers at once.

    \b
    Example:  rnn info runs/corpus-gru-.../best.npz --json
    """
    from rnncli.tools.info import checkpoint_info

    facts = checkpoint_info(checkpoint)
    if as_json:
        click.echo(json.dumps(facts, sort_keys=False))
        return
    rows = _lm_rows(facts) if facts["kind"] == "lm" else _classifier_rows(facts)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}" if name else f"{'':<{width}}  {value}")
    options = _flat(facts["options"]) if isinstance(facts["options"], dict) else []
    if options:
        click.echo("options")
        for key, value in options:
            click.echo(f"  {key} = {value}")


def _lm_rows(f: dict) -> list:
    from rnncli.tools.info import printable

    m = f["model"]
    layers = f"{m['layers']} layer{'s' if m['layers'] != 1 else ''} of {m['hidden_size']} units"
    embedding = f"embedding {m['embedding_size']}" if m["embedding_size"] else "one-hot input"
    cell = m["cell"] + (f" ({m['activation']})" if m["cell"] == "rnn" else "")
    rows = [("checkpoint", f"{printable(f['path'])}"),
            ("kind", "language model" + (f" ({printable(f['which'])})" if f["which"] else "")),
            ("model", f"{cell}, {layers}, {embedding}, dropout {m['dropout']:g}"),
            ("parameters", f"{f['parameters']:,}"),
            ("vocabulary", f"{f['vocab_size']} characters: {f['vocab_sample']}")]
    files, chars = f["corpus"]["files"], f["corpus"]["chars"]
    rows += [("corpus" if i == 0 else "", printable(p)) for i, p in enumerate(files)] or [("corpus", "not recorded")]
    if chars is not None:
        rows.append(("", f"{chars:,} characters"))
    rows.append(("steps", _or_unknown(f["steps"], "{:,}")))
    rows.append(("epochs", _or_unknown(f["epochs"], "{:,}") + (" complete" if f["epochs"] is not None else "")))
    rows.append(("wall time", _or_unknown(f["seconds"], "{:,.1f} s")))
    best = f["best_val"]
    if best:
        at = f" at step {best['step']:,}" if best["step"] is not None else ""
        rows.append(("best validation", f"{best['nats']:.4f} nats/char ({best['bits']:.4f} bits/char){at}"))
    else:
        rows.append(("best validation", "not recorded"))
    if f["saved_at"]:
        rows.append(("saved", printable(f["saved_at"])))
    return rows


def _classifier_rows(f: dict) -> list:
    from rnncli.tools.info import printable

    m = f["model"]
    both = "bidirectional " if m["bidirectional"] else ""
    dense = " x ".join(str(d) for d in m["dense"]) or "none"
    rows = [("checkpoint", printable(f["path"])),
            ("kind", "classifier"),
            ("model", (f"{both}{m['cell']}, {m['layers']} layer{'s' if m['layers'] != 1 else ''} of "
                       f"{m['hidden_size']} units, embedding {m['embedding_size']}, {m['pooling']} pooling, "
                       f"dense {dense}")),
            ("parameters", f"{f['parameters']:,}"),
            ("labels", f"{len(f['labels'])}: " + ", ".join(printable(l) for l in f["labels"])),
            ("vocabulary", f"{f['vocab_size']:,} {m['tokens']} tokens: {f['vocab_sample']}")]
    ng = f["ngram"]
    if ng:
        mix = f", weight of the recurrent model {ng['alpha']:.2f}" if ng["alpha"] is not None else ""
        chars = f" and {ng['char_terms']:,} character n-grams" if ng["char_terms"] else ""
        rows.append(("n-gram path", (f"word n-grams up to {_or_unknown(ng['n_max'], '{}')}: "
                                     f"{_or_unknown(ng['word_terms'], '{:,}')}{chars}{mix}")))
    else:
        rows.append(("n-gram path", "none"))
    rows.append(("epochs", f"{f['epochs']}" + (f", best {f['best_epoch']}" if f["best_epoch"] is not None else "")))
    for split in ("val", "test"):
        s = f["scores"][split]
        if s:
            parts = [f"{name} {s[key]:.4f}" for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"),
                                                               ("loss", "loss")) if s[key] is not None]
            if s["n"] is not None:
                parts.append(f"{s['n']:,} texts")
            rows.append(("validation" if split == "val" else "test", ", ".join(parts) or "recorded without scores"))
    if f["data"]["file"]:
        rows.append(("data", printable(f["data"]["file"])))
    return rows


def _or_unknown(value, fmt: str) -> str:
    return "not recorded" if value is None else fmt.format(value)


def _flat(options: dict, prefix: str = "", depth: int = 0) -> list:
    """(dotted key, shown value) of nested settings; every text escaped for the terminal."""
    from rnncli.tools.info import printable

    rows = []
    for key, value in options.items():
        name = prefix + printable(str(key))
        if isinstance(value, dict) and depth < 2:
            rows += _flat(value, name + ".", depth + 1)
        else:
            shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            rows.append((name, printable(shown if len(shown) <= 200 else shown[:200] + "...")))
    return rows
