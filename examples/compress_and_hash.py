"""
Send a file compressed over TCP and check that it arrived intact, with a
pipeline of L{twisted_streaming} stages at each end.

    python examples/compress_and_hash.py receive copy.bin --port 9000
    python examples/compress_and_hash.py send original.bin --port 9000

The sender reads the file with L{FileSender}, hashes it with L{HashStage},
compresses it with L{Compress} into the connection, and prints
C{sent SIZE bytes as COMPRESSED bytes, sha256 HEX}.  The receiver prints
C{listening on port N} (C{--port 0} picks a free port), takes one
connection, decompresses it with L{Decompress}, hashes it and writes it with
L{FileConsumer}, prints C{received SIZE bytes, sha256 HEX} and exits.

Backpressure runs end to end: a slow disk at the receiver stops it reading
the socket, TCP fills up, the sender's connection pauses its stages, and the
sender stops reading the file.  Memory stays bounded on both sides.
"""

from __future__ import annotations

import argparse
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.internet.task import react

from twisted_streaming import (
    Compress,
    Decompress,
    FileConsumer,
    FileSender,
    HashStage,
    StreamProtocol,
    pipeline,
)


async def send(reactor: Any, path: str, host: str, port: int) -> None:
    connection = StreamProtocol()
    await connectProtocol(TCP4ClientEndpoint(reactor, host, port), connection)
    digest, compress = HashStage("sha256"), Compress()
    # The connection's outgoing sink closes it once everything is sent.
    await pipeline(
        lambda consumer: FileSender().beginFileTransfer(path, consumer),
        digest,
        compress,
        sink=connection.outgoing,
    )
    await connection.lost
    print(
        f"sent {digest.bytesIn} bytes as {compress.bytesOut} bytes,"
        f" sha256 {digest.hexdigest()}"
    )


class Receive(StreamProtocol):
    """
    Decompress what the connection sends into C{path}; L{received} fires
    with the size once it is all on disk.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.digest = HashStage("sha256")
        self.received: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        # The connection's incoming bytes are the source: the pipeline stops
        # it reading when it is full, and it ends when the sender closes.
        sink = FileConsumer(self.path)
        done = pipeline(self.incoming, Decompress(), self.digest, sink=sink)
        done.addCallback(lambda _: sink.whenFinished())
        done.chainDeferred(self.received)


class ReceiveOnce(Factory):
    """
    Accept one connection; close any other.
    """

    def __init__(self, receiver: Receive) -> None:
        self.receiver: Optional[Receive] = receiver

    def buildProtocol(self, addr: Any) -> Optional[Receive]:
        receiver, self.receiver = self.receiver, None
        return receiver


async def receive(reactor: Any, path: str, interface: str, port: int) -> None:
    receiver = Receive(path)
    listening = reactor.listenTCP(port, ReceiveOnce(receiver), interface=interface)
    print(f"listening on port {listening.getHost().port}", flush=True)
    size = await receiver.received
    await listening.stopListening()
    print(f"received {size} bytes, sha256 {receiver.digest.hexdigest()}")


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Send a file compressed.")
    commands = parser.add_subparsers(dest="command", required=True)
    sender = commands.add_parser("send", help="send FILE")
    sender.add_argument("file")
    sender.add_argument("--host", default="127.0.0.1")
    sender.add_argument("--port", type=int, default=9000)
    receiver = commands.add_parser("receive", help="receive one file into FILE")
    receiver.add_argument("file")
    receiver.add_argument("--interface", default="127.0.0.1")
    receiver.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    if args.command == "send":
        await send(reactor, args.file, args.host, args.port)
    else:
        await receive(reactor, args.file, args.interface, args.port)


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
