"""
Benchmark the random-integer server against the seed's, in one run.

    python -m bench.bench_random_integers [--quick]

For each server (the seed's, ported faithfully to Python 3, and ours under a
real C{twistd -n random-integers}), in its own process: integers per second
and server CPU seconds for a client that reads as fast as it can (median of
three runs), then, for ours, the server's memory growth under a client that
asks for 10**9 integers and reads slowly, and the time a new client waits for
its prompt while another streams at full speed.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import psutil

from bench import peers

PROMPT = b"how many random integers do you want?\r\n"
HERE = os.path.dirname(os.path.abspath(__file__))


class Child:
    """
    A child process whose output is read on a thread of its own, so that
    waiting for a line of it has a deadline and the child never blocks on a
    full pipe.
    """

    def __init__(
        self,
        name: str,
        args: List[str],
        *,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> None:
        self.name = name
        self.output: List[bytes] = []
        self._lines: queue.Queue[bytes] = queue.Queue()
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.ps = psutil.Process(self.process.pid)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def expect(self, pattern: bytes, timeout: float) -> re.Match[bytes]:
        """
        Read output lines (kept in L{output}) until one matches C{pattern}.

        @raise RuntimeError: If the child exits or C{timeout} seconds pass
            first.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"{self.name}: no {pattern!r} within {timeout} s: "
                    + b"".join(self.output).decode(errors="replace")
                ) from None
            if not line:
                raise RuntimeError(
                    f"{self.name} exited: "
                    + b"".join(self.output).decode(errors="replace")
                )
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        """
        Terminate the child and reap it; kill it if it will not go.
        """
        peers.stopProcess(self.process)


class Server(Child):
    """
    A server in a child process, listening on 127.0.0.1 on the port that the
    first output line to match C{pattern} names.
    """

    def __init__(
        self,
        name: str,
        args: List[str],
        pattern: bytes,
        *,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> None:
        super().__init__(name, args, env=env, cwd=cwd)
        try:
            self.port = int(self.expect(pattern, 30).group(1))
        except BaseException:
            self.stop()
            raise


def seedServer() -> Server:
    return Server(
        "seed",
        [sys.executable, os.path.join(HERE, "seed_random_server.py")],
        rb"listening on (\d+)",
    )


# Runs twistd after saying which twisted_streaming it imported: the plugin's
# service maker imports that same module, so this is the code being served.
TWISTD = (
    "import twisted_streaming as t\n"
    "print('serving twisted_streaming', getattr(t, '__version__', '?'), 'from',"
    " t.__file__, flush=True)\n"
    "from twisted.scripts.twistd import run\n"
    "run()\n"
)


def ourServer(python: str = sys.executable, pythonpath: Optional[str] = None) -> Server:
    """
    A real C{twistd -n random-integers} on a free port, run by C{python}, with
    C{pythonpath} (a checkout, which holds both C{twisted_streaming} and the
    dropin under C{twisted/plugins}) ahead of everything else on its path.
    """
    env = None
    cwd = None
    if pythonpath is not None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [pythonpath, env.get("PYTHONPATH")])
        )
        # Python puts the working directory ahead of PYTHONPATH: this
        # checkout's twisted_streaming must not shadow the one asked for.
        cwd = "/"
    return Server(
        "twisted_streaming",
        [
            python,
            "-c",
            TWISTD,
            "-n",
            "--pidfile=",
            "--logfile=-",
            "random-integers",
            "--port",
            "tcp:0:interface=127.0.0.1",
        ],
        rb"starting on (\d+)",
        env=env,
        cwd=cwd,
    )


