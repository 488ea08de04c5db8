"""
Tests for L{twisted_streaming.FileResource}: each response on a real
C{twisted.web} L{Site} over loopback, with C{curl} (or, where a test needs
to control the bytes on the wire, a raw connection) as the client.
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import re
from typing import Any, Dict, List, Tuple, cast

from incremental import Version
from twisted.internet import reactor as _globalReactor
from twisted.internet import tcp
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.resource import EncodingResourceWrapper, IResource, Resource
from twisted.web.server import NOT_DONE_YET, GzipEncoderFactory, Request, Site
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import provider
from zope.interface.verify import verifyObject

from twisted import version as twistedVersion
from twisted_streaming import CollectBytes, FileResource, StreamProtocol, pipeline
from twisted_streaming._twistedweb import takeTransport
from twisted_streaming._web import parseRange
from twisted_streaming.test._extras import skipCurl, skipHTTP2, skipTLS

reactor: Any = _globalReactor

MiB = 1024 * 1024


def makeFile(
    testCase: SynchronousTestCase, size: int, name: str = "f.bin"
) -> FilePath[str]:
    """
    A new file of C{size} pseudo-random bytes, alone in a new directory.
    """
    directory = FilePath(testCase.mktemp())
    directory.makedirs()
    # Under pytest, mktemp is relative to the current directory.
    testCase.addCleanup(directory.remove)
    path = directory.child(name)
    block = hashlib.sha256(name.encode()).digest() * (MiB // 32)
    with path.open("w") as f:
        for i in range(size // MiB):
            f.write(bytes([i % 256]) + block[1:])
        f.write(block[: size % MiB])
    return path


class _Site(Site):
    """
    A L{Site} whose connections the test waits for: all closed at the end
    of the test, so that nothing is left on the reactor.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.lost: List[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        lost: Deferred[None] = Deferred()
        self.lost.append(lost)
        original = protocol.connectionLost

        def connectionLost(reason: Failure) -> None:
            try:
                original(reason)
            finally:
                lost.callback(None)

        protocol.connectionLost = connectionLost
        return protocol

    def allClosed(self) -> Deferred[Any]:
        return gatherResults(self.lost)


def serve(
    testCase: TestCase, resource: Resource, tls: Any = None, waitForClose: bool = True
) -> Tuple[_Site, int]:
    """
    Serve C{resource} on 127.0.0.1 (with TLS if C{tls} gives the server's
    context factory) until the end of the test, when the port is closed
    and (if C{waitForClose}) every connection has closed.

    @return: The site and the port number.
    """
    site = _Site(resource)
    if not waitForClose:
        # No idle timer to leave behind on a connection not waited for.
        site.timeOut = None
    if tls is None:
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
    else:
        port = reactor.listenSSL(0, site, tls, interface="127.0.0.1")
    if waitForClose:
        testCase.addCleanup(site.allClosed)
    testCase.addCleanup(port.stopListening)
    return site, port.getHost().port


#: What C{curl -w} prints after each transfer.
_WRITE_OUT = "%{http_code} %{size_download} %{num_connects} %{http_version}\\n"


async def curl(*args: str, exitCode: int = 0) -> List[Tuple[int, int, int, str]]:
    """
    Run C{curl} with C{args} and return, for each transfer, the status, the
    body bytes received, the connections it opened (0 if it reused one),
    and the HTTP version.  Fail if curl exits with another code than
    C{exitCode}.
    """
    assert skipCurl is None, skipCurl
    # Options apply to the transfers up to the next --next.
    common = ["--silent", "--show-error", "--noproxy", "*", "--max-time", "60"]
    common += ["--write-out", _WRITE_OUT]
    argv = list(common)
    for arg in args:
        argv.append(arg)
        if arg == "--next":
            argv += common
    out, err, code = await getProcessOutputAndValue(
        "curl", argv, env=dict(os.environ), reactor=reactor
    )
    if code != exitCode:
        raise AssertionError(f"curl {args!r} exited with {code}: {err!r}")
    results = []
    for line in out.decode().splitlines():
        status, size, connects, version = line.split()
        results.append((int(status), int(size), int(connects), version))
    return results


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class ParseRangeTests(SynchronousTestCase):
    """
    L{parseRange} reads a single-range C{Range} header.
    """

    def test_forms(self) -> None:
        """
        It gives the bytes of a single range, L{None} for the whole file,
        and first > last for a range with no byte in the file.
        """
        cases = [
            (None, None),
            (b"bytes=0-9", (0, 9)),
            (b" bytes=0-9 ", (0, 9)),
            (b"bytes=90-", (90, 99)),
            (b"bytes=90-500", (90, 99)),
            (b"bytes=-10", (90, 99)),
            (b"bytes=-500", (0, 99)),
            (b"bytes=100-", (100, 99)),
            (b"bytes=-0", (100, 99)),
            (b"bytes=5-3", None),
            (b"bytes=-", None),
            (b"bytes=0-1,5-6", None),
            (b"items=0-1", None),
        ]
        self.assertEqual(
            [parseRange(header, 100) for header, _ in cases],
            [result for _, result in cases],
        )


class _SeekFails(io.FileIO):
    """
    A file that cannot seek.
    """

    def seek(self, offset: int, whence: int = 0) -> int:
        raise OSError(errno.EIO, "Input/output error")


class _SeekFailsPath(FilePath):
    """
    A file that opens as a L{_SeekFails}.
    """

    def open(self, mode: str = "r") -> Any:
        return _SeekFails(self.path, "rb")


def openFiles() -> List[str]:
    """
    What the descriptors of this process refer to (Linux).
    """
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(os.path.join("/proc/self/fd", fd)))
        except OSError:
            pass  # Closed while we looked.
    return targets


