"""
Benchmark several C{twistd stream-proxy --reuse-port} processes on one port
against 200 concurrent clients: connections per second (short requests,
no keep-alive) and MB/s (1 MiB responses), for 1, 2 and 4 processes, beside
HAProxy with as many threads (the best peer) and nginx directly (the raw
limit).

    python -m bench.bench_reuseport [--quick]

ApacheBench (C{ab}) is the client and nginx the upstream, both C programs,
so that the proxy is what is measured; the bench installs them (and
HAProxy) with apt-get when it runs as root, and says so when it cannot.
Each proxy process logs every connection, as in production (to standard
output, into a file); the share of connections each process served is
counted from those logs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from bench.peers import Server, ensure, freePort, stopProcess, which

CLIENTS = 200


def nginx(directory: str) -> Server:
    """
    nginx serving C{/1k} and C{/1m} (1 KiB, 1 MiB) on a free port, with two
    workers, so that it is not what limits the proxies.
    """
    port = freePort()
    root = os.path.join(directory, "www")
    os.makedirs(root)
    # nginx's workers run as another user.
    os.chmod(directory, 0o755)
    os.chmod(root, 0o755)
    for name, size in (("1k", 1024), ("1m", 1 << 20)):
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"x" * size)
    config = os.path.join(directory, "nginx.conf")
    with open(config, "w") as f:
        f.write(
            f"daemon off;\nworker_processes 2;\npid {directory}/nginx.pid;\n"
            f"error_log {directory}/nginx.err;\n"
            "events { worker_connections 4096; }\n"
            "http { access_log off; keepalive_timeout 0;\n"
            f"  server {{ listen 127.0.0.1:{port} backlog=4096; root {root}; }} }}\n"
        )
    return Server([str(which("nginx")), "-c", config, "-p", directory], port, directory)


def haproxy(threads: int, upstream: int) -> Server:
    """
    HAProxy in TCP mode with C{threads} threads, forwarding to C{upstream}.
    """
    directory = tempfile.mkdtemp(prefix="bench-haproxy-")
    port = freePort()
    config = os.path.join(directory, "haproxy.cfg")
    with open(config, "w") as f:
        f.write(
            f"global\n    nbthread {threads}\n    maxconn 4000\n"
            "defaults\n    mode tcp\n    timeout connect 5s\n"
            "    timeout client 30s\n    timeout server 30s\n"
            f"listen p\n    bind 127.0.0.1:{port}\n"
            f"    server s 127.0.0.1:{upstream}\n"
        )
    return Server([str(which("haproxy")), "-db", "-f", config], port, directory)


def proxies(
    directory: str, count: int, upstream: int
) -> Tuple[List[subprocess.Popen[bytes]], List[str], int]:
    """
    C{count} C{twistd stream-proxy --reuse-port} processes on one free port,
    each logging to a file of its own.
    """
    port = freePort()
    processes, logs = [], []
    for number in range(count):
        log = os.path.join(directory, f"proxy{count}-{number}.log")
        args = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        # To standard output, as under systemd: a --logfile rotates at 1 MB.
        args += ["-n", "--pidfile=", "--logfile=-", "stream-proxy"]
        args += ["--listen", f"tcp:{port}:interface=127.0.0.1", "--reuse-port"]
        args += ["--connect", f"tcp:127.0.0.1:{upstream}"]
        with open(log, "wb") as output:
            process = subprocess.Popen(args, stdout=output, stderr=output)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(log) and b"starting on" in open(log, "rb").read():
                break
            if process.poll() is not None:
                raise RuntimeError(f"twistd exited: {open(log).read()}")
            time.sleep(0.05)
        processes.append(process)
        logs.append(log)
    return processes, logs, port


def ab(port: int, path: str, requests: int) -> Tuple[float, float]:
    """
    ApacheBench, C{CLIENTS} at a time, no keep-alive: requests per second
    and MB/s received.
    """
    out = subprocess.run(
        ["ab", "-q", "-r", "-n", str(requests), "-c", str(CLIENTS),
         f"http://127.0.0.1:{port}/{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    if failed or "Non-2xx" in out:
        raise RuntimeError(f"ab: failed requests\n{out}")
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    kb = float(re.search(r"Transfer rate:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, kb * 1024 / 1e6


def measure(port: int, quick: bool) -> Tuple[float, float]:
    """
    Connections per second with 1 KiB responses, MB/s with 1 MiB ones.
    """
    rate, _ = ab(port, "1k", 4000 if quick else 20000)
    _, mbps = ab(port, "1m", 400 if quick else 2000)
    return rate, mbps


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        stopProcess(process)


def shares(logs: Sequence[str]) -> List[int]:
    """
    Connections each proxy process logged.
    """
    return [open(log, "rb").read().count(b"Proxied ") for log in logs]


def table(rows: List[Tuple[str, float, float, str]], base: Dict[str, float]) -> str:
    lines = [
        f"{'route':<28} {'conn/s':>8} {'x1 proc':>8} {'MB/s':>8} {'x1 proc':>8}"
        "  connections per process"
    ]
    for name, rate, mbps, spread in rows:
        lines.append(
            f"{name:<28} {rate:8.0f} {rate / base['rate']:8.2f} {mbps:8.0f} "
            f"{mbps / base['mbps']:8.2f}  {spread}"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    args = parser.parse_args(argv)
    found = ensure("ab", "nginx", "haproxy")
    if not (found["ab"] and found["nginx"]):
        sys.stdout.write("no reuse-port benchmark without ab and nginx\n")
        return
    withHAProxy = found["haproxy"] is not None
    directory = tempfile.mkdtemp(prefix="bench_reuseport.")
    upstream = nginx(directory)
    upstreamPort = upstream.port
    rows: List[Tuple[str, float, float, str]] = []
    peers: List[Tuple[str, float, float, str]] = []
    try:
        rate, mbps = measure(upstreamPort, args.quick)
        raw = ("nginx directly (the limit)", rate, mbps, "")
        for count in (1, 2, 4):
            processes, logs, port = proxies(directory, count, upstreamPort)
            try:
                rate, mbps = measure(port, args.quick)
            finally:
                stop(processes)
            spread = " / ".join(str(n) for n in shares(logs))
            rows.append((f"stream-proxy x{count} processes", rate, mbps, spread))
            if withHAProxy:
                balancer = haproxy(count, upstreamPort)
                try:
                    rate, mbps = measure(balancer.port, args.quick)
                finally:
                    balancer.stop()
                peers.append((f"HAProxy, {count} threads", rate, mbps, ""))
    finally:
        upstream.stop()
    base = {"rate": rows[0][1], "mbps": rows[0][2]}
    sys.stdout.write(
        f"{CLIENTS} concurrent ApacheBench clients, no keep-alive, nginx "
        f"upstream on loopback; {os.cpu_count()} CPUs\n"
        "conn/s: 1 KiB responses; MB/s: 1 MiB responses; x1 proc: ratio to "
        "one stream-proxy process\n\n"
    )
    sys.stdout.write(table(rows + peers + [raw], base) + "\n")
    if peers:
        sys.stdout.write("\nstream-proxy processes against HAProxy threads:\n")
        for ours, theirs in zip(rows, peers):
            sys.stdout.write(
                f"  {ours[0]}: {ours[1] / theirs[1]:.2f}x HAProxy's conn/s, "
                f"{ours[2] / theirs[2]:.2f}x its MB/s\n"
            )


if __name__ == "__main__":
    main()
