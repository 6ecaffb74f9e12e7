"""Peak memory of `rnn train` on a large corpus: a corpus of 200 MB should train without loading
more than a small multiple of its size into memory.

Writes a corpus of random accented words to /tmp (not part of the repository; reused when it is
already there with the right size), trains a small model on it for a few steps in a child
process, and reports the child's peak resident set size next to the corpus size. A second run
on a tiny corpus gives the baseline (Python, numpy, Numba and the compiled kernels), so the
memory the corpus itself costs is peak minus baseline.

    python benchmarks/resources/memory_large_corpus.py            # 200 MB
    python benchmarks/resources/memory_large_corpus.py --mb 50
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

WORDS = ("le café de la gare déjà élève forêt théâtre hôpital garçon façade cœur noël "
         "naïve fiancée crème brûlée maître d’hôtel où à ça va résumé señor voilà the "
         "and of a in to is was it for on with as his that he at by this had from not").split()


def write_corpus(path: str, megabytes: int, seed: int = 0) -> int:
    """Random lines of random words, whole blocks until the file holds at least `megabytes` MB;
    returns its size in bytes."""
    target = megabytes * 1_000_000
    if os.path.exists(path) and target <= os.path.getsize(path) < target + 4_000_000:
        return os.path.getsize(path)
    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    written = 0
    with open(path + ".part", "wb") as f:
        while written < target:
            idx = rng.integers(0, len(words), size=200_000)
            breaks = rng.random(len(idx)) < 0.08
            block = "".join(w + ("\n" if b else " ") for w, b in zip(words[idx], breaks)).encode("utf-8")
            f.write(block)
            written += len(block)
    os.replace(path + ".part", path)
    return os.path.getsize(path)


def peak_rss_of(cmd: list[str]) -> tuple[int, float, int, str]:
    """(peak RSS in bytes, seconds, exit code, stderr tail) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, time.perf_counter() - start, proc.returncode, stderr[-400:]


def train_cmd(corpus: str, out: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "rnncli", "train", corpus, "--cell", "lstm", "--hidden-size", "32",
            "--layers", "1", "--embedding-size", "16", "--seq-len", "32", "--batch-size", "8",
            "--max-steps", str(steps), "--eval-every", str(steps), "--eval-chars", "10000",
            "--out", out, "--quiet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB (10^6 bytes)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--corpus", default=None, help="path of the generated corpus (default in /tmp)")
    args = parser.parse_args()
    corpus = args.corpus or os.path.join(tempfile.gettempdir(), f"rnncli-memory-{args.mb}mb.txt")
    size = write_corpus(corpus, args.mb)
    with tempfile.TemporaryDirectory() as out:
        tiny = os.path.join(out, "tiny.txt")
        with open(tiny, "w", encoding="utf-8") as f:
            f.write(" ".join(WORDS) * 20)
        base, _, code, err = peak_rss_of(train_cmd(tiny, out, args.steps))
        if code != 0:
            sys.exit(f"baseline run failed ({code}): {err}")
        peak, seconds, code, err = peak_rss_of(train_cmd(corpus, out, args.steps))
        if code != 0:
            sys.exit(f"large run failed ({code}): {err}")
    mb = 1 << 20
    print(f"corpus          {corpus}: {size / mb:.1f} MiB")
    print(f"baseline        peak RSS {base / mb:.0f} MiB (tiny corpus, same model)")
    print(f"large corpus    peak RSS {peak / mb:.0f} MiB in {seconds:.1f} s ({args.steps} steps)")
    print(f"ratio           peak / corpus = {peak / size:.2f}; "
          f"(peak - baseline) / corpus = {(peak - base) / size:.2f}")


if __name__ == "__main__":
    main()