class _DeniedPath(FilePath):
    """
    A file that exists but cannot be opened for lack of permission (tests
    run as root, who may open anything).
    """

    def open(self, mode: str = "r") -> Any:
        raise PermissionError(13, "Permission denied", self.path)


def render(
    resource: Resource, path: List[bytes], method: bytes = b"GET"
) -> DummyRequest:
    """
    Render a request for C{path} (the segments below C{resource}) that
    C{resource} answers at once, without a body to stream.
    """
    request = DummyRequest(path)
    request.method = method
    body = resource.render(request)
    assert isinstance(body, bytes), body
    request.write(body)
    request.finish()
    return request


class ResponsesWithoutBodyTests(SynchronousTestCase):
    """
    The responses of L{FileResource} that have no file body to stream.
    """

    def test_interface(self) -> None:
        """
        L{FileResource} provides L{IResource}, as a leaf.
        """
        resource = FileResource(self.mktemp())
        self.assertTrue(verifyObject(IResource, resource))
        self.assertTrue(resource.isLeaf)

    def test_notFound(self) -> None:
        """
        A missing file, a directory, a path that leaves the directory and a
        path below a single-file resource are all 404s.
        """
        path = makeFile(self, 10)
        directory = FileResource(path.parent())
        single = FileResource(path)
        for resource, segments in [
            (directory, [b"missing"]),
            (directory, []),
            (directory, [b""]),
            (directory, [b".."]),
            (directory, [b"f.bin", b"x"]),
            (directory, [b"\xff"]),
            (single, [b"f.bin"]),
            (single, [b"", b""]),
        ]:
            request = render(resource, segments)
            self.assertEqual(request.responseCode, 404, segments)

    def test_permissionDenied(self) -> None:
        """
        A file that cannot be opened for lack of permission is a 403.
        """
        path = makeFile(self, 10)
        request = render(FileResource(_DeniedPath(path.path)), [])
        self.assertEqual(request.responseCode, 403)

    def test_headers(self) -> None:
        """
        HEAD gets C{Accept-Ranges}, a C{Content-Type} from the file's name
        (or the default) and C{Content-Length}, and no body.
        (C{Last-Modified}, which the request writes, is checked over a real
        connection.)
        """
        path = makeFile(self, 1000, "page.html")
        path.parent().child("data").setContent(b"12345")
        resource = FileResource(path.parent(), defaultType="x/default")
        request = render(resource, [b"page.html"], b"HEAD")
        headers = request.responseHeaders
        # No code set: a 200.
        self.assertIsNone(request.responseCode)
        self.assertEqual(headers.getRawHeaders(b"accept-ranges"), [b"bytes"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/html"])
        self.assertEqual(headers.getRawHeaders(b"content-length"), [b"1000"])
        self.assertEqual(request.written, [b""])
        request = render(resource, [b"data"], b"HEAD")
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"), [b"x/default"]
        )

    def test_rangeNotSatisfiable(self) -> None:
        """
        A range that starts past the end is a 416 that gives the size.
        """
        path = makeFile(self, 100)
        request = DummyRequest([])
        request.requestHeaders.setRawHeaders(b"range", [b"bytes=100-"])
        body = FileResource(path).render(request)
        self.assertEqual((request.responseCode, body), (416, b""))
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-range"), [b"bytes */100"]
        )

    def test_emptyFile(self) -> None:
        """
        An empty file is a 200 with C{Content-Length: 0}; any range of it
        is a 416.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"")
        request = DummyRequest([])
        self.assertEqual(FileResource(path).render(request), b"")
        self.assertIsNone(request.responseCode)
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-length"), [b"0"]
        )
        request = DummyRequest([])
        request.requestHeaders.setRawHeaders(b"range", [b"bytes=-5"])
        self.assertEqual(FileResource(path).render(request), b"")
        self.assertEqual(request.responseCode, 416)


class _Probe(Resource):
    """
    Record what L{takeTransport} relies on, as a request sees it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Dict[str, Any]] = []

    def render_GET(self, request: Request) -> Any:
        channel = request.channel
        transport = getattr(channel, "transport", None)
        self.seen.append(
            {
                "channel": type(channel),
                "transport": type(transport),
                "TLS": getattr(transport, "TLS", "missing"),
                "producer is channel": getattr(transport, "producer", None) is channel,
                "_encoder": getattr(request, "_encoder", "missing"),
                "chunked before": request.chunked,
            }
        )
        if request.args.get(b"length"):
            request.setHeader(b"content-length", b"2")
        request.write(b"")
        self.seen[-1]["chunked"] = request.chunked
        request.write(b"ok")
        request.finish()
        return NOT_DONE_YET


