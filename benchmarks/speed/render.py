#!/usr/bin/env python
"""Render the speed results: every benchmarks/results/<machine>/.../results.json that
compare_torch.py wrote into the RESULTS.md beside it, and the tables of docs/speed.md between its
markers (the prose around them is kept). Tables are made here and only here, from the JSON.

    python benchmarks/speed/render.py            # rewrite every RESULTS.md and docs/speed.md
    python benchmarks/speed/render.py --check    # exit 1 if one of them is not what the JSON gives

A run is a folder holding a results.json; its machine is the first folder under
benchmarks/results/ (results/zen1-2core/classifier/ is a second run on zen1-2core). A machine.txt
(an lscpu dump) in the machine's folder names the CPU family and model where the JSON does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: machines.py
from machines import RESULTS, parse_lscpu  # noqa: E402

REPO = RESULTS.parents[1]
DOCS = REPO / "docs" / "speed.md"
SCRIPT = "benchmarks/speed/compare_torch.py"
BEGIN = "<!-- tables rendered by `python benchmarks/speed/render.py` from benchmarks/results/: edit the JSON, not these -->"
END = "<!-- end of rendered tables -->"
SIDES = ("rnncli", "torch")


# ---------------------------------------------------------------- runs and machines

def run_dirs(root: Path = RESULTS) -> list[Path]:
    """Every folder under root with a results.json, a machine's own run before its subfolders."""
    return sorted((p.parent for p in root.rglob("results.json")), key=lambda d: d.relative_to(root).parts)


def load(run: Path) -> dict:
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


def shown_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def machine_name(run: Path) -> str | None:
    """The machine folder a run lies in; None for a run outside benchmarks/results/."""
    try:
        return run.resolve().relative_to(RESULTS).parts[0]
    except (ValueError, IndexError):
        return None


def lscpu_of(res: dict, run: Path) -> dict:
    if res["machine"].get("lscpu"):
        return res["machine"]["lscpu"]
    name = machine_name(run)
    dump = RESULTS / name / "machine.txt" if name else None
    return parse_lscpu(dump.read_text(encoding="utf-8")) if dump and dump.is_file() else {}


def cpu_text(res: dict, run: Path) -> str:
    """lscpu's model name, with its family and model numbers when known."""
    lscpu = lscpu_of(res, run)
    text = lscpu.get("Model name") or res["machine"]["cpu"]
    if "CPU family" in lscpu and "Model" in lscpu:
        text += f" (family {lscpu['CPU family']}, model {lscpu['Model']})"
    return text


def isa_text(m: dict) -> str:
    return ", ".join(m["isa"]) or "no AVX"


def versions_text(v: dict) -> str:
    return ", ".join(f"{k} {val}" for k, val in v.items() if val) + ("" if v.get("torch") else " (PyTorch not installed)")


def command(res: dict, run: Path) -> str:
    """The compare_torch.py command line that measures this run again, every setting spelled out."""
    s = res["settings"]
    parts = ["python", SCRIPT]
    if s["quick"]:
        parts.append("--quick")
    parts += ["--threads", ",".join(map(str, s["threads"])), "--reps", str(s["reps"]),
              "--warmup", str(s["warmup"]), "--min-rep-seconds", f"{s['min_rep_seconds']:g}"]
    if s.get("pause", 0.25) != 0.25:
        parts += ["--pause", f"{s['pause']:g}"]
    if s.get("seed", 0):
        parts += ["--seed", str(s["seed"])]
    # the configurations measured, named: the full set grows, and the command should redo this table
    names = s["only"] or list(dict.fromkeys(r["name"] for r in res["throughput"] + (res.get("classifier") or [])))
    if names:
        parts += ["--only", ",".join(names)]
    if res.get("classifier") and "cls_texts" in s:
        parts += ["--cls-texts", str(s["cls_texts"])]
    skip = s.get("skip")
    if skip is None:  # results written before the settings kept --skip
        skip = [k for k, key in (("loss", "loss_curve"), ("startup", "startup")) if res.get(key) is None]
    if skip:
        parts += ["--skip", ",".join(skip)]
    if s.get("frameworks") == ["rnncli"]:
        parts.append("--no-torch")
    if s.get("oversubscribe"):
        parts.append("--oversubscribe")
    if run.resolve().parent == RESULTS:
        parts += ["--machine", run.name]
    else:
        parts += ["--out", shown_path(run)]
    return " ".join(parts)


