"""
Benchmark the proxy against HAProxy, Twisted's portforward, socat and a
direct connection, in one run.

    python -m bench.bench_proxy [--quick] [--mib N]

Every party is its own process: a sink that reads and counts, the proxy, and
this process, which sends.  For each route: one-way MB/s (measured by the
sink from accept to end of stream), the proxy's CPU seconds per GiB and its
peak RSS; then connections per second for short connections; then the
proxy's memory growth while the sink never reads.  HAProxy (one process of
one thread: splicing always, with C{option splice-auto}, and never) and socat are installed
with apt-get when missing and this runs as root; a program still missing is
left out, with a message.  Ratios are to portforward and to HAProxy
splicing.  (HAProxy 2.6's splice-auto was seen to splice little of a 1
GiB transfer here: about 62,000 recv and send calls a GiB against 1,900
splice calls; see C{bench_syscalls}.)
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import psutil

from bench import peers

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

SINK = r"""
import socket, sys, time
stall = sys.argv[1] == "stall"
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(1024)
print(server.getsockname()[1], flush=True)
buf = bytearray(1 << 20)
held = []
while True:
    conn, _ = server.accept()
    if stall:
        held.append(conn)
        continue
    start = time.perf_counter()
    total = 0
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        total += n
    print(total, time.perf_counter() - start, flush=True)
    conn.close()
"""

OURS = r"""
import sys
from twisted.internet import reactor
from twisted_streaming import ProxyFactory
factory = ProxyFactory("127.0.0.1", int(sys.argv[1]), zeroCopy=sys.argv[2] == "splice")
port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=1024)
print(port.getHost().port, flush=True)
reactor.run()
"""

PORTFORWARD = r"""
import sys
from twisted.internet import reactor
from twisted.protocols.portforward import ProxyFactory
port = reactor.listenTCP(0, ProxyFactory("127.0.0.1", int(sys.argv[1])),
                         interface="127.0.0.1", backlog=1024)
