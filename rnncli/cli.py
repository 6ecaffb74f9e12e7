"""The `rnn` command: parse options, call one core function, render the result.

Core modules are imported inside the commands so `rnn --help` never loads numpy or Numba.
"""

from __future__ import annotations

import math
import os
import sys

import click

from rnncli import __version__
from rnncli.config import (ACTIVATIONS, CELLS, CLASS_WEIGHTS, EVAL_SHARE, GLOVE_MATCHES, GRU_FROM_CHARS, GRU_LR, LM_WEIGHT_DECAY, STEM_VECTORS, MAX_LAYERS, MAX_SIZE, OPTIMIZERS, POOLINGS, SCHEDULES, TOKENIZERS,
                           ClassifyConfig, GradcheckConfig, ModelConfig, OptimConfig, TrainConfig)
from rnncli.errors import RnnError

M_DEF, O_DEF, T_DEF, C_DEF = ModelConfig(), OptimConfig(), TrainConfig(), ClassifyConfig()

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf (every comparison with nan is false, so
    FloatRange alone lets `--lr nan` through)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


SEED = click.IntRange(min=0)  # numpy's generators take no negative seeds
PREDICT_MAX_CHARS = 1 << 27  # `rnn classify predict` reads its input whole


class InputFile(click.Path):
    """An existing regular file (or a link to one). A directory, device, pipe or socket is a usage
    error: `/dev/zero` never ends and a FIFO without a writer blocks the first read."""

    def __init__(self):
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        from rnncli.text import special_file

        what = special_file(rv)
        if what:
            self.fail(f"{click.format_filename(rv)!r} is {what}, not a regular file", param, ctx)
        return rv


class InputText(click.File):
    """A text file opened for reading, or `-` for stdin; named files must be regular files."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value != "-":
            InputFile().convert(value, param, ctx)
        return super().convert(value, param, ctx)


class RnnGroup(click.Group):
    """Turns the project's own errors into one `Error: ...` line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RnnError as e:
            if (ctx.obj or {}).get("debug"):
                raise
            if getattr(e, "silent", False):  # another MPI rank reports this error
                ctx.exit(1)
            raise click.ClickException(str(e)) from None


