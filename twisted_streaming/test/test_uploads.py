"""
Tests for L{StreamingRequest} and L{MultipartResource}: uploads over real
loopback connections to C{twisted.web}, with C{curl -F} as the client
(several files and a field, a file over 1 GiB with constant memory, limits
answered with 413 and 400), and raw connections where a test must control
the bytes on the wire.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Dict, List, Optional

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from twisted_streaming import (
    IFinishableConsumer,
    IStreamingBodyResource,
    MultipartError,
    MultipartResource,
    SaveUploads,
    StreamingRequest,
)
from twisted_streaming._twistedweb import requestLine
from twisted_streaming.test._extras import skipCurl
from twisted_streaming.test.test_multipart import multipartBody
from twisted_streaming.test.test_web import curl, serve
from twisted_streaming.testing import BackpressureConsumer

reactor: Any = _globalReactor

MiB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@implementer(IFinishableConsumer)
class Counter:
    """
    A part's consumer that keeps only its size, its CRC-32 and the largest
    resident size of this process seen while it was written.
    """

    producer: Any = None

    def __init__(self) -> None:
        self.size = 0
        self.crc = 0
        self.writes = 0
        self.peakRSS = 0
        self.finished = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        self.writes += 1
        if self.writes % 64 == 1:
            self.peakRSS = max(self.peakRSS, _rss())

    def finish(self) -> None:
        self.finished = True


class Counting:
    """
    A handler that counts every part.
    """

    def __init__(self) -> None:
        self.parts: Dict[str, Counter] = {}

    def startChild(self, name: str, **meta: Any) -> Counter:
        counter = self.parts[name] = Counter()
        return counter


def _removeIfThere(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def crc32Of(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            crc = zlib.crc32(block, crc)
    return crc


class UploadServer:
    """
    A L{MultipartResource} at C{/upload} on a site of L{StreamingRequest}s,
    which records its requests and handlers.
    """

    def __init__(
        self,
        testCase: TestCase,
        makeHandler: Any = None,
        streaming: bool = True,
        **limits: Any,
    ) -> None:
        self.requests: List[Any] = []
        self.handlers: List[Any] = []
        self.directory = os.path.abspath(testCase.mktemp())
        self.makeHandler = makeHandler or (lambda: SaveUploads(self.directory))
        root = Resource()
        root.putChild(b"upload", MultipartResource(self._handler, **limits))
        self.root = root
        site, port = serve(testCase, root)
        base = StreamingRequest if streaming else Request
        server = self

        class Recording(base):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                server.requests.append(self)

        site.requestFactory = Recording
        self.url = f"http://127.0.0.1:{port}/upload"
        self.port = port

    def _handler(self, request: Any) -> Any:
        handler = self.makeHandler()
        self.handlers.append(handler)
        return handler


class CurlUploadTests(TestCase):
    """
    L{MultipartResource} through L{StreamingRequest}, with C{curl -F}.
    """

    skip = skipCurl

    def output(self) -> str:
        path = os.path.abspath(self.mktemp())
        self.addCleanup(_removeIfThere, path)
        return path

    def file(self, size: int, name: str = "f.bin") -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        return path

    async def test_severalFilesAndAField(self) -> None:
        """
        What C{curl -F} sends with two files (one empty) and a field is
        saved exactly: the files' bytes on disk, the field in memory; the
        answer is a C{200} listing them.
        """
        server = UploadServer(self)
        first, empty = self.file(3 * MiB + 11, "first.bin"), self.file(0, "empty.txt")
        out = self.output()
        [(status, _, _, _)] = await curl(
            "-F",
            f"doc=@{first}",
            "-F",
            f"doc=@{empty}",
            "-F",
            "title=héllo",
            server.url,
            "-o",
            out,
        )
        self.assertEqual(status, 200)
        with open(out, "rb") as f:
            answer = f.read().decode()
        self.assertIn("file doc: first.bin (3145739 bytes)", answer)
        self.assertIn("file doc: empty.txt (0 bytes)", answer)
        [uploads] = server.handlers
        self.assertEqual(uploads.fields, {"title": ["héllo"]})
        self.assertEqual(
            [(f.name, f.filename) for f in uploads.files],
            [("doc", "first.bin"), ("doc", "empty.txt")],
        )
        for upload, source in zip(uploads.files, [first, empty]):
            with open(upload.path, "rb") as saved, open(source, "rb") as sent:
                self.assertEqual(saved.read(), sent.read())
        self.assertGreater(server.requests[0].bodyBytes, os.path.getsize(first))
        self.assertEqual(server.requests[0].discardedBytes, 0)

    async def test_overOneGiBConstantMemory(self) -> None:
        """
        A file of 1.1 GiB uploaded with C{curl -F} streams through with
        constant memory: the server's resident size grows by no more than
        a few MiB, and the part arrives whole (size and CRC-32).
        """
        size = 1100 * MiB
        directory = (
            "/dev/shm" if os.path.isdir("/dev/shm") else os.path.abspath(self.mktemp())
        )
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"twisted_streaming-upload-{os.getpid()}.bin")
        # Sparse: a few random blocks, holes elsewhere; nothing to write.
        with open(path, "wb") as f:
            f.truncate(size)
            for i in range(11):
                f.seek(i * 100 * MiB)
                f.write(os.urandom(4096))
        self.addCleanup(os.remove, path)
        server = UploadServer(self, Counting)
        before = _rss()
        [(status, _, _, _)] = await curl(
            "-F", f"big=@{path}", "-F", "note=x", server.url, "-o", os.devnull
        )
        self.assertEqual(status, 200)
        big = server.handlers[0].parts["big"]
        self.assertEqual((big.size, big.crc), (size, crc32Of(path)))
        self.assertTrue(big.finished)
        grown = big.peakRSS - before
        self.assertLess(grown, 8 * MiB, f"RSS grew by {grown / MiB:.1f} MiB")

    async def test_partTooLarge(self) -> None:
        """
        A part over C{maxPartSize} gets a C{413} as soon as it passes the
        limit, naming the part, without the rest of the upload being read;
        what was saved is removed.
        """
        server = UploadServer(self, maxPartSize=MiB)
        big = self.file(30 * MiB)
        out = self.output()
        [(status, _, _, _)] = await curl(
            "-F", "a=b", "-F", f"huge=@{big}", server.url, "-o", out
        )
        self.assertEqual(status, 413)
        with open(out, "rb") as f:
            self.assertEqual(
                f.read(), b"part 'huge' is larger than its limit of 1048576 bytes\n"
            )
        self.assertLess(server.requests[0].bodyBytes, 30 * MiB)
        await _settled(server.handlers[0])
        self.assertEqual(os.listdir(server.directory), [])

    async def test_bodyTooLargeFromItsLength(self) -> None:
        """
        A body whose C{Content-Length} is over C{maxTotalSize} gets a
        C{413} before any of it is read (and no C{100 Continue}).
        """
        server = UploadServer(self, maxTotalSize=MiB)
        big = self.file(5 * MiB)
        out = self.output()
        [(status, _, _, _)] = await curl("-F", f"huge=@{big}", server.url, "-o", out)
        self.assertEqual(status, 413)
        with open(out, "rb") as f:
            self.assertEqual(
                f.read(), b"the body is larger than its limit of 1048576 bytes\n"
            )
        self.assertEqual(server.requests[0].bodyBytes, 0)
        self.assertEqual(server.handlers, [])

    async def test_malformedAndNotMultipart(self) -> None:
        """
        A malformed body gets a C{400}; a body that is not
        C{multipart/form-data} a C{415}.
        """
        server = UploadServer(self)
        bad = self.file(0)
        with open(bad, "wb") as f:
            f.write(b"--xyz\r\nContent-Type: text/plain\r\n\r\nno name\r\n--xyz--\r\n")
        out = self.output()
        [(status, _, _, _)] = await curl(
            "-H",
            "Content-Type: multipart/form-data; boundary=xyz",
            "--data-binary",
            f"@{bad}",
            server.url,
            "-o",
            out,
        )
        self.assertEqual(status, 400)
        with open(out, "rb") as f:
            self.assertIn(b"no Content-Disposition", f.read())
        [(status, _, _, _)] = await curl("-d", "a=b", server.url, "-o", out)
        self.assertEqual(status, 415)

    async def test_plainRequest(self) -> None:
        """
        Through a plain C{Request}, the body Twisted stored is streamed to
        the reader all the same.
        """
        server = UploadServer(self, streaming=False)
        first = self.file(200000)
        [(status, _, _, _)] = await curl(
            "-F", f"doc=@{first}", "-F", "t=1", server.url, "-o", os.devnull
        )
        self.assertEqual(status, 200)
        [uploads] = server.handlers
        with open(uploads.files[0].path, "rb") as saved, open(first, "rb") as sent:
            self.assertEqual(saved.read(), sent.read())

    async def test_otherResourcesUnchanged(self) -> None:
        """
        Under L{StreamingRequest}, a resource that does not stream bodies
        gets C{request.content} and C{request.args} as usual, and the tree
        is traversed once.
        """
        seen: List[Any] = []
        traversals: List[bytes] = []

        class Form(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                seen.append((request.args, request.content.read()))
                return b"ok"

        class Root(Resource):
            def getChild(self, path: bytes, request: Any) -> Resource:
                traversals.append(path)
                return Form()

        site, port = serve(self, Root())
        site.requestFactory = StreamingRequest
        [(status, _, _, _)] = await curl(
            "-d", "a=b&c=d", f"http://127.0.0.1:{port}/form?q=1", "-o", os.devnull
        )
        self.assertEqual(status, 200)
        self.assertEqual(
            seen, [({b"a": [b"b"], b"c": [b"d"], b"q": [b"1"]}, b"a=b&c=d")]
        )
        self.assertEqual(traversals, [b"form"])


async def _settled(handler: Any) -> None:
    """
    Wait for C{handler} to have ended, well or not.
    """
    try:
        await handler.whenFinished()
    except Exception:
        pass


class Raw(Protocol):
    """
    A client that sends what it is given and collects the answer.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()
        self.answered: Optional[Deferred[bytes]] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received and self.answered is not None:
            answered, self.answered = self.answered, None
            answered.callback(self.received)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


