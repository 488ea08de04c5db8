"""
Serve a directory as a tar archive, streamed as it is read, over HTTP (a
plain C{twisted.web} resource) and over raw TCP, with
L{twisted_streaming.TarWriter}.

    python examples/tar_server.py --directory /srv/photos --http-port 8080 --tcp-port 9000

It prints C{http on port N} and C{tcp on port M} (C{0} picks free ports),
then serves:

    curl -s http://127.0.0.1:8080/ | tar -tvf -
    nc 127.0.0.1 9000 | tar -xf -

Nothing is built in memory or on disk first, and memory stays flat however
big the directory and however slow the client: each member's bytes go by a
C{FileSender} registered with the archive's member, which the connection
paces.  Over raw TCP the file bodies go to the socket with C{sendfile}; over
HTTP they go through C{request.write}, in chunks.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_streaming import ProducerStopped, TarWriter

_log = Logger()


class TarResource(Resource):
    """
    C{GET} answers with the directory as a tar archive, C{name.tar}.
    """

    isLeaf = True

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory
        self.name = os.path.basename(os.path.normpath(directory))

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"application/x-tar")
        request.setHeader(
            b"content-disposition", f'attachment; filename="{self.name}.tar"'.encode()
        )
        archive = TarWriter(request, name=f"{self.name}.tar")
        added = archive.add(self.directory, self.name)

        def done(members: int) -> None:
            archive.finish()
            request.finish()
            _log.info("Sent {members} members over HTTP", members=members)

        added.addCallbacks(
            done, lambda failure: _failed(failure, request.loseConnection)
        )
        return NOT_DONE_YET


class SendTar(Protocol):
    """
    Send the directory as a tar archive to whoever connects, then close.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def connectionMade(self) -> None:
        transport: Any = self.transport
        name = os.path.basename(os.path.normpath(self.directory))
        archive = TarWriter(transport, name=f"{name}.tar")
        added = archive.add(self.directory, name)

        def done(members: int) -> None:
            archive.finish()
            transport.loseConnection()
            _log.info(
                "Sent {members} members over TCP, {zeroCopy} bytes with sendfile",
                members=members,
                zeroCopy=archive.zeroCopyBytes,
            )

        added.addCallbacks(
            done, lambda failure: _failed(failure, transport.loseConnection)
        )


def _failed(failure: Failure, close: Any) -> None:
    if failure.check(ProducerStopped):
        _log.info("The client went away")
    else:
        _log.failure("Sending the archive failed", failure)
        # The archive is cut short: only closing tells the client.
        close()


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a directory as a tar archive.")
    parser.add_argument("--directory", required=True)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--tcp-port", type=int, default=9000)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    http = reactor.listenTCP(
        args.http_port, Site(TarResource(args.directory)), interface=args.interface
    )
    tcp = reactor.listenTCP(
        args.tcp_port,
        Factory.forProtocol(lambda: SendTar(args.directory)),
        interface=args.interface,
    )
    print(f"http on port {http.getHost().port}", flush=True)
    print(f"tcp on port {tcp.getHost().port}", flush=True)
    await Deferred()  # Serve until interrupted.


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
