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
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

# Options that define the model: fixed by a checkpoint when resuming.
MODEL_OPTIONS = ("cell", "hidden_size", "layers", "embedding_size", "activation", "dropout",
                 "seq_len", "batch_size", "optimizer", "lr", "schedule", "lr_final", "lr_decay", "decay_after",
                 "weight_decay", "clip", "state_reset", "streams", "ema", "val_fraction", "seed", "on_decode_error")


# train options the recipe chooses (from the corpus size and measured speed) unless given
AUTO_OPTIONS = {"cell": "cell", "hidden_size": "hidden_size", "layers": "num_layers", "dropout": "dropout",
                "lr": "lr", "weight_decay": "weight_decay", "eval_every": "eval_every"}


@main.command(context_settings=CONTEXT)
@click.argument("corpus", required=False, type=InputFile())
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
@click.option("--threads", type=click.IntRange(0, 1024), default=T_DEF.threads, help="CPU threads for matrix products (0 = all cores).")
@click.option("--resume", type=InputFile(), default=None, help="Continue a run from its checkpoint, exactly where it stopped.")
@click.option("--on-decode-error", type=click.Choice(["strict", "replace"]), default=T_DEF.on_decode_error, help="Invalid UTF-8: stop with an error, or replace with U+FFFD.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or evaluation summaries; the one-line result is still printed.")
@click.pass_context
def train(ctx, corpus, cell, hidden_size, layers, embedding_size, activation, dropout, seq_len,
          batch_size, optimizer, lr, schedule, lr_final, lr_decay, decay_after, weight_decay, clip, epochs, patience,
          state_reset,
          ema, streams, max_steps, max_time,
          val_fraction, eval_every, eval_chars, out_dir, seed, threads, resume, on_decode_error, quiet):
    """Train a character-level language model on a UTF-8 text file.

    With no CORPUS, trains on the English and French texts bundled with rnncli.
    The best (lowest validation loss) and latest checkpoints go to OUT/<name>-<cell>-<time>/.

    \b
    Example:  rnn train input.txt --cell lstm --hidden-size 256 --max-time 10m
    """
    limits = dict(epochs=epochs, patience=patience, max_steps=max_steps, max_time=max_time, eval_every=eval_every,
                  eval_chars=eval_chars, threads=threads, out_dir=out_dir)
    from rnncli import ui

    if resume:
        given = [name for name in MODEL_OPTIONS
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        from rnncli.engine import npz as ckpt
        from rnncli.lm.checkpoint import config_from_checkpoint

        _, meta = ckpt.load(resume, kind="lm")
        cfg = config_from_checkpoint(meta, {k: v for k, v in limits.items()
                                            if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE},
                                     resume)
        saved = {"cell": cfg.model.cell, "hidden_size": cfg.model.hidden_size, "layers": cfg.model.num_layers,
                 "embedding_size": cfg.model.embedding_size, "activation": cfg.model.activation,
                 "dropout": cfg.model.dropout, "seq_len": cfg.seq_len, "batch_size": cfg.batch_size,
                 "optimizer": cfg.optim.optimizer, "lr": cfg.optim.lr, "schedule": cfg.optim.schedule,
                 "lr_final": cfg.optim.lr_final, "state_reset": cfg.state_reset, "streams": cfg.streams, "ema": cfg.ema,
                 "lr_decay": cfg.optim.lr_decay,
                 "decay_after": cfg.optim.decay_after, "weight_decay": cfg.optim.weight_decay, "clip": cfg.optim.clip,
                 "val_fraction": cfg.val_fraction, "seed": cfg.seed, "on_decode_error": cfg.on_decode_error}
        clash = [n for n in given if ctx.params[n] != saved[n]]
        if clash:
            n = clash[0]
            raise click.UsageError(f"--{n.replace('_', '-')} {ctx.params[n]} differs from the checkpoint's "
                                   f"{saved[n]}; a resumed run keeps its model and schedule", ctx)
        saved_paths = meta.get("corpus")
        if not (isinstance(saved_paths, list) and all(isinstance(p, str) for p in saved_paths)):
            saved_paths = []
        paths = [corpus] if corpus else saved_paths
        missing = [p for p in paths if not os.path.isfile(p)]
        if not paths or missing:
            raise click.UsageError(f"the checkpoint's corpus {missing[0] if missing else ''} is not there; "
                                   f"give the CORPUS to resume on", ctx)
    else:
        cfg = TrainConfig(
            model=ModelConfig(cell=cell, hidden_size=hidden_size, num_layers=layers,
                              embedding_size=embedding_size, activation=activation, dropout=dropout),
            optim=OptimConfig(optimizer=optimizer, lr=lr, schedule=schedule, lr_final=lr_final, lr_decay=lr_decay,
                              decay_after=decay_after, weight_decay=weight_decay, clip=clip),
            seq_len=seq_len, batch_size=batch_size, val_fraction=val_fraction, seed=seed, state_reset=state_reset,
            streams=streams, ema=ema,
            on_decode_error=on_decode_error, auto=tuple(
                setting for name, setting in AUTO_OPTIONS.items()
                if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT),
            **limits)
        if corpus:
            paths = [corpus]
        else:
            from rnncli.data.chars import default_corpus_files

            paths = default_corpus_files()
    cfg.validate()
    announce_compile()
    from rnncli.lm.train import train as run_training

    result = run_training(cfg, paths, resume=resume, reporter=ui.TrainReporter(quiet))
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


@main.command(context_settings=CONTEXT)
@click.argument("checkpoint", required=False, type=InputFile())
@click.option("-t", "--temp", "temperature", type=Finite(min=0), default=1.0, help="Temperature: lower is safer, higher is wilder; 0 is greedy.")
@click.option("--argmax", is_flag=True, help="Greedy decoding (same as --temp 0).")
@click.option("-n", "--length", type=click.IntRange(min=1), default=1000, help="Characters to generate per sample.")
@click.option("-p", "--prime", default="", show_default=False, help=r"Text to start from (escapes such as \n are understood).")
@click.option("--seed", type=SEED, default=None, show_default="random", help="Random seed (printed, so a sample can be reproduced).")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, help="Independent samples to write, drawn together as one batch (faster than one by one; each is the text it would be alone).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, help="Draw only among the k likeliest characters (0 = all).")
@click.option("--stop", default="", show_default=False, help=r"Stop a sample right after this text appears (escapes understood), e.g. '\n\n'.")
@click.option("--drop-unknown", is_flag=True, help="Drop prime characters the model has never seen instead of failing.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=T_DEF.out_dir, help="Where to look for the last run when no CHECKPOINT is given.")
@click.option("--novelty", is_flag=True, help="Report on stderr what share of the samples' 10-, 20- and 50-character sequences occur verbatim in the training text.")
@click.option("--corpus", "corpus_paths", type=InputFile(), multiple=True, show_default="the checkpoint's", help="Training text for --novelty (repeat for several files; implies --novelty).")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="CPU threads (0 = all cores); models of 1 MB of weights or more share each character's products among them.")
def sample(checkpoint, temperature, argmax, length, prime, seed, num_samples, top_k, stop, drop_unknown, out_dir,
           novelty, corpus_paths, threads):
    """Generate text from a trained language model.

    With no CHECKPOINT, uses the best checkpoint of the most recent run under --out.
    The text goes to stdout as it is generated; everything else goes to stderr.

    \b
    Example:  rnn sample --temp 0.8 --prime "ROMEO:\\n" -n 500
    """
    if argmax:
        temperature = 0.0
    from rnncli import ui
    from rnncli.lm import sample as core

    prime_text = core.decode_escapes(prime, "--prime")
    stop_text = core.decode_escapes(stop, "--stop")
    path = checkpoint or core.latest_best_checkpoint(out_dir)
    lm = core.load_lm(path)
    ids = core.prime_ids(lm, prime_text, drop_unknown)
    if corpus_paths or novelty:  # found before any sampling time is spent
        corpus_paths = list(corpus_paths) or _training_corpus(lm.meta, path)
    announce_compile()
    gen = core.Generator(lm, threads)
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**31)
    ui.notice(f"Sampling from {path} (temperature {temperature:g}, seed {seed})")
    import numpy as np

    feed = ids if len(ids) else np.array([gen.start_token()], np.int32)
    prefix = lm.vocab.decode(ids) if len(ids) else ""
    generated = []
    if num_samples == 1:  # streamed as it comes
        sys.stdout.write(prefix)
        for piece in gen.stream(feed, length, temperature, top_k, np.random.default_rng([seed, 0]), stop_text):
            sys.stdout.write(piece)
            sys.stdout.flush()
            generated.append(piece)
        generated = ["".join(generated)]
        sys.stdout.write("\n")
    else:  # drawn together, a batch at a time; sample i is the text it would be alone
        for first in range(0, num_samples, core.BATCH_SAMPLES):
            rngs = [np.random.default_rng([seed, i]) for i in range(first, min(num_samples, first + core.BATCH_SAMPLES))]
            texts = [[] for _ in rngs]
            for pieces in gen.stream_batch(feed, length, temperature, top_k, rngs, stop_text):
                for text, piece in zip(texts, pieces):
                    text.append(piece)
            generated += ["".join(t) for t in texts]
        sys.stdout.write("\n\n".join(prefix + text for text in generated) + "\n")
    sys.stdout.flush()
    if corpus_paths:
        from rnncli.lm.score import novelty as measure_novelty

        config = lm.meta.get("config")
        on_error = config.get("on_decode_error") if isinstance(config, dict) else None
        rows = measure_novelty(generated, corpus_paths, on_error="replace" if on_error == "replace" else "strict")
        ui.print_novelty(rows, corpus_paths)


