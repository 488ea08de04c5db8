"""
Benchmark how long a new client of C{twistd random-integers} waits for its
prompt while many slow readers load the server (issue 12, point 6 of "Why").

    python -m bench.bench_latency [--quick] [--pythonpath CHECKOUT]
        [--python EXE] [--name NAME] [--clients N] [--probes N]

One real C{twistd -n random-integers} process, run by C{--python} with the
checkout C{--pythonpath} (default: this one) first on its path, so that
twistd loads that checkout's dropin and code, serves in turn:

  1. one client that reads as fast as it can: integers per second, median
     of three runs, so that a fix for latency can be seen not to cost
     single-stream throughput;
  2. probes of the idle server: sequential connections, about 100 ms
     apart, each timed from connect to the whole prompt line;
  3. after a warm-up, the same probes while another process
     (C{bench.slow_readers}) holds 500 connections that each asked for
     10**7 integers and read at most 4 KiB every 50 ms.

Issue 12's goal under that load: p95 under 50 ms and max under 250 ms.  The
table is printed and written to C{bench/results/NAME.txt}, every probe to
C{NAME.csv}.  Every phase has a deadline, and the children are stopped and
reaped on every way out.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from bench.bench_random_integers import Child, Server, connect, ourServer, throughput
from bench.slow_readers import raiseFileLimit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

# Issue 12's goal for a new client's prompt under the load, in seconds.
GOAL_P95 = 0.050
GOAL_MAX = 0.250


class Probe(NamedTuple):
    at: float  # Seconds since the phase began.
    seconds: float  # From connect to the whole prompt; to the failure if not ok.
    ok: bool


def probe(
    port: int, count: int, spacing: float, timeout: float, phase: float
) -> List[Probe]:
    """
    Time C{count} new clients one after the other, C{spacing} seconds
    apart, each from connect to the whole prompt line and given up after
    C{timeout} seconds; start no probe once C{phase} seconds have passed.
    """
    began = time.perf_counter()
    probes = []
    for _ in range(count):
        start = time.perf_counter()
        if start - began >= phase:
            break
        try:
            connect(port, timeout=timeout, rcvbuf=None).close()
            ok = True
        except (OSError, RuntimeError):
            ok = False
        probes.append(Probe(start - began, time.perf_counter() - start, ok))
        time.sleep(spacing)
    return probes


def percentile(values: Sequence[float], fraction: float) -> float:
    """
    The nearest-rank percentile: a value that was observed.
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def servedCode(server: Server, checkout: str) -> str:
    """
    Which twisted_streaming the server imported, as its startup line says.

    @raise RuntimeError: If it is not the one in C{checkout}.
    """
    line = next(
        (o for o in server.output if o.startswith(b"serving twisted_streaming")), b""
    ).decode()
    path = line.rsplit(" from ", 1)[-1].strip()
    root = os.path.realpath(checkout) + os.sep
    if not os.path.realpath(path).startswith(root):
        raise RuntimeError(f"asked to serve {checkout}, but the server says {line!r}")
    try:
        commit = subprocess.run(
            ["git", "-C", checkout, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "not a git checkout"
    version = line.split()[2] if line else "?"
    return f"twisted_streaming {version} from {checkout} ({commit})"


class Loaded(NamedTuple):
    probes: List[Probe]
    serverCpu: float  # Cores used while the probes ran.
    readersCpu: float
    readers: Dict[str, float]  # The slow readers' closing report.


def underLoad(server: Server, args: argparse.Namespace) -> Loaded:
    """
    Probe the server while the slow readers load it, after a warm-up.
    """
    # Long enough for every phase; the readers stop of themselves after it.
    seconds = 60 + args.warmup + args.probe_seconds + args.probe_timeout
    load = Child(
        "slow readers",
        [
            sys.executable,
            "-m",
            "bench.slow_readers",
            str(server.port),
            f"--clients={args.clients}",
            f"--count={args.count}",
            f"--read={args.read}",
            f"--every={args.every}",
            f"--seconds={seconds}",
        ],
        cwd=ROOT,
    )
    try:
        load.expect(rb'"connected"', 60)
        load.expect(rb'"streaming"', 30)
        time.sleep(args.warmup)
        began = time.monotonic()
        serverCpu, loadCpu = server.cpu(), load.cpu()
        probes = probe(
            server.port,
            args.probes,
            args.spacing,
            args.probe_timeout,
            args.probe_seconds,
        )
        elapsed = time.monotonic() - began
        serverCpu = (server.cpu() - serverCpu) / elapsed
        loadCpu = (load.cpu() - loadCpu) / elapsed
        load.process.send_signal(signal.SIGTERM)
        done = json.loads(load.expect(rb'"done"', 30).string)
    finally:
        load.stop()
    return Loaded(probes, serverCpu, loadCpu, done)


def row(label: str, probes: List[Probe], cpu: Optional[float]) -> str:
    times = [p.seconds for p in probes]
    p95, top = percentile(times, 0.95), max(times)
    slow = sum(t > GOAL_P95 for t in times)
    failed = sum(not p.ok for p in probes)
    shown = f"{cpu:.0%}" if cpu is not None else "-"
    return (
        f"{label:<20}{len(probes):>7}{statistics.median(times) * 1e3:>11.1f}"
        f"{p95 * 1e3:>9.1f}{top * 1e3:>9.1f}{slow:>8}{failed:>8}"
        f"{p95 / GOAL_P95:>9.2f}x{top / GOAL_MAX:>9.2f}x{shown:>9}\n"
    )


def table(
    args: argparse.Namespace,
    code: str,
    stream: Tuple[float, float],
    idle: List[Probe],
    loaded: Loaded,
) -> str:
    rate, cpuPerMillion = stream
    readers = loaded.readers
    asked = args.clients * args.read / args.every
    got = readers["bytes"] / readers["seconds"]
    text = (
        "a new client's wait for its prompt from twistd random-integers\n"
        f"served: {code}\n"
        f"load: {args.clients} clients, each asked for {args.count:,} integers "
        f"and reads at most {args.read} bytes every {args.every * 1e3:.0f} ms; "
        f"{args.warmup:.0f} s warm-up; probes {args.spacing * 1e3:.0f} ms apart\n"
        f"{'':<20}{'probes':>7}{'median ms':>11}{'p95 ms':>9}{'max ms':>9}"
        f"{'>50 ms':>8}{'failed':>8}{'p95/goal':>10}{'max/goal':>10}"
        f"{'srv CPU':>9}\n"
        + row("idle server", idle, None)
        + row(f"{args.clients} slow readers", loaded.probes, loaded.serverCpu)
        + f"goal (issue 12): p95 < {GOAL_P95 * 1e3:.0f} ms, "
        f"max < {GOAL_MAX * 1e3:.0f} ms under load\n"
    )
    if len(loaded.probes) < args.probes:
        text += (
            f"only {len(loaded.probes)} of {args.probes} probes under load "
            f"began within {args.probe_seconds:.0f} s (--probe-seconds)\n"
        )
    return text + (
        f"single stream on the same server: {rate:,.0f} integers/s "
        f"(median of {args.runs} runs of {args.stream:,}), "
        f"{cpuPerMillion:.3f} server CPU s per million\n"
        f"the readers got {got / 1e6:.1f} MB/s of the {asked / 1e6:.1f} MB/s "
        f"they ask for, {readers['readablePerTick']:.0f} connections readable "
        f"per tick, {readers['closed']:.0f} closed; their ticks ran at most "
        f"{readers['maxLagSeconds'] * 1e3:.0f} ms late; their CPU "
        f"{loaded.readersCpu:.0%}\n"
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~20-second run")
    parser.add_argument(
        "--pythonpath",
        default=ROOT,
        help="the checkout to serve, put first on the server's PYTHONPATH "
        "(default: this one)",
    )
    parser.add_argument(
        "--python", default=sys.executable, help="the Python that runs twistd"
    )
    parser.add_argument(
        "--name", default="latency", help="results go to bench/results/NAME.*"
    )
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--count", type=int, default=10**7, help="per client")
    parser.add_argument("--read", type=int, default=4096, help="bytes per read")
    parser.add_argument("--every", type=float, default=0.05, help="seconds")
    parser.add_argument("--probes", type=int, help="under load (default 55)")
    parser.add_argument("--idle-probes", type=int, help="(default 20)")
    parser.add_argument("--spacing", type=float, default=0.1, help="seconds")
    parser.add_argument("--warmup", type=float, help="seconds (default 5)")
    parser.add_argument(
        "--probe-seconds",
        type=float,
        help="start no probe after this many seconds of a phase (default 35)",
    )
    parser.add_argument(
        "--probe-timeout", type=float, default=10, help="seconds, per probe"
    )
    parser.add_argument(
        "--stream", type=int, help="integers per single-stream run (default 2*10**7)"
    )
    parser.add_argument("--runs", type=int, default=3, help="single-stream runs")
    args = parser.parse_args(argv)
    # What --quick changes, unless given.
    for name, normal, quick in (
        ("stream", 2 * 10**7, 5 * 10**6),
        ("probes", 55, 20),
        ("idle_probes", 20, 10),
        ("warmup", 5.0, 2.0),
        ("probe_seconds", 35.0, 10.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    raiseFileLimit(args.clients + 128)
    # Stop the children on SIGTERM too, not only on errors and ^C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))

    began = time.monotonic()
    server = ourServer(args.python, args.pythonpath)
    try:
        code = servedCode(server, args.pythonpath)
        stream = throughput(server, args.stream, args.runs, timeout=30)
        idle = probe(
            server.port,
            args.idle_probes,
            args.spacing,
            args.probe_timeout,
            args.probe_seconds,
        )
        loaded = underLoad(server, args)
    finally:
        server.stop()

    text = table(args, code, stream, idle, loaded)
    text += f"whole run: {time.monotonic() - began:.0f} s\n"
    sys.stdout.write(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{args.name}.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, f"{args.name}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phase", "at_s", "ms", "ok"])
        for phase, sample in (("idle", idle), ("loaded", loaded.probes)):
            for p in sample:
                writer.writerow([phase, f"{p.at:.3f}", f"{p.seconds * 1e3:.2f}", p.ok])


if __name__ == "__main__":
    main()