def connect(
    port: int, *, timeout: Optional[float] = None, rcvbuf: Optional[int] = 1 << 20
) -> socket.socket:
    """
    Connect and read the prompt, within C{timeout} seconds in all if it is
    not L{None}; set C{SO_RCVBUF} to C{rcvbuf} unless it is L{None}.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        got = b""
        while PROMPT not in got:
            if deadline is not None:
                sock.settimeout(max(deadline - time.monotonic(), 1e-6))
            data = sock.recv(4096)
            if not data:
                raise RuntimeError("closed before the prompt")
            got += data
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def fetch(port: int, count: int, timeout: Optional[float] = None) -> float:
    """
    Ask for C{count} integers, read them all, and return the seconds taken;
    give up if the server is silent for C{timeout} seconds.
    """
    sock = connect(port, timeout=timeout)
    sock.settimeout(timeout)
    start = time.perf_counter()
    sock.sendall(b"%d\r\n" % (count,))
    lines = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf)
        if not n:
            break
        lines += view[:n].tobytes().count(b"\n")
    elapsed = time.perf_counter() - start
    sock.close()
    if lines != count:
        raise RuntimeError(f"asked for {count}, got {lines}")
    return elapsed


def throughput(
    server: Server, count: int, runs: int, timeout: Optional[float] = None
) -> Tuple[float, float]:
    """
    Median integers per second and median server CPU seconds per million.
    """
    rates, cpus = [], []
    for _ in range(runs):
        before = server.cpu()
        elapsed = fetch(server.port, count, timeout)
        cpus.append((server.cpu() - before) / count * 1e6)
        rates.append(count / elapsed)
    return statistics.median(rates), statistics.median(cpus)


def slowReaderGrowth(server: Server, seconds: float) -> Tuple[int, int]:
    """
    RSS growth (bytes) of the server while a client that asked for 10**9
    integers reads 16 KiB every 10 ms, and bytes the client read.
    """
    base = server.rss()
    sock = connect(server.port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"1000000000\r\n")
    peak = base
    read = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        read += len(sock.recv(16384))
        peak = max(peak, server.rss())
        time.sleep(0.01)
    sock.close()
    return peak - base, read


def promptLatency(server: Server, samples: int) -> List[float]:
    """
    Seconds from connect to prompt for new clients while another client
    streams integers at full speed.
    """
    # The streaming client runs in its own process: in this one, it would
    # hold the GIL for up to a switch interval (5 ms) at a time.
    streamer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys\n"
            "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
            "s.sendall(b'1000000000\\r\\n')\n"
            "while s.recv(1 << 20): pass\n",
            str(server.port),
        ]
    )
    latencies = []
    try:
        time.sleep(0.5)  # Let the stream reach full speed.
        for _ in range(samples):
            start = time.perf_counter()
            connect(server.port).close()
            latencies.append(time.perf_counter() - start)
        if streamer.poll() is not None:
            raise RuntimeError("the streaming client ended early")
    finally:
        streamer.kill()
        streamer.wait(timeout=30)
    return latencies


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run")
    args = parser.parse_args(argv)
    seedCount, ourCount, runs = (
        (300_000, 3_000_000, 1) if args.quick else (2_000_000, 30_000_000, 3)
    )

    out = sys.stdout.write
    results = {}
    for make, count in ((seedServer, seedCount), (ourServer, ourCount)):
        server = make()
        try:
            results[server.name] = throughput(server, count, runs)
            if server.name == "twisted_streaming":
                growth, read = slowReaderGrowth(server, 1.0 if args.quick else 3.0)
                latencies = promptLatency(server, 20 if args.quick else 100)
        finally:
            server.stop()

    seedRate = results["seed"][0]
    ourRate = results["twisted_streaming"][0]
    out(f"random integers over TCP loopback, median of {runs} run(s)\n")
    out(f"{'server':<20}{'integers/s':>14}{'CPU s/M ints':>14}{'ratio':>8}\n")
    for name, (rate, cpu) in results.items():
        out(f"{name:<20}{rate:>14,.0f}{cpu:>14.3f}{rate / seedRate:>7.1f}x\n")
    out(f"speed ratio (ours / seed): {ourRate / seedRate:.1f}x\n")
    out(
        f"CPU ratio (ours / seed): {results['twisted_streaming'][1] / results['seed'][1]:.2f}x\n"
    )
    out(
        f"slow reader asking for 10**9: server RSS grew {growth / 2**20:.2f} MiB "
        f"while the client read {read / 2**20:.2f} MiB\n"
    )
    latencies.sort()
    out(
        "prompt latency while another client streams: "
        f"median {statistics.median(latencies) * 1e3:.2f} ms, "
        f"max {latencies[-1] * 1e3:.2f} ms over {len(latencies)} connections\n"
    )


if __name__ == "__main__":
    main()
