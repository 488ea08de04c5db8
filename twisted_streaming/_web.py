"""
L{FileResource}: large files over C{twisted.web}, with single byte ranges,
sent with L{os.sendfile} where the connection allows it.
"""

from __future__ import annotations

import math
import mimetypes
import os
import re
import stat
from typing import IO, Any, Optional, Tuple, Union

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath, InsecurePath
from twisted.web.http import (
    CACHED,
    FORBIDDEN,
    NOT_FOUND,
    PARTIAL_CONTENT,
    REQUESTED_RANGE_NOT_SATISFIABLE,
    datetimeToString,
)
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twisted_streaming._filesender import FileSender
from twisted_streaming._twistedweb import RawBody, takeTransport
from twisted_streaming.interfaces import ProducerStopped

_log = Logger()

_RANGE = re.compile(rb"bytes=(\d*)-(\d*)")


def parseRange(header: Optional[bytes], size: int) -> Optional[Tuple[int, int]]:
    """
    The first and last byte that a single-range C{Range} header asks for,
    in a file of C{size} bytes.

    @return: L{None} to send the whole file (no header, or one this does
        not serve, such as several ranges or another unit); otherwise
        C{(first, last)}, where C{first > last} means that no byte of the
        range is in the file (a 416).
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == b"":
        return None
    first, last = match.groups()
    if not first:
        # bytes=-n: the last n bytes.
        return max(size - int(last), 0), size - 1
    if last and int(last) < int(first):
        # Syntactically invalid: RFC 9110 says to ignore the header.
        return None
    return int(first), min(int(last), size - 1) if last else size - 1


class FileResource(Resource):
    """
    Serve a file, or the files under a directory, to C{GET} and C{HEAD},
    honouring a single byte range.

    For C{FileResource(path)}:

      - if C{path} is a file, it is served when the request's path ends at
        this resource (or at C{/} if it is the site's root); if it is a directory, C{/a/b} below this resource
        serves C{path/a/b} if that is a file (never a listing, never
        outside C{path}); anything else is a 404, and a file that cannot
        be opened for lack of permission a 403;
      - every response to a file has C{Accept-Ranges: bytes},
        C{Last-Modified} (the file's modification time, rounded up to the
        second), a C{Content-Type}
        guessed from the file name, and C{Content-Length};
      - C{Range: bytes=a-b}, C{bytes=a-} or C{bytes=-n} gets a 206 with
        those bytes and C{Content-Range}; a range that starts past the end
        of the file gets a 416 with C{Content-Range: bytes */size}; several
        ranges, or a header this does not understand, get a 200 and the
        whole file;
      - with C{If-Range}, the range is served only if the value is the
        file's C{Last-Modified} exactly; otherwise (an older date, or an
        entity tag, since none is sent) the whole file, with a 200;
      - with C{If-Modified-Since} at or after C{Last-Modified}, a 304 and
        no body (L{Request.setLastModified
        <twisted.web.server.Request.setLastModified>}'s rule, as
        L{twisted.web.static.File}'s), before any range is looked at;
      - C{HEAD} gets the headers that C{GET} would, and no body.

    The body is sent by a L{FileSender <twisted_streaming.FileSender>}
    reading from the file opened for the request, so memory stays flat
    whatever the file's size.  Zero-copy: when the response goes over
    HTTP/1.x on a plain TCP (or UNIX socket) connection, the headers are
    written by the request and the body with L{os.sendfile} straight to the
    connection, driven by its writability, with the channel's own producer
    registration set aside for the body and restored afterwards (see
    C{twisted_streaming._twistedweb}).  Over TLS, HTTP/2, or under a
    content encoding such as C{EncodingResourceWrapper}'s gzip, the body
    goes through C{request.write} instead, read and written in chunks;
    everything else is the same.

    If the client goes away, the transfer stops and the file is closed.  If
    reading fails after the headers have gone, the failure is logged and
    the connection closed, since the promised length cannot be met.

    @cvar zeroCopy: Set to C{False}, on the class or an instance, always to
        send the body through C{request.write}.
    @ivar path: The L{FilePath} of the file or directory served.
    @ivar defaultType: The C{Content-Type} of a file whose type cannot be
        guessed from its name.
    @ivar bytesSent: Body bytes sent by this resource, over all responses.
    @ivar zeroCopyBytes: How many of L{bytesSent} were sent with
        L{os.sendfile}.
    """

    isLeaf = True
    zeroCopy: bool = True

    bytesSent: int = 0
    zeroCopyBytes: int = 0

    def __init__(
        self,
        path: Union[str, FilePath[str]],
        defaultType: str = "application/octet-stream",
    ) -> None:
        """
        @param path: The file or directory to serve, as a path or a
            L{FilePath}.
        @param defaultType: The C{Content-Type} of a file whose type cannot
            be guessed from its name.
        """
        super().__init__()
        self.path: FilePath[str] = (
            path if isinstance(path, FilePath) else FilePath(path)
        )
        self.defaultType = defaultType

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.path!r}>"

    def render_GET(self, request: Any) -> Any:
        """
        Serve the file, or the range of it asked for.
        """
        return self._render(request, withBody=True)

    def render_HEAD(self, request: Any) -> Any:
        """
        The headers of L{render_GET}, without the body.
        """
        return self._render(request, withBody=False)

    def _find(self, request: Any) -> Optional[FilePath[str]]:
        """
        The file the request names, or L{None} if it names nothing that
        this resource serves.
        """
        segments = request.postpath or []
        if not self.path.isdir():
            # [b""]: the resource is the site's root, asked for "/".
            return self.path if segments in ([], [b""]) else None
        try:
            return self.path.descendant([s.decode() for s in segments])
        except (UnicodeDecodeError, InsecurePath):
            return None

    def _render(self, request: Any, withBody: bool) -> Any:
        path = self._find(request)
        try:
            if path is None:
                raise FileNotFoundError()
            file: IO[bytes] = path.open()
        except PermissionError:
            request.setResponseCode(FORBIDDEN)
            return b"forbidden\n" if withBody else b""
        except OSError:
            request.setResponseCode(NOT_FOUND)
            return b"not found\n" if withBody else b""
        try:
            # The size and date of the file as opened, not as named.
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                file.close()
                request.setResponseCode(NOT_FOUND)
                return b"not found\n" if withBody else b""
            return self._respond(request, file, path, status, withBody)
        except BaseException:
            file.close()
            raise

    def _respond(
        self,
        request: Any,
        file: IO[bytes],
        path: FilePath[str],
        status: os.stat_result,
        withBody: bool,
    ) -> Any:
        size = status.st_size
        # Whole seconds, rounded up as Request.setLastModified does, which
        # sends the header and answers If-Modified-Since.
        mtime = math.ceil(status.st_mtime)
        modified = datetimeToString(mtime)
        if request.setLastModified(mtime) is CACHED:
            file.close()
            return b""
        request.setHeader(b"accept-ranges", b"bytes")
        kind = mimetypes.guess_type(path.basename())[0] or self.defaultType
        request.setHeader(b"content-type", kind.encode("ascii"))
        byteRange = parseRange(request.getHeader(b"range"), size)
        ifRange = request.getHeader(b"if-range")
        if ifRange is not None and ifRange.strip() != modified:
            byteRange = None
        if byteRange is None:
            first, last = 0, size - 1
        else:
            first, last = byteRange
            if first > last:
                file.close()
                request.setResponseCode(REQUESTED_RANGE_NOT_SATISFIABLE)
                request.setHeader(b"content-range", b"bytes */%d" % (size,))
                return b""
            request.setResponseCode(PARTIAL_CONTENT)
            request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, last, size))
        length = last - first + 1
        request.setHeader(b"content-length", b"%d" % (length,))
        if not withBody or length == 0:
            file.close()
            return b""
        self._send(request, file, first, length)
        return NOT_DONE_YET

    def _send(self, request: Any, file: IO[bytes], offset: int, length: int) -> None:
        """
        Send C{length} bytes of C{file} from C{offset} as the body, then
        finish the request and close the file.
        """
        # The headers, into the transport's buffer, ahead of the body.
        request.write(b"")
        raw: Optional[RawBody] = takeTransport(request) if self.zeroCopy else None
        sender = FileSender()

        def count() -> None:
            self.bytesSent += sender.bytesSent
            self.zeroCopyBytes += sender.zeroCopyBytes
            if raw is not None:
                # For the access log: request.write counted none of it.
                request.sentLength += sender.bytesSent
                raw.giveBack()
            file.close()

        def done(_: bytes) -> None:
            count()
            request.finish()

        def failed(reason: Failure) -> None:
            count()
            if reason.check(ProducerStopped):
                _log.info(
                    "Stopped sending {path} after {sent} bytes: the client went away",
                    path=file.name,
                    sent=sender.bytesSent,
                )
            else:
                _log.failure(
                    "Sending {path} failed after {sent} bytes",
                    reason,
                    path=file.name,
                    sent=sender.bytesSent,
                )
            if request.channel is not None:
                # Fewer bytes than Content-Length promised: only closing the
                # connection tells the client.
                request.loseConnection()

        consumer = request if raw is None else raw.transport
        try:
            sent = sender.beginFileTransfer(
                file, consumer, offset=offset, length=length
            )
        except Exception:
            # Seeking to the range failed: the headers have gone all the same.
            failed(Failure())
            return
        # The channel stops the sender when the connection is lost too, but
        # not while its transport is taken.
        request.notifyFinish().addErrback(lambda _: sender.stopProducing())
        sent.addCallbacks(done, failed)
