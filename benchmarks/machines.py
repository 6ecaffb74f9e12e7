"""The machine a benchmark runs on, and where its results go: benchmarks/results/<machine>/.

The scripts under speed/, learning/ and resources/ put this folder on sys.path and import it.
A machine is named by whoever runs the benchmark (--machine NAME, e.g. zen1-2core), never
guessed: two CPUs that lscpu names alike (AMD EPYC, 2 cores) can differ twofold in speed, and a
guessed name would write one machine's numbers over another's.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LSCPU_KEYS = ("Vendor ID", "Model name", "CPU family", "Model", "L2 cache", "L3 cache")


def parse_lscpu(text: str) -> dict:
    """The LSCPU_KEYS fields of lscpu's "Key: value" output."""
    out = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() in LSCPU_KEYS:
            out.setdefault(key.strip(), value.strip())
    return out


def describe() -> dict:
    """The CPU as lscpu names it (model name, family, model, caches), its cores and vector ISA."""
    try:
        lscpu = parse_lscpu(subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout)
    except (OSError, subprocess.SubprocessError):
        lscpu = {}
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    return {"cpu": lscpu.get("Model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "isa": [x for x in ("avx2", "fma", "avx512f") if x in flags],
            "platform": platform.platform(), "lscpu": lscpu}


def known() -> list[str]:
    """The machines that have results: the folders under benchmarks/results/."""
    return sorted(p.name for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.is_dir() else []


def missing_machine() -> str:
    """The error text for a script that was given neither --machine nor --out."""
    return ("say where the results go: --machine NAME (its folder under benchmarks/results/; "
            f"known: {', '.join(known()) or 'none yet'}) or --out DIR")
