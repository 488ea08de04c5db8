"""
Stream random binary WebSocket messages with Autobahn, as fast as the
receiver reads them and no faster: the Autobahn producer tutorial, done right.

    python examples/websocket_random.py server --port 9000
    python examples/websocket_random.py client --url ws://127.0.0.1:9000 --count 1000

The client asks for C{count} messages of C{size} bytes in the query string
(C{ws://host:port/?count=N&size=S}).  The server sends them as binary
messages from a L{BasePushProducer} registered as a streaming producer with
the connection's TCP transport, so TCP backpressure pauses it: a client that
stops reading costs the server one transport buffer, not the whole stream.
Then it sends a text message with its count, size and SHA-256 and closes.

The server prints C{listening on port N} (C{--port 0} picks a free port) and,
as each connection closes, C{connection K: sent N messages, B bytes, sha256
HEX} or C{connection K: stopped after N messages, B bytes (...)}; its log
goes to stderr.  The client prints C{received N messages, B bytes, sha256
HEX} and fails if that differs from what the server says it sent.

Unlike the tutorial's producer, this one stops when the connection closes
(the peer's close frame, or TCP going away) and unregisters; it never
writes while paused; and it yields to the reactor after a bounded amount
of work, so a fast reader cannot starve other connections.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlencode

import attrs
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IConsumer, IProducer
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming import BasePushProducer, ProducerStopped

_log = Logger()

MAX_SIZE = 16 * 1024 * 1024


@implementer(IConsumer)
class BinaryMessages:
    """
    A WebSocket connection as a consumer: each C{write} sends one binary
    message, and producers register with the connection's TCP transport,
    whose buffer is what fills up when the peer stops reading.
    """

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.producer: Optional[IProducer] = None

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = producer
        self.protocol.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.protocol.transport.unregisterProducer()

    def write(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            # Autobahn is closing (the peer's close, or a connection it
            # failed) and would refuse the message: the stream is over.
            if self.producer is not None:
                self.producer.stopProducing()
            return
        protocol.sendMessage(data, isBinary=True)


class RandomMessages(BasePushProducer):
    """
    Produce C{count} messages of C{size} random bytes, hashing them.
    """

    def __init__(
        self, count: int, size: int, rng: random.Random, *, reactor: Any = None
    ) -> None:
        super().__init__(reactor=reactor)
        self.count = count
        self.size = size
        self.hash = hashlib.sha256()
        self._rng = rng

    def produce(self) -> Optional[bytes]:
        if self.chunksWritten >= self.count:
            return None
        message = self._rng.randbytes(self.size)
        self.hash.update(message)
        return message


@attrs.frozen
class Outcome:
    """
    What one connection was sent.

    @ivar number: The connection's number, from 1.
    @ivar messages: Messages sent.
    @ivar bytes: Payload bytes sent.
    @ivar sha256: The SHA-256 of the payload sent.
    @ivar reason: L{None} if every message was sent, else why not: a
        L{ProducerStopped} failure if the peer closed or went away first.
    """

    number: int
    messages: int
    bytes: int
    sha256: str
    reason: Optional[Failure] = None


def describe(outcome: Outcome) -> str:
    """
    One line for C{outcome}, as the server prints it.
    """
    sent = f"{outcome.messages} messages, {outcome.bytes} bytes"
    if outcome.reason is None:
        return f"connection {outcome.number}: sent {sent}, sha256 {outcome.sha256}"
    why = (
        "the peer closed or went away"
        if outcome.reason.check(ProducerStopped)
        else outcome.reason.getErrorMessage()
    )
    return f"connection {outcome.number}: stopped after {sent} ({why})"


def _logOutcome(outcome: Outcome) -> None:
    _log.info("{line}", line=describe(outcome))


class RandomServerProtocol(WebSocketServerProtocol):
    """
    One client: stream what it asked for, then a summary, then close.
    """

    factory: RandomServerFactory
    producer: Optional[RandomMessages] = None
    number = 0
    _request: Tuple[int, int] = (0, 0)
    _reason: Optional[Failure] = None

    def onConnect(self, request: Any) -> None:
        # Raises ConnectionDeny (an HTTP 400) for a bad request.
        self._request = self.factory.parseRequest(request.params)

    def onOpen(self) -> None:
        self.number = self.factory.nextNumber()
        count, size = self._request
        self.producer = self.factory.buildProducer(count, size)
        sending = self.producer.startProducing(BinaryMessages(self))
        sending.addCallbacks(self._sent, self._failed)

    def _sent(self, written: int) -> None:
        producer = self.producer
        assert producer is not None
        summary = {
            "messages": producer.chunksWritten,
            "bytes": written,
            "sha256": producer.hash.hexdigest(),
        }
        self.sendMessage(json.dumps(summary).encode("utf-8"), isBinary=False)
        self.sendClose(1000)

    def _failed(self, reason: Failure) -> None:
        self._reason = reason
        if not reason.check(ProducerStopped):
            _log.failure("Streaming to {peer} failed", reason, peer=self.peer)
            if self.state == self.STATE_OPEN:
                self.sendClose(1011)

    def _stopProducing(self) -> None:
        if self.producer is not None and self.producer.producing:
            self.producer.stopProducing()

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> Any:
        # The peer is closing: stop before Autobahn answers, unregisters
        # the producer from the transport and stops accepting messages.
        self._stopProducing()
        return super().onCloseFrame(code, reasonRaw)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Any) -> None:
        # TCP has gone; the transport has already stopped a producer
        # registered with it, but a paused one it was told to forget would
        # wait for ever.
        self._stopProducing()
        producer = self.producer
        if producer is None:
            return  # Refused in the opening handshake.
        self.factory.report(
            Outcome(
                self.number,
                producer.chunksWritten,
                producer.bytesWritten,
                producer.hash.hexdigest(),
                self._reason,
            )
        )


class RandomServerFactory(WebSocketServerFactory):
    """
    Serve random binary messages.

    @param seed: If not L{None}, every connection draws from
        C{random.Random(seed)}, so the same request gets the same bytes.
    @param maxCount: The most messages a client may ask for.
    @param report: Called with an L{Outcome} as each connection that was
        opened closes; by default, logged.
    @param reactor: The reactor the producers schedule on; the global one if
        L{None}.
    """

    protocol = RandomServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        seed: Optional[int] = None,
        maxCount: int = 10**9,
        report: Callable[[Outcome], None] = _logOutcome,
        reactor: Any = None,
    ) -> None:
        super().__init__(url, reactor=reactor)
        self.seed = seed
        self.maxCount = maxCount
        self.report = report
        self.producerReactor = reactor
        self.connections = 0

    def nextNumber(self) -> int:
        self.connections += 1
        return self.connections

    def parseRequest(self, params: Dict[str, List[str]]) -> Tuple[int, int]:
        """
        The count and size a client asked for.

        @raise ConnectionDeny: If either is missing or out of range.
        """
        try:
            count = int(params.get("count", ["1000"])[0])
            size = int(params.get("size", ["65536"])[0])
        except ValueError:
            raise ConnectionDeny(400, "count and size must be integers") from None
        if not 0 <= count <= self.maxCount:
            raise ConnectionDeny(400, f"count must be from 0 to {self.maxCount}")
        if not 1 <= size <= MAX_SIZE:
            raise ConnectionDeny(400, f"size must be from 1 to {MAX_SIZE}")
        return count, size

    def buildProducer(self, count: int, size: int) -> RandomMessages:
        rng = random.Random(self.seed)
        return RandomMessages(count, size, rng, reactor=self.producerReactor)


@attrs.frozen
class Received:
    """
    What a client received, and what the server said it sent.
    """

    messages: int
    bytes: int
    sha256: str
    summary: Optional[Dict[str, Any]]
    wasClean: bool

    def matches(self) -> bool:
        """
        Did everything the server says it sent arrive, intact?
        """
        return self.summary == {
            "messages": self.messages,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


class RandomClientProtocol(WebSocketClientProtocol):
    """
    Count and hash the binary messages; L{done} fires with L{Received}
    when the connection has closed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages = 0
        self.bytes = 0
        self.hash = hashlib.sha256()
        self.summary: Optional[Dict[str, Any]] = None
        self.done: Deferred[Received] = Deferred()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.messages += 1
            self.bytes += len(payload)
            self.hash.update(payload)
        else:
            self.summary = json.loads(payload)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Any) -> None:
        if not self.done.called:
            self.done.callback(
                Received(
                    self.messages,
                    self.bytes,
                    self.hash.hexdigest(),
                    self.summary,
                    wasClean,
                )
            )


