"""
System calls and reactor wakeups per GiB through the proxy's splice path
and through HAProxy, one connection, in one run.

    python -m bench.bench_syscalls [--quick] [--mib N]

The same processes as C{bench_proxy} (a sink that reads and counts, the
proxy, this process sending), with C{strace -c -f} attached to the proxy
while N MiB (1024; 256 with C{--quick}) go through: the count of each
system call, per GiB, side by side; C{epoll_wait} is the event loop's
wakeups (both use it).  HAProxy splicing always, with C{splice-auto}, and
never.  Then, if C{perf} works here, C{perf
stat} attached the same way counts system calls (the C{raw_syscalls}
tracepoint), context switches and CPU time per GiB without the tracer's
cost.  strace slows the traced process down: the counts are the result,
not the time.  strace and HAProxy are installed with apt-get when missing
and this runs as root; a program still missing is left out, with a
message.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from bench import peers
from bench.bench_proxy import OURS, SINK, Child, python, send

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: perf events, and what the table calls them.
PERF_EVENTS = {
    "raw_syscalls:sys_enter": "system calls",
    "context-switches": "context switches",
    "task-clock": "CPU ms",
}


def attached(
    command: List[str], output: str, transfer: Callable[[], None]
) -> Optional[str]:
    """
    Run C{command} (a tracer attached to a process, writing to C{output})
    around C{transfer}; its output, or L{None} if it failed to start.
    """
    tracer = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    # Attaching takes a moment and says nothing on standard output: a
    # fixed wait, short against the transfer.
    time.sleep(1.0)
    if tracer.poll() is not None:
        return None
    try:
        transfer()
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
    with open(output) as f:
        return f.read()


def parseStrace(text: str) -> Dict[str, int]:
    """
    The calls column of C{strace -c}'s summary, by system call.
    """
    counts: Dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) in (5, 6) and parts[3].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def parsePerf(text: str) -> Dict[str, float]:
    """
    C{perf stat -x,}'s counts, by event.
    """
    counts: Dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in PERF_EVENTS:
            try:
                counts[fields[2]] = float(fields[0])
            except ValueError:
                pass
    return counts


def measure(
    sink: Child, proxy: Tuple[int, int], size: int, strace: str, perf: Optional[str]
) -> Tuple[Dict[str, int], Dict[str, float]]:
    """
    System calls by name under strace, and perf's counts, for C{size} bytes
    through C{proxy} (its port and process id).
    """
    port, pid = proxy

    def transfer() -> None:
        send(port, size)
        total = int(sink.stdout.readline().split()[0])
        if total != size:
            raise RuntimeError(f"sent {size}, sink got {total}")

    directory = tempfile.mkdtemp(prefix="bench-syscalls-")
    try:
        out = os.path.join(directory, "strace")
        text = attached([strace, "-c", "-f", "-p", str(pid), "-o", out], out, transfer)
        if text is None:
            raise RuntimeError("strace could not attach")
        counts = parseStrace(text)
        perfCounts: Dict[str, float] = {}
        if perf is not None:
            out = os.path.join(directory, "perf")
            events = ",".join(PERF_EVENTS)
            command = [perf, "stat", "-x,", "-e", events, "-p", str(pid), "-o", out]
            perfText = attached(command, out, transfer)
            perfCounts = parsePerf(perfText or "")
        return counts, perfCounts
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB")
    parser.add_argument("--mib", type=int, default=None, help="MiB per transfer")
    args = parser.parse_args(argv)
    size = (args.mib or (256 if args.quick else 1024)) * 2**20
    perGiB = 2**30 / size
    out = sys.stdout.write

    found = peers.ensure("strace", "haproxy")
    strace = found["strace"]
    if strace is None:
        out("strace missing: no system call counts\n")
        return
    perf = peers.which("perf")
    if perf is None:
        out("perf: not installed, no perf stat counts\n")

    sink = python(SINK, "read")
    results: Dict[str, Tuple[Dict[str, int], Dict[str, float]]] = {}
    servers: List[peers.Server] = []
    ours = python(OURS, sink.port, "splice")
    try:
        proxies: Dict[str, Tuple[int, int]] = {
            "ours, splice": (ours.port, ours.process.pid)
        }
        if found["haproxy"]:
            for name, mode in peers.HAPROXY_ROUTES.items():
                server = peers.haproxy(sink.port, mode)
                servers.append(server)
                proxies[name] = (server.port, server.process.pid)
        else:
            out("haproxy: not installed, left out\n")
        for name, proxy in proxies.items():
            results[name] = measure(sink, proxy, size, strace, perf)
            if perf is not None and not results[name][1]:
                out(f"perf stat counted nothing for {name}: left out\n")
                perf = None
    finally:
        ours.stop()
        for server in servers:
            server.stop()
        sink.stop()

    names = list(results)
    calls = sorted(
        {c for counts, _ in results.values() for c in counts},
        key=lambda c: -max(results[n][0].get(c, 0) for n in names),
    )
    out(f"system calls per GiB, one connection, {size // 2**20} MiB under strace -c\n")
    out(f"{'call':<16}" + "".join(f"{n:>22}" for n in names) + "\n")
    rows = []
    for call in calls:
        values = [results[n][0].get(call, 0) * perGiB for n in names]
        if max(values) < 1:
            continue
        rows.append([call, *values])
        out(f"{call:<16}" + "".join(f"{v:>22.0f}" for v in values) + "\n")
    totals = [sum(results[n][0].values()) * perGiB for n in names]
    rows.append(["total", *totals])
    out(f"{'total':<16}" + "".join(f"{v:>22.0f}" for v in totals) + "\n")
    if perf is not None:
        out("perf stat, per GiB, without strace\n")
        for event, label in PERF_EVENTS.items():
            values = [results[n][1].get(event, 0.0) * perGiB for n in names]
            rows.append([f"perf {label}", *values])
            out(f"{label:<16}" + "".join(f"{v:>22.0f}" for v in values) + "\n")
    out("epoll_wait: the event loop's wakeups\n")
    with open(os.path.join(RESULTS, "syscalls.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["call", *names])
        for row in rows:
            writer.writerow([row[0], *(f"{v:.0f}" for v in row[1:])])


if __name__ == "__main__":
    main()