print(port.getHost().port, flush=True)
reactor.run()
"""


class Child:
    """
    A child process that prints its port first.
    """

    def __init__(self, args: List[str]) -> None:
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.stdout = self.process.stdout
        self.port = int(self.stdout.readline())
        self.ps = psutil.Process(self.process.pid)

    def cpu(self) -> float:
        # Children that have exited and been reaped count too: socat forks
        # a process per connection.
        times = self.ps.cpu_times()
        return float(
            times.user + times.system + times.children_user + times.children_system
        )

    def peakRss(self) -> int:
        return peers.peakRss(self.process.pid)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def python(code: str, *args: object) -> Child:
    return Child([sys.executable, "-c", code, *map(str, args)])


def socat(upstream: int) -> peers.Server:
    """
    socat forwarding to C{upstream}, a process forked per connection.
    """
    port = peers.freePort()
    command = peers.which("socat")
    assert command is not None
    return peers.Server(
        [
            command,
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=1024",
            f"TCP:127.0.0.1:{upstream}",
        ],
        port,
        tempfile.mkdtemp(prefix="bench-socat-"),
    )


def send(port: int, size: int) -> None:
    chunk = b"x" * (1 << 20)
    sock = socket.create_connection(("127.0.0.1", port))
    left = size
    while left > 0:
        sock.sendall(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
    sock.close()


def oneWay(
    sink: Child, port: int, size: int, proxy: Optional[Union[Child, peers.Server]]
) -> Tuple[float, float]:
    """
    MB/s as the sink saw it, and the proxy's CPU seconds per GiB.
    """
    before = proxy.cpu() if proxy else 0.0
    send(port, size)
    total, seconds = sink.stdout.readline().split()
    if int(total) != size:
        raise RuntimeError(f"sent {size}, sink got {total}")
    cpu = 0.0
    if proxy:
        # socat forks a child per connection: its CPU is counted once the
        # parent has reaped it.
        deadline = time.monotonic() + 5
        while proxy.ps.children() and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu = proxy.cpu() - before
    return size / float(seconds) / 1e6, cpu / (size / 2**30)


def connectionsPerSecond(sink: Child, port: int, seconds: float) -> float:
    count = 0
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < deadline and count < 100_000:
        send(port, 100)
        sink.stdout.readline()
        count += 1
    return count / (time.monotonic() - start)


def stalledGrowth(proxy: str, mib: int) -> Tuple[float, float]:
    """
    Proxy RSS growth (MiB) and MiB accepted from the sender while the sink
    never reads; the sender stops when the proxy stops taking data.
    """
    sink = python(SINK, "stall")
    if proxy == "portforward":
        child = python(PORTFORWARD, sink.port)
    else:
        child = python(OURS, sink.port, proxy.split(", ")[1])
    try:
        base = child.ps.memory_info().rss
        sock = socket.create_connection(("127.0.0.1", child.port))
        sock.settimeout(1.0)
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < mib * 2**20:
                sent += sock.send(chunk)
        except (TimeoutError, socket.timeout):
            pass
        grown = (child.ps.memory_info().rss - base) / 2**20
        sock.close()
        return grown, sent / 2**20
    finally:
        child.stop()
        sink.stop()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run")
    parser.add_argument("--mib", type=int, default=None, help="MiB per transfer")
    args = parser.parse_args(argv)
    size = (args.mib or (128 if args.quick else 1024)) * 2**20
    runs = 1 if args.quick else 3
    out = sys.stdout.write

    sink = python(SINK, "read")
    found = peers.ensure("haproxy", "socat")
    routes: Dict[str, Optional[Union[Child, peers.Server]]] = {"direct": None}
    results: Dict[str, Tuple[float, float, int, float]] = {}
    try:
        routes["ours, splice"] = python(OURS, sink.port, "splice")
        routes["ours, ordinary"] = python(OURS, sink.port, "ordinary")
        routes["portforward"] = python(PORTFORWARD, sink.port)
        if found["socat"]:
            routes["socat"] = socat(sink.port)
        else:
            out("socat: not installed, left out\n")
        if found["haproxy"]:
            for name, mode in peers.HAPROXY_ROUTES.items():
                routes[name] = peers.haproxy(sink.port, mode)
        else:
            out("haproxy: not installed, left out\n")
        for name, proxy in routes.items():
            port = proxy.port if proxy else sink.port
            samples = [oneWay(sink, port, size, proxy) for _ in range(runs)]
            rate = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            cps = connectionsPerSecond(sink, port, 1.0 if args.quick else 3.0)
            peak = proxy.peakRss() if proxy else 0
            results[name] = (rate, cpu, peak, cps)
    finally:
        for proxy in routes.values():
            if proxy:
                proxy.stop()
        sink.stop()

    out(f"one-way {size // 2**20} MiB over TCP loopback, median of {runs}\n")
    out(
        f"{'route':<22}{'MB/s':>7}{'x pf':>6}{'x hap':>7}{'CPU s/GiB':>11}"
        f"{'x pf':>6}{'x hap':>7}{'peak RSS':>10}{'conn/s':>8}\n"
    )
    pf = results["portforward"]
    hap = results.get("haproxy, splice")
    for name, (rate, cpu, peak, cps) in results.items():
        proxied = name != "direct"
        xhap = f"{rate / hap[0]:.2f}" if hap else "-"
        xcpu = f"{cpu / pf[1]:.2f}" if proxied else "-"
        xhapCpu = f"{cpu / hap[1]:.2f}" if hap and proxied else "-"
        peakText = f"{peak / 2**20:.1f}M" if peak else "-"
        out(
            f"{name:<22}{rate:>7.0f}{rate / pf[0]:>6.2f}{xhap:>7}"
            f"{cpu:>11.2f}{xcpu:>6}{xhapCpu:>7}{peakText:>10}{cps:>8.0f}\n"
        )
    out(
        "x hap: as a ratio to HAProxy splicing (splice-request and -response; "
        "one process, one thread)\n"
    )
    with open(os.path.join(RESULTS, "proxy.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["route", "mb_per_s", "cpu_s_per_gib", "conn_per_s"])
        for name, (rate, cpu, _, cps) in results.items():
            writer.writerow([name, f"{rate:.0f}", f"{cpu:.3f}", f"{cps:.0f}"])
    for kind in ("ours, splice", "ours, ordinary", "portforward"):
        grown, sent = stalledGrowth(kind, 64 if args.quick else 256)
        out(
            f"sink never reads, {kind}: proxy RSS grew {grown:.1f} MiB; "
            f"it accepted {sent:.1f} MiB before the sender blocked\n"
        )


if __name__ == "__main__":
    main()
