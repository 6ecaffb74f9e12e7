"""`rnn export`: a trained language model as an ONNX graph or as a page that samples in a browser.
"""

from __future__ import annotations

import click

from rnncli.cli.group import main
from rnncli.cli.options import CONTEXT, InputFile, announce_compile
from rnncli.data.files import check_target


@main.command(context_settings=CONTEXT, short_help="A language model as ONNX, or as a page that samples in a browser.")
@click.argument("checkpoint", type=InputFile())
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None, help="Write the model as an ONNX graph (tokens and state in; logits and the new state out). Needs the onnx package: pip install 'rnncli[export]'.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Write one self-contained HTML page that samples from the model in the browser, with a few hidden units coloured under each character.")
@click.pass_context
def export(ctx, checkpoint, onnx_path, html_path):
    """Write a language model's checkpoint in a form other programs can run.

    Give --onnx, --html or both; each path is written atomically and printed.

    \b
    Example:  rnn export runs/input-lstm-20261122-101500/best.npz --onnx model.onnx
              rnn export best.npz --html sampler.html
    """
    if onnx_path is None and html_path is None:
        raise click.UsageError("give --onnx FILE, --html FILE or both", ctx)
    # refused before the checkpoint is read and the page measured, not after
    for path, what in ((onnx_path, "the ONNX model"), (html_path, "the page")):
        if path is not None:
            check_target(path, what)
    if onnx_path is not None:
        from rnncli.export import onnx as onnx_export

        onnx_export.require_onnx()  # a missing package is said before any work
    from rnncli.export import read_model

    lm = read_model(checkpoint)
    if onnx_path is not None:
        click.echo(onnx_export.export_onnx(lm, onnx_path))
    if html_path is not None:
        announce_compile()
        from rnncli.export import page

        click.echo(page.export_page(lm, html_path))
