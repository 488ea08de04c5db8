"""
Run every benchmark and write what the docs show.

    python -m bench [--quick] [--out DIR]

Runs each C{bench/bench_*.py} module's C{main()} in turn, saves its output
to C{DIR/<name>.txt} (default C{bench/results}), and, when matplotlib is
installed (the C{bench} extra), plots the FileSender chunk-size sweep to
C{docs/_static/filesender_sweep.png}.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import os
import pkgutil
import sys
import time
from typing import List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def plotSweep(csvPath: str, pngPath: str) -> bool:
    """
    Plot MB/s against chunk size from the sweep's CSV; False if matplotlib
    is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    with open(csvPath) as f:
        rows = list(csv.DictReader(f))
    sizeKey, rateKey = list(rows[0])[:2]
    sizes = [int(r[sizeKey]) / 1024 for r in rows]
    rates = [float(r[rateKey]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sizes, rates, marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("chunk size (KiB)")
    ax.set_ylabel("MB/s over TCP loopback")
    ax.set_title("FileSender read-and-write path: throughput by chunk size")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(pngPath), exist_ok=True)
    fig.savefig(pngPath, dpi=100)
    return True


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    names = sorted(
        m.name for m in pkgutil.iter_modules([HERE]) if m.name.startswith("bench_")
    )
    started = time.monotonic()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        runs: List[List[str]] = [["--quick"] if args.quick else []]
        if name == "bench_filesender":
            runs.append(["--sweep", *runs[0]])
        for extra in runs:
            buffer = io.StringIO()
            began = time.monotonic()
            with contextlib.redirect_stdout(buffer):
                module.main(extra)
            label = name[len("bench_") :] + ("_sweep" if "--sweep" in extra else "")
            with open(os.path.join(args.out, f"{label}.txt"), "w") as f:
                f.write(buffer.getvalue())
            sys.stdout.write(f"== {label} ({time.monotonic() - began:.0f} s)\n")
            sys.stdout.write(buffer.getvalue())
    sweep = os.path.join(HERE, "results", "filesender_sweep.csv")
    png = os.path.join(ROOT, "docs", "_static", "filesender_sweep.png")
    if os.path.exists(sweep) and plotSweep(sweep, png):
        sys.stdout.write(f"plotted {png}\n")
    else:
        sys.stdout.write("no plot: install the bench extra (matplotlib)\n")
    sys.stdout.write(f"all benchmarks: {time.monotonic() - started:.0f} s\n")


if __name__ == "__main__":
    main()
