"""
Tests for L{twisted_streaming.websocket} over a stand-in for an Autobahn
protocol, on a L{Clock}; and for the Autobahn internals it reads, on real
Autobahn connections.  The interoperability tests, over real loopback
connections with Autobahn and C{websockets} peers, are in
C{test_websocket_interop}.
"""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    BasePushProducer,
    ConsumerFinished,
    ContextFailure,
    IFinishableConsumer,
    ProducerStateError,
    ProducerStopped,
    pipeline,
)
from twisted_streaming.test._extras import missing
from twisted_streaming.test.test_push import runTurn
from twisted_streaming.testing import (
    BackpressureConsumer,
    ConsumerConformanceMixin,
    FedPushProducer,
    PushProducerConformanceMixin,
    RecordingPushProducer,
)

skipWebSocket = missing("autobahn")

if skipWebSocket is None:
    from twisted_streaming import websocket
    from twisted_streaming.websocket import (
        MessageConsumer,
        MessageSource,
        MessageStream,
        WebSocketClosed,
    )

reactor: Any = _globalReactor

OPEN, CLOSING, CLOSED, CONNECTING = 3, 2, 0, 1


class FakeWebSocket:
    """
    What this package uses of an Autobahn protocol, recorded: the states and
    futures Autobahn keeps, its send queue, the sending methods and the
    C{message} event.  C{AutobahnInternalsTests} checks that real Autobahn
    protocols have each of these.
    """

    STATE_CLOSED = CLOSED
    STATE_CONNECTING = CONNECTING
    STATE_CLOSING = CLOSING
    STATE_OPEN = OPEN
    STATE_PROXY_CONNECTING = 4

    def __init__(self, transport: Any = None, state: int = OPEN) -> None:
        self.transport = BackpressureConsumer() if transport is None else transport
        self.state = state
        self.send_queue: Deque[Tuple[bytes, bool]] = deque()
        self.is_open: Deferred[None] = Deferred()
        self.is_closed: Deferred[Any] = Deferred()
        self.wasClean = False
        self.failedByMe = False
        self.remoteCloseCode: Optional[int] = None
        self.remoteCloseReason: Optional[str] = None
        self.localCloseCode: Optional[int] = None
        self.wasNotCleanReason: Optional[str] = None
        #: What was sent: ("message", payload, isBinary), ("begin", isBinary),
        #: ("frame", payload), ("end",), ("close", code, reason).
        self.sent: List[Tuple[Any, ...]] = []
        self.handlers: List[Callable[..., None]] = []
        self.failSend: Optional[Exception] = None

    def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:
        if self.state != OPEN:
            raise RuntimeError("Autobahn raises Disconnected")
        if self.failSend is not None:
            raise self.failSend
        assert type(payload) is bytes
        self.sent.append(("message", payload, isBinary))
        self.transport.write(payload)

    def beginMessage(self, isBinary: bool = False) -> None:
        self.sent.append(("begin", isBinary))

    def beginMessageFrame(self, length: int) -> None:
        self.sent.append(("frame", b"\0" * length))

    def sendMessageFrame(self, payload: bytes) -> None:
        self.sent.append(("frame", payload))
        self.transport.write(payload)

    def endMessage(self) -> None:
        self.sent.append(("end",))

    def sendClose(
        self, code: Optional[int] = None, reason: Optional[str] = None
    ) -> None:
        self.sent.append(("close", code, reason))
        self.state = CLOSING

    def on(self, event: str, handler: Callable[..., None]) -> None:
        assert event == "message"
        self.handlers.append(handler)

    def off(self, event: str, handler: Callable[..., None]) -> None:
        assert event == "message"
        if handler in self.handlers:
            self.handlers.remove(handler)

    # What the peer and Autobahn do

    def receive(self, payload: bytes, isBinary: bool = True) -> None:
        for handler in list(self.handlers):
            handler(payload, is_binary=isBinary)

    def open(self) -> None:
        self.state = OPEN
        self.is_open.callback(None)

    def close(self, clean: bool = True, code: Optional[int] = 1000) -> None:
        self.state = CLOSED
        self.wasClean = clean
        self.remoteCloseCode = code if clean else None
        self.wasNotCleanReason = None if clean else "peer dropped the TCP connection"
        self.is_closed.callback(self)

    def messages(self) -> List[bytes]:
        return [entry[1] for entry in self.sent if entry[0] == "message"]