async def rawConnect(port: int) -> Raw:
    client = Raw()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


def head(path: bytes, body: bytes = b"", **headers: bytes) -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: x"]
    lines += [
        name.replace("_", "-").encode() + b": " + value
        for name, value in headers.items()
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


BOUNDARY = b"b0undary"


class StreamingRequestTests(TestCase):
    """
    L{StreamingRequest} over raw connections, where the test controls the
    bytes on the wire.
    """

    async def test_clientGoesAwayMidBody(self) -> None:
        """
        A client that goes away in the middle of an upload leaves nothing
        behind: the reader is finished, finds the body cut short, and the
        files saved are removed.
        """
        server = UploadServer(self)
        body = multipartBody(
            [("f", "f.bin", None, b"x" * 200000)], boundary=BOUNDARY.decode()
        )
        client = await rawConnect(server.port)
        client.transport.write(  # type: ignore[union-attr]
            head(
                b"/upload",
                body[:100000],
                Content_Type=b"multipart/form-data; boundary=" + BOUNDARY,
                Content_Length=b"%d" % (len(body),),
            )
        )
        await waitUntil(lambda: bool(server.handlers and server.handlers[0].files))
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost
        [uploads] = server.handlers
        with self.assertRaises(MultipartError):
            await uploads.whenFinished()
        await _turn()
        self.assertEqual(os.listdir(server.directory), [])

    async def test_earlyAnswerWithoutContinue(self) -> None:
        """
        A body over the limit by its C{Content-Length}, with C{Expect:
        100-continue}, is answered C{413} at once, with no C{100 Continue}
        before or after.
        """
        server = UploadServer(self, maxTotalSize=1000)
        client = await rawConnect(server.port)
        client.transport.write(  # type: ignore[union-attr]
            head(
                b"/upload",
                Content_Type=b"multipart/form-data; boundary=" + BOUNDARY,
                Content_Length=b"5000",
                Expect=b"100-continue",
            )
        )
        assert client.answered is not None
        answer = await client.answered
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost
        self.assertNotIn(b"100 Continue", client.received)

    async def test_streamingLaterHoldsTheBody(self) -> None:
        """
        A resource may say where the body goes later: until then the
        connection is not read, and nothing is lost.
        """
        rendered: Deferred[Any] = Deferred()

        @implementer(IStreamingBodyResource)
        class Later(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> Any:
                rendered.callback(request)
                return NOT_DONE_YET

        site, port = serve(self, Later())
        site.requestFactory = StreamingRequest
        client = await rawConnect(port)
        body = os.urandom(300000)
        client.transport.write(head(b"/", body, Content_Length=b"%d" % (len(body),)))  # type: ignore[union-attr]
        request = await rendered
        await waitUntil(lambda: request.bodyBytes > 0)
        self.assertTrue(request._reading.paused)
        consumer = BackpressureConsumer(threshold=2**62)
        request.streamBodyTo(consumer)
        await waitUntil(lambda: consumer.finished)
        self.assertEqual(consumer.received, body)
        self.assertIsNone(consumer.producer)
        request.write(b"done")
        request.finish()
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost

    async def test_answerWithoutStreamingDiscards(self) -> None:
        """
        A body its resource answers without streaming is read and
        discarded, and the connection closed after it; with more than
        C{maxDiscard}, it is closed at once.
        """

        @implementer(IStreamingBodyResource)
        class Refuse(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                request.setResponseCode(403)
                return b"no"

        site, port = serve(self, Refuse())
        site.requestFactory = StreamingRequest
        client = await rawConnect(port)
        client.transport.write(head(b"/", b"x" * 1000, Content_Length=b"3000"))  # type: ignore[union-attr]
        assert client.answered is not None
        answer = await client.answered
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 "))
        client.transport.write(b"y" * 2000)  # type: ignore[union-attr]
        await client.lost
        self.assertTrue(client.received.endswith(b"no"))

        class Small(StreamingRequest):
            maxDiscard = 10000

        site.requestFactory = Small
        client = await rawConnect(port)
        client.transport.write(head(b"/", b"x" * 1000, Content_Length=b"%d" % (10**9,)))  # type: ignore[union-attr]
        assert client.answered is not None
        await client.answered
        for _ in range(10):
            client.transport.write(b"z" * 5000)  # type: ignore[union-attr]
        await client.lost


async def _turn() -> None:
    """
    Let the reactor turn once.
    """
    d: Deferred[None] = Deferred()
    reactor.callLater(0, d.callback, None)
    await d


async def waitUntil(condition: Any, turns: int = 100000) -> None:
    """
    Let the reactor turn until C{condition()}, at most C{turns} times.
    """
    for _ in range(turns):
        if condition():
            return
        await _turn()
    raise AssertionError(f"{condition!r} still false after {turns} reactor turns")


class TwistedWebInternalsTests(TestCase):
    """
    What L{StreamingRequest} relies on in C{twisted.web}
    (C{twisted_streaming._twistedweb}), checked on a real connection.
    """

    async def test_requestLineAtTheEndOfTheHeaders(self) -> None:
        """
        When C{gotLength} is called, the channel holds the request line,
        the C{Expect} header is checked after it returns, and the body's
        end comes to C{requestReceived}; C{finish} ends with C{_cleanup}.
        """
        seen: List[Any] = []

        class Probe(Request):
            def gotLength(self, length: Optional[int]) -> None:
                seen.append(("gotLength", requestLine(self.channel), length))
                self.requestHeaders.removeHeader(b"expect")
                super().gotLength(length)

            def requestReceived(
                self, command: bytes, path: bytes, version: bytes
            ) -> None:
                seen.append(("requestReceived", len(self.content.getvalue())))  # type: ignore[union-attr]
                super().requestReceived(command, path, version)

            def _cleanup(self) -> None:
                seen.append(("cleanup",))
                super()._cleanup()

        class Answer(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                return b"ok"

        site, port = serve(self, Answer())
        site.requestFactory = Probe
        client = await rawConnect(port)
        client.transport.write(  # type: ignore[union-attr]
            head(b"/p?q", b"abc", Content_Length=b"3", Expect=b"100-continue")
        )
        assert client.answered is not None
        answer = await client.answered
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost
        self.assertEqual(
            seen,
            [
                ("gotLength", (b"POST", b"/p?q", b"HTTP/1.1"), 3),
                ("requestReceived", 3),
                ("cleanup",),
            ],
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertIsNone(requestLine(object()))
