"""
Short connections through each proxy: ApacheBench fetching a 1 KiB file
from nginx without keep-alive, through C{twistd stream-proxy}, C{twistd
portforward} and HAProxy, and directly, in one run.

    python -m bench.bench_short_connections [--quick] [--requests N]
        [--concurrency N] [--runs N] [--profile]

Each party is a process of its own: nginx (one process), the proxy (one
process: twistd logging to a file, as a service would; HAProxy with one
thread and C{option splice-auto}) and C{ab -n 4000 -c 50}.  For each route:
requests per second as ab reports them and the proxy's CPU microseconds
per request, the median of the runs, the routes taken in turn in each run
so that a busy moment of the machine is shared out.  nginx, ab and HAProxy
are installed with apt-get when missing and this runs as root; a route
whose program is missing is left out, with a message.

With C{--profile}, only C{twistd stream-proxy} runs, under cProfile
(C{twistd --profile --profiler cprofile --savestats}), for one ab run; the
profile's top entries, by own time and by cumulative time, are printed.
"""

from __future__ import annotations

import argparse
import csv
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from bench import peers

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: The file fetched, 1 KiB.
FILE = "file1k"


def ab(port: int, requests: int, concurrency: int) -> Tuple[float, int]:
    """
    Requests per second, and failed requests, of one ApacheBench run.
    """
    command = peers.which("ab")
    assert command is not None
    url = f"http://127.0.0.1:{port}/{FILE}"
    output = subprocess.run(
        [command, "-q", "-n", str(requests), "-c", str(concurrency), url],
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ).stdout
    rate = re.search(r"Requests per second:\s+([\d.]+)", output)
    failed = re.search(r"Failed requests:\s+(\d+)", output)
    complete = re.search(r"Complete requests:\s+(\d+)", output)
    if rate is None or failed is None or complete is None:
        raise RuntimeError(f"ab said:\n{output}")
    if int(complete.group(1)) != requests:
        raise RuntimeError(f"ab completed {complete.group(1)} of {requests}")
    return float(rate.group(1)), int(failed.group(1))


def streamProxy(upstream: int, *twistdOptions: str) -> peers.Server:
    """
    C{twistd stream-proxy} forwarding to C{upstream}.
    """
    port = peers.freePort()
    return peers.twistd(
        [
            *twistdOptions,
            "stream-proxy",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1:backlog=1024",
            "--connect",
            f"tcp:127.0.0.1:{upstream}",
        ],
        port,
    )


def profile(upstream: int, requests: int, concurrency: int) -> None:
    """
    Print the top of C{twistd stream-proxy}'s profile under one ab run.
    """
    handle, path = tempfile.mkstemp(prefix="bench-profile-")
    os.close(handle)
    try:
        server = streamProxy(
            upstream, "--profile", path, "--profiler", "cprofile", "--savestats"
        )
        try:
            rate, _ = ab(server.port, requests, concurrency)
        finally:
            # On SIGTERM twistd stops its reactor and writes the profile.
            server.stop()
        sys.stdout.write(f"ab -n {requests} -c {concurrency}: {rate:.0f} requests/s\n")
        stats = pstats.Stats(path, stream=sys.stdout)
        stats.strip_dirs().sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(30)
    finally:
        os.unlink(path)


def startRoutes(upstream: int) -> Dict[str, Optional[peers.Server]]:
    """
    Every route to nginx: direct, then each proxy whose program is here.
    """
    routes: Dict[str, Optional[peers.Server]] = {"direct (nginx)": None}
    routes["twistd stream-proxy"] = streamProxy(upstream)
    port = peers.freePort()
    routes["twistd portforward"] = peers.twistd(
        [
            "portforward",
            "--port",
            f"tcp:{port}:interface=127.0.0.1:backlog=1024",
            "--host",
            "127.0.0.1",
            "--dest_port",
            str(upstream),
        ],
        port,
    )
    if peers.which("haproxy"):
        routes["haproxy, splice-auto"] = peers.haproxy(upstream, "auto")
    else:
        sys.stdout.write("haproxy: not installed, left out\n")
    return routes


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short run")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="profile ours")
    args = parser.parse_args(argv)
    requests = args.requests or (1000 if args.quick else 4000)
    runs = args.runs or (1 if args.quick else 3)
    out = sys.stdout.write

    found = peers.ensure("nginx", "ab", "haproxy")
    if not (found["nginx"] and found["ab"]):
        out("nginx or ab missing: no short-connection benchmark (run as root)\n")
        return
    upstream = peers.nginx({FILE: os.urandom(1024)})
    if args.profile:
        try:
            profile(upstream.port, requests, args.concurrency)
        finally:
            upstream.stop()
        return
    routes: Dict[str, Optional[peers.Server]] = {}
    samples: Dict[str, List[Tuple[float, float, int]]] = {}
    try:
        routes = startRoutes(upstream.port)
        for _ in range(runs):
            for name, server in routes.items():
                port = server.port if server else upstream.port
                before = (server or upstream).cpu()
                rate, failed = ab(port, requests, args.concurrency)
                cpu = (server or upstream).cpu() - before
                samples.setdefault(name, []).append((rate, cpu / requests, failed))
    finally:
        for server in routes.values():
            if server is not None:
                server.stop()
        upstream.stop()

    results = {
        name: (
            statistics.median(s[0] for s in rows),
            statistics.median(s[1] for s in rows),
            sum(s[2] for s in rows),
        )
        for name, rows in samples.items()
    }
    out(
        f"ab -n {requests} -c {args.concurrency}, a 1 KiB file from nginx "
        f"without keep-alive, median of {runs}\n"
    )
    out(
        f"{'route':<22}{'req/s':>8}{'x pf':>7}{'x hap':>7}"
        f"{'CPU us/req':>12}{'x pf':>7}{'failed':>8}\n"
    )
    pf = results["twistd portforward"]
    hap = results.get("haproxy, splice-auto")
    for name, (rate, cpu, failed) in results.items():
        xhap = f"{rate / hap[0]:.2f}" if hap else "-"
        out(
            f"{name:<22}{rate:>8.0f}{rate / pf[0]:>7.2f}{xhap:>7}"
            f"{cpu * 1e6:>12.0f}{cpu / pf[1]:>7.2f}{failed:>8}\n"
        )
    out("CPU us/req: the proxy's (direct: nginx's) CPU time per request\n")
    with open(os.path.join(RESULTS, "short_connections.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["route", "requests_per_s", "cpu_us_per_request"])
        for name, (rate, cpu, _) in results.items():
            writer.writerow([name, f"{rate:.0f}", f"{cpu * 1e6:.0f}"])


if __name__ == "__main__":
    main()
