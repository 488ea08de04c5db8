"""
Autobahn's producer tutorial, done with twisted_streaming.websocket: a
client streams random bytes to a server as fast as the server takes them,
and no faster; the server hashes them and sends back a running SHA-256.

    python examples/websocket_random.py server --port 9000
    python examples/websocket_random.py client --url ws://127.0.0.1:9000 --count 1000

The client sends C{--count} binary messages of C{--size} random bytes
(C{--one-message}: all of it as one message, frame by frame), then closes,
and prints C{sent N messages, B bytes, sha256 HEX}; it prints each digest
the server sends back.  The server prints C{listening on port N} and, as
each connection closes, C{connection K: received N messages, B bytes,
sha256 HEX} (or C{... stopped after ...} if it did not close normally); it
sends C{B bytes: sha256 HEX} back after every C{--batch} bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import random
from typing import Any, List, Optional

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import react
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming import BasePushProducer, IFinishableConsumer, ProducerStopped
from twisted_streaming.websocket import MessageConsumer, MessageSource, MessageStream

# The server


@implementer(IFinishableConsumer)
class RunningDigest:
    """
    Hash each message received; send the digest so far after every
    C{batch} bytes.  A slow consumer here would stop the client sending.
    """

    def __init__(self, protocol: Any, batch: int) -> None:
        self.protocol, self.batch = protocol, batch
        self.hash, self.messages, self.bytes = hashlib.sha256(), 0, 0

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, message: bytes) -> None:
        before, self.bytes = self.bytes, self.bytes + len(message)
        self.hash.update(message)
        self.messages += 1
        if self.bytes // self.batch > before // self.batch:
            digest = f"{self.bytes} bytes: sha256 {self.hash.hexdigest()}"
            self.protocol.sendMessage(digest.encode(), False)

    def finish(self) -> None:
        pass


class DigestServerProtocol(WebSocketServerProtocol):
    factory: DigestServerFactory

    def onOpen(self) -> None:
        self.factory.connections += 1
        number = self.factory.connections
        digest = RunningDigest(self, self.factory.batch)
        received = MessageSource(self).startProducing(digest)
        received.addBoth(self.report, number, digest)

    def report(self, result: Any, number: int, digest: RunningDigest) -> None:
        counts = f"{digest.messages} messages, {digest.bytes} bytes"
        if isinstance(result, Failure):
            line = f"stopped after {counts} ({result.value})"
        else:
            line = f"received {counts}, sha256 {digest.hash.hexdigest()}"
        print(f"connection {number}: {line}", flush=True)


class DigestServerFactory(WebSocketServerFactory):
    protocol = DigestServerProtocol  # type: ignore[assignment]
    connections = 0

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch
        self.setProtocolOptions(maxMessagePayloadSize=64 * 1024 * 1024)


async def serve(reactor: Any, port: int, batch: int) -> None:
    factory = DigestServerFactory(batch)
    listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
    print(f"listening on port {listening.getHost().port}", flush=True)
    await Deferred()  # Serve until interrupted.


# The client


class RandomBytes(BasePushProducer):
    """
    C{count} chunks of C{size} random bytes from C{random.Random(seed)}.
    """

    def __init__(self, count: int, size: int, seed: Optional[int]) -> None:
        super().__init__()
        self.count, self.size, self.rng = count, size, random.Random(seed)
        self.hash = hashlib.sha256()

    def produce(self) -> Optional[bytes]:
        if self.chunksWritten == self.count:
            return None
        chunk = self.rng.randbytes(self.size)
        self.hash.update(chunk)
        return chunk


class StreamingClientProtocol(WebSocketClientProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        print(f"server: {payload.decode()}", flush=True)


async def stream(
    reactor: Any, url: str, count: int, size: int, seed: Optional[int], one: bool
) -> None:
    factory = WebSocketClientFactory(url)
    factory.protocol = StreamingClientProtocol
    protocol = await connectProtocol(
        TCP4ClientEndpoint(reactor, factory.host, factory.port),
        factory.buildProtocol(None),
    )
    # Made before the opening handshake ends: the producer waits for it.
    consumer = (MessageStream if one else MessageConsumer)(protocol, closeCode=1000)
    producer = RandomBytes(count, size, seed)
    try:
        sent = await producer.startProducing(consumer)
    except ProducerStopped:
        raise SystemExit(
            f"stopped after {producer.bytesWritten} bytes: the server went away"
        ) from None
    await protocol.is_closed
    messages = 1 if one else producer.chunksWritten
    print(
        f"sent {messages} messages, {sent} bytes, sha256 {producer.hash.hexdigest()}",
        flush=True,
    )


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description="Stream random bytes over a WebSocket."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="hash what clients send")
    server.add_argument("--port", type=int, default=9000)
    server.add_argument("--batch", type=int, default=1024 * 1024)
    client = commands.add_parser("client", help="send random bytes")
    client.add_argument("--url", default="ws://127.0.0.1:9000")
    client.add_argument("--count", type=int, default=1000)
    client.add_argument("--size", type=int, default=65536)
    client.add_argument("--seed", type=int, default=None)
    client.add_argument("--one-message", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "server":
        await serve(reactor, args.port, args.batch)
    else:
        await stream(
            reactor, args.url, args.count, args.size, args.seed, args.one_message
        )


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