class Messages(BasePushProducer):
    """
    Produce C{count} numbered messages of C{size} bytes.
    """

    def __init__(self, count: int, size: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count = count
        self.size = size

    def produce(self) -> Optional[bytes]:
        if self.chunksWritten >= self.count:
            return None
        line = b"%08d " % (self.chunksWritten,)
        return line + b"m" * (self.size - len(line))


class MessageConsumerConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    L{MessageConsumer} keeps the consumer contract, over a transport that
    pauses as a real one does.
    """

    skip = skipWebSocket

    def makeConsumer(self, clock: Clock) -> Any:
        protocol = FakeWebSocket(BackpressureConsumer(clock=clock))
        return MessageConsumer(protocol, reactor=clock)

    def completion(self, consumer: Any) -> Deferred[int]:
        return consumer.whenFinished()

    def received(self, consumer: Any) -> bytes:
        return b"".join(consumer.protocol.messages())


class MessageStreamConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    L{MessageStream} keeps the consumer contract too.
    """

    skip = skipWebSocket

    def makeConsumer(self, clock: Clock) -> Any:
        protocol = FakeWebSocket(BackpressureConsumer(clock=clock))
        return MessageStream(protocol, reactor=clock)

    def completion(self, consumer: Any) -> Deferred[int]:
        return consumer.whenFinished()

    def received(self, consumer: Any) -> bytes:
        return b"".join(e[1] for e in consumer.protocol.sent if e[0] == "frame")


class MessageConsumerTests(SynchronousTestCase):
    """
    L{MessageConsumer} over a stand-in for an Autobahn protocol.
    """

    skip = skipWebSocket

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = BackpressureConsumer(clock=self.clock)
        self.protocol = FakeWebSocket(self.transport)

    def consumer(self, **kwargs: Any) -> Any:
        return MessageConsumer(self.protocol, reactor=self.clock, **kwargs)

    def test_interfaces(self) -> None:
        """
        It is a finishable consumer, and a push producer toward the
        transport, with which it registers when made.
        """
        consumer = self.consumer()
        self.assertTrue(verifyObject(IFinishableConsumer, consumer))
        self.assertTrue(verifyObject(IPushProducer, consumer))
        self.assertIs(self.transport.producer, consumer)
        self.assertEqual(self.transport.streaming, True)

    def test_oneMessagePerWrite(self) -> None:
        """
        Each write is one binary message; text is sent as text, encoded.
        """
        consumer = self.consumer()
        consumer.write(b"one")
        consumer.write(bytearray(b"two"))
        self.assertEqual(
            self.protocol.sent,
            [("message", b"one", True), ("message", b"two", True)],
        )
        self.assertEqual((consumer.messagesSent, consumer.bytesWritten), (2, 6))
        consumer.finish()
        self.assertEqual(self.successResultOf(consumer.whenFinished()), 6)
        self.assertIsNone(self.transport.producer)

        text = FakeWebSocket()
        textConsumer = MessageConsumer(text, binary=False, reactor=self.clock)
        textConsumer.write("é")
        textConsumer.write(b"plain")
        self.assertEqual(
            text.sent, [("message", "é".encode(), False), ("message", b"plain", False)]
        )

    def test_producerRunsToTheEnd(self) -> None:
        """
        A producer runs to its end, paused and resumed by the transport
        through the consumer; the consumer is finished, not closed.
        """
        consumer = self.consumer()
        producer = Messages(200, 4096, reactor=self.clock)
        d = producer.startProducing(consumer)
        for _ in range(1000):
            if d.called:
                break
            self.clock.advance(0.001)
        self.assertEqual(self.successResultOf(d), 200 * 4096)
        self.assertEqual(len(self.protocol.messages()), 200)
        self.assertIn(("pause",), self.transport.calls)
        self.assertEqual(self.transport.writesAfterPause(), [])
        self.assertEqual(self.successResultOf(consumer.whenFinished()), 200 * 4096)
        self.assertNotIn("close", [e[0] for e in self.protocol.sent])

    def test_finishSendsTheCloseAskedFor(self) -> None:
        """
        C{finish} starts the closing handshake with the code and reason it
        is given, or else those given to the constructor; finishing twice
        raises.
        """
        consumer = self.consumer(closeCode=4000, closeReason="done")
        consumer.finish()
        self.assertEqual(self.protocol.sent, [("close", 4000, "done")])
        self.assertRaises(ConsumerFinished, consumer.finish)
        self.assertRaises(ConsumerFinished, consumer.write, b"late")

        other = MessageConsumer(FakeWebSocket(), closeCode=4000, reactor=self.clock)
        other.finish(1000, "bye")
        self.assertEqual(other.protocol.sent, [("close", 1000, "bye")])

    def test_autobahnQueueIsCounted(self) -> None:
        """
        Bytes in Autobahn's own send queue, which the transport never sees,
        pause the producer from the high mark; the consumer checks again on
        the clock, less often while nothing moves, and resumes it below the
        low mark, leaving nothing scheduled.
        """
        self.protocol = FakeWebSocket(self.transport)
        self.transport = self.protocol.transport = BackpressureConsumer()
        consumer = self.consumer(highWater=10_000, lowWater=4_000)
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        self.protocol.send_queue.extend([(b"q" * 6000, True), (b"q" * 6000, False)])
        consumer.write(b"x")
        # A transport that is not TCP holds nothing this package can see.
        self.assertEqual(consumer.queued, 12_000)
        self.assertEqual(producer.calls, [("pause",)])
        delays = []
        for _ in range(4):
            (call,) = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [0.001, 0.002, 0.004, 0.008])
        self.protocol.send_queue.popleft()
        self.transport.drain()
        (call,) = self.clock.getDelayedCalls()
        self.clock.advance(call.getTime() - self.clock.seconds())
        self.assertEqual(producer.calls, [("pause",)])
        self.protocol.send_queue.clear()
        (call,) = self.clock.getDelayedCalls()
        self.clock.advance(call.getTime() - self.clock.seconds())
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_transportPausePausesProducer(self) -> None:
        """
        When the transport pauses the consumer the producer is paused, and
        resumed when the transport resumes it with nothing queued.
        """
        consumer = self.consumer()
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        consumer.pauseProducing()
        consumer.pauseProducing()
        self.assertEqual(producer.calls, [("pause",)])
        consumer.resumeProducing()
        self.assertEqual(producer.calls, [("pause",), ("resume",)])

    def test_waitsForTheConnectionToOpen(self) -> None:
        """
        Made while the opening handshake is under way, the consumer holds a
        producer paused until the connection is open; a write before that
        raises.
        """
        self.protocol.state = CONNECTING
        consumer = self.consumer()
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        self.assertEqual(producer.calls, [("pause",)])
        self.assertRaises(ProducerStateError, consumer.write, b"early")
        self.protocol.open()
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        consumer.write(b"now")
        self.assertEqual(self.protocol.messages(), [b"now"])

    def test_closeStopsProducer(self) -> None:
        """
        When the connection closes, whatever closed it, the producer is
        stopped and forgotten, the consumer unregisters from the transport
        if it still is registered, C{whenFinished} fails with
        L{ProducerStopped}, a write raises and C{finish} does nothing.
        """
        consumer = self.consumer()
        producer = Messages(10**6, reactor=self.clock)
        d = producer.startProducing(consumer)
        runTurn(self.clock)
        sent = len(self.protocol.messages())
        self.assertGreater(sent, 0)
        self.protocol.close(clean=False)
        self.failureResultOf(d, ProducerStopped)
        self.assertFalse(producer.producing)
        self.assertIsNone(consumer.producer)
        self.assertIsNone(self.transport.producer)
        self.failureResultOf(consumer.whenFinished(), ProducerStopped)
        self.assertRaises(ConsumerFinished, consumer.write, b"late")
        consumer.finish()
        self.assertEqual(len(self.protocol.messages()), sent)
        late = RecordingPushProducer()
        consumer.registerProducer(late, True)
        self.assertEqual(late.calls, [("stop",)])

    def test_leavingTheOpenStateStopsProducer(self) -> None:
        """
        A write that finds Autobahn closing (a close frame came or went, or
        it is failing the connection) sends nothing and stops the producer.
        """
        self.protocol.transport = BackpressureConsumer(threshold=10**9)
        consumer = self.consumer()
        producer = Messages(10**6, reactor=self.clock)
        d = producer.startProducing(consumer)
        runTurn(self.clock)
        sent = len(self.protocol.messages())
        self.protocol.state = CLOSING
        runTurn(self.clock)
        self.assertEqual(len(self.protocol.messages()), sent)
        self.failureResultOf(d, ProducerStopped)
        self.assertIsNone(self.transport.producer)

    def test_transportStopsConsumer(self) -> None:
        """
        A transport that loses its connection stops the consumer, which
        stops its producer.
        """
        consumer = self.consumer()
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        self.transport.loseConnection()
        self.assertEqual(producer.calls, [("stop",)])
        self.failureResultOf(consumer.whenFinished(), ProducerStopped)

    def test_sendErrorFailsWithContext(self) -> None:
        """
        An error from Autobahn's C{sendMessage} stops the producer and fails
        C{whenFinished}, naming the consumer, the message and the chain.
        """
        consumer = self.consumer()
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        consumer.write(b"fine")
        self.protocol.failSend = ValueError("too big")
        consumer.write(b"x" * 100)
        self.assertEqual(producer.calls, [("stop",)])
        failure = self.failureResultOf(consumer.whenFinished(), ValueError)
        self.assertIsInstance(failure, ContextFailure)
        message = failure.getErrorMessage()
        self.assertIn("MessageConsumer", message)
        self.assertIn("at item 1", message)
        self.assertIn("BackpressureConsumer", message)

    def test_oneSenderAtATime(self) -> None:
        """
        A second consumer on a transport that has one raises what the
        transport raises, leaving the first registered; once the first is
        finished, another can be made.
        """
        first = self.consumer()
        self.assertRaises(RuntimeError, self.consumer)
        self.assertIs(self.transport.producer, first)
        first.finish()
        second = self.consumer()
        self.assertIs(self.transport.producer, second)

    def test_notConnected(self) -> None:
        """
        A protocol with no transport is refused; a transport already
        disconnected stops the consumer at once.
        """
        self.assertRaises(ProducerStateError, MessageConsumer, object())
        self.transport.disconnected = True
        consumer = self.consumer()
        self.failureResultOf(consumer.whenFinished(), ProducerStopped)

    def test_pullProducer(self) -> None:
        """
        A pull producer is asked for a message on each step of the turn
        loop while little is queued, and not while the transport is paused.
        """
        consumer = self.consumer()
        data = [b"%d" % i for i in range(5)]

        class Pull:
            def resumeProducing(self) -> None:
                if data:
                    consumer.write(data.pop(0))
                else:
                    consumer.unregisterProducer()

            def stopProducing(self) -> None:
                pass

        consumer.registerProducer(Pull(), False)
        consumer.pauseProducing()
        self.clock.advance(0)
        self.assertEqual(self.protocol.messages(), [])
        consumer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(self.protocol.messages(), [b"0", b"1", b"2", b"3", b"4"])
        self.assertIsNone(consumer.producer)


