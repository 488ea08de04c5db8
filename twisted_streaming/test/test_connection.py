"""
Tests for a connection as a source and a sink: L{ConnectionSource},
L{ConnectionSink} and L{StreamProtocol}, over a L{StringTransport} and over
real TCP.
"""

from __future__ import annotations

import os
from typing import Any, List

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    ConnectionSink,
    ConnectionSource,
    ContextFailure,
    IFinishableConsumer,
    ProducerStopped,
    StreamProtocol,
    fromAsyncIterable,
    pipeline,
    toAsyncIterator,
)
from twisted_streaming.testing import BackpressureConsumer

reactor: Any = _globalReactor


class ConnectionSourceTests(SynchronousTestCase):
    """
    L{ConnectionSource} over a L{StringTransport}.
    """

    def start(self) -> Deferred[int]:
        """
        Start a source on a L{StringTransport} (C{self.transport}) on a
        L{BackpressureConsumer} (C{self.consumer}).
        """
        self.transport = StringTransport()
        self.source = ConnectionSource(self.transport)
        self.consumer = BackpressureConsumer(threshold=100)
        return self.source.startProducing(self.consumer)

    def test_interfaces(self) -> None:
        """
        The source is a push producer; the sink a finishable consumer.
        """
        self.assertTrue(verifyObject(IPushProducer, ConnectionSource()))
        sink = ConnectionSink(StringTransport())
        self.assertTrue(verifyObject(IFinishableConsumer, sink))

    def test_pausesReadingUnderBackpressure(self) -> None:
        """
        The transport stops reading while the consumer has paused the
        source, and reads again when it resumes it.
        """
        self.start()
        self.source.dataReceived(b"x" * 50)
        self.assertEqual(self.transport.producerState, "producing")
        self.source.dataReceived(b"y" * 100)
        self.assertEqual(self.transport.producerState, "paused")
        self.consumer.drain()
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.consumer.received, b"x" * 50 + b"y" * 100)

    def test_cleanCloseFinishes(self) -> None:
        """
        A connection closed cleanly ends the stream: the consumer is
        finished and the Deferred fires with the bytes received.
        """
        d = self.start()
        self.source.dataReceived(b"abc")
        self.source.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(d), 3)
        self.assertTrue(self.consumer.finished)
        self.assertIsNone(self.consumer.producer)

    def test_halfCloseFinishes(self) -> None:
        """
        A half-close ends the stream, and leaves the connection open.
        """
        d = self.start()
        self.source.readConnectionLost()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.transport.producerState, "producing")

    def test_lostConnectionFails(self) -> None:
        """
        A connection lost otherwise fails the Deferred with the reason, in
        context.
        """
        d = self.start()
        self.source.dataReceived(b"abcd")
        self.source.connectionLost(Failure(ConnectionLost("reset")))
        failure = self.failureResultOf(d, ConnectionLost)
        assert isinstance(failure, ContextFailure)
        self.assertEqual(failure.bytesWritten, 4)
        self.assertFalse(self.consumer.finished)
        self.assertIsNone(self.consumer.producer)

    def test_bytesBeforeStartAreHeld(self) -> None:
        """
        Bytes received before the source starts are held with reading
        paused, and written first when it starts.
        """
        transport = StringTransport()
        source = ConnectionSource()
        source.makeConnection(transport)
        source.dataReceived(b"early")
        self.assertEqual(transport.producerState, "paused")
        consumer = BackpressureConsumer()
        d = source.startProducing(consumer)
        self.assertEqual(consumer.received, b"early")
        self.assertEqual(transport.producerState, "producing")
        source.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(d), 5)

    def test_endBeforeStart(self) -> None:
        """
        A connection that closed before the source started gives what it
        received, then ends.
        """
        source = ConnectionSource(StringTransport())
        source.dataReceived(b"all")
        source.connectionLost(Failure(ConnectionDone()))
        consumer = BackpressureConsumer()
        d = source.startProducing(consumer)
        self.assertEqual(self.successResultOf(d), 3)
        self.assertEqual(consumer.received, b"all")
        self.assertTrue(consumer.finished)

    def test_stopClosesTheConnection(self) -> None:
        """
        Stopped by its consumer, the source fails with L{ProducerStopped}
        and stops the transport (closes the connection).
        """
        d = self.start()
        self.consumer.loseConnection()
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(self.transport.producerState, "stopped")

    def test_writeErrorHasContext(self) -> None:
        """
        An error from the consumer's C{write} fails the Deferred naming the
        chunk, and closes the connection.
        """
        transport = StringTransport()
        source = ConnectionSource(transport)
        consumer = BackpressureConsumer(failOnWrite=OSError("full"), failAfterWrites=1)
        d = source.startProducing(consumer)
        source.dataReceived(b"one")
        source.dataReceived(b"two")
        failure = self.failureResultOf(d, OSError)
        assert isinstance(failure, ContextFailure)
        self.assertEqual((failure.itemIndex, failure.itemOffset), (1, 3))
        self.assertEqual(failure.item, "b'two'")
        self.assertEqual(transport.producerState, "stopped")
        self.assertIn("StringTransport", failure.chain[0])

    def test_sinkFinishCloses(self) -> None:
        """
        L{ConnectionSink} passes writes to the transport, and its finish
        closes the connection.
        """
        transport = StringTransport()
        sink = ConnectionSink(transport)
        sink.write(b"bye")
        sink.finish()
        self.assertEqual(transport.value(), b"bye")
        self.assertTrue(transport.disconnecting)


