"""
A client for the random-integer server that shows a progress bar and the rate
while it reads.

    python examples/random_integers_client.py --port 1234 --count 10000000

It prints the integers' count and sum on stdout at the end (the integers
themselves are not printed) and draws the progress bar on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import react
from twisted.python.failure import Failure

PROMPT = b"how many random integers do you want?\r\n"


class Client(Protocol):
    """
    Ask for C{count} integers and read them, drawing progress on C{out}.
    """

    def __init__(self, count: int, out: Any = sys.stderr) -> None:
        self.count = count
        self.out = out
        self.buffer = b""
        self.prompted = False
        self.received = 0
        self.total = 0
        self.start = time.monotonic()
        self.lastDraw = 0.0
        self.done: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        data = self.buffer + data
        if not self.prompted:
            if PROMPT not in data:
                self.buffer = data
                return
            self.prompted = True
            data = data.split(PROMPT, 1)[1]
            self.start = time.monotonic()
            self.transport.write(b"%d\r\n" % (self.count,))  # type: ignore[union-attr]
        end = data.rfind(b"\n") + 1
        lines: List[bytes] = data[:end].split()
        self.buffer = data[end:]
        self.received += len(lines)
        self.total += sum(map(int, lines))
        now = time.monotonic()
        if now - self.lastDraw > 0.1:
            self.lastDraw = now
            self.draw(now)

    def draw(self, now: float) -> None:
        done = self.received / self.count if self.count else 1.0
        bar = "#" * int(done * 40)
        rate = self.received / max(now - self.start, 1e-9)
        self.out.write(f"\r[{bar:<40}] {done:6.1%} {rate:,.0f} integers/s")
        self.out.flush()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.draw(time.monotonic())
        self.out.write("\n")
        self.done.callback(None)


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Read from the random-integer server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    client = Client(args.count)
    await connectProtocol(TCP4ClientEndpoint(reactor, args.host, args.port), client)
    await client.done
    sys.stdout.write(f"received {client.received} integers, sum {client.total}\n")
    if client.received != args.count:
        raise SystemExit(f"asked for {args.count}, got {client.received}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