class MessageStreamTests(SynchronousTestCase):
    """
    L{MessageStream}: everything written is one message.
    """

    skip = skipWebSocket

    def test_framesOfOneMessage(self) -> None:
        """
        The message begins with the first non-empty write, each write is a
        frame, and C{finish} ends the message, then closes if asked.
        """
        protocol = FakeWebSocket()
        stream = MessageStream(protocol, closeCode=1000, reactor=Clock())
        stream.write(b"")
        self.assertEqual(protocol.sent, [])
        stream.write(b"ab")
        stream.write(b"")
        stream.write(b"cd")
        stream.finish()
        self.assertEqual(
            protocol.sent,
            [
                ("begin", True),
                ("frame", b"ab"),
                ("frame", b"cd"),
                ("end",),
                ("close", 1000, None),
            ],
        )
        self.assertEqual(self.successResultOf(stream.whenFinished()), 4)

    def test_emptyMessage(self) -> None:
        """
        An empty stream is still a message: a first frame, empty, names its
        type before the frame that ends it.
        """
        protocol = FakeWebSocket()
        stream = MessageStream(protocol, binary=False, reactor=Clock())
        stream.finish()
        self.assertEqual(protocol.sent, [("begin", False), ("frame", b""), ("end",)])

    def test_closeCutsTheMessageShort(self) -> None:
        """
        A connection that closes mid-message stops the producer; the
        message is not ended.
        """
        clock = Clock()
        protocol = FakeWebSocket(BackpressureConsumer(clock=clock))
        stream = MessageStream(protocol, reactor=clock)
        producer = Messages(10**6, reactor=clock)
        d = producer.startProducing(stream)
        runTurn(clock)
        protocol.close()
        self.failureResultOf(d, ProducerStopped)
        self.assertNotIn(("end",), protocol.sent)


