"""
Tests for L{twisted_streaming.FileConsumer}.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, List, cast

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    ConsumerFinished,
    ContextFailure,
    FileConsumer,
    FileSender,
    IFinishableConsumer,
    StreamProtocol,
    _fileconsumer,
    pipeline,
)
from twisted_streaming._flow import turnLoop
from twisted_streaming.test.test_push import runTurn


class _PushProducer:
    """Record pause/resume/stop calls."""

    def __init__(self) -> None:
        self.events: List[str] = []

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


class _FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError("disk full")


class FileConsumerUnitTests(SynchronousTestCase):
    """
    L{FileConsumer} with a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_interface(self) -> None:
        """FileConsumer provides IConsumer and IFinishableConsumer."""
        consumer = FileConsumer(io.BytesIO(), reactor=self.clock)
        self.assertTrue(verifyObject(IConsumer, consumer))
        self.assertTrue(verifyObject(IFinishableConsumer, consumer))

    def test_writesOnLaterTurnAndFinishes(self) -> None:
        """Writes reach the file on a later turn; whenFinished fires after finish."""
        f = io.BytesIO()
        consumer = FileConsumer(f, reactor=self.clock)
        consumer.write(b"hello ")
        consumer.write(b"world")
        self.assertEqual(f.getvalue(), b"")
        d = consumer.whenFinished()
        consumer.finish()
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(f.getvalue(), b"hello world")
        self.assertEqual(self.successResultOf(d), 11)
        self.assertFalse(f.closed)

    def test_pathOpenedAndClosed(self) -> None:
        """A path is created, written and closed when finished."""
        path = FilePath(self.mktemp())
        consumer = FileConsumer(path, reactor=self.clock)
        consumer.write(b"data")
        consumer.finish()
        self.clock.advance(0)
        self.assertEqual(path.getContent(), b"data")
        self.assertTrue(consumer.file.closed)
        self.assertEqual(self.successResultOf(consumer.whenFinished()), 4)

    def test_writeAfterFinishRaises(self) -> None:
        """write() or finish() after finish() raises ConsumerFinished."""
        consumer = FileConsumer(io.BytesIO(), reactor=self.clock)
        consumer.finish()
        self.assertRaises(ConsumerFinished, consumer.write, b"x")
        self.assertRaises(ConsumerFinished, consumer.finish)

    def test_pushProducerPausedAndResumed(self) -> None:
        """A push producer is paused at high water and resumed once drained."""
        consumer = FileConsumer(io.BytesIO(), reactor=self.clock)
        consumer.highWater = 10
        consumer.lowWater = 5
        consumer.batchBytes = 4
        producer = _PushProducer()
        consumer.registerProducer(producer, True)
        consumer.write(b"x" * 6)
        self.assertEqual(producer.events, [])
        consumer.write(b"x" * 6)
        self.assertEqual(producer.events, ["pause"])
        consumer.write(b"x" * 6)
        self.assertEqual(producer.events, ["pause"])
        self.clock.advance(0)  # Runs every batch: 4 bytes per turn.
        self.assertEqual(producer.events, ["pause", "resume"])
        self.assertEqual(consumer.bytesWritten, 18)

    def test_batchesAreBounded(self) -> None:
        """
        At most batchBytes are written per step, and a turn of the loop ends
        once its reactor's budget is spent.
        """
        f = io.BytesIO()
        consumer = FileConsumer(f, reactor=self.clock)
        consumer.batchBytes = 4
        turnLoop(self.clock).bytesPerTurn = 4
        consumer.write(b"abcdefghij")
        runTurn(self.clock)
        self.assertEqual(f.getvalue(), b"abcd")
        self.clock.advance(0)
        self.assertEqual(f.getvalue(), b"abcdefghij")

    def test_drivesPullProducer(self) -> None:
        """A pull producer (FileSender) is driven to the end: a file copy."""
        source = FilePath(self.mktemp())
        source.setContent(b"0123456789" * 100)
        target = FilePath(self.mktemp())
        consumer = FileConsumer(target, reactor=self.clock)
        sender = FileSender()
        sender.CHUNK_SIZE = 64
        d = sender.beginFileTransfer(source, consumer)
        d.addCallback(lambda _: consumer.finish())
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(consumer.whenFinished()), 1000)
        self.assertEqual(target.getContent(), source.getContent())

    def test_fsyncWhenAsked(self) -> None:
        """With fsync=True the file is fsynced before whenFinished fires."""
        synced: List[int] = []
        self.patch(_fileconsumer.os, "fsync", synced.append)
        path = FilePath(self.mktemp())
        consumer = FileConsumer(path, fsync=True, reactor=self.clock)
        consumer.write(b"x")
        consumer.finish()
        self.clock.advance(0)
        self.successResultOf(consumer.whenFinished())
        self.assertEqual(len(synced), 1)

    def test_writeErrorFailsAndStopsProducer(self) -> None:
        """A file write error fails whenFinished and stops the producer."""
        consumer = FileConsumer(_FullDisk(), reactor=self.clock)
        producer = _PushProducer()
        consumer.registerProducer(producer, True)
        d = consumer.whenFinished()
        consumer.write(b"x")
        self.clock.advance(0)
        failure = self.failureResultOf(d, OSError)
        self.assertIsInstance(failure, ContextFailure)
        self.assertEqual(producer.events, ["stop"])
        self.assertIsNone(consumer.producer)


class _ToDisk(StreamProtocol):
    """Stream what arrives into a FileConsumer, with the transport paused."""

    def __init__(self, consumer: FileConsumer) -> None:
        super().__init__()
        self.consumer = consumer

    def connectionMade(self) -> None:
        pipeline(self.incoming, sink=self.consumer)


class FileConsumerLoopbackTests(TestCase):
    """
    L{FileConsumer} receiving a real TCP stream.
    """

    @defer.inlineCallbacks
    def test_networkStreamToDisk(self) -> Any:
        """16 MiB sent over TCP land on disk intact."""
        source = FilePath(self.mktemp())
        block = hashlib.sha256(b"x").digest() * 32768
        source.setContent(block * 16)
        target = FilePath(self.mktemp())
        # Under pytest, mktemp is relative to the current directory: clean up.
        self.addCleanup(source.remove)
        self.addCleanup(target.remove)
        consumer = FileConsumer(target)
        factory = protocol.Factory.forProtocol(lambda: _ToDisk(consumer))
        port = cast(Any, reactor).listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        class Send(StreamProtocol):
            def connectionMade(self) -> None:
                pipeline(
                    lambda c: FileSender().beginFileTransfer(source, c),
                    sink=self.outgoing,
                )

        sender = yield protocol.ClientCreator(reactor, Send).connectTCP(
            "127.0.0.1", port.getHost().port
        )
        written = yield consumer.whenFinished()
        yield sender.lost
        self.assertEqual(written, 16 * 1024 * 1024)
        self.assertEqual(
            hashlib.sha256(target.getContent()).digest(),
            hashlib.sha256(source.getContent()).digest(),
        )
