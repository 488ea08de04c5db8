"""
The examples run, as subprocesses, against servers on 127.0.0.1.  (The
WebSocket example has its own module, C{test_websocket_random}.)
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Tuple

from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from twisted_streaming import FileResource
from twisted_streaming.randomintegers import RandomIntegerFactory
from twisted_streaming.test._extras import skipTreq
from twisted_streaming.test.test_filesender import _makeFile, _Sender
from twisted_streaming.test.test_httpbody import Upload
from twisted_streaming.test.test_proxy import Peer, digest
from twisted_streaming.test.test_web import HangUp
from twisted_streaming.test.test_web import serve as serveWeb

from .helpers import reactor, run, serve


class RandomIntegersClientTests(TestCase):
    """
    C{examples/random_integers_client.py}.
    """

    async def test_readsWithProgress(self) -> None:
        """
        The client reads exactly what it asked for from a seeded server,
        drawing a progress bar, and reports the count and the sum.
        """
        factory = RandomIntegerFactory(seed=11)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        process = run(
            "random_integers_client.py",
            ["--port", str(port.getHost().port), "--count", "300000"],
        )
        self.assertEqual(await process.ended, 0, process.err)
        producer = factory.buildProducer(300000)
        expected = sum(map(int, b"".join(iter(producer.produce, None)).split()))
        self.assertEqual(
            process.out, b"received 300000 integers, sum %d\n" % (expected,)
        )
        self.assertIn(b"100.0%", process.err)
        self.assertIn(b"integers/s", process.err)


class FileServerTests(TestCase):
    """
    C{examples/file_server.py}.
    """

    async def test_wholeFileAndRanges(self) -> None:
        """
        The server sends a whole file with its length (and just the length
        for HEAD), single ranges of each form with 206 and C{Content-Range},
        416 for a range past the end and 404 for a missing file, and honours
        C{If-Range} against its C{Last-Modified}.
        """
        size = 4 * 1024 * 1024
        path, expected = _makeFile(self, size)
        with open(path, "rb") as f:
            content = f.read()
        directory, name = os.path.split(path)
        _, port = await serve(
            self, "file_server.py", ["--directory", directory, "--port", "0"]
        )
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)
        url = f"http://127.0.0.1:{port}/{name}".encode()

        async def get(range: bytes = b"", path: bytes = url) -> Tuple[Any, bytes]:
            headers = Headers({b"range": [range]} if range else {})
            response = await agent.request(b"GET", path, headers)
            return response, await readBody(response)

        response, body = await get()
        self.assertEqual(response.code, 200)
        (modified,) = response.headers.getRawHeaders(b"last-modified")
        # The client takes Content-Length out of the headers into length.
        self.assertEqual(response.length, size)
        self.assertEqual(hashlib.sha256(body).hexdigest(), expected)

        response = await agent.request(b"HEAD", url)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-length"), [b"%d" % (size,)]
        )
        self.assertEqual(await readBody(response), b"")

        for header, first, last in [
            (b"bytes=1000-1000999", 1000, 1000999),
            (b"bytes=%d-" % (size - 70000), size - 70000, size - 1),
            (b"bytes=-5000", size - 5000, size - 1),
            (b"bytes=%d-%d" % (size - 10, size + 10), size - 10, size - 1),
        ]:
            response, body = await get(header)
            self.assertEqual(response.code, 206, header)
            self.assertEqual(
                response.headers.getRawHeaders(b"content-range"),
                [b"bytes %d-%d/%d" % (first, last, size)],
            )
            self.assertEqual(body, content[first : last + 1], header)

        response, body = await get(b"bytes=%d-" % (size,))
        self.assertEqual(response.code, 416)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-range"), [b"bytes */%d" % size]
        )
        self.assertEqual(body, b"")

        response, _ = await get(path=f"http://127.0.0.1:{port}/missing".encode())
        self.assertEqual(response.code, 404)

        # If-Range: the range while the file is as the client last saw it,
        # the whole file once it has changed.
        for ifRange, code, length in [
            (modified, 206, 10),
            (b"Thu, 01 Jan 1970 00:00:00 GMT", 200, size),
            (b'"some-etag"', 200, size),
        ]:
            headers = Headers({b"range": [b"bytes=0-9"], b"if-range": [ifRange]})
            response = await agent.request(b"GET", url, headers)
            body = await readBody(response)
            self.assertEqual((response.code, len(body)), (code, length), ifRange)
            self.assertEqual(body, content[:length])

    async def test_clientGoesAway(self) -> None:
        """
        When the client disconnects mid-transfer, the server stops sending,
        logs how far it got and closes the file.
        """
        size = 32 * 1024 * 1024
        path, _ = _makeFile(self, size)
        directory, name = os.path.split(path)
        server, port = await serve(
            self, "file_server.py", ["--directory", directory, "--port", "0"]
        )
        client = HangUp(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (name.encode(),))
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        await client.lost
        stopped = await server.waitForLog(
            b"Stopped sending %s after " % (os.path.abspath(path).encode(),)
        )
        self.assertTrue(stopped.endswith(b" bytes: the client went away"), stopped)
        sent = int(stopped.split()[0])
        self.assertGreaterEqual(sent, 1024 * 1024 - 300)  # Less the headers.
        self.assertLess(sent, size)
        # Linux: no descriptor of the server process refers to the file.
        pid = server.transport.pid  # type: ignore[union-attr]
        fds = f"/proc/{pid}/fd"
        targets = []
        for fd in os.listdir(fds):
            try:
                targets.append(os.readlink(os.path.join(fds, fd)))
            except OSError:
                pass  # Closed while we looked.
        self.assertTrue(targets)
        self.assertNotIn(os.path.abspath(path), targets)


class UploadReceiverTests(TestCase):
    """
    C{examples/upload_receiver.py}.
    """

    async def test_savesUploads(self) -> None:
        """
        Each connection's bytes are saved to their own file, and the server
        prints the size and SHA-256 of each.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        server, port = await serve(
            self, "upload_receiver.py", ["--directory", directory, "--port", "0"]
        )
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        for number, size in [(1, 8 * 1024 * 1024), (2, 3 * 1024 * 1024)]:
            path, expected = _makeFile(self, size)
            sender = _Sender(path)
            await connectProtocol(endpoint, sender)
            await sender.result
            await sender.lost
            name = f"upload-{number}.bin"
            line = await server.waitFor(f"{name}: ".encode())
            self.assertEqual(line, f"{size} bytes, sha256 {expected}".encode())
            saved = os.path.join(directory, name)
            self.addCleanup(os.remove, saved)
            with open(saved, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), expected)

    async def test_reportsCutOffUploads(self) -> None:
        """
        An upload whose connection is reset, not closed, is reported as
        cut off.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        server, port = await serve(
            self, "upload_receiver.py", ["--directory", directory, "--port", "0"]
        )
        self.addCleanup(os.remove, os.path.join(directory, "upload-1.bin"))

        class Reset(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"x" * 65536)  # type: ignore[union-attr]
                self.transport.abortConnection()  # type: ignore[union-attr]

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await connectProtocol(endpoint, Reset())
        line = await server.waitFor(b"upload-1.bin: ")
        self.assertRegex(line.decode(), r"^cut off after \d+ bytes$")


class ProxyTests(TestCase):
    """
    C{examples/proxy.py}.
    """

    async def test_echoThroughProxy(self) -> None:
        """
        Data sent through the proxy comes back from an echo server intact,
        and the proxy prints the connection's byte counts when it closes.
        """
        echo = reactor.listenTCP(
            0, Factory.forProtocol(lambda: Peer(echo=True)), interface="127.0.0.1"
        )
        self.addCleanup(echo.stopListening)
        server, port = await serve(
            self,
            "proxy.py",
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--connect",
                f"tcp:127.0.0.1:{echo.getHost().port}",
            ],
        )
        size = 3 * 1024 * 1024
        client = Peer(send=size, seed=5)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        await client.lost
        self.assertEqual(client.received, size)
        self.assertEqual(client.hash.digest(), digest(5, size))
        line = await server.waitFor(b"connection 1: ")
        self.assertRegex(
            line.decode(),
            rf"^{size} bytes up, {size} bytes down in \d+\.\d{{3}}s \(closed\)$",
        )


class CompressAndHashTests(TestCase):
    """
    C{examples/compress_and_hash.py}.
    """

    async def test_sendAndReceive(self) -> None:
        """
        A file sent compressed arrives byte for byte, and both sides print
        its size and its SHA-256.
        """
        size = 8 * 1024 * 1024
        original, expected = _makeFile(self, size)
        copy = self.mktemp()
        receiver, port = await serve(
            self, "compress_and_hash.py", ["receive", copy, "--port", "0"]
        )
        sender = run("compress_and_hash.py", ["send", original, "--port", str(port)])
        self.assertEqual(await sender.ended, 0, sender.err)
        self.assertEqual(await receiver.ended, 0, receiver.err)
        self.addCleanup(os.remove, copy)
        sent = re.fullmatch(
            rb"sent (\d+) bytes as (\d+) bytes, sha256 ([0-9a-f]+)\n", sender.out
        )
        assert sent is not None, sender.out
        self.assertEqual(int(sent.group(1)), size)
        self.assertLess(int(sent.group(2)), size)
        self.assertEqual(sent.group(3).decode(), expected)
        self.assertEqual(
            receiver.out.splitlines()[-1],
            f"received {size} bytes, sha256 {expected}".encode(),
        )
        with open(original, "rb") as a, open(copy, "rb") as b:
            self.assertTrue(a.read() == b.read())


class AsyncHTTPTests(TestCase):
    """
    C{examples/async_http.py}, against a real C{twisted.web} server.
    """

    skip = skipTreq

    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.addCleanup(self.directory.remove)
        self.content = os.urandom(2 * 1024 * 1024 + 5)
        self.directory.child("big.bin").setContent(self.content)
        root = Resource()
        root.putChild(b"files", FileResource(self.directory))
        root.putChild(b"upload", Upload())
        _, port = serveWeb(self, root)
        self.url = f"http://127.0.0.1:{port}"

    async def test_upload(self) -> None:
        """
        The example uploads what its async generator yields, and prints
        its size and SHA-256, which the server agrees with.
        """
        process = run("async_http.py", ["upload", f"{self.url}/upload", "--mib", "3"])
        self.assertEqual(await process.ended, 0, process.err)
        sent, answer = process.out.decode().splitlines()
        match = re.fullmatch(r"sent (\d+) bytes, sha256 ([0-9a-f]+)", sent)
        assert match is not None, sent
        self.assertEqual(int(match.group(1)), 3 * 1024 * 1024)
        self.assertEqual(
            answer, f"server answered 200: {match.group(1)} {match.group(2)}"
        )

    async def test_download(self) -> None:
        """
        The example streams a download to disk, whole.
        """
        target = self.mktemp()
        process = run(
            "async_http.py", ["download", f"{self.url}/files/big.bin", target]
        )
        self.assertEqual(await process.ended, 0, process.err)
        expected = hashlib.sha256(self.content).hexdigest()
        self.assertEqual(
            process.out.decode(),
            f"saved {len(self.content)} bytes, sha256 {expected}\n",
        )
        with open(target, "rb") as f:
            self.assertEqual(f.read(), self.content)
