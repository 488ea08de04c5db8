"""
Tests for HTTP bodies: L{BodyProducer} (any source as a request body) and
L{responseBody} (a response body as a source), over fakes and end to end
against a real C{twisted.web} server, with C{Agent} and C{treq}.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any, List

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface.verify import verifyObject

from twisted_streaming import (
    BodyProducer,
    CollectBytes,
    FileConsumer,
    FileResource,
    FileSender,
    fromAsyncIterable,
    pipeline,
    responseBody,
    toAsyncIterator,
)
from twisted_streaming.test._extras import skipTreq
from twisted_streaming.test.test_fromasynciterable import Chunks, endless
from twisted_streaming.test.test_push import runTurn
from twisted_streaming.test.test_web import serve
from twisted_streaming.testing import BackpressureConsumer

reactor: Any = _globalReactor


class BodyProducerTests(SynchronousTestCase):
    """
    L{BodyProducer} over fakes, on a L{Clock}.
    """

    def test_interface(self) -> None:
        """
        It provides L{IBodyProducer}, with the length it was given.
        """
        producer = BodyProducer(fromAsyncIterable(Chunks(1)))
        self.assertTrue(verifyObject(IBodyProducer, producer))
        self.assertEqual(producer.length, UNKNOWN_LENGTH)
        self.assertEqual(BodyProducer(lambda c: Deferred(), 10).length, 10)

    def test_writesTheSourceWithBackpressure(self) -> None:
        """
        The source writes to the request's body consumer; the client's
        pause (even one before the body started) pauses the source, and its
        resume resumes it; the Deferred fires with L{None} at the end.
        """
        clock = Clock()
        chunks = Chunks(20, clock=clock)
        source = chunks.producer = fromAsyncIterable(chunks, reactor=clock)
        body = BodyProducer(source)
        body.pauseProducing()
        consumer = BackpressureConsumer()
        d = body.startProducing(consumer)
        for _ in range(10):
            clock.advance(0.001)
        self.assertEqual(consumer.received, b"")
        self.assertEqual(chunks.pulls, 0)
        body.resumeProducing()
        for _ in range(100):
            clock.advance(0.001)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(consumer.received, chunks.expected)
        self.assertEqual(chunks.pausedPulls, 0)

    def test_pullSource(self) -> None:
        """
        A pull producer's body (a L{FileSender}) is driven while not paused.
        """
        clock = Clock()
        data = os.urandom(100000)
        body = BodyProducer(
            lambda c: FileSender(reactor=clock).beginFileTransfer(io.BytesIO(data), c),
            len(data),
            reactor=clock,
        )
        consumer = BackpressureConsumer()
        d = body.startProducing(consumer)
        clock.advance(0)
        body.pauseProducing()
        sent = len(consumer.received)
        clock.advance(0)
        self.assertEqual(len(consumer.received), sent)
        body.resumeProducing()
        clock.advance(0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(consumer.received, data)

    def test_stopNeverFires(self) -> None:
        """
        C{stopProducing} stops the source (an async generator is closed)
        and the Deferred never fires.
        """
        clock = Clock()
        closed: List[str] = []
        body = BodyProducer(fromAsyncIterable(endless(closed), reactor=clock))
        consumer = BackpressureConsumer(threshold=2**40)
        d = body.startProducing(consumer)
        runTurn(clock)
        self.assertGreater(len(consumer.received), 0)
        body.stopProducing()
        clock.advance(0)
        self.assertNoResult(d)
        self.assertEqual(closed, ["GeneratorExit", "finally"])

    def test_sourceErrorFails(self) -> None:
        """
        The source's error fails the Deferred.
        """

        async def failing() -> Any:
            yield b"a"
            raise ValueError("no more")

        clock = Clock()
        body = BodyProducer(fromAsyncIterable(failing(), reactor=clock))
        d = body.startProducing(BackpressureConsumer())
        clock.advance(0)
        self.failureResultOf(d, ValueError)


class Upload(Resource):
    """
    Answer a POST with the length and SHA-256 of its body.
    """

    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        body = request.content.read()
        return b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())


class HTTPBodyTests(TestCase):
    """
    Request and response bodies against a real C{twisted.web} server on
    127.0.0.1.
    """

    def setUp(self) -> None:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        # Under pytest, mktemp is relative to the current directory: clean up.
        self.addCleanup(directory.remove)
        self.content = os.urandom(3 * 1024 * 1024 + 17)
        directory.child("big.bin").setContent(self.content)
        root = Resource()
        root.putChild(b"upload", Upload())
        root.putChild(b"files", FileResource(directory))
        self.site, port = serve(self, root)
        self.url = f"http://127.0.0.1:{port}".encode()
        self.pool = HTTPConnectionPool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=self.pool)
        self.directory = directory

    async def test_agentUploadsAFile(self) -> None:
        """
        C{Agent} uploads a file through a L{FileSender}, with its length.
        """
        path = self.directory.child("big.bin")
        body = BodyProducer(
            lambda c: FileSender().beginFileTransfer(path, c), path.getsize()
        )
        response = await self.agent.request(
            b"POST", self.url + b"/upload", Headers(), body
        )
        answer = CollectBytes()
        await pipeline(responseBody(response), sink=answer)
        expected = hashlib.sha256(self.content).hexdigest()
        self.assertEqual(
            await answer.whenFinished(),
            b"%d %s" % (len(self.content), expected.encode()),
        )

    async def test_treqUploadsFromAnAsyncGenerator(self) -> None:
        """
        C{treq} uploads what an async generator yields, chunked, and the
        generator is never asked for more while the connection has paused
        the body.
        """
        import treq

        chunks = Chunks(200, size=32 * 1024)
        source = chunks.producer = fromAsyncIterable(chunks)
        response = await treq.post(
            (self.url + b"/upload").decode(), data=BodyProducer(source), pool=self.pool
        )
        answer = await response.content()
        expected = hashlib.sha256(chunks.expected).hexdigest()
        self.assertEqual(answer, b"%d %s" % (len(chunks.expected), expected.encode()))
        self.assertEqual(chunks.pausedPulls, 0)
        self.assertTrue(chunks.closed)

    test_treqUploadsFromAnAsyncGenerator.skip = skipTreq  # type: ignore[attr-defined]

    async def test_downloadToDiskThroughAsyncFor(self) -> None:
        """
        A download streamed to disk with C{async for} over the response
        body arrives whole, with at most the high water mark (and one read)
        held for the loop.
        """
        import treq

        response = await treq.get(
            (self.url + b"/files/big.bin").decode(), pool=self.pool, unbuffered=True
        )
        self.assertEqual(response.code, 200)
        target = self.mktemp()
        self.addCleanup(os.remove, target)
        iterator: Any = toAsyncIterator(responseBody(response), highWater=64 * 1024)
        held = 0
        with open(target, "wb") as f:
            async for chunk in iterator:
                held = max(held, iterator._feed.buffer.size)
                f.write(chunk)
                await deferLater(reactor, 0, lambda: None)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), self.content)
        self.assertLessEqual(held, 64 * 1024 + 65536)

    test_downloadToDiskThroughAsyncFor.skip = skipTreq  # type: ignore[attr-defined]

    async def test_responseBodyIntoAPipeline(self) -> None:
        """
        C{Agent}'s response body goes through a pipeline into a
        L{FileConsumer}.
        """
        response = await self.agent.request(b"GET", self.url + b"/files/big.bin")
        target = self.mktemp()
        self.addCleanup(os.remove, target)
        sink = FileConsumer(target)
        delivered = await pipeline(responseBody(response), sink=sink)
        self.assertEqual(delivered, len(self.content))
        self.assertEqual(await sink.whenFinished(), len(self.content))
        with open(target, "rb") as f:
            self.assertEqual(f.read(), self.content)

    async def test_stoppedResponseClosesTheConnection(self) -> None:
        """
        Leaving the loop over a response body early closes its connection,
        so the rest is not read.
        """
        response = await self.agent.request(b"GET", self.url + b"/files/big.bin")
        async for _ in toAsyncIterator(responseBody(response)):
            break
        await self.site.allClosed()