def _training_corpus(meta: dict, path: str) -> list:
    """The text files a checkpoint was trained on, from its `corpus` record; a usage error naming
    the missing file (or the lack of a record) when they cannot be read here."""
    from rnncli.data.files import special_file

    paths = meta.get("corpus")
    if not (isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths)):
        raise click.UsageError(f"{path} does not record its training text; give it with --corpus")
    for p in paths:
        if not os.path.isfile(p) or special_file(p):
            raise click.UsageError(f"the training text {p} recorded in {path} is not there; "
                                   f"give it with --corpus")
    return paths


@main.command("eval", context_settings=CONTEXT, short_help="A language model's loss on any text.")
@click.argument("checkpoint", type=InputFile())
@click.argument("text", type=InputFile())
@click.option("--on-decode-error", type=click.Choice(["strict", "replace"]), default="strict", help="Invalid UTF-8: stop with an error, or replace with U+FFFD (which counts as unseen unless the model knows it).")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="CPU threads for matrix products (0 = all cores).")
def evaluate(checkpoint, text, on_decode_error, threads):
    """Score a language model on a UTF-8 TEXT: nats and bits per character, perplexity.

    Every character but the first is predicted from the ones before it, read in the same streams
    and chunks as the run's validation. Characters the model has never seen are left out of the
    text (so out of the loss) and counted.

    \b
    Example:  rnn eval runs/novel-lstm-.../best.npz held-out.txt
    """
    from rnncli import ui
    from rnncli.lm.sample import load_lm
    from rnncli.lm.score import score_text

    lm = load_lm(checkpoint)
    announce_compile()
    ui.print_result_table(ui.eval_table(score_text(lm, text, on_decode_error, threads)))
