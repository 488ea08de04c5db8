"""
What the tests of L{Merge}, L{Broadcast} and L{Balance} share: producers of
numbered, framed chunks, a sink that records who wrote what, shares over
stretches of a stream, and real connections on 127.0.0.1.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from twisted_streaming import BasePushProducer
from twisted_streaming.test.test_conformance import EventDrivenProducer
from twisted_streaming.testing import BackpressureConsumer

__all__ = [
    "Connection",
    "EagerProducer",
    "Framed",
    "Frames",
    "RecordingSink",
    "Ticker",
    "closeWhenDone",
    "connect",
    "frame",
    "runFor",
    "shares",
]

reactor: Any = _globalReactor

_HEADER = struct.Struct("!HI")


def frame(ident: int, size: int) -> bytes:
    """
    A chunk of C{size} payload bytes from input C{ident}: a header (the
    ident and the size) and the payload, every byte of it C{ident % 251}.
    """
    return _HEADER.pack(ident, size) + bytes([ident % 251]) * size


class Framed(BasePushProducer):
    """
    Produce C{count} chunks of L{frame}C{(ident, size)}, or for ever if
    C{count} is L{None}.
    """

    def __init__(
        self, ident: int, size: int, count: Optional[int] = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ident = ident
        self.chunk = frame(ident, size)
        self.left = count

    def __repr__(self) -> str:
        return f"<Framed {self.ident} {self._state}>"

    def produce(self) -> Optional[bytes]:
        if self.left is not None:
            if self.left == 0:
                return None
            self.left -= 1
        return self.chunk


class Ticker(EventDrivenProducer):
    """
    A live feed: write L{frame}C{(ident, size)} every C{interval} seconds of
    C{reactor} while not paused (a paused feed skips its ticks), C{count}
    times in all.
    """

    def __init__(
        self, ident: int, size: int, count: int, interval: float, reactor: Any
    ) -> None:
        super().__init__(reactor, 0, interval)
        self.chunk = frame(ident, size)
        self.left = count

    def _next(self) -> Optional[bytes]:
        if self.left == 0:
            return None
        self.left -= 1
        return self.chunk


@implementer(IPushProducer)
class EagerProducer:
    """
    A hand-written push producer, as a user writes one: registered with
    C{consumer}, it writes chunks of L{frame}C{(ident, size)} at once
    whenever it is resumed (and when L{start} is called), until it is
    paused, and after C{count} of them unregisters and finishes its
    consumer.
    """

    def __init__(self, consumer: Any, ident: int, size: int, count: int) -> None:
        self.consumer = consumer
        self.chunk = frame(ident, size)
        self.left = count
        self.paused = False
        self.stopped = False
        self.writesAfterPause = 0
        consumer.registerProducer(self, True)

    def start(self) -> None:
        """
        Start writing, unless the consumer has paused it already.
        """
        if not self.paused:
            self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.stopped and self.left > 0:
            self.left -= 1
            self.consumer.write(self.chunk)
        if self.left == 0 and not self.stopped:
            self.stopped = True
            self.consumer.unregisterProducer()
            self.consumer.finish()

    def stopProducing(self) -> None:
        self.stopped = True


class RecordingSink(BackpressureConsumer):
    """
    A L{BackpressureConsumer} that records, in L{log}, who wrote each write
    (the ident in its frame header, or its tag) and its size, and does not
    keep the bytes.
    """

    def __init__(self, threshold: int = 65536, **kwargs: Any) -> None:
        super().__init__(threshold, **kwargs)
        self.log: List[Tuple[Any, int]] = []
        self.logged = 0

    def write(self, data: Any) -> None:
        if isinstance(data, tuple):
            self.log.append((data[0], len(data[1])))
        else:
            ident, size = _HEADER.unpack_from(data)
            if len(data) != _HEADER.size + size:
                raise AssertionError(f"a write of {len(data)} bytes is not a frame")
            self.log.append((ident, size))
        self.logged += self.log[-1][1]
        super().write(data)
        self.received = [] if self.objects else b""


def shares(
    log: Sequence[Tuple[Any, int]], idents: Iterable[Any], stretch: int
) -> List[Dict[Any, float]]:
    """
    Each input's share of the bytes over every stretch of C{stretch} bytes
    of C{log} that starts a quarter of a stretch after the one before, up
    to the last write of the first input to end (while every input has
    data).
    """
    idents = list(idents)
    last = {ident: index for index, (ident, _) in enumerate(log)}
    end = min(last.get(ident, -1) for ident in idents)
    log = log[:end]
    result: List[Dict[Any, float]] = []
    start = 0
    while True:
        counts: Dict[Any, int] = {}
        total = 0
        index = start
        while index < len(log) and total < stretch:
            ident, size = log[index]
            counts[ident] = counts.get(ident, 0) + size
            total += size
            index += 1
        if total < stretch:
            return result
        result.append({i: counts.get(i, 0) / total for i in idents})
        skipped = 0
        while skipped < stretch // 4:
            skipped += log[start][1]
            start += 1


class Frames(Protocol):
    """
    A client that parses the frames it receives into L{log} (ident, size),
    checking each payload, and fires L{lost} when the connection closes.
    """

    transport: Any

    def __init__(self, paused: bool = False) -> None:
        self.log: List[Tuple[int, int]] = []
        self.bytes = 0
        self.errors: List[str] = []
        self.startPaused = paused
        self.lost: Deferred[None] = Deferred()
        self._buffer = bytearray()

    def connectionMade(self) -> None:
        if self.startPaused:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.bytes += len(data)
        buffer = self._buffer
        buffer += data
        offset = 0
        header = _HEADER.size
        while len(buffer) - offset >= header:
            ident, size = _HEADER.unpack_from(buffer, offset)
            end = offset + header + size
            if len(buffer) < end:
                break
            payload = buffer[offset + header : end]
            if payload.count(ident % 251) != size:
                self.errors.append(f"frame {len(self.log)} from {ident} is mixed")
            self.log.append((ident, size))
            offset = end
        del buffer[:offset]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class Connection(Protocol):
    """
    The server side of a connection: L{made} fires once it is connected.
    """

    transport: Any

    def __init__(self) -> None:
        self.made: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.made.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


async def connect(
    testCase: TestCase, client: Protocol, smallBuffers: bool = False
) -> Connection:
    """
    Connect C{client} over TCP on 127.0.0.1 to a new L{Connection}, both
    closed (and the port) at the end of the test.

    @param smallBuffers: Give the client's receive buffer and the server's
        send buffer 16 KiB each, so that a client that does not read holds
        up its server's transport after a few tens of KiB, not megabytes.
    """
    server = Connection()
    port = reactor.listenTCP(
        0, Factory.forProtocol(lambda: server), interface="127.0.0.1"
    )
    testCase.addCleanup(port.stopListening)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    await connectProtocol(endpoint, client)
    await server.made
    if smallBuffers:
        for side, option in [(client, socket.SO_RCVBUF), (server, socket.SO_SNDBUF)]:
            handle = side.transport.getHandle()  # type: ignore[union-attr]
            handle.setsockopt(socket.SOL_SOCKET, option, 16384)

    def close() -> Deferred[Any]:
        for side in (server, client):
            if side.transport is not None:
                side.transport.abortConnection()  # type: ignore[attr-defined]
        return gatherResults([server.lost, client.lost])  # type: ignore[attr-defined]

    testCase.addCleanup(close)
    return server


def closeWhenDone(transport: Any) -> Any:
    """
    A callback that closes C{transport} and passes its result on.
    """

    def close(result: Any) -> Any:
        transport.loseConnection()
        return result

    return close


def runFor(clock: Clock, until: Any, steps: int = 100_000, step: float = 0.001) -> None:
    """
    Advance C{clock} C{step} at a time until C{until()}, at most C{steps}
    times.
    """
    for _ in range(steps):
        if until():
            return
        clock.advance(step)
    raise AssertionError(f"not done after {steps} steps")
