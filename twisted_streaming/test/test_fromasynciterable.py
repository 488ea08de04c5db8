"""
Tests for L{twisted_streaming.fromAsyncIterable}: over fakes on a
L{Clock}, through the conformance suite, and over real TCP.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, List, Optional

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    CollectBytes,
    ContextFailure,
    ProducerStopped,
    Stage,
    StreamProtocol,
    fromAsyncIterable,
    pipeline,
)
from twisted_streaming.test.test_push import runTurn
from twisted_streaming.testing import (
    BackpressureConsumer,
    PushProducerConformanceMixin,
    loopbackReceive,
)

reactor: Any = _globalReactor


class Chunks:
    """
    An async iterator of C{count} chunks of C{size} bytes that records, at
    each C{__anext__}, whether its producer was paused and how many bytes
    it had produced that had not left C{consumer} yet; C{closed} once its
    C{aclose} (or its end) has run.  With C{clock}, every other item waits
    for a turn of it.
    """

    def __init__(
        self,
        count: int,
        size: int = 100,
        clock: Optional[Clock] = None,
        consumer: Optional[BackpressureConsumer] = None,
    ) -> None:
        self.left = count
        self.size = size
        self.clock = clock
        self.consumer = consumer
        self.producer: Any = None
        self.produced = 0
        self.pulls = 0
        self.pausedPulls = 0
        self.ahead: List[int] = []
        self.closed = False
        self.expected = b"".join(bytes([i % 251]) * size for i in range(count))

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        self.pulls += 1
        if self.producer is not None and self.producer.paused:
            self.pausedPulls += 1
        if self.consumer is not None:
            delivered = len(self.consumer.received) - self.consumer.buffered
            self.ahead.append(self.produced - delivered)
        if self.left == 0:
            self.closed = True
            raise StopAsyncIteration
        if self.clock is not None and self.left % 2:
            await deferLater(self.clock, 0.001, lambda: None)
        index = len(self.expected) // self.size - self.left
        self.left -= 1
        self.produced += self.size
        return bytes([index % 251]) * self.size

    async def aclose(self) -> None:
        self.closed = True


async def endless(closed: List[str], wait: Optional[Deferred[None]] = None) -> Any:
    """
    Yield 1 KiB chunks for ever (first awaiting C{wait}, if given); record
    in C{closed} how the generator ended.
    """
    try:
        if wait is not None:
            await wait
        while True:
            yield b"e" * 1024
    except BaseException as e:
        closed.append(type(e).__name__)
        raise
    finally:
        closed.append("finally")


class FromAsyncIterableTests(SynchronousTestCase):
    """
    L{fromAsyncIterable} over fakes, on a L{Clock}.
    """

    def test_interface(self) -> None:
        """
        The producer provides L{IPushProducer}.
        """
        self.assertTrue(verifyObject(IPushProducer, fromAsyncIterable(Chunks(1))))

    def test_producesEverything(self) -> None:
        """
        Every item reaches the consumer, in order; the Deferred fires with
        the bytes written after the consumer was finished and unregistered.
        """
        clock = Clock()
        consumer = BackpressureConsumer(clock=clock)
        chunks = Chunks(50, clock=clock)
        d = fromAsyncIterable(chunks, reactor=clock).startProducing(consumer)
        for _ in range(200):
            clock.advance(0.001)
        self.assertEqual(self.successResultOf(d), 5000)
        self.assertEqual(consumer.received, chunks.expected)
        self.assertTrue(consumer.finished)
        self.assertIsNone(consumer.producer)

    def test_noPullWhilePaused(self) -> None:
        """
        The next item is asked for only while the consumer has not paused
        the producer, so the bytes produced and not yet delivered stay within
        the consumer's buffer plus one item.
        """
        clock = Clock()
        consumer = BackpressureConsumer(threshold=1000, clock=clock, drainRate=50)
        chunks = Chunks(400, size=100, clock=clock, consumer=consumer)
        producer = chunks.producer = fromAsyncIterable(chunks, reactor=clock)
        d = producer.startProducing(consumer)
        for _ in range(5000):
            clock.advance(0.001)
        self.assertEqual(self.successResultOf(d), 40000)
        self.assertEqual(consumer.received, chunks.expected)
        self.assertGreater(consumer.calls.count(("pause",)), 10)
        self.assertEqual(chunks.pausedPulls, 0)
        self.assertEqual(consumer.writesAfterPause(), [])
        # The consumer's threshold, one write over it, and the item in hand.
        self.assertLessEqual(max(chunks.ahead), 1000 + 2 * 100)

    def test_itemArrivingWhilePausedIsHeld(self) -> None:
        """
        An item that arrives after the consumer paused the producer is held
        until it resumes.
        """
        clock = Clock()
        consumer = BackpressureConsumer(threshold=2**30)
        wait: Deferred[None] = Deferred()
        closed: List[str] = []
        producer = fromAsyncIterable(endless(closed, wait), reactor=clock)
        d = producer.startProducing(consumer)
        clock.advance(0)
        producer.pauseProducing()
        wait.callback(None)
        self.assertEqual(consumer.received, b"")
        producer.resumeProducing()
        self.assertEqual(consumer.received[:1024], b"e" * 1024)
        producer.stopProducing()
        self.failureResultOf(d, ProducerStopped)

    def test_stopClosesIterator(self) -> None:
        """
        C{stopProducing} (the consumer went away) fails the Deferred with
        L{ProducerStopped} after closing the iterator: the generator's
        C{finally} has run.
        """
        clock = Clock()
        consumer = BackpressureConsumer(threshold=2**30)
        closed: List[str] = []
        producer = fromAsyncIterable(endless(closed), reactor=clock)
        d = producer.startProducing(consumer)
        runTurn(clock)
        self.assertGreater(len(consumer.received), 0)
        consumer.loseConnection()
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(closed, ["GeneratorExit", "finally"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stopWhileAwaitingClosesIterator(self) -> None:
        """
        Stopped while the generator awaits, what it awaits is cancelled, so
        its C{finally} runs at once.
        """
        clock = Clock()
        consumer = BackpressureConsumer()
        closed: List[str] = []
        producer = fromAsyncIterable(endless(closed, Deferred()), reactor=clock)
        d = producer.startProducing(consumer)
        clock.advance(0)
        self.assertEqual(closed, [])
        producer.stopProducing()
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(closed, ["CancelledError", "finally"])

    def test_cancelClosesIterator(self) -> None:
        """
        Cancelling the Deferred fails it with L{CancelledError}, after the
        iterator has been closed and the producer unregistered.
        """
        clock = Clock()
        consumer = BackpressureConsumer(threshold=2**30)
        closed: List[str] = []
        d = fromAsyncIterable(endless(closed), reactor=clock).startProducing(consumer)
        runTurn(clock)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(closed, ["GeneratorExit", "finally"])
        self.assertIsNone(consumer.producer)

    def test_iteratorErrorHasContext(self) -> None:
        """
        What the iterator raises fails the Deferred with a
        L{ContextFailure} naming the producer, how far it got, and the
        chain.
        """

        async def failing() -> AsyncIterator[bytes]:
            yield b"ab"
            yield b"cd"
            raise ZeroDivisionError("bad source")

        clock = Clock()
        consumer = BackpressureConsumer()
        d = fromAsyncIterable(failing(), reactor=clock).startProducing(consumer)
        clock.advance(0)
        failure = self.failureResultOf(d, ZeroDivisionError)
        self.assertIsInstance(failure, ContextFailure)
        assert isinstance(failure, ContextFailure)
        self.assertEqual((failure.bytesWritten, failure.chunksWritten), (4, 2))
        self.assertIn("AsyncIterableProducer", failure.chain[0])
        self.assertIn("BackpressureConsumer", failure.chainText)
        self.assertIn("after writing 4 bytes in 2 chunks", failure.getErrorMessage())
        self.assertIsNone(consumer.producer)

    def test_writeErrorHasContextAndClosesIterator(self) -> None:
        """
        An error from the consumer's C{write} fails the Deferred with the
        offending item in context, and closes the iterator.
        """
        clock = Clock()
        consumer = BackpressureConsumer(
            threshold=2**30, failOnWrite=OSError("disk full"), failAfterWrites=2
        )
        closed: List[str] = []
        d = fromAsyncIterable(endless(closed), reactor=clock).startProducing(consumer)
        clock.advance(0)
        failure = self.failureResultOf(d, OSError)
        assert isinstance(failure, ContextFailure)
        self.assertEqual((failure.itemIndex, failure.itemOffset), (2, 2048))
        self.assertEqual(closed, ["GeneratorExit", "finally"])

    def test_objects(self) -> None:
        """
        Items that are not bytes pass as they are, each counting as 1.
        """

        async def objects() -> AsyncIterator[Any]:
            for i in range(5):
                yield {"n": i}

        clock = Clock()
        consumer = BackpressureConsumer(objects=True)
        d = fromAsyncIterable(objects(), reactor=clock).startProducing(consumer)
        clock.advance(0)
        self.assertEqual(self.successResultOf(d), 5)
        self.assertEqual(consumer.received, [{"n": i} for i in range(5)])

    def test_pipelineSource(self) -> None:
        """
        It is a source for L{pipeline}, through stages, into a sink.
        """
        clock = Clock()
        chunks = Chunks(30, clock=clock)
        sink = CollectBytes(reactor=clock)
        d = pipeline(
            fromAsyncIterable(chunks, reactor=clock),
            Stage(lambda data: [data[::-1]], reactor=clock),
            sink=sink,
        )
        for _ in range(100):
            clock.advance(0.001)
        self.assertEqual(self.successResultOf(d), 3000)
        self.assertEqual(self.successResultOf(sink.whenFinished()), chunks.expected)

    def test_sharesTheTurnBudget(self) -> None:
        """
        A generator that never waits, into a consumer that never pauses,
        writes at most a turn's budget per turn of the reactor.
        """
        clock = Clock()
        consumer = BackpressureConsumer(threshold=2**40)
        closed: List[str] = []
        producer = fromAsyncIterable(endless(closed), reactor=clock)
        d = producer.startProducing(consumer)
        runTurn(clock)
        first = len(consumer.received)
        self.assertGreater(first, 0)
        self.assertLessEqual(first, 1024 * 1024 + 1024)
        runTurn(clock)
        self.assertGreater(len(consumer.received), first)
        producer.stopProducing()
        self.failureResultOf(d, ProducerStopped)


class SyncYieldConformanceTests(PushProducerConformanceMixin, SynchronousTestCase):
    """
    The push producer contract, for an iterator whose items are ready at
    once.
    """

    def makeProducer(self, clock: Clock) -> Any:
        self.chunks = Chunks(60, size=50)
        return fromAsyncIterable(self.chunks, reactor=clock)

    def expectedData(self, producer: Any) -> bytes:
        return self.chunks.expected

    def resourcesReleased(self, producer: Any) -> bool:
        return self.chunks.closed


class AwaitingConformanceTests(SyncYieldConformanceTests):
    """
    The push producer contract, for an iterator that awaits the clock for
    every other item.
    """

    def makeProducer(self, clock: Clock) -> Any:
        self.chunks = Chunks(60, size=50, clock=clock)
        return fromAsyncIterable(self.chunks, reactor=clock)


class FromAsyncIterableTCPTests(TestCase):
    """
    L{fromAsyncIterable} writing to real TCP connections on 127.0.0.1.
    """

    async def test_slowReader(self) -> None:
        """
        An async generator's stream arrives intact at a slow reader, and
        the generator is never asked for an item while the transport has
        paused the producer.
        """
        chunks = Chunks(400, size=16 * 1024)
        producer = chunks.producer = fromAsyncIterable(chunks)
        received = await loopbackReceive(producer.startProducing, slowReader=3)
        self.assertEqual(received, chunks.expected)
        self.assertEqual(chunks.pausedPulls, 0)
        self.assertTrue(chunks.closed)

    async def test_peerGoneClosesGenerator(self) -> None:
        """
        When the peer resets the connection, the Deferred fails with
        L{ProducerStopped} and the generator's C{finally} has run.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.internet.protocol import Factory

        closed: List[str] = []
        outcome: Deferred[List[Any]] = Deferred()

        class Serve(StreamProtocol):
            def connectionMade(self) -> None:
                d = fromAsyncIterable(endless(closed)).startProducing(self.transport)
                d.addBoth(lambda result: outcome.callback([result]))

        servers: List[Serve] = []
        port = reactor.listenTCP(
            0,
            Factory.forProtocol(lambda: servers.append(Serve()) or servers[-1]),  # type: ignore[func-returns-value]
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)

        class Reset(StreamProtocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.abortConnection()

        client = Reset()
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client
        )
        [result] = await outcome
        await client.lost
        await servers[0].lost
        self.assertIsInstance(result.value, ProducerStopped)
        self.assertEqual(closed[-1], "finally")
