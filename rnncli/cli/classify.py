"""The classifier's commands: classify train, eval, predict.
"""

from __future__ import annotations

import os

import click

from rnncli.cli.group import RnnGroup, main
from rnncli.cli.options import (
    C_DEF,
    CONTEXT,
    PREDICT_MAX_CHARS,
    SEED,
    T_DEF,
    Duration,
    Finite,
    InputFile,
    InputText,
    announce_compile,
    threads_option,
)
from rnncli.config import (
    CELLS,
    CLASS_WEIGHTS,
    GLOVE_MATCHES,
    LANGUAGE_CHOICES,
    MAX_LAYERS,
    MAX_SIZE,
    OPTIMIZERS,
    POOLINGS,
    STEM_VECTORS,
    TOKENIZERS,
    ClassifyConfig,
)


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
@click.option("--glove-match", type=click.Choice(GLOVE_MATCHES), default=C_DEF.glove_match, help="Match words to GloVe exactly or by stem (stemmed corpora; Porter for English, the Snowball stemmer of --language otherwise); auto: by stem when that covers 10 points more of the tokens.")
@click.option("--stem-vector", type=click.Choice(STEM_VECTORS), default=C_DEF.stem_vector, help="A stem's vector: its most frequent GloVe word's, or the mean of its words weighted by frequency.")
@click.option("--freeze-embeddings", is_flag=True, help="Keep the (GloVe) word vectors fixed.")
@click.option("--tokens", type=click.Choice(TOKENIZERS), default=C_DEF.tokens, help="Split texts into lower-cased words or characters.")
@click.option("--language", type=click.Choice(LANGUAGE_CHOICES), default=C_DEF.language, help="The texts' language: the word tokenizer's rules (French and Italian elisions split: l'école is l' + école) and the stemmer GloVe words are matched by; auto detects it from the texts.")
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
@threads_option(C_DEF.threads)
@click.option("--on-decode-error", type=click.Choice(["strict", "replace"]), default=C_DEF.on_decode_error, help="Invalid UTF-8: stop with an error, or replace with U+FFFD.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=T_DEF.out_dir, help="Directory for the run folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or epoch summaries.")
def classify_train(data, test_path, cell, hidden_size, layers, bidirectional, pooling, dense, dropout,
                   embedding_size, glove, glove_dim, glove_match, stem_vector, freeze_embeddings, tokens, language, min_freq, max_vocab, max_len, batch_size,
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
                         freeze_embeddings=freeze_embeddings, tokens=tokens, language=language, min_freq=min_freq,
                         max_vocab=max_vocab, max_len=max_len, batch_size=batch_size, epochs=epochs,
                         patience=patience, optimizer=optimizer, lr=lr, weight_decay=weight_decay, clip=clip,
                         class_weights=class_weights, ngram=ngram, max_time=max_time, val_fraction=val_fraction, seed=seed, threads=threads,
                         on_decode_error=on_decode_error).validate()
    announce_compile()
    from rnncli import ui
    from rnncli.classify.train import train_classifier

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
    for skipped in ui.skipped_lines(test, "test lines"):
        ui.notice(f"Skipped {skipped}.")
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
    from rnncli.classify.train import evaluate_file, load_classifier, refit_baseline

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
    from rnncli.classify.train import load_classifier, predict_lines
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
