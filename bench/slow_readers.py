"""
Many slow readers of the random-integer server, in one process and one
thread: the load of C{bench_latency}.

    python -m bench.slow_readers PORT [--clients N] [--count N]
        [--read BYTES] [--every SECONDS] [--seconds SECONDS]

Opens the connections one after the other, reading each prompt; then asks
for C{--count} integers on every one; then, every C{--every} seconds, reads
at most C{--read} bytes from each connection that is readable, until it gets
C{SIGTERM} or C{--seconds} pass.  It prints a line of JSON when all are
connected, one when every connection has received integers, and one when it
ends, with what it read and how late its own ticks ran, so that a slow
server can be told from a slow client.
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import signal
import socket
import sys
import time
from typing import Any, List, Optional, Sequence

from bench.bench_random_integers import connect


def raiseFileLimit(needed: int) -> None:
    """
    Raise the soft limit on open files to at least C{needed}, as far as the
    hard limit allows; children inherit it.

    @raise RuntimeError: If the hard limit is lower.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(
                f"{needed} open files are needed, the hard limit is {hard}"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def report(event: str, **values: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **values}) + "\n")
    sys.stdout.flush()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--count", type=int, default=10**7)
    parser.add_argument("--read", type=int, default=4096, help="bytes per read")
    parser.add_argument("--every", type=float, default=0.05, help="seconds")
    parser.add_argument("--seconds", type=float, default=120, help="at most")
    args = parser.parse_args(argv)
    hardDeadline = time.monotonic() + args.seconds
    stopping: List[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    raiseFileLimit(args.clients + 64)

    began = time.monotonic()
    socks = []
    for _ in range(args.clients):
        # The kernel's default buffers, as a client that sets none has.
        timeout = max(hardDeadline - time.monotonic(), 1e-3)
        socks.append(connect(args.port, timeout=timeout, rcvbuf=None))
    report("connected", clients=len(socks), seconds=time.monotonic() - began)

    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sock.send(b"%d\r\n" % (args.count,))
        selector.register(sock, selectors.EVENT_READ)
    began = time.monotonic()
    waiting = set(socks)
    total = ticks = late = readable = closed = 0
    maxLag = 0.0
    nextTick = time.monotonic()
    while not stopping and time.monotonic() < hardDeadline:
        now = time.monotonic()
        if now < nextTick:
            time.sleep(nextTick - now)
            continue
        lag = now - nextTick
        maxLag = max(maxLag, lag)
        if lag > args.every:
            late += 1
        nextTick = max(nextTick + args.every, now)
        ticks += 1
        for key, _ in selector.select(0):
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            readable += 1
            try:
                data = conn.recv(args.read)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed += 1
                selector.unregister(conn)
                conn.close()
            total += len(data)
            if waiting:
                waiting.discard(conn)
                if not waiting:
                    report("streaming", seconds=time.monotonic() - began)
    seconds = time.monotonic() - began
    report(
        "done",
        seconds=seconds,
        bytes=total,
        ticks=ticks,
        lateTicks=late,
        maxLagSeconds=maxLag,
        readablePerTick=readable / max(ticks, 1),
        closed=closed,
    )
    selector.close()
    for sock in socks:
        sock.close()


if __name__ == "__main__":
    main()
