"""
A TCP server that saves what each connection sends to a file, with
L{twisted_streaming.FileConsumer}, and prints its size and SHA-256.

    python examples/upload_receiver.py --directory /tmp/uploads --port 9000

It prints C{listening on port N} (C{--port 0} picks a free port), saves the
Nth upload as C{upload-N.bin} and, when the sender closes the connection,
prints C{upload-N.bin: SIZE bytes, sha256 HEX}.  Try it with
C{nc -N 127.0.0.1 9000 < big.iso}.

Memory stays bounded however fast the sender and however slow the disk: the
connection's incoming bytes are the source of a pipeline into the file
consumer, which stops the connection reading the socket while a megabyte is
waiting to be written, and TCP flow control slows the sender down.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.task import react
from twisted.python.failure import Failure

from twisted_streaming import FileConsumer, HashStage, StreamProtocol, pipeline


class Upload(StreamProtocol):
    """
    Write what one connection sends to C{path}, hashing it on the way.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.digest = HashStage("sha256")

    def connectionMade(self) -> None:
        self.file = FileConsumer(self.path)
        # A slow disk stops the connection reading the socket.
        done = pipeline(self.incoming, self.digest, sink=self.file)
        done.addCallbacks(self.saved, self.cutOff)

    def saved(self, size: int) -> None:
        # Report once everything is on disk.
        hexdigest = self.digest.hexdigest()
        written = self.file.whenFinished()
        written.addCallback(
            lambda size: self.report(f"{size} bytes, sha256 {hexdigest}")
        )
        written.addErrback(self.failed)

    def cutOff(self, reason: Failure) -> None:
        # Reset, not closed: keep what arrived.
        self.file.finish()
        written = self.file.whenFinished()
        written.addCallback(lambda size: self.report(f"cut off after {size} bytes"))
        written.addErrback(self.failed)

    def failed(self, reason: Failure) -> None:
        self.report(reason.getErrorMessage())

    def report(self, message: str) -> None:
        print(f"{os.path.basename(self.path)}: {message}", flush=True)


class UploadFactory(Factory):
    """
    Save the Nth connection's upload as C{upload-N.bin} in C{directory}.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.uploads = 0

    def buildProtocol(self, addr: Any) -> Upload:
        self.uploads += 1
        return Upload(os.path.join(self.directory, f"upload-{self.uploads}.bin"))


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Save uploads to files.")
    parser.add_argument("--directory", default=".")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    port = reactor.listenTCP(
        args.port, UploadFactory(args.directory), interface=args.interface
    )
    print(f"listening on port {port.getHost().port}", flush=True)
    await Deferred()  # Serve until interrupted.


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
