#!/usr/bin/env python
"""Time and memory of reading a full-size GloVe file: 400,000 words x 300 values, ~1 GB,
the shape of glove.6B.300d.txt, written with random values (the real file is not shipped).

    python benchmarks/resources/glove_load.py --make /tmp/glove.fake.300d.txt        # write it once (~1 min)
    /usr/bin/time -v python benchmarks/resources/glove_load.py /tmp/glove.fake.300d.txt --data webkb-train-stemmed.txt

The words: the real 10,000 of glove.6B.50d.10k.txt first, then generated ones that look like the
rest of a real GloVe vocabulary (inflected and derived forms, prefixed words, compounds, names,
numbers, hyphenated and dotted tokens), so the stemming shortcut meets words it cannot skip as
well as words it can. Prints seconds, vectors read, the words sent to the stemmer and coverage.
Peak memory comes from `/usr/bin/time -v` ("Maximum resident set size"). Never commit the file.
"""

import argparse
import os
import random
import sys
import time

import numpy as np

SUFFIXES = ("s es ed ing er ers ly ness ism ist ists ation ations al ally ity ities ize ized izing ful "
            "less ment ments ive ively able ably ic ical ous ously ship hood").split()
PREFIXES = "re un non pre anti over sub inter co de dis mis multi post semi super trans under".split()
SYLLABLES = ("ka ri mo ta ne sha lu vi ber go den ast rov ski ich an el zu pa tor min dra qu ix ow "
             "ham ley son berg ville ton ford ia ez").split()


def make(path: str, glove10k: str, words: int = 400_000, dim: int = 300, seed: int = 0) -> None:
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    real = [line.split(" ", 1)[0] for line in open(glove10k, encoding="utf-8")]
    alpha = [w for w in real if w.isalpha()]
    vocab = dict.fromkeys(real)
    while len(vocab) < words:
        kind = rnd.random()
        if kind < 0.35:
            w = rnd.choice(alpha) + rnd.choice(SUFFIXES)
        elif kind < 0.45:
            w = rnd.choice(PREFIXES) + rnd.choice(alpha)
        elif kind < 0.55:
            w = rnd.choice(alpha) + rnd.choice(alpha)
        elif kind < 0.75:
            w = "".join(rnd.choices(SYLLABLES, k=rnd.randint(2, 4)))
        elif kind < 0.88:
            w = f"{rnd.randrange(100_000):,}" if kind < 0.8 else f"{rnd.random() * 1000:.{rnd.randint(1, 2)}f}"
        else:
            w = rnd.choice(alpha) + rnd.choice("-./-") + rnd.choice(alpha)
        vocab.setdefault(w)
    names = list(vocab)[:words]
    # Values drawn from 65,536 formatted normal ones: formatting 120 million floats one by one
    # would take far longer than reading them back.
    table = [f"{v:.5f}" for v in rng.normal(0, 0.4, 1 << 16)]
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, words, 10_000):
            block = rng.integers(0, 1 << 16, (min(10_000, words - start), dim)).tolist()
            f.writelines(w + " " + " ".join([table[i] for i in row]) + "\n"
                         for w, row in zip(names[start:start + 10_000], block))


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.path.join(here, "..", "..", "..", "shared", "data")  # beside the repository
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("glove", nargs="?", help="the GloVe file (or zip) to read")
    ap.add_argument("--make", metavar="PATH", help="write the 1 GB file to PATH and stop")
    ap.add_argument("--data", default=os.path.join(shared, "webkb-train-stemmed.txt"), help="labelled texts for the vocabulary")
    ap.add_argument("--match", default="auto", choices=("auto", "exact", "stem"))
    ap.add_argument("--dim", type=int, default=0)
    args = ap.parse_args()
    if args.make:
        t = time.perf_counter()
        make(args.make, os.path.join(shared, "glove.6B.50d.10k.txt"))
        print(f"wrote {args.make}: {os.path.getsize(args.make) / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s")
        return
    if not args.glove:
        sys.exit("give a GloVe file, or --make PATH")
    from rnncli.data import vectors
    from rnncli.data.words import TokenVocab, read_labelled, tokenize

    data = read_labelled(args.data)
    tokens = [tokenize(t, "word") for t in data.texts]
    vocab = TokenVocab.build(tokens, 2, 50_000)
    t = time.perf_counter()
    m = vectors.match_glove(args.glove, vocab, tokens, args.match, args.dim)
    seconds = time.perf_counter() - t
    stemmed = vectors._PORTER.cache_info().misses if vectors._PORTER else 0
    c = m.coverage
    print(f"{m.source}: {m.words:,} vectors of {m.dim} in {seconds:.1f} s; {stemmed:,} words stemmed; "
          f"matched {m.match} ({m.why}); vocabulary {c['types']:,}: exact {c['exact'][0]:,}"
          + (f", by stem {c['stem'][0]:,}" if c["stem"] else ""))


if __name__ == "__main__":
    main()
