"""
Run every benchmark and write what the docs show.

    python -m bench [--quick]

Runs each C{bench/bench_*.py} in a process of its own (a reactor runs only
once per process) and saves its printed tables to C{bench/results/<name>.txt}
beside the CSV series the benchmarks write there.  When matplotlib is
installed (the C{bench} extra) it then plots those series to
C{docs/_static/*.png}, which the performance page shows.
"""

from __future__ import annotations

import argparse
import csv
import os
import pkgutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
STATIC = os.path.join(ROOT, "docs", "_static")


def _rows(name: str) -> List[Dict[str, str]]:
    with open(os.path.join(RESULTS, name)) as f:
        return list(csv.DictReader(f))


def plotSweep(ax: Any) -> None:
    """
    Throughput of our read-and-write path against chunk size.
    """
    rows = _rows("filesender_sweep.csv")
    sizes = [int(r["chunk_bytes"]) / 1024 for r in rows]
    ax.plot(sizes, [float(r["mb_per_s"]) for r in rows], marker="o", label="TCP")
    if "tls_mb_per_s" in rows[0]:
        tls = [float(r["tls_mb_per_s"]) for r in rows]
        ax.plot(sizes, tls, marker="s", label="TLS")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("chunk size (KiB)")
    ax.set_ylabel("MB/s over loopback")
    ax.set_title("FileSender read-and-write path: throughput by chunk size")
    ax.legend(fontsize="small")


def plotMemory(ax: Any) -> None:
    """
    The sender's RSS over time while a slow reader takes a large file.
    """
    series: Dict[str, List[Dict[str, str]]] = {}
    for row in _rows("filesender_memory.csv"):
        series.setdefault(row["sender"], []).append(row)
    for sender, rows in series.items():
        ax.plot(
            [float(r["seconds"]) for r in rows],
            [float(r["rss_growth_mib"]) for r in rows],
            label=sender,
        )
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("sender RSS growth (MiB)")
    ax.set_title("Sending to a reader that takes 256 MB/s")
    ax.legend(fontsize="small")


def plotProxy(ax: Any) -> None:
    """
    One-way throughput through each proxy, and direct.
    """
    rows = _rows("proxy.csv")
    names = [r["route"] for r in rows]
    ax.barh(names, [float(r["mb_per_s"]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("MB/s, one connection, TCP loopback")
    ax.set_title("Proxy throughput")


def plotStages(ax: Any) -> None:
    """
    Throughput through identity stages, as a ratio to a direct connection,
    for each chunk size.
    """
    rows = _rows("stages.csv")
    chunks = sorted({int(r["chunk_bytes"]) for r in rows}, reverse=True)
    routes = list(dict.fromkeys(r["route"] for r in rows))
    width = 0.8 / len(chunks)
    for i, chunk in enumerate(chunks):
        ratios = {
            r["route"]: float(r["ratio_to_direct"])
            for r in rows
            if int(r["chunk_bytes"]) == chunk
        }
        ax.bar(
            [j + i * width for j in range(len(routes))],
            [ratios.get(route, 0.0) for route in routes],
            width,
            label=f"{chunk // 1024} KiB chunks",
        )
    ax.set_xticks([j + width * (len(chunks) - 1) / 2 for j in range(len(routes))])
    ax.set_xticklabels(routes)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("MB/s as a ratio to direct")
    ax.set_title("Pipeline overhead: identity stages over TCP loopback")
    ax.legend(fontsize="small")


PLOTS: Dict[str, Callable[[Any], None]] = {
    "filesender_sweep.png": plotSweep,
    "filesender_memory.png": plotMemory,
    "proxy_throughput.png": plotProxy,
    "stages_overhead.png": plotStages,
}


def plotAll() -> List[str]:
    """
    Draw every plot whose data exists; return the paths written, or raise
    L{ImportError} if matplotlib is missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(STATIC, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        fig, ax = plt.subplots(figsize=(7, 3.8))
        try:
            plot(ax)
        except FileNotFoundError:
            plt.close(fig)
            continue
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = os.path.join(STATIC, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--plot-only", action="store_true", help="no runs")
    args = parser.parse_args(argv)
    os.makedirs(RESULTS, exist_ok=True)
    names = sorted(
        m.name for m in pkgutil.iter_modules([HERE]) if m.name.startswith("bench_")
    )
    started = time.monotonic()
    quick = ["--quick"] if args.quick else []
    for name in [] if args.plot_only else names:
        runs: List[List[str]] = [quick]
        if name == "bench_filesender":
            runs += [["--sweep", *quick], ["--memory", *quick]]
        if name == "bench_short_connections":
            runs += [["--profile", *quick]]
        for extra in runs:
            began = time.monotonic()
            output = subprocess.run(
                [sys.executable, "-m", f"bench.{name}", *extra],
                cwd=ROOT,
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            ).stdout
            label = name[len("bench_") :] + "".join(
                "_" + a.lstrip("-") for a in extra if a != "--quick"
            )
            with open(os.path.join(RESULTS, f"{label}.txt"), "w") as f:
                f.write(output)
            sys.stdout.write(f"== {label} ({time.monotonic() - began:.0f} s)\n")
            sys.stdout.write(output)
    try:
        for path in plotAll():
            sys.stdout.write(f"plotted {path}\n")
    except ImportError:
        sys.stdout.write("no plots: install the bench extra (matplotlib)\n")
    sys.stdout.write(f"all benchmarks: {time.monotonic() - started:.0f} s\n")


if __name__ == "__main__":
    main()