# ---------------------------------------------------------------- tables

def case_label(c: dict) -> str:
    if "vocab" in c:  # a classifier
        layers = f"{'bi' if c['bidirectional'] else ''}{c['cell'].upper()} {c['layers']}x{c['hidden']}"
        return (f"{c['name']}: {'train' if c['task'] == 'train' else 'inference'}, {layers}, "
                f"V{c['vocab'] // 1000}k E{c['embedding']} dense {'-'.join(map(str, c['dense']))}, B{c['batch']}")
    if c["task"] == "sample":
        return f"{c['name']}: sample {c['chars']:,} chars, {c['cell'].upper()} {c['layers']}x{c['hidden']}, batch {c['batch']}"
    return (f"{c['name']}: {c['cell'].upper()} {c['layers']}x{c['hidden']}, B{c['batch']} "
            f"T{c['seq_len']} E{c['embedding']}")


def fmt(x, spec: str, missing: str = "–") -> str:
    return missing if x is None else format(x, spec)


def ratio_cells(r: dict) -> str:
    """The ratio, target and met cells of a row."""
    met = "" if r.get("met") is None else ("yes" if r["met"] else "**no**")
    return (f"{fmt(r.get('ratio'), '.2f')}{'x' if r.get('ratio') is not None else ''} "
            f"| {fmt(r.get('target'), 'g', '')}{'x' if r.get('target') else ''} | {met}")


def throughput_lines(res: dict, h: str) -> list[str]:
    if not res["throughput"] and res.get("classifier"):
        return []
    lines = [f"{h} Language models: throughput", "",
             "| configuration | threads | rnncli chars/s | torch chars/s | ratio | target (≥) | met "
             "| rnncli GFLOP/s | rnncli % of peak | torch GFLOP/s | torch % of peak |",
             "| --- | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: |"]
    for r in res["throughput"]:
        t = r.get("torch")
        lines.append(
            f"| {case_label(r['case'])} | {r['threads']} | {r['rnncli']['chars_per_sec']:,.0f} "
            f"| {fmt(t and t['chars_per_sec'], ',.0f')} | {ratio_cells(r)} "
            f"| {r['rnncli']['gflops']:.1f} | {100 * r['rnncli']['fraction_of_peak']:.0f}% "
            f"| {fmt(t and t['gflops'], '.1f')} | {fmt(t and 100 * t['fraction_of_peak'], '.0f')}"
            f"{'%' if t else ''} |")
    return lines + [""]


def scaling_lines(res: dict, h: str) -> list[str]:
    """Per configuration: chars/s and ratio at each thread count, and each side's speed-up over
    its own 1-thread speed (when 1 thread was measured)."""
    rows = {}
    for r in res["throughput"]:
        rows.setdefault(r["name"], {})[r["threads"]] = r
    counts = sorted({r["threads"] for r in res["throughput"]})
    if len(counts) < 2:
        return []
    head = " | ".join(f"{t} thr: rnncli · ratio" for t in counts)
    lines = [f"{h} Language models: scaling", "",
             "chars/s of rnncli and its ratio to PyTorch at each thread count; speed-up = chars/s at the "
             f"most threads ({counts[-1]}) over 1 thread, for each framework.", "",
             f"| configuration | {head} | rnncli speed-up | torch speed-up |",
             "| --- | " + " | ".join("---:" for _ in counts) + " | ---: | ---: |"]
    for by in rows.values():
        cells = []
        for t in counts:
            r = by.get(t)
            cells.append("–" if r is None else f"{r['rnncli']['chars_per_sec']:,.0f} · {fmt(r.get('ratio'), '.2f')}x")
        one, top = by.get(1), by.get(counts[-1])
        ups = []
        for side in SIDES:
            ok = one and top and one.get(side) and top.get(side)
            ups.append(f"{top[side]['chars_per_sec'] / one[side]['chars_per_sec']:.2f}x" if ok else "–")
        lines.append(f"| {case_label(next(iter(by.values()))['case'])} | " + " | ".join(cells) + " | "
                     + " | ".join(ups) + " |")
    return lines + [""]