class TwistedInternalsTests(TestCase):
    """
    What C{twisted_streaming._twistedweb} relies on in Twisted, checked on
    real connections.  If one of these fails, Twisted has changed:
    C{takeTransport} must be checked against the new release before the
    zero-copy path can be trusted.
    """

    skip = skipCurl

    async def test_plainConnection(self) -> None:
        """
        Over plain TCP, an HTTP/1.1 request's channel is an L{HTTPChannel}
        registered as the producer of its transport, a
        L{tcp.Connection} with C{TLS} false; the request has no encoder,
        and it is chunked once the headers are written without
        C{Content-Length}, not with one.
        """
        probe = _Probe()
        _, port = serve(self, probe)
        url = f"http://127.0.0.1:{port}/"
        await curl(url, "-o", os.devnull, url + "?length=1", "-o", os.devnull)
        without, withLength = probe.seen
        self.assertTrue(issubclass(without["channel"], HTTPChannel), without)
        self.assertTrue(issubclass(without["transport"], tcp.Connection), without)
        self.assertIs(without["TLS"], False)
        self.assertTrue(without["producer is channel"], without)
        self.assertIsNone(without["_encoder"])
        self.assertEqual((without["chunked before"], without["chunked"]), (0, 1))
        self.assertEqual(withLength["chunked"], 0)

    async def test_encodedResponse(self) -> None:
        """
        Under an C{EncodingResourceWrapper}, a request that accepts gzip
        has an encoder.
        """
        probe = _Probe()
        _, port = serve(self, EncodingResourceWrapper(probe, [GzipEncoderFactory()]))
        await curl("--compressed", f"http://127.0.0.1:{port}/", "-o", os.devnull)
        [seen] = probe.seen
        self.assertIsNotNone(seen["_encoder"])
        self.assertNotEqual(seen["_encoder"], "missing")

    async def test_tlsConnection(self) -> None:
        """
        Over TLS, the channel's transport is not a L{tcp.Connection}.
        """
        probe = _Probe()
        _, port = serve(self, probe, tls=serverTLS())
        await curl(
            "--insecure", "--http1.1", f"https://127.0.0.1:{port}/", "-o", os.devnull
        )
        [seen] = probe.seen
        self.assertTrue(issubclass(seen["channel"], HTTPChannel), seen)
        self.assertFalse(issubclass(seen["transport"], tcp.Connection), seen)

    if skipTLS:
        test_tlsConnection.skip = skipTLS  # type: ignore[attr-defined]

    def test_notAnHTTPChannel(self) -> None:
        """
        A request whose channel is not an L{HTTPChannel} (an HTTP/2
        stream) keeps its body: L{takeTransport} returns L{None}.
        """
        self.assertIsNone(takeTransport(DummyRequest([])))