def requestURL(url: str, count: int, size: int) -> str:
    """
    C{url} with the query string that asks for C{count} messages of C{size}
    bytes.
    """
    return f"{url.rstrip('/')}/?{urlencode({'count': count, 'size': size})}"


def clientFactory(url: str, reactor: Any = None) -> WebSocketClientFactory:
    factory = WebSocketClientFactory(url, reactor=reactor)
    factory.protocol = RandomClientProtocol
    return factory


async def fetch(reactor: Any, url: str, count: int, size: int) -> Received:
    """
    Ask the server at C{url} for C{count} messages of C{size} bytes and
    read them all.
    """
    factory = clientFactory(requestURL(url, count, size), reactor)
    client = RandomClientProtocol()
    client.factory = factory
    endpoint = TCP4ClientEndpoint(reactor, factory.host, factory.port)
    await connectProtocol(endpoint, client)
    return await client.done


async def serve(reactor: Any, interface: str, port: int, seed: Optional[int]) -> None:
    def report(outcome: Outcome) -> None:
        print(describe(outcome), flush=True)

    factory = RandomServerFactory(seed=seed, report=report, reactor=reactor)
    listening = reactor.listenTCP(port, factory, interface=interface)
    print(f"listening on port {listening.getHost().port}", flush=True)
    await Deferred()  # Serve until interrupted.


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Stream random WebSocket messages.")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="serve random messages")
    server.add_argument("--interface", default="127.0.0.1")
    server.add_argument("--port", type=int, default=9000)
    server.add_argument("--seed", type=int, default=None)
    client = commands.add_parser("client", help="read random messages")
    client.add_argument("--url", default="ws://127.0.0.1:9000")
    client.add_argument("--count", type=int, default=1000)
    client.add_argument("--size", type=int, default=65536)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    if args.command == "server":
        await serve(reactor, args.interface, args.port, args.seed)
        return
    received = await fetch(reactor, args.url, args.count, args.size)
    print(
        f"received {received.messages} messages, {received.bytes} bytes,"
        f" sha256 {received.sha256}",
        flush=True,
    )
    if not received.matches():
        raise SystemExit(f"the server says it sent {received.summary}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
