"""Tool commands: gradcheck, sweep, report, bench.
"""

from __future__ import annotations

import os
import sys

import click

from rnncli.cli.group import main
from rnncli.cli.options import (
    CONTEXT,
    M_DEF,
    SEED,
    T_DEF,
    Finite,
    announce_compile,
    threads_option,
)
from rnncli.config import (
    ACTIVATIONS,
    CELLS,
    GradcheckConfig,
)
from rnncli.data.files import check_target


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
    from rnncli.tools.gradcheck import run_gradcheck

    result = run_gradcheck(cfg, dropout=dropout)
    ui.print_result_table(ui.gradcheck_table(result))
    failed = [r for r in result.rows if not r.passed]
    if failed:
        ui.notice(f"FAILED: {len(failed)} of {len(result.rows)} parameter tensors exceed tolerance {tol:g}")
        sys.exit(1)
    ui.notice(f"All {len(result.rows)} parameter tensors pass (tolerance {tol:g}).")


# train options a sweep sets itself (or that make no sense per trial)
SWEEP_OWN = {"corpus", "resume", "out_dir", "threads", "quiet"}


def _train_options(train_cmd) -> dict:
    """Long option name without dashes -> the train command's click.Option."""
    return {o[2:]: p for p in train_cmd.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")}


def _arg(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _parse_grid(text: str, options: dict, tctx, ctx, random_trials):
    from rnncli.tools.sweep import Axis

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
@threads_option(1, "Threads per trial (Numba, OpenBLAS and --threads).", minimum=1)
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
        from rnncli.data.corpus import corpus_files

        paths = corpus_files(tctx.params["corpus"])
    else:
        from rnncli.data.chars import default_corpus_files

        paths = default_corpus_files()
    from rnncli import ui
    from rnncli.tools import report
    from rnncli.tools.sweep import curves, make_plan, require_dask, run_sweep

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
    if output:  # refused before minutes of measuring, not after
        check_target(output, "the report")
    announce_compile()
    from rnncli.tools import inspection as ins
    from rnncli.tools import report as rep

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


@main.command(context_settings=CONTEXT, short_help="Measure training and sampling speed on this machine.")
@threads_option(help="CPU threads (0 = all cores).")
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
    from rnncli.tools.bench import default_configs, run_benchmarks

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