def serverTLS() -> Any:
    """
    Server TLS options with a new self-signed certificate for 127.0.0.1.
    (A L{Site} offers HTTP/2 with ALPN by itself where twisted.web can
    speak it.)
    """
    from twisted.internet.ssl import CertificateOptions

    from twisted_streaming.test.test_faults import selfSigned

    key, cert = selfSigned("127.0.0.1")
    # pyOpenSSL takes cryptography's objects directly.
    return CertificateOptions(
        privateKey=cast(Any, key),
        certificate=cast(Any, cert),
    )


def captureLog(testCase: TestCase) -> List[str]:
    """
    The text of every log event from now to the end of the test.
    """
    events: List[str] = []

    @provider(ILogObserver)
    def observe(event: Dict[str, Any]) -> None:
        events.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return events


class HangUp(StreamProtocol):
    """
    Send C{request}, and abort the connection once 1 MiB of the answer has
    arrived: the server has sent at least that much by then.
    """

    def __init__(self, request: bytes) -> None:
        super().__init__()
        self.request = request
        self.received = 0

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        before, self.received = self.received, self.received + len(data)
        if before < 1024 * 1024 <= self.received:
            self.transport.abortConnection()


class _Request(StreamProtocol):
    """
    Send C{request}; what the server answers is L{incoming}.
    """

    def __init__(self, request: bytes) -> None:
        super().__init__()
        self.request = request

    def connectionMade(self) -> None:
        self.transport.write(self.request)