class _ReadingTransport:
    """
    A transport as a L{MessageSource} sees it: paused and resumed for
    reading.
    """

    def __init__(self) -> None:
        self.paused = False
        self.calls: List[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")
        self.paused = True

    def resumeProducing(self) -> None:
        self.calls.append("resume")
        self.paused = False

    def stopProducing(self) -> None:
        self.calls.append("stop")


class MessageSourceConformanceTests(PushProducerConformanceMixin, SynchronousTestCase):
    """
    L{MessageSource} keeps the push producer contract, fed by a peer that
    sends one message per tick while the source reads.
    """

    skip = skipWebSocket

    def makeProducer(self, clock: Clock) -> Any:
        def connect(consumer: Any) -> Tuple[Any, Deferred[int]]:
            transport = _ReadingTransport()
            protocol = FakeWebSocket(transport)
            source = MessageSource(protocol, reactor=clock)
            sent = [0]

            def send() -> None:
                if protocol.state != OPEN:
                    return
                if sent[0] == 60:
                    protocol.close()
                    return
                if not transport.paused:
                    sent[0] += 1
                    protocol.receive(b"%04d" % (sent[0],) + b"." * 1000)
                clock.callLater(0.001, send)

            clock.callLater(0, send)
            return source, source.startProducing(consumer)

        return FedPushProducer(connect)

    def expectedData(self, producer: Any) -> bytes:
        return b"".join(b"%04d" % (i,) + b"." * 1000 for i in range(1, 61))


class MessageSourceTests(SynchronousTestCase):
    """
    L{MessageSource} over a stand-in for an Autobahn protocol.
    """

    skip = skipWebSocket

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = _ReadingTransport()
        self.protocol = FakeWebSocket(self.transport)

    def source(self, **kwargs: Any) -> Any:
        return MessageSource(self.protocol, reactor=self.clock, **kwargs)

    def test_interfaces(self) -> None:
        """
        It is a push producer.
        """
        self.assertTrue(verifyObject(IPushProducer, self.source()))

    def test_deliversAndFinishes(self) -> None:
        """
        Each message is one write; a normal close finishes the consumer and
        fires with the bytes delivered, and the close code is kept.
        """
        source = self.source()
        consumer = BackpressureConsumer(threshold=10**9)
        d = source.startProducing(consumer)
        self.protocol.receive(b"one")
        self.protocol.receive(b"two", isBinary=False)
        self.assertEqual(consumer.received, b"onetwo")
        self.protocol.close(code=1000)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 6)
        self.assertTrue(consumer.finished)
        self.assertEqual((source.closeCode, source.messagesReceived), (1000, 2))
        self.assertEqual(self.protocol.handlers, [])

    def test_pausedConsumerStopsReading(self) -> None:
        """
        While the consumer is paused the transport is not read, and what
        arrives in the meantime (from the same read) is held; once resumed,
        the held messages are delivered and the transport read again.
        """
        source = self.source()
        consumer = BackpressureConsumer(threshold=0)
        source.startProducing(consumer)
        self.protocol.receive(b"first")
        self.assertEqual(self.transport.calls, ["pause"])
        self.protocol.receive(b"second")
        self.assertEqual(consumer.received, b"first")
        self.assertEqual(source.buffered, 6)
        consumer.drain()
        self.clock.advance(0)
        self.assertEqual(consumer.received, b"firstsecond")
        # Delivering "second" paused the consumer again: still not reading.
        self.assertEqual(self.transport.calls, ["pause"])
        consumer.drain()
        self.clock.advance(0)
        self.assertEqual(self.transport.calls, ["pause", "resume"])

    def test_holdsUpToHighWaterBeforeStart(self) -> None:
        """
        Messages received before the source is started are held, and the
        transport is not read from the high mark on; they are delivered
        once it is started.
        """
        source = self.source(highWater=10, lowWater=5)
        self.protocol.receive(b"12345")
        self.assertEqual(self.transport.calls, [])
        self.protocol.receive(b"67890")
        self.assertEqual(self.transport.calls, ["pause"])
        consumer = BackpressureConsumer(threshold=10**9)
        source.startProducing(consumer)
        self.clock.advance(0)
        self.assertEqual(consumer.received, b"1234567890")
        self.assertEqual(self.transport.calls, ["pause", "resume"])

    def test_uncleanCloseFails(self) -> None:
        """
        A connection that ends without a normal closing handshake fails the
        source with L{WebSocketClosed}, after what was held is delivered;
        the consumer is not finished.
        """
        source = self.source()
        consumer = BackpressureConsumer(threshold=0)
        d = source.startProducing(consumer)
        self.protocol.receive(b"a")
        self.protocol.receive(b"b")
        self.protocol.close(clean=False)
        self.assertNoResult(d)
        consumer.drain()
        self.clock.advance(0)
        failure = self.failureResultOf(d, WebSocketClosed)
        self.assertEqual((failure.value.wasClean, failure.value.code), (False, 1006))
        self.assertEqual(consumer.received, b"ab")
        self.assertFalse(consumer.finished)

    def test_otherCloseCodeFails(self) -> None:
        """
        A clean close with a code other than 1000 fails the source, with
        the code.
        """
        source = self.source()
        d = source.startProducing(BackpressureConsumer())
        self.protocol.close(code=4001)
        self.clock.advance(0)
        failure = self.failureResultOf(d, WebSocketClosed)
        self.assertEqual((failure.value.wasClean, failure.value.code), (True, 4001))

    def test_stopClosesTheConnection(self) -> None:
        """
        A consumer that stops the source ends it: no more messages are
        taken, the transport is read again and the closing handshake
        starts.
        """
        source = self.source()
        consumer = BackpressureConsumer(threshold=0)
        d = source.startProducing(consumer)
        self.protocol.receive(b"a")
        source.stopProducing()
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(self.transport.calls, ["pause", "resume"])
        self.assertEqual(self.protocol.sent, [("close", 1000, "the receiver stopped")])
        self.assertEqual(self.protocol.handlers, [])
        self.protocol.close()
        self.assertEqual(self.transport.calls, ["pause", "resume"])

    def test_consumerErrorFails(self) -> None:
        """
        A consumer whose write raises fails the source with that error, in
        context, and the connection is closed.
        """
        source = self.source()
        consumer = BackpressureConsumer(failOnWrite=OSError("disk full"))
        d = source.startProducing(consumer)
        self.protocol.receive(b"a")
        failure = self.failureResultOf(d, OSError)
        self.assertIn("MessageSource", failure.getErrorMessage())
        self.assertEqual(self.protocol.sent, [("close", 1000, "the receiver stopped")])

    def test_asyncIteration(self) -> None:
        """
        A source is iterated with C{async for} through C{toAsyncIterator},
        to the connection's normal close.
        """
        from twisted_streaming import toAsyncIterator

        source = self.source()
        got: List[bytes] = []

        async def collect() -> List[bytes]:
            async for message in toAsyncIterator(source, reactor=self.clock):
                got.append(message)
            return got

        d = Deferred.fromCoroutine(collect())
        self.protocol.receive(b"a")
        self.protocol.receive(b"b")
        self.protocol.close()
        for _ in range(10):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), [b"a", b"b"])

    def test_pipeline(self) -> None:
        """
        A source is a pipeline's source.
        """
        from twisted_streaming import Stage

        source = self.source()
        consumer = BackpressureConsumer(threshold=10**9)
        d = pipeline(source, Stage(lambda m: [m.upper()]), sink=consumer)
        self.protocol.receive(b"abc")
        self.protocol.close()
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 3)
        self.assertEqual(consumer.received, b"ABC")