@click.group(cls=RnnGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def main(ctx, debug):
    """Train, sample and check recurrent neural networks on the CPU.

    \b
    rnn train                   train a character model on the bundled corpus
    rnn sample --temp 0.8       write text with the best model of the last run
    rnn eval best.npz text.txt  a model's loss on any text (bits/char, perplexity)
    rnn gradcheck               check every analytic gradient numerically
    rnn classify train FILE     label texts (train, then eval or predict)
    rnn bench                   measure training and sampling speed here
    rnn report                  an HTML report of the last run (curves, units, gradients)
    rnn sweep FILE --grid lr=1e-3,3e-3   many trainings (local or Dask), ranked
    """
    ctx.obj = {"debug": debug}


def announce_compile() -> None:
    """Numba compiles the kernels on the first run and caches them: beside the code, or only in
    NUMBA_CACHE_DIR when that is set."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(__file__), "kernels", "__pycache__")
    has_cache = os.path.isdir(cache_dir) and any(
        name.endswith(".nbi") for _, _, names in os.walk(cache_dir) for name in names)
    if not has_cache:
        from rnncli import ui

        ui.notice("Compiling the Numba kernels (first run only; cached afterwards)...")


# ---------------------------------------------------------------- gradcheck

@main.command(context_settings=CONTEXT)
@click.option("--cell", "cells", type=click.Choice(CELLS), multiple=True, show_default="all",
              help="Cell to check (repeat for several).")
@click.option("--layers", "layers", type=click.IntRange(1, 8), multiple=True, show_default="1 and 2",
              help="Number of stacked layers (repeat for several).")
@click.option("--hidden-size", type=click.IntRange(1, 256), default=GradcheckConfig.hidden_size, help="Hidden units per layer.")
@click.option("--embedding-size", type=click.IntRange(0, 256), default=GradcheckConfig.embedding_size, help="Input embedding size; 0 checks one-hot input.")
@click.option("--vocab-size", type=click.IntRange(2, 1024), default=GradcheckConfig.vocab_size, help="Vocabulary (and output) size.")
@click.option("--seq-len", type=click.IntRange(1, 1000), default=GradcheckConfig.seq_len, help="Time steps of BPTT.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=GradcheckConfig.batch_size, help="Sequences in the batch.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=GradcheckConfig.activation, help="Vanilla RNN activation.")
@click.option("--dropout", type=Finite(0, 1, max_open=True), default=0.25, help="Dropout rate; the mask is drawn once and held fixed.")
@click.option("--samples", type=click.IntRange(min=1), default=GradcheckConfig.samples, help="Entries checked per tensor (all entries when the tensor is this small).")
@click.option("--eps", type=Finite(min=0, min_open=True), default=GradcheckConfig.eps, help="Finite-difference step.")
@click.option("--tol", type=Finite(min=0, min_open=True), default=GradcheckConfig.tol, help="Maximum relative error to pass.")
@click.option("--seed", type=SEED, default=GradcheckConfig.seed, help="Random seed for the model, data and sampled entries.")
@click.option("--classifier/--no-classifier", default=GradcheckConfig.classifier, help="Also check the classifier (pooling, dense layers, masking).")
def gradcheck(cells, layers, hidden_size, embedding_size, vocab_size, seq_len, batch_size,
              activation, dropout, samples, eps, tol, seed, classifier):
    """Check every analytic gradient against finite differences.

    Exits 0 when every parameter passes, 1 otherwise.

    \b
    Example:  rnn gradcheck --cell lstm --layers 2 --seq-len 6
    """
    cfg = GradcheckConfig(cells=tuple(cells) or CELLS, layers=tuple(layers) or (1, 2),
                          hidden_size=hidden_size, embedding_size=embedding_size,
                          vocab_size=vocab_size, seq_len=seq_len, batch_size=batch_size,
                          activation=activation, seed=seed, eps=eps, tol=tol, samples=samples,
                          classifier=classifier).validate()
    announce_compile()
    from rnncli import ui
    from rnncli.gradcheck import run_gradcheck

    result = run_gradcheck(cfg, dropout=dropout)
    ui.print_result_table(ui.gradcheck_table(result))
    failed = [r for r in result.rows if not r.passed]
    if failed:
        ui.notice(f"FAILED: {len(failed)} of {len(result.rows)} parameter tensors exceed tolerance {tol:g}")
        sys.exit(1)
    ui.notice(f"All {len(result.rows)} parameter tensors pass (tolerance {tol:g}).")


class Duration(click.ParamType):
    """Seconds, or numbers with h, m and s: 90, 90s, 10m, 1.5h, 9m30s."""

    name = "duration"
    units = {"h": 3600, "m": 60, "s": 1, "": 1}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            import re

            text = str(value).strip().lower()
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", text)
            if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms]?)", "", text).strip():
                self.fail(f"{value!r} is not a duration such as 90, 90s, 10m, 1.5h or 9m30s", param, ctx)
            seconds = sum(float(number) * self.units[unit] for number, unit in parts)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a duration such as 90, 90s, 10m or 1.5h", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds

    @staticmethod
    def format(seconds: float) -> str:
        if not seconds:
            return "0"
        minutes, rest = divmod(int(round(seconds)), 60)
        return (f"{minutes}m" if minutes else "") + (f"{rest}s" if rest else "")


# Options that define the model: fixed by a checkpoint when resuming.
MODEL_OPTIONS = ("cell", "hidden_size", "layers", "embedding_size", "activation", "dropout",
                 "seq_len", "batch_size", "optimizer", "lr", "schedule", "lr_final", "lr_decay", "decay_after",
                 "weight_decay", "clip", "state_reset", "streams", "ema", "val_fraction", "seed", "on_decode_error")
# train options the recipe chooses (from the corpus size and measured speed) unless given
AUTO_OPTIONS = {"cell": "cell", "hidden_size": "hidden_size", "layers": "num_layers", "dropout": "dropout",
                "lr": "lr", "weight_decay": "weight_decay", "eval_every": "eval_every"}


# ---------------------------------------------------------------- train

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
        from rnncli import checkpoint as ckpt
        from rnncli.train import config_from_checkpoint

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
            from rnncli.text import default_corpus_files

            paths = default_corpus_files()
    cfg.validate()
    announce_compile()
    from rnncli.train import train as run_training

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


# ---------------------------------------------------------------- sweep

# train options a sweep sets itself (or that make no sense per trial)
SWEEP_OWN = {"corpus", "resume", "out_dir", "threads", "quiet"}


def _train_options(train_cmd) -> dict:
    """Long option name without dashes -> the train command's click.Option."""
    return {o[2:]: p for p in train_cmd.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")}


def _arg(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _parse_grid(text: str, options: dict, tctx, ctx, random_trials):
    from rnncli.sweep import Axis

    name, eq, values = text.partition("=")
    name = name.strip().lstrip("-")
    if not eq or not name:
        raise click.UsageError(f"--grid {text!r}: expected OPTION=V1,V2 (for example hidden-size=128,256)", ctx)
    param = options.get(name)
    if param is None or param.name in SWEEP_OWN or param.is_flag:
        what = "is set by the sweep itself" if param is not None else "is not an option of rnn train"
        raise click.UsageError(f"--grid {name}: {what}", ctx)
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not items:
        raise click.UsageError(f"--grid {name}: no values; give V1,V2 or (with --random) LOW..HIGH", ctx)

    def convert(v: str):
        try:
            return param.type.convert(v, param, tctx)
        except click.BadParameter as e:
            raise click.UsageError(f"--grid {name}={v}: {e.message}", ctx) from None

    option = f"--{name}"
    if len(items) == 1 and ".." in items[0]:
        spec, _, scale = items[0].partition(":")
        if scale not in ("", "log", "lin"):
            raise click.UsageError(f"--grid {name}: the range scale is :log or :lin, not :{scale}", ctx)
        if not random_trials:
            raise click.UsageError(f"--grid {name}={items[0]}: a range needs --random N (or list the values)", ctx)
        low, _, high = spec.partition("..")
        low, high = convert(low.strip()), convert(high.strip())
        if not (isinstance(low, (int, float)) and low < high):
            raise click.UsageError(f"--grid {name}={items[0]}: a range needs a number below a larger one", ctx)
        if scale == "log" and low <= 0:
            raise click.UsageError(f"--grid {name}={items[0]}: a :log range must be above 0", ctx)
        return Axis(option, low=float(low), high=float(high), log=scale == "log", integer=isinstance(low, int))
    if any(".." in v for v in items):
        raise click.UsageError(f"--grid {name}: give either one LOW..HIGH range or a list of values", ctx)
    return Axis(option, values=tuple(dict.fromkeys(_arg(convert(v)) for v in items)))


@main.command(context_settings={**CONTEXT, "ignore_unknown_options": True},
              short_help="Many trainings over a grid of options, ranked.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED, metavar="[CORPUS] [TRAIN OPTIONS]")
@click.option("--grid", "grids", multiple=True, metavar="OPTION=V1,V2", help="A train option and the values to try (repeat; every combination runs). With --random, also LOW..HIGH[:log].")
@click.option("--random", "random_trials", type=click.IntRange(min=1), default=None, help="Draw this many combinations at random (seeded by --seed) instead of running the whole grid.")
@click.option("--workers", type=click.IntRange(min=1), default=None, show_default="cores / threads", help="Trials run at once on this machine.")
@click.option("--threads", type=click.IntRange(1, 1024), default=1, help="Threads per trial (Numba, OpenBLAS and --threads).")
@click.option("--address", envvar="DASK_SCHEDULER_ADDRESS", default=None, show_default="$DASK_SCHEDULER_ADDRESS", help="Run the trials on the Dask distributed scheduler at this address, e.g. tcp://HOST:8786.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=T_DEF.out_dir, help="Directory for the sweep folder (sweep-<corpus>-<hash>/, one run folder per trial).")
@click.option("-q", "--quiet", is_flag=True, help="No live table; the ranked table is still printed.")
@click.pass_context
def sweep(ctx, train_args, grids, random_trials, workers, threads, address, out_dir, quiet):
    """Train one model per combination of options and rank them by validation loss.

    Every other option is passed to each `rnn train` trial. Running the same command again
    skips finished trials and resumes interrupted ones.

    \b
    Example:  rnn sweep input.txt --grid hidden-size=128,256 --grid dropout=0,0.2 --max-time 2m
              rnn sweep input.txt --random 8 --grid lr=1e-3..1e-2:log --grid layers=1,2
    """
    if not grids:
        raise click.UsageError("give at least one --grid OPTION=V1,V2", ctx)
    train_cmd = main.get_command(ctx, "train")
    tctx = train_cmd.make_context("rnn sweep", list(train_args), parent=ctx)
    given = [p for p in train_cmd.params
             if tctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE and p.name != "corpus"]
    if tctx.params.get("resume"):
        raise click.UsageError("--resume: a sweep resumes its trials itself; run the same sweep command again", ctx)
    options = _train_options(train_cmd)
    axes = [_parse_grid(g, options, tctx, ctx, random_trials) for g in grids]
    names = [a.option for a in axes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise click.UsageError(f"--grid {repeated[0][2:]}: given twice; list all its values in one --grid", ctx)
    both = [p for p in given if any(o in names for o in p.opts)]
    if both:
        raise click.UsageError(f"--grid {both[0].opts[-1][2:]}: also given as a train option; keep one", ctx)
    base_args = []
    for p in given:
        long = [o for o in p.opts if o.startswith("--")][0]
        base_args += [long] if p.is_flag else [long, _arg(tctx.params[p.name])]
    if tctx.params.get("corpus"):
        paths = [tctx.params["corpus"]]
    else:
        from rnncli.text import default_corpus_files

        paths = default_corpus_files()
    from rnncli import report, ui
    from rnncli.sweep import curves, make_plan, require_dask, run_sweep

    if address:
        require_dask()
    plan = make_plan(out_dir, paths, axes, base_args, threads, random_trials or 0, tctx.params["seed"])
    announce_compile()
    ui.notice(f"Sweep of {len(plan.trials)} trials in {plan.folder}")
    live = ui.SweepLive(len(plan.trials), quiet)
    try:
        result = run_sweep(plan, workers or 0, address, live.result)
    finally:
        live.close()
    page = report.write(report.render_sweep(f"rnn sweep: {os.path.basename(plan.folder)}", result.rows,
                                            curves(result.rows)), os.path.join(plan.folder, "sweep.html"))
    ui.print_sweep_table(result.rows, len(plan.trials))
    ui.notice(f"{len(plan.trials) - result.skipped} trial(s) on {result.where} in {result.seconds:.1f} s"
              + (f"; {result.skipped} finished earlier" if result.skipped else "") + f". Curves: {page}")
    if result.interrupted:
        ui.notice("Interrupted: every running trial saved its checkpoint; run the same command to resume.")
        sys.exit(130)
    if result.failures:
        first = result.failures[0]
        raise click.ClickException(f"{len(result.failures)} trial(s) failed; {first['name']}: {first.get('error', '')} "
                                   f"(log: {os.path.join(plan.trial_dir(first['name']), 'train.log')})")


# ---------------------------------------------------------------- sample

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
    from rnncli import sample as core

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
        from rnncli.score import novelty as measure_novelty

        config = lm.meta.get("config")
        on_error = config.get("on_decode_error") if isinstance(config, dict) else None
        rows = measure_novelty(generated, corpus_paths, on_error="replace" if on_error == "replace" else "strict")
        ui.print_novelty(rows, corpus_paths)


def _training_corpus(meta: dict, path: str) -> list:
    """The text files a checkpoint was trained on, from its `corpus` record; a usage error naming
    the missing file (or the lack of a record) when they cannot be read here."""
    from rnncli.text import special_file

    paths = meta.get("corpus")
    if not (isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths)):
        raise click.UsageError(f"{path} does not record its training text; give it with --corpus")
    for p in paths:
        if not os.path.isfile(p) or special_file(p):
            raise click.UsageError(f"the training text {p} recorded in {path} is not there; "
                                   f"give it with --corpus")
    return paths


# ---------------------------------------------------------------- eval

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
    from rnncli.sample import load_lm
    from rnncli.score import score_text

    lm = load_lm(checkpoint)
    announce_compile()
    ui.print_result_table(ui.eval_table(score_text(lm, text, on_decode_error, threads)))


# ---------------------------------------------------------------- report

@main.command(context_settings=CONTEXT)
@click.argument("run", required=False, type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="HTML file to write.  [default: RUN/report.html; gradients.html with --gradients-only and no RUN]")
@click.option("--text", "text_path", type=click.Path(exists=True, dir_okay=False), default=None, help="Text to show the hidden units over.  [default: the run's validation text]")
@click.option("--chars", type=click.IntRange(2, 200_000), default=2000, help="Characters of text the units are measured on.")
@click.option("--show-chars", type=click.IntRange(1, 20_000), default=500, help="Characters drawn under each unit.")
@click.option("--gradients-only", is_flag=True, help="Draw only gradients through time (fresh models when no RUN is given).")
@click.option("--cell", "cells", type=click.Choice(CELLS), multiple=True, help="Fresh cell to compare (repeat for several).  [default: all]")
@click.option("--hidden-size", type=click.IntRange(1, 2048), default=M_DEF.hidden_size, help="Fresh models' units per layer (--gradients-only without RUN).")
@click.option("--layers", type=click.IntRange(1, 8), default=M_DEF.num_layers, help="Fresh models' layers (--gradients-only without RUN).")
@click.option("--steps", type=click.IntRange(1, 1000), default=100, help="Steps back through time for the gradient curves.")
@click.option("--seed", type=SEED, default=0, help="Random seed for samples, windows and fresh models.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=T_DEF.out_dir, help="Where to look for the last run when no RUN is given.")
def report(run, output, text_path, chars, show_chars, gradients_only, cells, hidden_size, layers, steps, seed, out_dir):
    """Write an HTML report of a run: curves, samples, hidden units, gates, gradients.

    RUN is a run folder or a checkpoint (default: the most recent run under --out). The page is
    self-contained and opens offline; its path goes to stdout.

    \b
    Example:  rnn report runs/input-lstm-20261122-101500
              rnn report --gradients-only --cell rnn --cell lstm
    """
    cells = tuple(cells) or CELLS
    announce_compile()
    from rnncli import inspect as ins
    from rnncli import report as rep

    if gradients_only:
        if run is None:
            data = ins.inspect_gradients(cells, hidden_size, layers, M_DEF.embedding_size, steps=steps, seed=seed)
            default = "gradients.html"
        else:
            data = ins.inspect_run_gradients(run, out_dir, cells, steps, seed)
            default = os.path.join(ins.resolve_run(run, out_dir).run_dir, "gradients.html")
    else:
        data = ins.inspect_run(run, out_dir, text_path, chars, cells, steps, seed, show_chars)
        default = os.path.join(data.files.run_dir, "report.html")
    click.echo(rep.write(rep.render(data), output or default))


# ---------------------------------------------------------------- classify

@main.group(cls=RnnGroup, context_settings=CONTEXT)
def classify():
    """Classify texts with a recurrent network: train, eval, predict.

    Data files hold one text per line as `label<TAB>text`.

    \b
    rnn classify train webkb-train.txt              train (validation split held out)
    rnn classify eval runs/.../best.npz test.txt    scores on a labelled test file
    rnn classify predict runs/.../best.npz new.txt  label new texts (or stdin)
    """


def _comma_ints(ctx, param, value):
    if value is None or value == "":
        return ()
    try:
        sizes = tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give sizes separated by commas, e.g. 128,64") from None
    if any(s < 1 or s > MAX_SIZE for s in sizes):
        raise click.BadParameter(f"sizes must be from 1 to {MAX_SIZE}")
    return sizes


@classify.command("train", context_settings=CONTEXT)
@click.argument("data", type=InputFile())
@click.option("--test", "test_path", type=InputFile(), default=None, help="Labelled test file scored once, at the end, with the best weights.")
@click.option("--cell", type=click.Choice(CELLS), default=C_DEF.cell, help="Recurrent cell.")
@click.option("--hidden-size", type=click.IntRange(1, MAX_SIZE), default=C_DEF.hidden_size, help="Units per recurrent layer (and direction).")
@click.option("--layers", type=click.IntRange(1, MAX_LAYERS), default=C_DEF.num_layers, help="Stacked recurrent layers.")
@click.option("--bidirectional/--unidirectional", default=C_DEF.bidirectional, help="Also read each text backwards.")
@click.option("--pooling", type=click.Choice(POOLINGS), default=C_DEF.pooling, help="Summary of the recurrent outputs: final state, mean or max over time.")
@click.option("--dense", metavar="SIZES", callback=_comma_ints, default=",".join(map(str, C_DEF.dense)), help="Sizes of the fully connected ReLU layers before the softmax (empty for none).")
@click.option("--dropout", type=Finite(0, 1, max_open=True), default=C_DEF.dropout, help="Dropout on recurrent outputs and dense layers.")
@click.option("--embedding-size", type=click.IntRange(1, MAX_SIZE), default=C_DEF.embedding_size, help="Word vector size (the GloVe file's, when one is given).")
@click.option("--glove", type=InputFile(), default=None, help="Start word vectors from a GloVe text file (word v1 ... vd) or the glove.6B.zip archive.")
@click.option("--glove-dim", type=click.IntRange(0, MAX_SIZE), default=C_DEF.glove_dim, help="Vector size to read from a GloVe zip archive (0 = its only file); checked against a text file.")
@click.option("--glove-match", type=click.Choice(GLOVE_MATCHES), default=C_DEF.glove_match, help="Match words to GloVe exactly or by Porter stem (stemmed corpora); auto: by stem when that covers 10 points more of the tokens.")
@click.option("--stem-vector", type=click.Choice(STEM_VECTORS), default=C_DEF.stem_vector, help="A stem's vector: its most frequent GloVe word's, or the mean of its words weighted by frequency.")
@click.option("--freeze-embeddings", is_flag=True, help="Keep the (GloVe) word vectors fixed.")
@click.option("--tokens", type=click.Choice(TOKENIZERS), default=C_DEF.tokens, help="Split texts into lower-cased words or characters.")
@click.option("--min-freq", type=click.IntRange(min=1), default=C_DEF.min_freq, help="Tokens seen fewer times in training become <unk>.")
@click.option("--max-vocab", type=click.IntRange(min=3), default=C_DEF.max_vocab, help="Largest vocabulary kept (most frequent first).")
@click.option("--max-len", type=click.IntRange(min=1), default=C_DEF.max_len, help="Tokens kept from the start of each text.")
@click.option("--batch-size", type=click.IntRange(min=1), default=C_DEF.batch_size, help="Texts per step.")
@click.option("--epochs", type=click.IntRange(min=1), default=C_DEF.epochs, help="Most passes over the training texts.")
@click.option("--patience", type=click.IntRange(min=1), default=C_DEF.patience, help="Stop after this many epochs without a better validation loss.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=C_DEF.optimizer, help="Update rule.")
@click.option("--lr", type=Finite(min=0, min_open=True), default=C_DEF.lr, help="Learning rate.")
@click.option("--weight-decay", type=Finite(min=0), default=C_DEF.weight_decay, help="Weight decay (decoupled for adam).")
@click.option("--clip", type=Finite(min=0), default=C_DEF.clip, help="Clip the global gradient norm (0 = off).")
@click.option("--class-weights", type=click.Choice(CLASS_WEIGHTS), default=C_DEF.class_weights, help="Weigh classes by inverse frequency: auto does when the rarest class has under a quarter of the largest's texts.")
@click.option("--max-time", type=Duration(), default=Duration.format(C_DEF.max_time), help="Time for the whole run, e.g. 90s, 10m (0 = no limit): the recurrent training stops in time for the rest; the epoch under way is scored.")
@click.option("--baseline", is_flag=True, help="Also fit TF-IDF + a linear SVM (scikit-learn) on the same training texts and show its scores beside the classifier's.")
@click.option("--ngram", type=click.IntRange(0, 5), default=C_DEF.ngram, help="Mix in a linear model of word 1..N-grams and character pieces, weighted on the validation split (0 = the recurrent model alone).")
@click.option("--val-fraction", type=Finite(0, 1, min_open=True, max_open=True), default=C_DEF.val_fraction, help="Share of each class held out for validation (stratified).")
@click.option("--seed", type=SEED, default=C_DEF.seed, help="Random seed (split, initialisation, batches).")
@click.option("--threads", type=click.IntRange(0, 1024), default=C_DEF.threads, help="CPU threads for matrix products (0 = all cores).")
@click.option("--on-decode-error", type=click.Choice(["strict", "replace"]), default=C_DEF.on_decode_error, help="Invalid UTF-8: stop with an error, or replace with U+FFFD.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=T_DEF.out_dir, help="Directory for the run folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or epoch summaries.")
def classify_train(data, test_path, cell, hidden_size, layers, bidirectional, pooling, dense, dropout,
                   embedding_size, glove, glove_dim, glove_match, stem_vector, freeze_embeddings, tokens, min_freq, max_vocab, max_len, batch_size,
                   epochs, patience, optimizer, lr, weight_decay, clip, class_weights, max_time, baseline, ngram, val_fraction, seed,
                   threads, on_decode_error, out_dir, quiet):
    """Train a text classifier on DATA (`label<TAB>text` per line).

    A recurrent network, mixed with a TF-IDF n-gram model in proportions chosen on a
    stratified validation split (which also drives early stopping; the best weights are
    kept). Lines without a TAB and empty texts are skipped and counted. --baseline shows
    TF-IDF + a linear SVM beside it; --ngram 0 keeps the recurrent network alone.

    \b
    Example:  rnn classify train webkb-train.txt --glove glove.6B.50d.txt --test webkb-test.txt
    """
    if freeze_embeddings and not glove:
        raise click.UsageError("--freeze-embeddings needs --glove (learned vectors must be trained)")
    cfg = ClassifyConfig(cell=cell, hidden_size=hidden_size, num_layers=layers, bidirectional=bidirectional,
                         pooling=pooling, dense=dense, dropout=dropout, embedding_size=embedding_size,
                         glove=glove or "", glove_dim=glove_dim, glove_match=glove_match, stem_vector=stem_vector,
                         freeze_embeddings=freeze_embeddings, tokens=tokens, min_freq=min_freq,
                         max_vocab=max_vocab, max_len=max_len, batch_size=batch_size, epochs=epochs,
                         patience=patience, optimizer=optimizer, lr=lr, weight_decay=weight_decay, clip=clip,
                         class_weights=class_weights, ngram=ngram, max_time=max_time, val_fraction=val_fraction, seed=seed, threads=threads,
                         on_decode_error=on_decode_error).validate()
    announce_compile()
    from rnncli import ui
    from rnncli.classify import train_classifier

    result = train_classifier(cfg, data, test_path, out_dir, ui.ClassifyReporter(quiet), baseline)
    if not quiet:
        ui.loss_chart({"training": [(h["epoch"], h["train_loss"]) for h in result.history],
                       "validation": [(h["epoch"], h["val_loss"]) for h in result.history]}, "loss against epoch")
        why = {"epochs": "the last of --epochs", "time": "stopped by --max-time",
               "patience": f"stopped after {cfg.patience} without a better validation loss"}
        ui.notice(f"Best epoch {result.best_epoch} of {result.epochs_run} ({why[result.info['stopped']]}); "
                  f"{result.seconds:.0f} s in all; weights saved to {result.path}")
        if "mix" in result.info:
            mix = result.info["mix"]
            ui.notice(f"Mix chosen on the validation split: {mix['alpha']:.1f} × recurrent + "
                      f"{1 - mix['alpha']:.1f} × n-gram log-probabilities ({mix['terms']:,} word n-grams, C={mix['C']:g}).")
        ui.print_tables(ui.metrics_tables(result.val, result.labels, "validation"))
        ui.notice(f"Report: rnn report {os.path.dirname(result.path)}")
    if result.test is not None:
        _report_test(result.test, result.labels)
    ui.print_tables([ui.comparison_table(result.val, result.test, result.seconds)])
    click.echo(result.path)


def _report_test(test: dict, labels, to_stdout: bool = False) -> None:
    from rnncli import ui

    ui.print_tables(ui.metrics_tables(test, labels, f"test ({os.path.basename(test['path'])})"), to_stdout)
    if test["skipped_unknown_label"]:
        ui.notice(f"Skipped {test['skipped_unknown_label']} test lines whose label the model does not know: "
                  f"{', '.join(test['unknown_labels'][:10])}")
    if test["skipped_no_tab"]:
        ui.notice(f"Skipped {test['skipped_no_tab']} test lines without a TAB.")
    if test["empty_texts"]:
        ui.notice(f"{test['empty_texts']} test texts were empty (scored from a lone unknown token).")


@classify.command("eval", context_settings=CONTEXT, short_help="Score a saved classifier on a labelled test file.")
@click.argument("checkpoint", type=InputFile())
@click.argument("test", type=InputFile())
@click.option("--on-decode-error", type=click.Choice(["strict", "replace"]), default="strict", help="Invalid UTF-8: stop with an error, or replace with U+FFFD.")
@click.option("--baseline", is_flag=True, help="Refit the baseline of a model trained with --baseline (same training texts) and score it on TEST too.")
def classify_eval(checkpoint, test, on_decode_error, baseline):
    """Score a saved classifier on a labelled TEST file (`label<TAB>text` per line).

    Prints accuracy, macro-F1, per-class scores and the confusion matrix.

    \b
    Example:  rnn classify eval runs/webkb-classifier-.../best.npz webkb-test.txt
    """
    from rnncli import ui
    from rnncli.classify import evaluate_file, load_classifier, refit_baseline

    clf = load_classifier(checkpoint)
    if baseline and "baseline" not in clf.meta:
        raise click.UsageError("--baseline: this checkpoint was trained without --baseline")
    announce_compile()
    result = evaluate_file(clf, test, on_decode_error, refit_baseline(clf, on_decode_error) if baseline else None)
    _report_test(result, clf.labels, to_stdout=True)
    ui.print_tables([ui.comparison_table(clf.meta.get("val"), result, None)], to_stdout=True)


@classify.command("predict", context_settings=CONTEXT)
@click.argument("checkpoint", type=InputFile())
@click.argument("texts", type=InputText("r", encoding="utf-8", errors="strict"), default="-")
@click.option("--all-probs", is_flag=True, help="Also print every class's probability.")
@click.option("--labelled", is_flag=True, help="Input lines are `label<TAB>text`: ignore the label.")
def classify_predict(checkpoint, texts, all_probs, labelled):
    """Label new texts, one per line, from a file or stdin (`-`).

    Prints `label<TAB>probability` per input line (then TAB-separated `class=p` with --all-probs).

    \b
    Example:  echo "office hours and homework" | rnn classify predict best.npz
    """
    from rnncli import ui
    from rnncli.classify import load_classifier, predict_lines
    from rnncli.errors import CorpusError

    clf = load_classifier(checkpoint)
    try:
        content = texts.read(PREDICT_MAX_CHARS + 1)  # bounded: stdin may be a stream that never ends
    except UnicodeDecodeError as e:
        raise CorpusError(f"{texts.name}: not UTF-8 at byte {e.start}; re-save as UTF-8") from None
    if len(content) > PREDICT_MAX_CHARS:
        raise CorpusError(f"{texts.name}: more than {PREDICT_MAX_CHARS:,} characters; give the texts in parts")
    lines = content.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if labelled:
        lines = [line.partition("\t")[2] for line in lines]
    announce_compile()
    probs = predict_lines(clf, lines)
    for p in probs:
        k = int(p.argmax())
        row = f"{clf.labels[k]}\t{p[k]:.4f}"
        if all_probs:
            row += "".join(f"\t{label}={q:.4f}" for label, q in zip(clf.labels, p))
        click.echo(row)
    if not lines:
        ui.notice("No input lines.")


# ---------------------------------------------------------------- bench

@main.command(context_settings=CONTEXT, short_help="Measure training and sampling speed on this machine.")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="CPU threads (0 = all cores).")
@click.option("--reps", type=click.IntRange(min=1), default=5, help="Timed repetitions per model (the median is shown).")
@click.option("--only", metavar="NAMES", default="", show_default="all", help="Comma-separated model names to run, e.g. lstm-2x256,sample-lstm-2x256.")
def bench(threads, reps, only):
    """Measure training and sampling speed of standard model sizes on this machine.

    Use it to pick a model size for your CPU. Takes under a minute with the defaults.

    \b
    Example:  rnn bench --threads 2
    """
    announce_compile()
    from rnncli import ui
    from rnncli.bench import default_configs, run_benchmarks

    cases = default_configs()
    if only:
        wanted = [name.strip() for name in only.split(",") if name.strip()]
        unknown = [w for w in wanted if w not in {c.name for c in cases}]
        if unknown:
            raise click.BadParameter(f"unknown model {unknown[0]!r}; choose from "
                                     f"{', '.join(c.name for c in cases)}", param_hint="'--only'")
        cases = [c for c in cases if c.name in wanted]
    report = run_benchmarks(cases, threads=threads, reps=reps,
                            on_row=lambda row: ui.notice(f"  {row.name}: {row.chars_per_sec:,.0f} chars/s"))
    ui.print_result_table(ui.bench_table(report))
