"""
A live feed: one source broadcast to every TCP client connected, with an
explicit policy for clients that do not keep up.

    python examples/live_feed.py server --port 9000 --policy drop
    python examples/live_feed.py client --port 9000

The server's source is a ticker: every C{--interval} seconds it writes one
record (a sequence number, a length, C{--size} bytes), C{--records} times
(0: forever).  A L{Broadcast <twisted_streaming.Broadcast>} passes it to
every connection; C{--policy} says what happens to one more than
C{--max-lag} bytes behind (C{pause}: the feed waits for it; C{drop}: it
misses records until it reads again; C{disconnect}: it is closed, as is
one paused for longer than C{--timeout} seconds).  With C{--clients N} the
feed starts once N clients are connected; otherwise at once, and clients
join the running feed.  The server prints C{listening on port N} and, when
a finite feed ends, C{feed finished: ...} with what the clients got and how
much its memory grew, then exits.

The client prints C{received N records, B bytes, M missing} when the
server closes the connection (C{missing}: records dropped for it).
"""

from __future__ import annotations

import argparse
import resource
import socket
import struct
from typing import Any, List, Optional

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import react
from twisted.python.failure import Failure

from twisted_streaming import BasePushProducer, Broadcast, ConsumerTooSlow

HEADER = struct.Struct(">QI")


def record(sequence: int, size: int) -> bytes:
    """
    Record number C{sequence}: its header, then C{size} bytes of its
    number modulo 251.
    """
    return HEADER.pack(sequence, size) + bytes([sequence % 251]) * size


# The server


class Ticker(BasePushProducer):
    """
    The live source: a record every C{interval} seconds while not paused
    (a paused ticker waits: under the pause policy nothing is lost), then
    the end after C{records} of them (never if 0).
    """

    def __init__(self, reactor: Any, interval: float, size: int, records: int) -> None:
        super().__init__(reactor=reactor)
        self.clock, self.interval, self.size = reactor, interval, size
        self.records = records
        self.sequence = 0
        self.timer: Any = None

    def producingStarted(self) -> None:
        if not self.paused:
            self._arm()

    def producingResumed(self) -> None:
        self._arm()

    def producingPaused(self) -> None:
        self._disarm()

    def producingStopped(self) -> None:
        self._disarm()

    def _arm(self) -> None:
        if self.timer is None:
            self.timer = self.clock.callLater(self.interval, self._tick)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self) -> None:
        self.timer = None
        if self.records and self.sequence == self.records:
            self.finishProducing()
            return
        self.write(record(self.sequence, self.size))
        self.sequence += 1
        if not self.paused:
            self._arm()


class FeedServer(Protocol):
    factory: FeedFactory

    def connectionMade(self) -> None:
        self.lost: Deferred[None] = Deferred()
        self.factory.connected(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class FeedFactory(Factory):
    """
    Add every connection to the broadcast; start the feed once C{clients}
    are connected; when it ends, report.
    """

    protocol = FeedServer  # type: ignore[assignment]

    def __init__(self, reactor: Any, options: argparse.Namespace) -> None:
        self.options = options
        self.broadcast = Broadcast(
            policy=options.policy,
            maxLag=options.max_lag,
            timeout=options.timeout,
            reactor=reactor,
        )
        # Each output with its counters, and its Deferred's outcome.
        self.outputs: List[Any] = []
        self.results: List[Deferred[Any]] = []
        self.ticker = Ticker(reactor, options.interval, options.size, options.records)
        self.started: Optional[int] = None
        self.connections: List[FeedServer] = []

    def connected(self, protocol: FeedServer) -> None:
        transport: Any = protocol.transport
        self.connections.append(protocol)
        if self.options.sndbuf:
            # A smaller send buffer: a client that stops reading is noticed
            # (and its lag counted) sooner.
            transport.getHandle().setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, self.options.sndbuf
            )
        result = self.broadcast.addOutput(transport)
        self.results.append(result.addBoth(closeWhenDone, transport))
        for output in self.broadcast.outputs[-1:]:
            if output.consumer is transport:
                self.outputs.append(output)
        if self.started is None and len(self.results) >= self.options.clients:
            self.started = residentKiB()
            started = self.ticker.startProducing(self.broadcast)
            started.addErrback(self.broadcast.fail)

    async def finished(self) -> str:
        """
        Wait for the end of the feed and every client's part of it; say
        what each got.
        """
        sent = await self.broadcast.done
        outcomes = await DeferredList(self.results, consumeErrors=True)
        disconnected = sum(
            1
            for ok, result in outcomes
            if not ok and isinstance(result, Failure) and result.check(ConsumerTooSlow)
        )
        dropping = [o for o in self.outputs if o.droppedChunks]
        complete = sum(1 for ok, result in outcomes if ok and result == sent)
        growth = peakKiB() - (self.started or 0)
        return (
            f"{self.ticker.sequence} records, {sent} bytes, "
            f"{len(self.results)} clients: {complete} complete, "
            f"{len(dropping)} dropped {sum(o.droppedBytes for o in dropping)} "
            f"bytes, {disconnected} disconnected; "
            f"peak memory grew {growth} KiB"
        )