def classifier_lines(res: dict, h: str) -> list[str]:
    rows = res.get("classifier") or []
    if not rows:
        return []
    c = rows[0]["case"]
    order = list(dict.fromkeys(r["name"] for r in rows))  # the configurations in the order measured
    one = {r["name"]: r for r in rows if r["threads"] == 1}
    lines = [f"{h} Classifier", "",
             f"The model of `rnn classify train` (max pooling over valid steps, dropout 0, {c['classes']} "
             f"classes) against the same model in PyTorch with packed sequences "
             f"(benchmarks/speed/torch_classify.py), the same weights and batches. "
             f"{rows[0]['texts_per_pass']} synthetic texts per pass ({rows[0]['tokens_per_pass']:,} tokens): "
             f"lengths log-normal, median {c['median_len']}, sigma {c['sigma']:g}, clipped to "
             f"[{c['min_len']}, {c['max_len']}]; ids Zipf over the vocabulary; batches of similar length in a "
             f"seeded order, as an epoch of training takes them. Training = forward + backward + clip 5 + Adam "
             f"per batch; inference = forward only, rnncli's as a loaded model runs it (each text stops at its "
             f"length; layer 0's input tables folded once, untimed). Speed-up = texts/s over the same side's "
             f"at 1 thread.", "",
             "| configuration | threads | rnncli texts/s | torch texts/s | ratio | target (≥) | met "
             "| rnncli tokens/s | rnncli speed-up | torch speed-up |",
             "| --- | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: (r["case"]["task"] != "train", order.index(r["name"]), r["threads"])):
        t = r.get("torch")
        base = one.get(r["name"])
        ups = []
        for side in SIDES:
            ok = base and r["threads"] > 1 and r.get(side) and base.get(side)
            ups.append(f"{r[side]['texts_per_sec'] / base[side]['texts_per_sec']:.2f}x" if ok else "–")
        lines.append(
            f"| {case_label(r['case'])} | {r['threads']} | {r['rnncli']['texts_per_sec']:,.1f} "
            f"| {fmt(t and t['texts_per_sec'], ',.1f')} | {ratio_cells(r)} "
            f"| {r['rnncli']['tokens_per_sec']:,.0f} | {ups[0]} | {ups[1]} |")
    return lines + [""]


def peak_lines(res: dict, h: str) -> list[str]:
    lines = [f"{h} float32 GEMM peak (1024³, best of 10)", "",
             "| threads | rnncli's products (SciPy's OpenBLAS from @njit) | torch.mm |",
             "| ---: | ---: | ---: |"]
    for threads, p in res["peak_gflops"].items():
        lines.append(f"| {threads} | {p['rnncli']:.0f} GFLOP/s | {fmt(p.get('torch'), '.0f')}"
                     f"{' GFLOP/s' if p.get('torch') else ''} |")
    return lines + [""]


def loss_lines(res: dict, h: str) -> list[str]:
    lc = res.get("loss_curve")
    if not lc:
        return []
    sides = [k for k in SIDES if k in lc["curves"]]
    lines = [f"{h} Loss curve (c1 on {lc['corpus']}, {lc['threads']} threads)", "",
             "Both from rnncli's initial weights, the same chunks in the same order, Adam lr 2e-3, "
             "clip 5; nats/char. Step 1 is the initial loss" +
             (f"; later steps are the mean of the {lc['window']} steps ending there." if lc["window"] > 1 else "."),
             "", "| step | " + " | ".join(f"{k} loss" for k in sides) + " |",
             "| ---: | " + " | ".join("---:" for _ in sides) + " |"]
    lines += [f"| {row['step']} | " + " | ".join(f"{row[k]:.4f}" for k in sides) + " |" for row in lc["table"]]
    return lines + [""]


def startup_lines(res: dict, h: str) -> list[str]:
    st = res.get("startup")
    if not st:
        return []
    return [f"{h} Start-up", "",
            f"`{st['command']}` in a fresh process, wall time.", "",
            "| cache | seconds | target |", "| --- | ---: | ---: |",
            f"| warm (median of {len(st['warm_reps'])}) | {st['warm_seconds']:.2f} | < {st['targets']['warm']:g} |",
            f"| cold: NUMBA_CACHE_DIR empty, compiles | {st['cold_seconds']:.2f} | < {st['targets']['cold']:g} |",
            f"| same NUMBA_CACHE_DIR, next run | {st['cold_then_warm_seconds']:.2f} | |", "",
            f"Numba honoured NUMBA_CACHE_DIR: {'yes' if st['numba_cache_dir_honoured'] else '**no**'} "
            f"({st['cold_cache_index_files']} index files written there). "
            f"The CLI said it was compiling: {'yes' if st['said_compiling'] else '**no**'}.", ""]


def tables(res: dict, h: str) -> list[str]:
    out = []
    for part in (throughput_lines, scaling_lines, classifier_lines, peak_lines, loss_lines, startup_lines):
        out += part(res, h)
    return out


def setup_lines(res: dict, run: Path) -> list[str]:
    m, s = res["machine"], res["settings"]
    lines = []
    if s["quick"]:
        lines += ["> **Quick run** (--quick): a smoke test, not numbers to judge the targets by.", ""]
    return lines + [
        f"- Command: `{command(res, run)}`",
        f"- Machine: {machine_name(run) + ': ' if machine_name(run) else ''}{cpu_text(res, run)}, {m['cores']} cores ({isa_text(m)}); {m['platform']}"
        + (f"; rnncli's OpenBLAS kernels: {res['openblas']}" if res.get("openblas") else ""),
        f"- Versions: {versions_text(res['versions'])}",
        f"- Method: each framework in its own process, interleaved A B A B after a warm-up; median of "
        f"{s['reps']} repetitions of at least {s['min_rep_seconds']:g} s each; ratio = median of the paired "
        f"ratios rnncli/PyTorch. GFLOP/s counts matrix products only (rnncli.engine.flops); % of peak is "
        f"against the best float32 GEMM of either framework at that thread count.", ""]


def results_md(res: dict, run: Path) -> str:
    lines = [f"# rnncli vs PyTorch: {shown_path(run).removeprefix('benchmarks/results/')}", "",
             "Rendered from results.json by `python benchmarks/speed/render.py`; do not edit by hand.", ""]
    lines += setup_lines(res, run) + tables(res, "##")
    return "\n".join(lines).rstrip("\n") + "\n"


def docs_block(runs: list[Path]) -> str:
    """The rendered part of docs/speed.md: the machines, then each run's command and tables."""
    loaded = [(run, load(run)) for run in runs]
    first = {}
    for run, res in loaded:
        first.setdefault(machine_name(run), (run, res))
    lines = [BEGIN, "", "## Machines", "",
             "| machine | CPU (lscpu) | cores | ISA | rnncli's OpenBLAS kernels |", "| --- | --- | ---: | --- | --- |"]
    for name, (run, res) in first.items():
        m = res["machine"]
        lines.append(f"| {name} | {cpu_text(res, run)} | {m['cores']} | {isa_text(m)} | {res.get('openblas') or '–'} |")
    lines.append("")
    for run, res in loaded:
        rel = shown_path(run)
        lines += [f"## {rel.removeprefix('benchmarks/results/')}", "",
                  f"`{command(res, run)}`", "",
                  f"{versions_text(res['versions'])}; median of {res['settings']['reps']} repetitions of at "
                  f"least {res['settings']['min_rep_seconds']:g} s. All of it in [{rel}/RESULTS.md](../{rel}/RESULTS.md).", ""]
        if res["settings"]["quick"]:
            lines += ["> **Quick run** (--quick): a smoke test, not numbers to judge the targets by.", ""]
        lines += tables(res, "###")
    return "\n".join(lines + [END])


def with_block(page: str, block: str, path: Path = DOCS) -> str:
    start, stop = page.find(BEGIN), page.find(END)
    if start < 0 or stop < start:
        raise SystemExit(f"{shown_path(path)}: the markers of the rendered tables are missing; "
                         f"put these two lines where the tables go:\n{BEGIN}\n{END}")
    return page[:start] + block + page[stop + len(END):]


def outputs(extra: list[Path] = ()) -> dict[Path, str]:
    """Every rendered file and its text: each run's RESULTS.md (those under results/ and any
    `extra` run folders) and docs/speed.md."""
    runs = run_dirs()
    out = {run / "RESULTS.md": results_md(load(run), run) for run in [*runs, *extra]}
    if DOCS.is_file():
        out[DOCS] = with_block(DOCS.read_text(encoding="utf-8"), docs_block(runs))
    return out


def write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {shown_path(path)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a rendered file is out of date")
    p.add_argument("runs", nargs="*", type=Path,
                   help="further run folders outside benchmarks/results/ to render (their RESULTS.md only)")
    opts = p.parse_args(argv)
    files = outputs(opts.runs)
    if not opts.check:
        write(files)
        return 0
    stale = [shown_path(f) for f, text in files.items() if not f.is_file() or f.read_text(encoding="utf-8") != text]
    for name in stale:
        print(f"{name}: out of date; run python benchmarks/speed/render.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