class Served(StreamProtocol):
    """
    A server side that hands itself to the test when connected.
    """

    def __init__(self, made: List[Served], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        made.append(self)


class StreamProtocolTCPTests(TestCase):
    """
    L{StreamProtocol} over real TCP connections on 127.0.0.1.
    """

    async def connect(self, **kwargs: Any) -> Any:
        """
        A server and a client L{StreamProtocol}, connected.
        """
        made: List[Served] = []
        port = reactor.listenTCP(
            0,
            Factory.forProtocol(lambda: Served(made, **kwargs)),
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)
        client = StreamProtocol(**kwargs)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await connectProtocol(endpoint, client)
        while not made:
            await deferLater(reactor, 0, lambda: None)
        server = made[0]

        async def closeBoth() -> None:
            for end in (client, server):
                end.transport.loseConnection()
                await end.lost

        self.addCleanup(lambda: Deferred.fromCoroutine(closeBoth()))
        return server, client

    async def test_asyncForWithBoundedBuffer(self) -> None:
        """
        A slow C{async for} over a connection gets every byte, and what is
        held for it stays within the high water mark plus one read.
        """
        server, client = await self.connect()
        data = os.urandom(4 * 1024 * 1024)

        async def chunks() -> Any:
            for offset in range(0, len(data), 65536):
                yield data[offset : offset + 65536]

        sent = pipeline(fromAsyncIterable(chunks()), sink=server.outgoing)
        iterator: Any = toAsyncIterator(client.incoming, highWater=128 * 1024)
        received = []
        held = 0
        async for chunk in iterator:
            received.append(chunk)
            held = max(held, iterator._feed.buffer.size)
            if len(received) % 8 == 0:
                await deferLater(reactor, 0, lambda: None)
        self.assertEqual(b"".join(received), data)
        self.assertEqual(await sent, len(data))
        self.assertLessEqual(held, 128 * 1024 + 65536)

    async def test_halfCloseEcho(self) -> None:
        """
        A server that pipes its incoming bytes to its outgoing sink echoes
        a client that half-closes, then half-closes in turn.
        """
        server, client = await self.connect(halfClose=True)
        echoed = pipeline(server.incoming, sink=server.outgoing)
        client.transport.write(b"ping " * 10000)
        client.transport.loseWriteConnection()
        received = []
        async for chunk in toAsyncIterator(client.incoming):
            received.append(chunk)
        self.assertEqual(b"".join(received), b"ping " * 10000)
        self.assertEqual(await echoed, 50000)

    async def test_breakClosesTheConnection(self) -> None:
        """
        Leaving C{async for} over a connection early closes it.
        """
        server, client = await self.connect()
        server.transport.write(b"x" * 100000)
        async for _ in toAsyncIterator(client.incoming):
            break
        await client.lost
        await server.lost
        self.assertTrue(server.reason.check(ConnectionDone, ConnectionLost))

    async def test_resetFails(self) -> None:
        """
        A connection reset by the peer fails the source.
        """
        server, client = await self.connect()
        received = pipeline(server.incoming, sink=BackpressureConsumer())
        client.transport.write(b"partial")
        await deferLater(reactor, 0, lambda: None)
        client.transport.abortConnection()
        with self.assertRaises((ConnectionLost, ConnectionDone)) as raised:
            await received
        self.assertIsInstance(raised.exception, ConnectionLost)