def closeWhenDone(result: Any, transport: Any) -> Any:
    """
    The feed is over for C{transport} (finished, removed or too slow):
    close it, and pass C{result} on.
    """
    transport.loseConnection()
    return result


def peakKiB() -> int:
    """
    The process's peak resident memory so far, in KiB (as Linux reports
    it).
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def residentKiB() -> int:
    """
    The process's resident memory now, in KiB (its peak so far where
    C{/proc} is missing).
    """
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return peakKiB()
    return pages * resource.getpagesize() // 1024


async def serve(reactor: Any, options: argparse.Namespace) -> None:
    factory = FeedFactory(reactor, options)
    listening = reactor.listenTCP(options.port, factory, interface=options.interface)
    print(f"listening on port {listening.getHost().port}", flush=True)
    if not options.records:
        await Deferred()  # Serve until interrupted.
    print(f"feed finished: {await factory.finished()}", flush=True)
    # Exit once every connection has been sent what it was given and closed.
    await gatherResults([c.lost for c in factory.connections])


# The client


class FeedClient(Protocol):
    """
    Read records, check each is whole, and count those missing (dropped for
    this client).  L{lost} fires when the connection closes.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.records = self.bytes = self.missing = 0
        self.expected = 0
        self.errors: List[str] = []
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.bytes += len(data)
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= HEADER.size:
            sequence, size = HEADER.unpack_from(buffer, offset)
            end = offset + HEADER.size + size
            if len(buffer) < end:
                break
            body = buffer[offset + HEADER.size : end]
            if body.count(sequence % 251) != size or sequence < self.expected:
                self.errors.append(f"record {sequence} is not whole or in order")
            self.missing += sequence - self.expected
            self.expected = sequence + 1
            self.records += 1
            offset = end
        del buffer[:offset]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.buffer:
            self.errors.append(f"{len(self.buffer)} bytes of a record cut off")
        self.lost.callback(None)

    def summary(self) -> str:
        return f"{self.records} records, {self.bytes} bytes, {self.missing} missing"


async def read(reactor: Any, options: argparse.Namespace) -> None:
    client = FeedClient()
    endpoint = TCP4ClientEndpoint(reactor, options.host, options.port)
    await connectProtocol(endpoint, client)
    await client.lost
    for error in client.errors:
        raise SystemExit(error)
    print(f"received {client.summary()}", flush=True)


def main(reactor: Any, *argv: str) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="broadcast a live feed")
    server.add_argument("--port", type=int, default=9000)
    server.add_argument("--interface", default="127.0.0.1")
    server.add_argument(
        "--policy", choices=["pause", "drop", "disconnect"], default="drop"
    )
    server.add_argument("--max-lag", type=int, default=256 * 1024)
    server.add_argument("--timeout", type=float, default=None)
    server.add_argument("--interval", type=float, default=0.01)
    server.add_argument("--size", type=int, default=4096)
    server.add_argument("--records", type=int, default=0)
    server.add_argument("--clients", type=int, default=0)
    server.add_argument("--sndbuf", type=int, default=0)
    client = commands.add_parser("client", help="read the feed")
    client.add_argument("--host", default="127.0.0.1")
    client.add_argument("--port", type=int, default=9000)
    options = parser.parse_args(argv)
    if options.command == "server":
        return Deferred.fromCoroutine(serve(reactor, options))
    return Deferred.fromCoroutine(read(reactor, options))


if __name__ == "__main__":
    import sys

    react(main, sys.argv[1:])
