"""Language-model commands: train, sample, eval.
"""

from __future__ import annotations

import os
import sys
import click

from rnncli.cli.group import main
from rnncli.cli.options import (
    CONTEXT,
    M_DEF,
    O_DEF,
    SEED,
    T_DEF,
    Duration,
    Finite,
    InputFile,
    announce_compile,
    threads_option,
)
from rnncli.config import (
    ACTIVATIONS,
    CELLS,
    EVAL_SHARE,
    GRU_FROM_CHARS,
    GRU_LR,
    LM_WEIGHT_DECAY,
    MAX_LAYERS,
    MAX_SIZE,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
)
from rnncli.errors import UsageError
from rnncli.lm import settings


class _CorpusPath(click.Path):
    """A text file (regular, or a link to one) or a folder of them; `rnn train`'s CORPUS."""

    def __init__(self):
        super().__init__(exists=True)

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not os.path.isdir(rv):
            rv = InputFile().convert(rv, param, ctx)
        return rv


@main.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, type=_CorpusPath())
@click.option("--cell", type=click.Choice(CELLS), default=M_DEF.cell, show_default=f"chosen: gru for texts of {GRU_FROM_CHARS:,} characters and more; {M_DEF.cell} below", help="Recurrent cell.")
@click.option("--hidden-size", type=click.IntRange(1, MAX_SIZE), default=M_DEF.hidden_size, show_default=f"chosen for the corpus and budget; {M_DEF.hidden_size} without one", help="Units per layer (rnn_size).")
@click.option("--layers", type=click.IntRange(1, MAX_LAYERS), default=M_DEF.num_layers, show_default=f"chosen; {M_DEF.num_layers} without a budget", help="Stacked recurrent layers (num_layers).")
@click.option("--embedding-size", type=click.IntRange(0, MAX_SIZE), default=M_DEF.embedding_size, help="Character vector size; 0 feeds one-hot vectors.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=M_DEF.activation, help="Activation of the vanilla rnn cell.")
@click.option("--dropout", type=Finite(0, 1, max_open=True), default=M_DEF.dropout, show_default=f"chosen; {M_DEF.dropout:g} without a budget", help="Dropout on each layer's output.")
@click.option("--seq-len", type=click.IntRange(min=1), default=T_DEF.seq_len, help="Characters per BPTT chunk (seq_length).")
@click.option("--batch-size", type=click.IntRange(min=1), default=T_DEF.batch_size, help="Streams trained side by side.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=O_DEF.optimizer, help="Update rule.")
@click.option("--lr", type=Finite(min=0, min_open=True), default=O_DEF.lr, show_default=f"{O_DEF.lr:g}; {GRU_LR:g} for gru with adam", help="Learning rate (learning_rate).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=O_DEF.schedule, help="Learning-rate schedule: cosine decays to the end of the nearest limit (time budget, steps, epochs); step multiplies by --lr-decay each epoch.")
@click.option("--lr-final", type=Finite(0, 1), default=O_DEF.lr_final, help="cosine: the last rate, as a fraction of --lr.")
@click.option("--lr-decay", type=Finite(0, 1, min_open=True), default=O_DEF.lr_decay, help="step: multiply the rate by this once per epoch...")
@click.option("--decay-after", type=click.IntRange(min=0), default=O_DEF.decay_after, help="...after this many epochs.")
@click.option("--weight-decay", type=Finite(min=0), default=O_DEF.weight_decay, show_default=f"{LM_WEIGHT_DECAY:g} with adam; {O_DEF.weight_decay:g} otherwise", help="Weight decay: adam shrinks each weight by lr × this per step (decoupled); the others add this × weight to its gradient (0 = off).")
@click.option("--clip", type=Finite(min=0), default=O_DEF.clip, help="Clip the global gradient norm to this (0 = off).")
@click.option("--epochs", type=click.IntRange(min=0), default=T_DEF.epochs, help="Most passes over the training text (0 = no limit).")
@click.option("--patience", type=click.IntRange(min=0), default=T_DEF.patience, help="Stop after this many evaluations without a better validation loss (0 = never).")
@click.option("--state-reset", type=Finite(0, 1, max_open=True), default=T_DEF.state_reset, help="Chance per chunk that a stream restarts from the empty state (what sampling starts from).")
@click.option("--ema", type=Finite(0, 1, max_open=True), default=T_DEF.ema, help="Keep an exponential moving average of the weights with this decay (about 1/(1-DECAY) steps); evaluations, checkpoints and samples use it (0 = off).")
@click.option("--streams", type=click.IntRange(min=0), default=T_DEF.streams, help="Cut the text into this many streams, read --batch-size at a time in random groups (0 = batch size: the classic char-rnn order).")
@click.option("--max-steps", type=click.IntRange(min=0), default=T_DEF.max_steps, help="Stop after this many steps (0 = no limit).")
@click.option("--max-time", type=Duration(), default=Duration.format(T_DEF.max_time), help="Stop after this much training time, e.g. 90s, 10m, 1.5h (0 = no limit).")
@click.option("--val-fraction", type=Finite(0, 1, max_open=True), default=T_DEF.val_fraction, help="Share of the text, from its end, held out for validation.")
@click.option("--eval-every", type=click.IntRange(min=1), default=T_DEF.eval_every, show_default=f"{T_DEF.eval_every}, or a multiple of it that keeps evaluations under {EVAL_SHARE:.0%} of the training time", help="Steps between evaluations and checkpoints (eval_val_every).")
@click.option("--eval-chars", type=click.IntRange(min=0), default=T_DEF.eval_chars, help="Validation characters scored per evaluation (0 = all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=T_DEF.out_dir, help="Directory for run folders (checkpoint_dir).")
@click.option("--seed", type=SEED, default=T_DEF.seed, help="Random seed.")
@threads_option(T_DEF.threads)
@click.option("--resume", type=InputFile(), default=None, help="Continue a run from its checkpoint, exactly where it stopped.")
@click.option("--init-from", type=InputFile(), default=None, help="Start a new run from this checkpoint's weights, model shape and vocabulary (fine-tuning); optimizer, schedule and the other options start afresh.")
@click.option("--map-unknown", is_flag=True, help="With --init-from: leave out the characters of CORPUS that are not in the checkpoint's vocabulary (counted) instead of failing.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files under RUN/tensorboard/ (needs tensorboardX).")
@click.option("--on-decode-error", type=click.Choice(["strict", "replace"]), default=T_DEF.on_decode_error, help="Invalid UTF-8: stop with an error, or replace with U+FFFD.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or evaluation summaries; the one-line result is still printed.")
@click.pass_context
def train(ctx, corpus, resume, init_from, map_unknown, tensorboard, quiet, **options):
    """Train a character-level language model on UTF-8 text files.

    CORPUS is one or more text files or folders (a folder means its *.txt files), read one
    after the other. With no CORPUS, trains on the English and French texts bundled with rnncli.
    The best (lowest validation loss) and latest checkpoints, and a log of every evaluation
    (metrics.jsonl, metrics.csv), go to OUT/<name>-<cell>-<time>/.

    \b
    Example:  rnn train input.txt --cell lstm --hidden-size 256 --max-time 10m
              rnn train --init-from runs/big-gru-.../best.npz poems.txt --max-time 2m
    """
    from rnncli import ui
    from rnncli.data.corpus import corpus_files

    try:  # refused before any checkpoint is read
        settings.check_start(bool(resume), bool(init_from), map_unknown, tensorboard)
    except UsageError as e:
        raise click.UsageError(str(e), ctx) from None
    if resume:
        from rnncli.lm.checkpoint import read_lm_checkpoint

        if _given(ctx, "out_dir"):
            raise click.UsageError("--out cannot be given with --resume: a resumed run writes on in its own "
                                   "folder (the checkpoint's); to continue elsewhere, copy that folder and "
                                   "resume from the copy", ctx)
        resume = read_lm_checkpoint(resume)  # read once: the run goes on from what is read here
        cfg = _resumed_config(ctx, resume)
        paths = corpus_files(corpus) if corpus else _training_corpus(resume.meta, resume.path,
                                                                     "give the CORPUS to resume on")
    else:
        cfg = _fresh_config(ctx)
        if init_from:
            from rnncli.lm.checkpoint import read_lm_checkpoint

            init_from = read_lm_checkpoint(init_from)
            cfg = _init_from_config(ctx, cfg, init_from)
        if corpus:
            paths = corpus_files(corpus)
        else:
            from rnncli.data.chars import default_corpus_files

            paths = default_corpus_files()
    cfg.validate()
    announce_compile()
    from rnncli.lm.train import train as run_training

    result = run_training(cfg, paths, resume=resume, reporter=ui.TrainReporter(quiet), init_from=init_from,
                          map_unknown=map_unknown, tensorboard=tensorboard)
    if result.rank:  # under mpiexec, rank 0 alone reports
        return
    if not quiet or result.stop_reason == "interrupted":
        ui.loss_chart({"training": result.history.get("train", []), "validation": result.history.get("val", [])},
                      "nats/char against step")
        ui.print_train_summary(result)
    if result.stop_reason == "interrupted":
        ui.notice(f"Interrupted: checkpoint saved to {result.latest}; continue with "
                  f"`rnn train --resume {result.latest}`")
        sys.exit(130)
    click.echo(ui.train_result_line(result))


def _given(ctx, name: str) -> bool:
    """Whether the user set the option: on the command line, or in the --config file."""
    source = ctx.get_parameter_source(name)
    return source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.DEFAULT_MAP)


def _fresh_config(ctx) -> TrainConfig:
    left = {name for name in settings.TRAIN_SETTINGS
            if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT}
    return settings.fresh_config(ctx.params, left)


def _resumed_config(ctx, ckpt) -> TrainConfig:
    try:
        return settings.resumed_config(ckpt, ctx.params, _given_options(ctx))
    except UsageError as e:
        raise click.UsageError(str(e), ctx) from None


def _init_from_config(ctx, cfg: TrainConfig, ckpt) -> TrainConfig:
    try:
        return settings.init_from_config(cfg, ckpt.model().cfg, ctx.params, _given_options(ctx))
    except UsageError as e:
        raise click.UsageError(str(e), ctx) from None


def _given_options(ctx) -> set:
    return {name for name in settings.TRAIN_SETTINGS if _given(ctx, name)}


@main.command(context_settings=CONTEXT)
@click.argument("checkpoint", required=False, type=InputFile())
@click.option("-t", "--temp", "temperature", type=Finite(min=0), default=1.0, help="Temperature: lower is safer, higher is wilder; 0 is greedy.")
@click.option("--argmax", is_flag=True, help="Greedy decoding (same as --temp 0).")
@click.option("-n", "--length", type=click.IntRange(min=1), default=1000, help="Characters to generate per sample.")
@click.option("-p", "--prime", default="", show_default=False, help=r"Text to start from (escapes such as \n are understood).")
@click.option("--prime-file", type=InputFile(), default=None, help="Start from the text of this UTF-8 file (at most 1 MiB, taken as written); instead of --prime.")
@click.option("--seed", type=SEED, default=None, show_default="random", help="Random seed (printed, so a sample can be reproduced).")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, help="Independent samples to write, drawn together as one batch (faster than one by one; each is the text it would be alone).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, help="Draw only among the k likeliest characters (0 = all).")
@click.option("--top-p", type=Finite(0, 1, min_open=True), default=1.0, help="Nucleus sampling: draw only among the likeliest characters whose probabilities add up to P, after --top-k (1 = all).")
@click.option("--stop", default="", show_default=False, help=r"Stop a sample right after this text appears (escapes understood), e.g. '\n\n'.")
@click.option("--drop-unknown", is_flag=True, help="Drop prime characters the model has never seen instead of failing.")
@click.option("--interactive", is_flag=True, help="Type a prime, see its continuation, again and again (a terminal only); :temp, :topk, :topp, :n, :seed change the settings, :quit ends.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=T_DEF.out_dir, help="Where to look for the last run when no CHECKPOINT is given.")
@click.option("--novelty", is_flag=True, help="Report on stderr what share of the samples' 10-, 20- and 50-character sequences occur verbatim in the training text.")
@click.option("--corpus", "corpus_paths", type=InputFile(), multiple=True, show_default="the checkpoint's", help="Training text for --novelty (repeat for several files; implies --novelty).")
@threads_option(help="CPU threads (0 = all cores); models of 1 MB of weights or more share each character's products among them.")
@click.pass_context
def sample(ctx, checkpoint, temperature, argmax, length, prime, prime_file, seed, num_samples, top_k, top_p, stop,
           drop_unknown, interactive, out_dir, novelty, corpus_paths, threads):
    """Generate text from a trained language model.

    With no CHECKPOINT, uses the best checkpoint of the most recent run under --out.
    The text goes to stdout as it is generated; everything else goes to stderr.

    \b
    Example:  rnn sample --temp 0.8 --prime "ROMEO:\\n" -n 500
    """
    if argmax:
        temperature = 0.0
    if prime_file is not None and ctx.get_parameter_source("prime") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--prime-file and --prime cannot be given together; give one of them", ctx)
    if interactive:
        from rnncli.cli.interactive import refused

        why = refused(ctx, sys.stdin)
        if why:
            raise click.UsageError(why, ctx)
    from rnncli import ui
    from rnncli.lm import sample as core
    from rnncli.lm.checkpoint import latest_best_checkpoint, load_lm

    prime_text = core.read_prime_file(prime_file) if prime_file is not None else core.decode_escapes(prime, "--prime")
    stop_text = core.decode_escapes(stop, "--stop")
    path = checkpoint or latest_best_checkpoint(out_dir)
    lm = load_lm(path)
    if interactive:
        from rnncli.cli.interactive import Settings, converse

        announce_compile()
        converse(lm, path, Settings(temperature, top_k, top_p, length, seed), stop_text, drop_unknown, threads)
        return
    drawing = core.draw_samples(lm, prime_text, length, temperature, top_k, top_p, seed, num_samples, stop_text,
                                drop_unknown, threads)
    if corpus_paths or novelty:  # found before any sampling time is spent
        corpus_paths = list(corpus_paths) or _training_corpus(lm.meta, path)
    announce_compile()
    nucleus = f", top-p {top_p:g}" if top_p < 1 else ""
    ui.notice(f"Sampling from {path} (temperature {temperature:g}{nucleus}, seed {drawing.seed})")
    if num_samples == 1:  # streamed as it comes
        generated = []
        sys.stdout.write(drawing.prefix)
        for (piece,) in drawing.pieces():
            sys.stdout.write(piece)
            sys.stdout.flush()
            generated.append(piece)
        generated = ["".join(generated)]
        sys.stdout.write("\n")
    else:  # drawn together, a batch at a time; sample i is the text it would be alone
        generated = drawing.texts()
        sys.stdout.write("\n\n".join(drawing.prefix + text for text in generated) + "\n")
    sys.stdout.flush()
    if corpus_paths:
        from rnncli.lm.score import novelty as measure_novelty

        config = lm.meta.get("config")
        on_error = config.get("on_decode_error") if isinstance(config, dict) else None
        rows = measure_novelty(generated, corpus_paths, on_error="replace" if on_error == "replace" else "strict")
        ui.print_novelty(rows, corpus_paths)

def _training_corpus(meta: dict, path: str, instead: str = "give it with --corpus") -> list:
    """The text files a checkpoint was trained on, from its `corpus` record. A path that comes
    from a file is read only under the rule a path typed by the user meets (a regular, readable
    file); a usage error says which recorded file fails it and why (or that there is no record)."""
    from rnncli.data.files import unusable_recorded_input
    from rnncli.lm.checkpoint import recorded_corpus

    paths = recorded_corpus(meta)
    if not paths:
        raise click.UsageError(f"{path} does not record its training text; {instead}")
    for p in paths:
        why = unusable_recorded_input(p)
        if why:
            raise click.UsageError(f"the training text {p} recorded in {path} {why}; {instead}")
    return paths


@main.command("eval", context_settings=CONTEXT, short_help="A language model's loss on any text.")
@click.argument("checkpoint", type=InputFile())
@click.argument("text", type=InputFile())
@click.option("--on-decode-error", type=click.Choice(["strict", "replace"]), default="strict", help="Invalid UTF-8: stop with an error, or replace with U+FFFD (which counts as unseen unless the model knows it).")
@threads_option()
def evaluate(checkpoint, text, on_decode_error, threads):
    """Score a language model on a UTF-8 TEXT: nats and bits per character, perplexity.

    Every character but the first is predicted from the ones before it, read in the same streams
    and chunks as the run's validation. Characters the model has never seen are left out of the
    text (so out of the loss) and counted.

    \b
    Example:  rnn eval runs/novel-lstm-.../best.npz held-out.txt
    """
    from rnncli import ui
    from rnncli.lm.checkpoint import load_lm
    from rnncli.lm.score import evaluate_file

    lm = load_lm(checkpoint)
    announce_compile()
    ui.print_result_table(ui.eval_table(evaluate_file(lm, text, on_decode_error, threads)))