class FileResourceTests(TestCase):
    """
    L{FileResource} on a real L{Site} over loopback, with C{curl} as the
    client.
    """

    skip = skipCurl

    def setUp(self) -> None:
        self.path = makeFile(self, 8 * MiB + 12345)
        self.size = self.path.getsize()
        self.content = self.path.getContent()
        self.resource = FileResource(self.path.parent())
        self.site, self.port = serve(self, self.resource)
        self.url = f"http://127.0.0.1:{self.port}/f.bin"

    def output(self) -> str:
        """
        A new path for curl to write to, removed at the end of the test.
        """
        out = self.mktemp()

        def remove() -> None:
            if os.path.exists(out):
                os.remove(out)

        self.addCleanup(remove)
        return out

    async def test_wholeFileZeroCopy(self) -> None:
        """
        A GET gets the whole file, with a 200, sent entirely with
        L{os.sendfile} over a plain HTTP/1.1 connection; the site's access
        log counts the bytes sent.
        """
        out = self.output()
        log = captureLog(self)
        [(status, size, _, version)] = await curl(self.url, "-o", out)
        self.assertEqual((status, size, version), (200, self.size, "1.1"))
        self.assertEqual(sha256(out), hashlib.sha256(self.content).hexdigest())
        self.assertEqual(self.resource.bytesSent, self.size)
        self.assertEqual(self.resource.zeroCopyBytes, self.size)
        [access] = [line for line in log if '"GET /f.bin HTTP/1.1"' in line]
        self.assertIn(f'"GET /f.bin HTTP/1.1" 200 {self.size} ', access)

    async def test_ranges(self) -> None:
        """
        Each form of single range gets a 206 with just those bytes, sent
        with L{os.sendfile}.
        """
        size = self.size
        for header, first, last in [
            ("1000-1000999", 1000, 1000999),
            (f"{size - 70000}-", size - 70000, size - 1),
            ("-5000", size - 5000, size - 1),
            (f"{size - 10}-{size + 10}", size - 10, size - 1),
        ]:
            out = self.output()
            [(status, got, _, _)] = await curl("--range", header, self.url, "-o", out)
            self.assertEqual((status, got), (206, last - first + 1), header)
            with open(out, "rb") as f:
                self.assertTrue(f.read() == self.content[first : last + 1], header)
        self.assertEqual(self.resource.zeroCopyBytes, self.resource.bytesSent)
        self.assertEqual(self.resource.bytesSent, 1000000 + 70000 + 5000 + 10)

    async def test_headers(self) -> None:
        """
        A range response has C{Content-Range}, C{Content-Length},
        C{Accept-Ranges} and C{Last-Modified}; a range past the end gets a
        416 with C{Content-Range: bytes */size}.
        """
        headers = self.output()
        await curl(
            "--range", "10-19", "--dump-header", headers, self.url, "-o", os.devnull
        )
        with open(headers, "rb") as f:
            text = f.read()
        self.assertIn(b"HTTP/1.1 206 Partial Content\r\n", text)
        self.assertIn(b"Content-Range: bytes 10-19/%d\r\n" % (self.size,), text)
        self.assertIn(b"Content-Length: 10\r\n", text)
        self.assertIn(b"Accept-Ranges: bytes\r\n", text)
        modified = datetimeToString(math.ceil(self.path.getModificationTime()))
        self.assertIn(b"Last-Modified: " + modified + b"\r\n", text)
        [(status, got, _, _)] = await curl(
            "--range", f"{self.size}-", "--dump-header", headers, self.url
        )
        self.assertEqual((status, got), (416, 0))
        with open(headers, "rb") as f:
            self.assertIn(b"Content-Range: bytes */%d\r\n" % (self.size,), f.read())

    async def test_ifRange(self) -> None:
        """
        With C{If-Range}, the range is sent while the date given is the
        file's C{Last-Modified}, and the whole file once it is not (or an
        entity tag is given).
        """
        modified = self.lastModified()
        for ifRange, status, length in [
            (modified, 206, 10),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 200, self.size),
            ('"some-etag"', 200, self.size),
        ]:
            out = self.output()
            args = ["--range", "0-9", "--header", f"If-Range: {ifRange}"]
            [(got, size, _, _)] = await curl(*args, self.url, "-o", out)
            self.assertEqual((got, size), (status, length), ifRange)
            with open(out, "rb") as f:
                self.assertTrue(f.read() == self.content[:length], ifRange)

    def lastModified(self) -> str:
        """
        The file's C{Last-Modified}: its modification time rounded up to the
        second.
        """
        return datetimeToString(math.ceil(self.path.getModificationTime())).decode()

    async def test_ifModifiedSince(self) -> None:
        """
        C{If-Modified-Since} at or after the file's C{Last-Modified} gets a
        304 with no body, for a whole file, a range and a C{HEAD}; an
        earlier date, or one that is not a date, the file.
        """
        modified = self.lastModified()
        later = "Fri, 01 Jan 2100 00:00:00 GMT"
        earlier = "Thu, 01 Jan 1970 00:00:00 GMT"
        for since, extra, status, length in [
            (modified, [], 304, 0),
            (modified, ["--range", "0-9"], 304, 0),
            (modified, ["--head"], 304, 0),
            (later, [], 304, 0),
            (earlier, [], 200, self.size),
            ("yesterday", [], 200, self.size),
        ]:
            headers = self.output()
            [(got, size, _, _)] = await curl(
                *extra,
                "--header",
                f"If-Modified-Since: {since}",
                "--dump-header",
                headers,
                self.url,
                "-o",
                os.devnull,
            )
            self.assertEqual((got, size), (status, length), (since, extra))
            with open(headers, "rb") as f:
                self.assertIn(f"Last-Modified: {modified}\r\n".encode(), f.read())
        self.assertEqual(self.resource.bytesSent, 2 * self.size)

    async def test_keepAliveAfterHeadAndBodies(self) -> None:
        """
        A HEAD, then two GETs, then a 404, on one persistent connection:
        HEAD sends no body, each body is whole, and the connection is reused
        each time, so the channel got its transport back after each body.
        """
        first, second = self.output(), self.output()
        results = await curl(
            "--head", self.url, "-o", os.devnull,
            "--next", self.url, "-o", first,
            "--next", self.url, "-o", second,
            "--next", self.url + "-missing", "-o", os.devnull,
        )  # fmt: skip
        self.assertEqual(
            [(status, connects) for status, _, connects, _ in results],
            [(200, 1), (200, 0), (200, 0), (404, 0)],
        )
        digest = hashlib.sha256(self.content).hexdigest()
        self.assertEqual((sha256(first), sha256(second)), (digest, digest))
        self.assertEqual(self.resource.zeroCopyBytes, 2 * self.size)

    async def test_channelGetsItsTransportBack(self) -> None:
        """
        After a body sent with L{os.sendfile}, the channel is the
        transport's producer again, as Twisted made it: the next request on
        the connection sees it so.
        """
        root = Resource()
        single = FileResource(self.path)
        root.putChild(b"f.bin", single)
        probe = _Probe()
        root.putChild(b"probe", probe)
        _, port = serve(self, root)
        base = f"http://127.0.0.1:{port}/"
        results = await curl(
            base + "f.bin", "-o", os.devnull, "--next", base + "probe", "-o", os.devnull
        )
        self.assertEqual([r[:3] for r in results], [(200, self.size, 1), (200, 2, 0)])
        self.assertEqual(single.zeroCopyBytes, self.size)
        [seen] = probe.seen
        self.assertTrue(seen["producer is channel"], seen)

    async def test_pipelined(self) -> None:
        """
        Requests pipelined in one write are answered in order, each whole:
        the next response starts only after the body sent with
        L{os.sendfile} has gone.
        """
        ranges = [(0, 99999), (5, 9), (self.size - 300000, self.size - 1)]
        requests = b"".join(
            b"GET /f.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=%d-%d\r\n%s\r\n"
            % (first, last, b"Connection: close\r\n" if i == 2 else b"")
            for i, (first, last) in enumerate(ranges)
        )
        client = _Request(requests)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        await connectProtocol(endpoint, client)
        collected = CollectBytes()
        await pipeline(client.incoming, sink=collected)
        data = await collected.whenFinished()
        bodies = []
        while data:
            head, _, data = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            bodies.append(data[:length])
            data = data[length:]
        self.assertEqual(
            bodies, [self.content[first : last + 1] for first, last in ranges]
        )
        self.assertEqual(self.resource.zeroCopyBytes, self.resource.bytesSent)

    if twistedVersion < Version("Twisted", 24, 7, 0):
        test_pipelined.skip = (  # type: ignore[attr-defined]
            "Twisted before 24.7 answers pipelined requests concurrently"
            " (CVE-2024-41671)"
        )

    async def test_http10(self) -> None:
        """
        An HTTP/1.0 request gets the whole body with L{os.sendfile}, and the
        connection closes after it.
        """
        out = self.output()
        [(status, size, _, version)] = await curl("--http1.0", self.url, "-o", out)
        self.assertEqual((status, size, version), (200, self.size, "1"))
        self.assertEqual(sha256(out), hashlib.sha256(self.content).hexdigest())
        self.assertEqual(self.resource.zeroCopyBytes, self.size)

    async def test_zeroCopyOff(self) -> None:
        """
        With C{zeroCopy} false, the body goes through C{request.write},
        and arrives the same.
        """
        self.resource.zeroCopy = False
        out = self.output()
        [(status, size, _, _)] = await curl(self.url, "-o", out)
        self.assertEqual((status, size), (200, self.size))
        self.assertEqual(sha256(out), hashlib.sha256(self.content).hexdigest())
        self.assertEqual(
            (self.resource.bytesSent, self.resource.zeroCopyBytes), (self.size, 0)
        )

    async def test_gzipFallsBack(self) -> None:
        """
        Under gzip content encoding (which also makes the body chunked),
        the body goes through C{request.write}, and decodes to the file.
        """
        wrapped = EncodingResourceWrapper(self.resource, [GzipEncoderFactory()])
        _, port = serve(self, wrapped)
        out = self.output()
        [(status, _, _, _)] = await curl(
            "--compressed", f"http://127.0.0.1:{port}/f.bin", "-o", out
        )
        self.assertEqual(status, 200)
        self.assertEqual(sha256(out), hashlib.sha256(self.content).hexdigest())
        self.assertEqual(
            (self.resource.bytesSent, self.resource.zeroCopyBytes), (self.size, 0)
        )

    async def test_tlsFallsBack(self) -> None:
        """
        Over HTTPS, the body is read and written through TLS, and arrives
        whole.
        """
        _, port = serve(self, self.resource, tls=serverTLS())
        out = self.output()
        [(status, size, _, version)] = await curl(
            "--insecure", "--http1.1", f"https://127.0.0.1:{port}/f.bin", "-o", out
        )
        self.assertEqual((status, size, version), (200, self.size, "1.1"))
        self.assertEqual(sha256(out), hashlib.sha256(self.content).hexdigest())
        self.assertEqual(
            (self.resource.bytesSent, self.resource.zeroCopyBytes), (self.size, 0)
        )

    if skipTLS:
        test_tlsFallsBack.skip = skipTLS  # type: ignore[attr-defined]

    async def test_http2FallsBack(self) -> None:
        """
        Over HTTP/2, the body is written through the request's stream, and
        arrives whole; so does a range.
        """
        # Twisted's HTTP/2 does not notice the client closing the
        # connection once a response is sent (its reading is left paused;
        # the same with twisted.web.static.File): nothing to wait for.
        _, port = serve(self, self.resource, tls=serverTLS(), waitForClose=False)
        url = f"https://127.0.0.1:{port}/f.bin"
        whole, part = self.output(), self.output()
        results = await curl(
            "--insecure", "--http2", url, "-o", whole,
            "--next", "--insecure", "--http2", "--range", "100-199", url,
            "-o", part,
        )  # fmt: skip
        self.assertEqual(
            [(status, size, version) for status, size, _, version in results],
            [(200, self.size, "2"), (206, 100, "2")],
        )
        self.assertEqual(sha256(whole), hashlib.sha256(self.content).hexdigest())
        with open(part, "rb") as f:
            self.assertTrue(f.read() == self.content[100:200])
        self.assertEqual(self.resource.zeroCopyBytes, 0)

    if skipHTTP2:
        test_http2FallsBack.skip = skipHTTP2  # type: ignore[attr-defined]

    async def test_clientGoesAway(self) -> None:
        """
        When the client goes away mid-body, the transfer stops, the file is
        closed and the stop is logged.
        """
        size = 64 * MiB
        path = makeFile(self, size, "big.bin")
        resource = FileResource(path)
        site, port = serve(self, resource)
        log = captureLog(self)
        client = HangUp(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        await client.lost
        await site.allClosed()
        self.assertGreaterEqual(resource.bytesSent, MiB - 300)  # Less the headers.
        self.assertLess(resource.bytesSent, size)
        self.assertEqual(resource.zeroCopyBytes, resource.bytesSent)
        stopped = [e for e in log if e.startswith("Stopped sending ")]
        self.assertEqual(len(stopped), 1, log)
        self.assertIn("the client went away", stopped[0])
        # No descriptor of this process refers to the file any more.
        self.assertNotIn(path.path, openFiles())
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_readFailsAfterHeaders(self) -> None:
        """
        When the file cannot be read (here: seeking to the range fails)
        after the headers have gone, the failure is logged as this file's,
        the file closed and the connection closed, so that the client sees
        the body cut short.
        """
        resource = FileResource(_SeekFailsPath(self.path.path))
        _, port = serve(self, resource)
        log = captureLog(self)
        # curl: 18, "transfer closed with 10 bytes remaining to read".
        [(status, size, _, _)] = await curl(
            "--range", "10-19", f"http://127.0.0.1:{port}/", exitCode=18
        )
        self.assertEqual((status, size), (206, 0))
        [failure] = self.flushLoggedErrors(OSError)
        self.assertEqual(failure.value.errno, errno.EIO)
        self.assertIn(f"Sending {self.path.path} failed after 0 bytes", log)
        self.assertNotIn(self.path.path, openFiles())
        self.assertEqual(resource.bytesSent, 0)
