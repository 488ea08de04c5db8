"""
A web server for the large files in a directory, with byte ranges, sending
each file with L{twisted_streaming.FileSender}.

    python examples/file_server.py --directory /srv/files --port 8080

It prints C{listening on port N} (C{--port 0} picks a free port), logs
requests on stderr, and answers:

  - no C{Range} header: 200 and the whole file, with C{Content-Length};
  - one range, C{bytes=a-b}, C{bytes=a-} or C{bytes=-n}: 206 and those bytes,
    with C{Content-Range};
  - a range that starts past the end of the file: 416;
  - a range with C{If-Range}: the range only if the date given is the file's
    C{Last-Modified}, else 200 and the whole file (the file has changed, so
    the part the client holds is stale).

Memory stays flat however big the file: the sender reads one chunk each time
the connection has room for it.  When a client goes away mid-transfer the
sender is stopped and the file closed, and the server prints how far it got.
"""

from __future__ import annotations

import argparse
import mimetypes
import re
import sys
from typing import Any, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath, InsecurePath
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from twisted_streaming import FileSender, ProducerStopped

_log = Logger()

_RANGE = re.compile(rb"bytes=(\d*)-(\d*)")


def parseRange(header: Optional[bytes], size: int) -> Optional[Tuple[int, int]]:
    """
    The first and last byte a single-range C{Range} header asks for, in a
    file of C{size} bytes.

    @return: L{None} to send the whole file (no header, or one this server
        does not understand, such as several ranges); otherwise C{(first,
        last)}, where C{first > last} means that no byte of the range is in
        the file.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == b"":
        return None
    first, last = match.groups()
    if not first:
        # bytes=-n: the last n bytes.
        return max(size - int(last), 0), size - 1
    if last and int(last) < int(first):
        return None
    return int(first), min(int(last), size - 1) if last else size - 1


class FileResource(Resource):
    """
    Serve the files under C{directory}, honouring one byte range.
    """

    isLeaf = True

    def __init__(self, directory: FilePath[str]) -> None:
        super().__init__()
        self.directory = directory

    def render_GET(self, request: Request) -> Any:
        try:
            path = self.directory.descendant(
                [s.decode() for s in request.postpath or []]
            )
        except (UnicodeDecodeError, InsecurePath):
            path = None
        if path is None or not path.isfile():
            request.setResponseCode(404)
            return b"not found\n"
        size = path.getsize()
        request.setHeader(b"accept-ranges", b"bytes")
        kind = mimetypes.guess_type(path.basename())[0] or "application/octet-stream"
        request.setHeader(b"content-type", kind.encode())
        modified = datetimeToString(int(path.getModificationTime()))
        request.setHeader(b"last-modified", modified)
        byteRange = parseRange(request.getHeader(b"range"), size)
        ifRange = request.getHeader(b"if-range")
        if ifRange is not None and ifRange.strip() != modified:
            # An entity tag (this server sends none) or another date.
            byteRange = None
        if byteRange is None:
            first, last = 0, size - 1
        else:
            first, last = byteRange
            if first > last:
                request.setResponseCode(416)
                request.setHeader(b"content-range", b"bytes */%d" % (size,))
                return b""
            request.setResponseCode(206)
            request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, last, size))
        length = last - first + 1
        request.setHeader(b"content-length", b"%d" % (length,))
        if request.method == b"HEAD":
            return b""

        sender = FileSender()
        # The request is the consumer: it asks for the next chunk each time
        # the connection has room for it.
        sent = sender.beginFileTransfer(path, request, offset=first, length=length)
        # If the client goes away, stop sending; the sender closes the file.
        request.notifyFinish().addErrback(lambda _: sender.stopProducing())

        def done(_: bytes) -> None:
            request.finish()

        def failed(reason: Failure) -> None:
            if reason.check(ProducerStopped):
                print(
                    f"stopped {path.basename()} after {sender.bytesSent} bytes:"
                    " the client went away",
                    flush=True,
                )
            else:
                # The headers have gone: all we can do is close the connection.
                _log.failure("Reading {path} failed", reason, path=path.path)
                request.loseConnection()

        sent.addCallbacks(done, failed)
        return NOT_DONE_YET


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a directory's files.")
    parser.add_argument("--directory", default=".")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    site = Site(FileResource(FilePath(args.directory)))
    port = reactor.listenTCP(args.port, site, interface=args.interface)
    print(f"listening on port {port.getHost().port}", flush=True)
    await Deferred()  # Serve until interrupted.


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
