"""
Tests for L{twisted_streaming.BasePushProducer}.
"""

from __future__ import annotations

import hashlib
from typing import Any, List, Optional

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_streaming import (
    BasePushProducer,
    ContextFailure,
    IFinishableConsumer,
    ProducerStateError,
    ProducerStopped,
    StreamProtocol,
)
from twisted_streaming._flow import turnLoop
from twisted_streaming._push import STEP_BYTES

reactor: Any = _globalReactor


class RecordsHooks(BasePushProducer):
    """
    A producer that records, in C{events}, the hooks it is told of.
    """

    events: List[str]

    def producingStarted(self) -> None:
        self.events.append("started")

    def producingPaused(self) -> None:
        self.events.append("paused")

    def producingResumed(self) -> None:
        self.events.append("resumed")

    def producingStopped(self) -> None:
        self.events.append("stopped")


class ChunkProducer(RecordsHooks):
    """
    Produce C{count} chunks of C{size} bytes, recording the hooks it sees.
    """

    def __init__(self, count: int, size: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count = count
        self.size = size
        self.made = 0
        self.depth = 0
        self.maxDepth = 0
        self.events: List[str] = []

    def produce(self) -> Optional[bytes]:
        self.depth += 1
        self.maxDepth = max(self.maxDepth, self.depth)
        try:
            if self.made >= self.count:
                return None
            self.made += 1
            return (b"%09d\n" % (self.made,) * (self.size // 10 + 1))[: self.size]
        finally:
            self.depth -= 1


class Boom(Exception):
    pass


class FailingProducer(ChunkProducer):
    def produce(self) -> Optional[bytes]:
        if self.made == 2:
            raise Boom("bad data")
        return super().produce()


class TransportLikeConsumer(StringTransport):
    """
    A consumer that applies backpressure as a real TCP transport does: it
    pauses a streaming producer on every write while more than C{threshold}
    bytes are buffered, and resumes it once, when drained.
    """

    def __init__(self, threshold: int = 2**62) -> None:
        super().__init__()
        self.threshold = threshold
        self.pauses = 0
        self.calls: List[str] = []

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.calls.append("register")
        super().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.calls.append("unregister")
        super().unregisterProducer()

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.io.getvalue()) > self.threshold:
            self.pauses += 1
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data = self.io.getvalue()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return data


@implementer(IFinishableConsumer)
class FinishableConsumer(TransportLikeConsumer):
    def finish(self) -> None:
        self.calls.append("finish")


def runTurn(clock: Clock) -> None:
    """
    Run the calls that are due now, but not the ones they schedule: one turn
    of a real reactor (L{Clock.advance} would run those too).
    """
    due = [c for c in clock.calls if c.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


class BasePushProducerTests(SynchronousTestCase):
    """
    L{BasePushProducer} over fakes, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def assertClean(self, consumer: StringTransport) -> None:
        self.assertIsNone(consumer.producer)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_interface(self) -> None:
        """
        L{BasePushProducer} provides L{IPushProducer}.
        """
        self.assertTrue(verifyObject(IPushProducer, ChunkProducer(1)))

    def test_startsOnALaterTurn(self) -> None:
        """
        C{startProducing} registers as a streaming producer and writes nothing
        until the reactor turns.
        """
        consumer = TransportLikeConsumer()
        producer = ChunkProducer(3, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.assertIs(consumer.producer, producer)
        self.assertTrue(consumer.streaming)
        self.assertEqual(consumer.value(), b"")
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 30)
        self.assertEqual(len(consumer.value()), 30)
        self.assertEqual(producer.events, ["started"])
        self.assertClean(consumer)

    def test_finishUnregistersThenFinishes(self) -> None:
        """
        On completion a finishable consumer is unregistered from, then
        finished, then the Deferred fires.
        """
        consumer = FinishableConsumer()
        producer = ChunkProducer(2, reactor=self.clock)
        d = producer.startProducing(consumer)
        d.addCallback(lambda n: consumer.calls.append(f"fired {n}"))
        self.clock.advance(0)
        self.assertEqual(
            consumer.calls, ["register", "unregister", "finish", "fired 20"]
        )

    def test_finishRaises(self) -> None:
        """
        If the consumer's C{finish} raises, the Deferred fails with that
        error, with context, instead of the error escaping into the reactor.
        """

        class BrokenFinish(FinishableConsumer):
            def finish(self) -> None:
                raise Boom("cannot finish")

        consumer = BrokenFinish()
        producer = ChunkProducer(2, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        failure = self.failureResultOf(d, Boom)
        self.assertIn("after writing 20 bytes in 2 chunks", failure.getTraceback())
        self.assertEqual(consumer.calls, ["register", "unregister"])

    def test_plainConsumerIsNotFinished(self) -> None:
        """
        A consumer that is not finishable is only unregistered from.
        """
        consumer = TransportLikeConsumer()
        d = ChunkProducer(1, reactor=self.clock).startProducing(consumer)
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(consumer.calls, ["register", "unregister"])
        self.assertFalse(consumer.disconnecting)

    def test_emptyStream(self) -> None:
        """
        A producer with nothing to produce fires with 0.
        """
        consumer = TransportLikeConsumer()
        d = ChunkProducer(0, reactor=self.clock).startProducing(consumer)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertClean(consumer)

    def test_startTwice(self) -> None:
        """
        Starting a producer twice raises L{ProducerStateError}.
        """
        producer = ChunkProducer(1, reactor=self.clock)
        producer.startProducing(TransportLikeConsumer())
        self.assertRaises(
            ProducerStateError, producer.startProducing, TransportLikeConsumer()
        )
        self.clock.advance(0)

    def test_pauseFromInsideWriteStopsTheLoop(self) -> None:
        """
        A pause that arrives from inside C{write} stops the loop before the
        next chunk is produced.
        """
        consumer = TransportLikeConsumer(threshold=25)
        producer = ChunkProducer(10, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        # The third write took the buffer over 25 bytes.
        self.assertEqual(producer.made, 3)
        self.assertEqual(len(consumer.value()), 30)
        self.assertTrue(producer.paused)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        received = b""
        for _ in range(1000):
            if d.called:
                break
            received += consumer.drain()
        self.assertEqual(self.successResultOf(d), 100)
        self.assertEqual(len(received + consumer.value()), 100)

    def test_repeatedPausesOneResume(self) -> None:
        """
        Any number of pauses is undone by a single resume, and the hooks see
        one pause, after the start, and one resume.
        """
        consumer = TransportLikeConsumer()
        producer = ChunkProducer(5, reactor=self.clock)
        d = producer.startProducing(consumer)
        for _ in range(3):
            producer.pauseProducing()
        self.clock.advance(0)
        self.assertEqual(consumer.value(), b"")
        producer.resumeProducing()
        self.assertEqual(self.successResultOf(d), 50)
        self.assertEqual(producer.events, ["started", "paused", "resumed"])

    def test_resumeWhileProducingStartsNoSecondLoop(self) -> None:
        """
        A pause and resume from inside C{write} lets the running loop carry on;
        C{produce} is never re-entered.
        """

        class Bouncy(TransportLikeConsumer):
            def write(self, data: bytes) -> None:
                super().write(data)
                assert self.producer is not None
                self.producer.pauseProducing()
                self.producer.resumeProducing()

        consumer = Bouncy()
        producer = ChunkProducer(5, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 50)
        self.assertEqual(producer.maxDepth, 1)
        self.assertEqual(len(consumer.value()), 50)

    def test_stopBeforeFinish(self) -> None:
        """
        C{stopProducing} unregisters and fails the Deferred with
        L{ProducerStopped} saying how far the producer had got; later calls
        do nothing.
        """
        consumer = TransportLikeConsumer(threshold=15)
        producer = ChunkProducer(10, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        producer.stopProducing()
        failure = self.failureResultOf(d, ProducerStopped)
        self.assertIs(failure.value.producer, producer)
        self.assertEqual(failure.value.bytesWritten, 20)
        self.assertEqual(failure.value.chunksWritten, 2)
        self.assertEqual(producer.events, ["started", "paused", "stopped"])
        self.assertClean(consumer)
        producer.stopProducing()
        producer.pauseProducing()
        producer.resumeProducing()
        self.assertEqual(len(consumer.value()), 20)
        self.assertEqual(producer.events, ["started", "paused", "stopped"])

    def test_stopBeforeFirstTurn(self) -> None:
        """
        A producer stopped before its first turn never calls C{produce}.
        """
        consumer = TransportLikeConsumer()
        producer = ChunkProducer(10, reactor=self.clock)
        d = producer.startProducing(consumer)
        producer.stopProducing()
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(producer.made, 0)
        self.assertClean(consumer)

    def test_registerWithDisconnectedTransport(self) -> None:
        """
        A transport that is already disconnected stops the producer from
        inside C{registerProducer}; the Deferred has already failed.
        """

        class Disconnected(TransportLikeConsumer):
            def registerProducer(self, producer: Any, streaming: bool) -> None:
                producer.stopProducing()

        consumer = Disconnected()
        producer = ChunkProducer(10, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pauseResumeAfterFinishDoNothing(self) -> None:
        """
        Pause, resume and stop after the producer has finished raise nothing
        and change nothing.
        """
        consumer = TransportLikeConsumer()
        producer = ChunkProducer(1, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 10)
        producer.pauseProducing()
        producer.resumeProducing()
        producer.stopProducing()
        self.assertEqual(producer.events, ["started"])
        self.assertFalse(producer.producing)
        self.assertClean(consumer)

    def test_errorPropagatesWithContext(self) -> None:
        """
        An exception from C{produce} fails the Deferred with that exception,
        in a L{ContextFailure} naming the producer and how far it had got, and
        the producer is unregistered.
        """
        consumer = TransportLikeConsumer()
        producer = FailingProducer(10, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        failure = self.failureResultOf(d, Boom)
        self.assertIsInstance(failure, ContextFailure)
        assert isinstance(failure, ContextFailure)
        self.assertIs(failure.source, producer)
        self.assertEqual((failure.bytesWritten, failure.chunksWritten), (20, 2))
        self.assertIn(
            f"<FailingProducer running at {id(producer):#x}>", failure.context
        )
        self.assertIn("after writing 20 bytes in 2 chunks", failure.getTraceback())
        self.assertIn("bad data", failure.getErrorMessage())
        notes = getattr(failure.value, "__notes__", [])
        self.assertIn("after writing 20 bytes in 2 chunks", notes[0])
        self.assertClean(consumer)

    def test_consumerWriteErrorFails(self) -> None:
        """
        An exception from the consumer's C{write} fails the producer instead
        of escaping into the reactor.
        """

        class Broken(TransportLikeConsumer):
            def write(self, data: bytes) -> None:
                raise OSError("disk full")

        consumer = Broken()
        d = ChunkProducer(3, reactor=self.clock).startProducing(consumer)
        self.clock.advance(0)
        self.failureResultOf(d, OSError)
        self.assertClean(consumer)

    def test_cancelStopsAndUnregisters(self) -> None:
        """
        Cancelling the Deferred stops the producer and unregisters it.
        """
        consumer = TransportLikeConsumer(threshold=15)
        producer = ChunkProducer(10, reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(producer.events[-1], "stopped")
        self.assertFalse(producer.producing)
        self.assertClean(consumer)

    def test_fairnessYieldsAfterBudget(self) -> None:
        """
        With a consumer that never pauses, a turn of the loop writes at most
        its budget and the rest waits for later turns.
        """
        consumer = TransportLikeConsumer()
        producer = ChunkProducer(100, size=1000, reactor=self.clock)
        turnLoop(self.clock).bytesPerTurn = 10_000
        d = producer.startProducing(consumer)
        runTurn(self.clock)
        self.assertEqual(len(consumer.value()), 10_000)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        turns = 1
        while not d.called and turns < 100:
            runTurn(self.clock)
            turns += 1
        # Ten turns of writing, and one that finds the end.
        self.assertEqual(turns, 11)
        self.assertEqual(self.successResultOf(d), 100_000)

    def test_timeBudgetAlwaysMakesProgress(self) -> None:
        """
        With no time budget at all, each turn still writes one step.
        """
        consumer = TransportLikeConsumer()
        producer = ChunkProducer(3, size=STEP_BYTES, reactor=self.clock)
        turnLoop(self.clock).secondsPerTurn = 0
        d = producer.startProducing(consumer)
        for expected in (1, 2, 3):
            runTurn(self.clock)
            self.assertEqual(len(consumer.value()), expected * STEP_BYTES)
        runTurn(self.clock)
        self.assertEqual(self.successResultOf(d), 3 * STEP_BYTES)

    def test_twoProducersShareTheReactor(self) -> None:
        """
        Two producers whose consumers never pause take turns within one
        budget per turn: the budget is the reactor's, not each producer's.
        """
        a, b = TransportLikeConsumer(), TransportLikeConsumer()
        pa = ChunkProducer(50, size=1000, reactor=self.clock)
        pb = ChunkProducer(50, size=1000, reactor=self.clock)
        turnLoop(self.clock).bytesPerTurn = 5000
        da, db = pa.startProducing(a), pb.startProducing(b)
        runTurn(self.clock)
        self.assertEqual(len(a.value()) + len(b.value()), 5000)
        runTurn(self.clock)
        self.assertEqual((len(a.value()), len(b.value())), (5000, 5000))
        for _ in range(100):
            if da.called and db.called:
                break
            runTurn(self.clock)
        self.assertEqual(
            (self.successResultOf(da), self.successResultOf(db)), (50000,) * 2
        )

    def test_manyProducersOneBudget(self) -> None:
        """
        However many producers have data, one turn writes no more than one
        budget (plus the step that crossed it): the reactor gets back to its
        other work as soon as with one.
        """
        consumers = [TransportLikeConsumer() for _ in range(100)]
        producers = [
            ChunkProducer(1000, size=1000, reactor=self.clock) for _ in consumers
        ]
        turnLoop(self.clock).bytesPerTurn = 10_000
        done = [p.startProducing(c) for p, c in zip(producers, consumers)]
        runTurn(self.clock)
        total = sum(len(c.value()) for c in consumers)
        self.assertGreaterEqual(total, 10_000)
        self.assertLessEqual(total, 10_000 + 1000)
        for producer, d in zip(producers, done):
            producer.stopProducing()
            self.failureResultOf(d, ProducerStopped)

    def test_emptyChunksAreSkipped(self) -> None:
        """
        An empty chunk is not written.
        """
        chunks = [b"a", b"", b"b", None]

        class Gappy(BasePushProducer):
            def produce(self) -> Optional[bytes]:
                return chunks.pop(0)

        consumer = TransportLikeConsumer()
        producer = Gappy(reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 2)
        self.assertEqual(producer.chunksWritten, 2)
        self.assertEqual(consumer.value(), b"ab")


class EventProducer(RecordsHooks):
    """
    An event-driven producer: data arrives through L{feed}.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: List[str] = []


class EventDrivenTests(SynchronousTestCase):
    """
    L{BasePushProducer} used without C{produce}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_writeAndFinish(self) -> None:
        """
        C{write} reaches the consumer and is counted; C{finishProducing}
        unregisters, finishes and fires the Deferred.
        """
        consumer = FinishableConsumer()
        producer = EventProducer(reactor=self.clock)
        d = producer.startProducing(consumer)
        self.clock.advance(0)
        self.assertEqual(producer.events, ["started"])
        producer.write(b"hello ")
        producer.write(b"world")
        producer.finishProducing()
        self.assertEqual(self.successResultOf(d), 11)
        self.assertEqual(consumer.value(), b"hello world")
        self.assertEqual(consumer.calls, ["register", "unregister", "finish"])
        self.assertRaises(ProducerStateError, producer.write, b"late")
        self.assertRaises(ProducerStateError, producer.finishProducing)

    def test_hooksSeePauseResumeOnce(self) -> None:
        """
        A transport's repeated pauses reach the hook once; one resume reaches
        it once.
        """
        consumer = TransportLikeConsumer(threshold=5)
        producer = EventProducer(reactor=self.clock)
        producer.startProducing(consumer)
        self.clock.advance(0)
        for _ in range(4):
            producer.write(b"0123456789")
        self.assertEqual(consumer.pauses, 4)
        consumer.drain()
        self.assertEqual(producer.events, ["started", "paused", "resumed"])

    def test_failProducing(self) -> None:
        """
        C{failProducing} fails the Deferred with the given error in context.
        """
        consumer = TransportLikeConsumer()
        producer = EventProducer(reactor=self.clock)
        d = producer.startProducing(consumer)
        producer.write(b"abc")
        producer.failProducing(Boom("source broke"))
        failure = self.failureResultOf(d, Boom)
        self.assertIn("after writing 3 bytes in 1 chunks", failure.getErrorMessage())
        self.assertIsNone(consumer.producer)
        self.clock.advance(0)
        self.assertEqual(producer.events, [])

    def test_failProducingFromExcept(self) -> None:
        """
        Without an argument, C{failProducing} uses the exception being handled.
        """
        producer = EventProducer(reactor=self.clock)
        d = producer.startProducing(TransportLikeConsumer())
        try:
            raise Boom("handled")
        except Boom:
            producer.failProducing()
        self.failureResultOf(d, Boom)
        self.clock.advance(0)

    def test_finishAfterStopIsIgnored(self) -> None:
        """
        A source that reports its end after the producer was stopped does not
        raise.
        """
        producer = EventProducer(reactor=self.clock)
        d = producer.startProducing(TransportLikeConsumer())
        producer.stopProducing()
        producer.finishProducing()
        producer.failProducing(Boom())
        self.failureResultOf(d, ProducerStopped)


class _Collect(StreamProtocol):
    """
    Collect what arrives; optionally start with reading paused.
    """

    def __init__(self, paused: bool = False) -> None:
        super().__init__()
        self.startPaused = paused
        self.chunks: List[bytes] = []
        self.received = 0

    def connectionMade(self) -> None:
        if self.startPaused:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)


class _Serve(StreamProtocol):
    """
    Start a producer on the server side of a connection.
    """

    def __init__(self, producer: BasePushProducer) -> None:
        super().__init__()
        self.producer = producer
        self.done: Optional[Deferred[int]] = None
        self.ready: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.done = self.producer.startProducing(self.transport)
        self.ready.callback(None)


class RealTCPTests(TestCase):
    """
    L{BasePushProducer} over real TCP connections on 127.0.0.1.
    """

    async def connect(self, producer: BasePushProducer, client: _Collect) -> _Serve:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        server = _Serve(producer)
        factory = Factory.forProtocol(lambda: server)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await connectProtocol(endpoint, client)
        await server.ready

        def close() -> Deferred[None]:
            client.transport.abortConnection()
            return server.lost

        self.addCleanup(lambda: client.lost if client.lost.called else close())
        return server

    async def test_slowReaderPausesAndResumes(self) -> None:
        """
        A reader that does not read pauses the producer through the real
        transport; once it reads, the producer resumes and everything arrives
        intact.
        """

        class Recorded(ChunkProducer):
            def __init__(self) -> None:
                super().__init__(400, size=10_000)
                self.firstPause: Deferred[None] = Deferred()

            def producingPaused(self) -> None:
                super().producingPaused()
                if not self.firstPause.called:
                    self.firstPause.callback(None)

        producer = Recorded()
        client = _Collect(paused=True)
        server = await self.connect(producer, client)
        await producer.firstPause
        # The producer stopped long before the end: it was really paused.
        self.assertLess(producer.made, producer.count)
        client.transport.resumeProducing()
        assert server.done is not None
        written = await server.done
        server.transport.loseConnection()
        await client.lost
        self.assertEqual(written, 4_000_000)
        self.assertEqual(client.received, 4_000_000)
        expected = hashlib.sha256()
        check = ChunkProducer(400, size=10_000)
        while (chunk := check.produce()) is not None:
            expected.update(chunk)
        self.assertEqual(
            hashlib.sha256(b"".join(client.chunks)).digest(), expected.digest()
        )
        self.assertIn("resumed", producer.events)

    async def test_realTransportRepeatsPauses(self) -> None:
        """
        A real transport calls C{pauseProducing} on every write over its
        buffer limit and resumes once; the producer's hooks see one of each.
        """
        pauses: List[int] = []

        class Writer(EventProducer):
            started: Deferred[None] = Deferred()

            def producingStarted(self) -> None:
                super().producingStarted()
                # Carry on outside the hook, as an event source would.
                reactor.callLater(0, self.started.callback, None)

            def pauseProducing(self) -> None:
                pauses.append(1)
                super().pauseProducing()

        producer = Writer()
        client = _Collect(paused=True)
        server = await self.connect(producer, client)
        await producer.started
        resumed: Deferred[None] = Deferred()
        producer.producingResumed = lambda: resumed.callback(None)  # type: ignore[method-assign]
        # Write far more than the kernel and transport buffers hold, ignoring
        # the pauses, as a careless event source would.
        for _ in range(200):
            producer.write(b"x" * 65536)
        self.assertGreater(len(pauses), 1)
        self.assertEqual(producer.events.count("paused"), 1)
        client.transport.resumeProducing()
        await resumed
        self.assertEqual(producer.events.count("paused"), 1)
        producer.finishProducing()
        assert server.done is not None
        self.assertEqual(await server.done, 200 * 65536)

    async def test_readerVanishesMidStream(self) -> None:
        """
        A reader that disconnects mid-stream stops the producer at once: the
        Deferred fails with L{ProducerStopped} and nothing is logged as an
        error.
        """
        producer = ChunkProducer(10**6, size=10_000)
        client = _Collect(paused=True)
        server = await self.connect(producer, client)
        assert server.done is not None
        client.transport.abortConnection()
        with self.assertRaises(ProducerStopped):
            await server.done
        self.assertEqual(producer.events[-1], "stopped")
        self.assertLess(producer.made, producer.count)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_cancelUnregistersFromTransport(self) -> None:
        """
        Cancelling the Deferred stops the producer and unregisters it from the
        real transport, which stays connected.
        """
        producer = ChunkProducer(10**6, size=10_000)
        client = _Collect(paused=True)
        server = await self.connect(producer, client)
        assert server.done is not None
        await producer_paused(producer)
        server.done.cancel()
        with self.assertRaises(CancelledError):
            await server.done
        self.assertIsNone(server.transport.producer)
        self.assertTrue(server.transport.connected)

    async def test_producerThatNeverPausesDoesNotStarve(self) -> None:
        """
        A producer whose consumer never pauses yields to the reactor, so a
        transfer on another connection completes while it is still running.
        """

        class Sink(StringTransport):
            def write(self, data: bytes) -> None:
                pass

        hog = ChunkProducer(10**7, size=65536)
        hogDone = hog.startProducing(Sink())
        try:
            other = ChunkProducer(50, size=100_000)
            client = _Collect()
            server = await self.connect(other, client)
            assert server.done is not None
            self.assertEqual(await server.done, 5_000_000)
            self.assertTrue(hog.producing)
            self.assertGreater(hog.made, 0)
        finally:
            hog.stopProducing()
        with self.assertRaises(ProducerStopped):
            await hogDone


def producer_paused(producer: ChunkProducer) -> Deferred[None]:
    """
    A Deferred that fires the next time C{producer} is paused, or now if it is.
    """
    d: Deferred[None] = Deferred()
    if producer.paused:
        d.callback(None)
        return d
    original = producer.producingPaused

    def paused() -> None:
        original()
        if not d.called:
            d.callback(None)

    producer.producingPaused = paused  # type: ignore[method-assign]
    return d


class RefusingConsumer(TransportLikeConsumer):
    """
    A consumer that already has a streaming producer, as a transport that a
    second producer is started on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.first = ChunkProducer(0)
        self.registerProducer(self.first, True)
        self.calls.clear()


class LifecycleEdgeTests(SynchronousTestCase):
    """
    The edges of L{BasePushProducer}'s lifecycle that the flow core fixed:
    each test failed before it.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_refusedRegistration(self) -> None:
        """
        On a consumer that refuses it (it has a producer already), the
        Deferred fails with the consumer's error; nothing is ever written to
        the consumer, and its own producer stays registered and is told
        nothing.
        """
        consumer = RefusingConsumer()
        producer = ChunkProducer(3, reactor=self.clock)
        d = producer.startProducing(consumer)
        failure = self.failureResultOf(d, RuntimeError)
        self.assertIn("Cannot register two producers", failure.getErrorMessage())
        self.clock.advance(0)
        self.assertEqual(consumer.value(), b"")
        self.assertEqual(producer.made, 0)
        self.assertIs(consumer.producer, consumer.first)
        self.assertEqual(consumer.first.events, [])
        self.assertEqual(consumer.calls, ["register"])
        self.assertFalse(producer.producing)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unregistersOnlyItself(self) -> None:
        """
        Stopped after its consumer has forgotten it and taken another
        producer, a producer leaves that other producer registered.
        """
        consumer = TransportLikeConsumer()
        producer = ChunkProducer(3, reactor=self.clock)
        d = producer.startProducing(consumer)
        consumer.unregisterProducer()
        other = ChunkProducer(0)
        consumer.registerProducer(other, True)
        producer.stopProducing()
        self.failureResultOf(d, ProducerStopped)
        self.assertIs(consumer.producer, other)
        self.clock.advance(0)

    def test_failureRunsTheCleanupHook(self) -> None:
        """
        A producer that fails (not only one that is stopped) is told so in
        C{producingStopped}, once, after it has unregistered and before its
        Deferred fires.
        """
        consumer = TransportLikeConsumer()
        producer = FailingProducer(10, reactor=self.clock)
        d = producer.startProducing(consumer)

        def fired(failure: Failure) -> None:
            producer.events.append(f"fired {failure.type.__name__}")  # type: ignore[union-attr]

        d.addErrback(fired)
        original = producer.producingStopped

        def stopped() -> None:
            self.assertIsNone(consumer.producer)
            original()

        producer.producingStopped = stopped  # type: ignore[method-assign]
        self.clock.advance(0)
        self.assertEqual(producer.events, ["started", "stopped", "fired Boom"])

    def test_resumeCarriesOnWithinTheBudget(self) -> None:
        """
        Resumed by its consumer between two turns, a producer carries on at
        once, within what is left of the last turn's budget, and once that
        is spent waits for the next turn.
        """
        consumer = TransportLikeConsumer(threshold=5)
        producer = ChunkProducer(40, reactor=self.clock)
        turnLoop(self.clock).bytesPerTurn = 100
        d = producer.startProducing(consumer)
        runTurn(self.clock)
        # The first turn wrote one chunk, and was paused.
        self.assertEqual(len(consumer.value()), 10)
        for written in range(20, 110, 10):
            producer.resumeProducing()
            self.assertEqual(len(consumer.value()), written)
        # The turn's 100 bytes are spent: the rest waits for the next turn.
        producer.resumeProducing()
        self.assertEqual(len(consumer.value()), 100)
        runTurn(self.clock)
        self.assertEqual(len(consumer.value()), 110)
        for _ in range(100):
            if d.called:
                break
            consumer.drain()
            runTurn(self.clock)
        self.assertEqual(self.successResultOf(d), 400)

    def test_resumeInsideAnotherFlowWaits(self) -> None:
        """
        A resume that arrives while another producer's step is running (its
        write resumed this one) does not run this one inside it: it waits
        for the turn, so no consumer is re-entered.
        """
        resumed = ChunkProducer(3, reactor=self.clock)
        resumedConsumer = TransportLikeConsumer(threshold=5)
        done = resumed.startProducing(resumedConsumer)
        self.clock.advance(0)
        self.assertTrue(resumed.paused)
        resumedConsumer.clear()
        seen: List[bytes] = []

        class Resuming(TransportLikeConsumer):
            def write(self, data: bytes) -> None:
                super().write(data)
                resumed.resumeProducing()
                seen.append(resumedConsumer.value())

        resuming = ChunkProducer(1, reactor=self.clock)
        resumingDone = resuming.startProducing(Resuming())
        self.clock.advance(0)
        self.assertEqual(seen, [b""])
        self.successResultOf(resumingDone)
        while not done.called:
            resumedConsumer.drain()
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(done), 30)


class TwoProducersOneConnectionTests(TestCase):
    """
    The mistake a user makes with two producers and one connection, over
    real TCP.
    """

    async def test_secondProducerFailsAndWritesNothing(self) -> None:
        """
        A second producer started on a connection that already streams one
        fails with the transport's error, and the peer receives exactly the
        first producer's stream: no stray bytes of the second mixed in.
        """
        from twisted_streaming.testing import loopbackReceive

        first = ChunkProducer(200, size=10_000)
        second = ChunkProducer(200, size=10_000)
        outcomes: List[Failure] = []

        def start(transport: Any) -> Deferred[int]:
            done = first.startProducing(transport)
            second.startProducing(transport).addErrback(outcomes.append)
            return done

        received = await loopbackReceive(start, slowReader=2)
        expected = b"".join((b"%09d\n" % (i,) * 1001)[:10_000] for i in range(1, 201))
        self.assertEqual(received, expected)
        self.assertEqual(len(outcomes), 1)
        self.assertTrue(outcomes[0].check(RuntimeError))
        self.assertEqual(second.made, 0)
