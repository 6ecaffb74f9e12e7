"""The classifier against the linear baseline on several kinds of labelled text.

For each data set and seed: a stratified 25% of the file is held out as the test set; the rest is
the training file. `rnn classify train TRAIN --test TEST --baseline` (defaults otherwise) trains
the classifier, and TF-IDF (word 1-2-grams, sublinear tf) + LinearSVC(C=1) is fitted on the whole
training file, as a practitioner would, and scored on the same test set. Prints one markdown row per
run: the classifier, its recurrent and n-gram parts alone, the baseline, the lead, the same lead on
the classifier's own validation split (the SVM there fitted on its training split, as
`--baseline` does), the mix chosen (α, C, sharpness) and the wall time.

    python benchmarks/learning/classify_study.py ../shared/data --seeds 7 8 9 -- --threads 2
    python benchmarks/learning/classify_study.py ../shared/data --first-words 12 --seeds 7 8
    (options after -- go to `rnn classify train`)

`--first-words N` cuts every text to its first N words (split at whitespace) before the split:
short texts of the same classes, where each text carries little evidence and a class's prior and
the rare classes weigh most.

Needs scikit-learn (`pip install '.[baseline]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SETS = {"webkb": "webkb-train-stemmed.txt", "r8": "r8-train-stemmed.txt", "mr": "mr-polarity.txt",
        "ag": "agnews-7600.txt"}


def read(path: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, tab, text = line.rstrip("\n").partition("\t")
            if tab and label.strip() and text.strip():
                labels.append(label.strip())
                texts.append(text)
    return texts, labels


def svm_scores(train: tuple, test: tuple) -> tuple[float, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LinearSVC(C=1.0).fit(vectorizer.fit_transform(train[0]), train[1])
    predicted = model.predict(vectorizer.transform(test[0]))
    return accuracy_score(test[1], predicted), f1_score(test[1], predicted, average="macro")


def first_words(texts: list[str], n: int) -> list[str]:
    return [" ".join(t.split()[:n]) for t in texts] if n else texts


def write(path: str, texts: list[str], labels: list[str], idx) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{labels[i]}\t{texts[i]}\n" for i in idx)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[7])
    parser.add_argument("--first-words", type=int, default=0, metavar="N",
                        help="cut each text to its first N words (0: whole texts)")
    parser.add_argument("--out", default=None, help="folder for splits and runs (default: a temporary one)")
    args = parser.parse_args(argv)
    from sklearn.model_selection import train_test_split

    work = args.out or tempfile.mkdtemp(prefix="classify-study-")
    os.makedirs(work, exist_ok=True)
    print(f"<!-- splits and runs in {work}; rnn classify train options: {' '.join(extra) or '(defaults)'} -->")
    print("| data | seed | classifier acc / F1 | recurrent alone | n-gram alone | SVM (whole train file) "
          "| lead acc / F1 | validation lead | α, C, s | wall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for set_name in args.sets:
        texts, labels = read(os.path.join(args.data_dir, SETS[set_name]))
        texts = first_words(texts, args.first_words)
        name = f"{set_name}-{args.first_words}w" if args.first_words else set_name
        for seed in args.seeds:
            train_idx, test_idx = train_test_split(np.arange(len(texts)), test_size=0.25, stratify=labels,
                                                   random_state=seed)
            train_path = os.path.join(work, f"{name}-{seed}-train.txt")
            test_path = os.path.join(work, f"{name}-{seed}-test.txt")
            write(train_path, texts, labels, train_idx)
            write(test_path, texts, labels, test_idx)
            base_acc, base_f1 = svm_scores(([texts[i] for i in train_idx], [labels[i] for i in train_idx]),
                                           ([texts[i] for i in test_idx], [labels[i] for i in test_idx]))
            started = time.perf_counter()
            run = subprocess.run(["rnn", "classify", "train", train_path, "--test", test_path, "--baseline",
                                  "--out", os.path.join(work, "runs"), "-q", *extra],
                                 capture_output=True, text=True)
            wall = time.perf_counter() - started
            if run.returncode != 0:
                print(f"| {name} | {seed} | failed: {run.stderr.strip().splitlines()[-1]} |||||||| |")
                continue
            ckpt = run.stdout.strip().splitlines()[-1].split("\t")[0]
            meta = json.loads(str(np.load(ckpt, allow_pickle=False)["meta"]))
            test = meta["test"]
            parts = test.get("parts", {})
            val, ngram = meta["val"], meta.get("ngram")
            pair = (lambda m: f"{m['accuracy']:.4f} / {m['macro_f1']:.4f}" if m else "—")
            mix = f"{ngram['alpha']:.1f}, {ngram['C']:g}, {ngram['scale']:g}" if ngram else "—"
            print(f"| {name} | {seed} | {pair(test)} | {pair(parts.get('rnn'))} | {pair(parts.get('ngram'))} "
                  f"| {base_acc:.4f} / {base_f1:.4f} | {test['accuracy'] - base_acc:+.4f} / "
                  f"{test['macro_f1'] - base_f1:+.4f} | {val['accuracy'] - val['baseline']['accuracy']:+.4f} / "
                  f"{val['macro_f1'] - val['baseline']['macro_f1']:+.4f} | {mix} | {wall:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