class ImportTests(SynchronousTestCase):
    """
    Autobahn is needed by C{twisted_streaming.websocket} only.
    """

    def test_packageImportsWithoutAutobahn(self) -> None:
        """
        Without Autobahn the package imports, and importing the module
        raises an L{ImportError} that names the extra to install.
        """
        code = (
            "import sys; sys.modules['autobahn'] = None\n"
            "import twisted_streaming\n"
            "try:\n"
            "    import twisted_streaming.websocket\n"
            "except ImportError as e:\n"
            "    print(e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        self.assertEqual(
            out,
            "twisted_streaming.websocket needs Autobahn: "
            "pip install 'twisted_streaming[websocket]'\n",
        )


class AutobahnInternalsTests(TestCase):
    """
    What C{twisted_streaming.websocket} reads of Autobahn beyond its
    documented methods (the group of functions marked as such there), on
    real Autobahn connections over loopback TCP: a release that changes any
    of it fails here, by name.
    """

    skip = skipWebSocket

    def explain(self, what: str) -> str:
        import autobahn

        return (
            f"Autobahn {autobahn.__version__} changed {what}; "
            "twisted_streaming.websocket's Autobahn internals were checked "
            f"against {websocket.AUTOBAHN_CHECKED_VERSIONS}: update them"
        )

    async def connect(self, **options: Any) -> Tuple[Any, Any]:
        """
        An open Autobahn server and client pair; the client as it is made,
        before its opening handshake.
        """
        from autobahn.twisted.websocket import (
            WebSocketClientFactory,
            WebSocketClientProtocol,
            WebSocketServerFactory,
            WebSocketServerProtocol,
        )
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        servers: List[Any] = []
        serverFactory = WebSocketServerFactory()
        serverFactory.protocol = WebSocketServerProtocol
        serverFactory.setProtocolOptions(
            openHandshakeTimeout=0, closeHandshakeTimeout=0, **options
        )
        build = serverFactory.buildProtocol

        def buildProtocol(addr: Any) -> Any:
            servers.append(build(addr))
            return servers[-1]

        serverFactory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        port = reactor.listenTCP(0, serverFactory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"ws://127.0.0.1:{port.getHost().port}"
        factory = WebSocketClientFactory(url)
        factory.protocol = WebSocketClientProtocol
        factory.setProtocolOptions(
            openHandshakeTimeout=0,
            closeHandshakeTimeout=0,
            serverConnectionDropTimeout=0,
        )
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", factory.port)
        client = await connectProtocol(endpoint, factory.buildProtocol(None))
        self.assertEqual(
            websocket._connectionState(client), "opening", self.explain("its states")
        )

        def abort() -> Any:
            for protocol in (client, *servers):
                if protocol.state != protocol.STATE_CLOSED:
                    protocol.transport.abortConnection()
            return client.is_closed

        self.addCleanup(abort)
        await websocket._whenOpen(client)
        while not servers or servers[0].state != servers[0].STATE_OPEN:
            await deferLater(reactor, 0, lambda: None)
        return servers[0], client

    async def test_statesAndFutures(self) -> None:
        """
        The protocol is open once C{is_open} fires, closing once a close
        frame has gone, and C{is_closed} fires with the protocol when it is
        closed.
        """
        server, client = await self.connect()
        for protocol in (server, client):
            self.assertEqual(
                websocket._connectionState(protocol), "open", self.explain("its states")
            )
            self.assertIsInstance(
                websocket._whenClosed(protocol), Deferred, self.explain("is_closed")
            )
        client.sendClose(1000)
        self.assertEqual(websocket._connectionState(client), "closed")
        closed = await websocket._whenClosed(server)
        self.assertIs(closed, server, self.explain("is_closed"))
        await websocket._whenClosed(client)
        self.assertEqual(websocket._connectionState(client), "closed")
        self.assertEqual(
            websocket._closeDetails(server)[:3],
            (True, True, 1000),
            self.explain("wasClean"),
        )

    async def test_sendQueue(self) -> None:
        """
        A frame sent with C{sync=True} waits in C{send_queue}, counted, and
        Autobahn empties it into the transport on later reactor calls.
        """
        server, _ = await self.connect()
        self.assertEqual(
            websocket._autobahnQueued(server), 0, self.explain("send_queue")
        )
        # A sync send writes its frame at once, but leaves the queue in use
        # for the next reactor call; everything sent meanwhile waits there,
        # each frame its payload and a 4-byte header.
        server.sendMessage(b"x" * 1000, True, sync=True)
        server.sendMessage(b"y" * 1000, True, sync=True)
        server.sendMessage(b"z" * 1000, True)
        self.assertEqual(
            websocket._autobahnQueued(server), 2008, self.explain("send_queue")
        )
        for _ in range(1000):
            if websocket._autobahnQueued(server) == 0:
                break
            await deferLater(reactor, 0, lambda: None)
        self.assertEqual(
            websocket._autobahnQueued(server), 0, self.explain("send_queue")
        )

    async def test_messageEvent(self) -> None:
        """
        Handlers added with C{on("message")} get each message's payload and
        whether it is binary, until removed with C{off}.
        """
        server, client = await self.connect()
        got: List[Tuple[bytes, bool]] = []
        arrived: Deferred[None] = Deferred()

        def handler(payload: bytes, is_binary: bool) -> None:
            got.append((payload, is_binary))
            if len(got) == 2:
                arrived.callback(None)

        websocket._onMessage(server, handler)
        client.sendMessage(b"\x00binary", True)
        client.sendMessage(b"text", False)
        await arrived
        self.assertEqual(
            got,
            [(b"\x00binary", True), (b"text", False)],
            self.explain("on('message')"),
        )
        websocket._offMessage(server, handler)
        client.sendMessage(b"later", True)
        client.sendClose(1000)
        await websocket._whenClosed(server)
        self.assertEqual(len(got), 2, self.explain("off('message')"))

    async def test_closeDetails(self) -> None:
        """
        C{wasClean}, C{failedByMe}, the close codes and reasons say how a
        connection ended: an application close code, a vanished peer, a
        protocol violation.
        """
        server, client = await self.connect()
        client.sendClose(4001, "app")
        await websocket._whenClosed(server)
        self.assertEqual(
            websocket._closeDetails(server),
            (False, True, 4001, "app"),
            self.explain("remoteCloseCode"),
        )

        server, client = await self.connect()
        client.transport.abortConnection()
        await websocket._whenClosed(server)
        normal, clean, code, reason = websocket._closeDetails(server)
        self.assertEqual(
            (normal, clean, code), (False, False, 1006), self.explain("wasClean")
        )
        self.assertIsInstance(reason, str, self.explain("wasNotCleanReason"))

        server, client = await self.connect(failByDrop=False)
        client.transport.write(b"\xff\xff" + b"\x00" * 16)
        await websocket._whenClosed(server)
        normal, clean, code, reason = websocket._closeDetails(server)
        self.assertEqual(
            (normal, server.failedByMe, server.localCloseCode),
            (False, True, 1002),
            self.explain("failedByMe or localCloseCode"),
        )
