"""
Tests for stages and L{pipeline}, over fakes on a L{Clock} and over real
loopback connections.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from typing import Any, Iterable, List, Optional

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    BasePushProducer,
    Compress,
    ConsumerFinished,
    ContextFailure,
    Decompress,
    FileSender,
    Frame,
    HashStage,
    IFinishableConsumer,
    LineJoiner,
    LineSplitter,
    ProducerStopped,
    Stage,
    Unframe,
    pipeline,
)
from twisted_streaming.testing import BackpressureConsumer

reactor: Any = _globalReactor


class Items(BasePushProducer):
    """
    Produce the given items, one per turn of the loop.
    """

    def __init__(self, items: Iterable[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items = list(items)
        self.index = 0

    def produce(self) -> Optional[Any]:
        if self.index == len(self.items):
            return None
        self.index += 1
        return self.items[self.index - 1]


def chunks(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class StageTests(SynchronousTestCase):
    """
    Stages and pipelines over fakes.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def through(
        self, items: Iterable[Any], *stages: Stage, objects: bool = False
    ) -> Any:
        sink = BackpressureConsumer(2**62, objects=objects)
        d = pipeline(Items(items, reactor=self.clock), *stages, sink=sink)
        while not d.called:
            self.clock.advance(0)
        self.successResultOf(d)
        self.assertTrue(sink.finished)
        self.assertIsNone(sink.producer)
        return sink.received

    def test_interfaces(self) -> None:
        """
        A stage is a finishable consumer and a push producer.
        """
        stage = Stage(lambda item: [item])
        self.assertTrue(verifyObject(IFinishableConsumer, stage))
        self.assertTrue(verifyObject(IPushProducer, stage))

    def test_function(self) -> None:
        """
        A stage applies its function to each item; outputs may be zero, one
        or many items per input.
        """
        stage = Stage(lambda b: [b.upper()] * (len(b) % 3), name="upper")
        got = self.through([b"a", b"bb", b"ccc", b"dddd"], stage)
        self.assertEqual(got, b"A" + b"BBBB" + b"DDDD")
        self.assertEqual((stage.itemsIn, stage.itemsOut), (4, 4))

    def test_linesRoundTrip(self) -> None:
        """
        Lines split from arbitrary chunks and joined again give the input,
        including a last line without a delimiter.
        """
        data = b"one\ntwo\n\nthree\nfour"
        splitter = LineSplitter()
        lines: List[Any] = []

        def collectLine(line: bytes) -> List[bytes]:
            lines.append(line)
            return [line]

        collect = Stage(collectLine)
        got = self.through(chunks(data, 3), splitter, collect, LineJoiner())
        self.assertEqual(lines, [b"one", b"two", b"", b"three", b"four"])
        self.assertEqual(got, data + b"\n")

    def test_objectStream(self) -> None:
        """
        Stages pass any objects: rows in, encoded bytes out.
        """
        rows = [{"id": i, "name": f"n{i}"} for i in range(5)]
        encode = Stage(lambda row: [f"{row['id']},{row['name']}"])
        got = self.through(rows, encode, LineJoiner())
        self.assertEqual(got, b"".join(b"%d,n%d\n" % (i, i) for i in range(5)))

    def test_compressRoundTrip(self) -> None:
        """
        Compress then Decompress gives the input back, for zlib and gzip;
        gzip output is a real gzip stream.
        """
        data = os.urandom(50_000) + b"x" * 200_000
        for useGzip in (False, True):
            compressed = self.through(chunks(data, 7000), Compress(gzip=useGzip))
            self.assertLess(len(compressed), len(data))
            if useGzip:
                self.assertEqual(gzip.decompress(compressed), data)
            else:
                self.assertEqual(zlib.decompress(compressed), data)
            again = self.through(chunks(compressed, 1000), Decompress())
            self.assertEqual(again, data)

    def test_truncatedCompressedStream(self) -> None:
        """
        A compressed stream that ends early fails the pipeline.
        """
        compressed = zlib.compress(b"y" * 100_000)[:-10]
        sink = BackpressureConsumer(2**62)
        d = pipeline(Items([compressed], reactor=self.clock), Decompress(), sink=sink)
        self.clock.advance(0)
        self.failureResultOf(d, zlib.error)

    def test_hash(self) -> None:
        """
        The hashing stage passes bytes through and exposes their digest.
        """
        data = os.urandom(100_000)
        stage = HashStage("sha256")
        self.assertEqual(self.through(chunks(data, 4096), stage), data)
        self.assertEqual(stage.hexdigest(), hashlib.sha256(data).hexdigest())

    def test_framing(self) -> None:
        """
        Framed messages unframe to the same messages, whatever the chunking.
        """
        self.assertEqual(list(Frame().process(b"")), [b"\x00\x00\x00\x00"])
        messages = [b"a", b"hello" * 1000, os.urandom(70_000)]
        framed = self.through(messages, Frame())
        got = self.through(chunks(framed, 333), Unframe(), objects=True)
        self.assertEqual(got, messages)

    def test_unframeErrors(self) -> None:
        """
        A stream ending inside a message, or a message over the limit, fails.
        """
        for data, stage in (
            (b"\x00\x00\x00\x09abc", Unframe()),
            (b"\x00\x01\x00\x00", Unframe(maxLength=10)),
        ):
            d = pipeline(
                Items([data], reactor=self.clock), stage, sink=BackpressureConsumer()
            )
            self.clock.advance(0)
            self.failureResultOf(d, ValueError)

    def test_backpressureThroughThreeStages(self) -> None:
        """
        A slow sink pauses the source through three stages, each stage buffers
        no more than its high watermark plus one item, and everything arrives
        once the sink drains.
        """
        data = os.urandom(4 * 1024 * 1024)
        source = Items(chunks(data, 16384), reactor=self.clock)
        stages = [Stage(lambda b: [b], name=f"s{i}") for i in range(3)]
        sink = BackpressureConsumer(65536)
        d = pipeline(source, *stages, sink=sink)
        self.clock.advance(0)
        self.assertTrue(source.paused)
        self.assertLess(source.bytesWritten, 1024 * 1024)
        received = b""
        while not d.called:
            for stage in stages:
                self.assertLessEqual(stage._buffered, stage.highWater + 16384)
            sink.drain()
            received = sink.received  # type: ignore[assignment]
            self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(sink.received, data)
        self.assertGreater(len(received), 0)

    def test_errorInTheMiddle(self) -> None:
        """
        An error in the middle stage stops the source, fails every stage and
        the pipeline with a failure naming the stage and its counts, and
        unregisters from the sink without finishing it.
        """

        def explode(item: bytes) -> List[bytes]:
            if item == b"3":
                raise KeyError("bad record")
            return [item]

        source = Items([b"%d" % i for i in range(10)], reactor=self.clock)
        first, middle, last = (
            Stage(lambda b: [b]),
            Stage(explode, name="explode"),
            Stage(lambda b: [b]),
        )
        sink = BackpressureConsumer(2**62)
        d = pipeline(source, first, middle, last, sink=sink)
        self.clock.advance(0)
        failure = self.failureResultOf(d, KeyError)
        assert isinstance(failure, ContextFailure)
        self.assertIs(failure.source, middle)
        self.assertIn("'explode'", failure.context)
        self.assertIn("after writing 4 bytes in 4 chunks", failure.context)
        self.assertFalse(source.producing)
        for stage in (first, middle, last):
            self.assertRaises(ConsumerFinished, stage.write, b"late")
        self.assertEqual(sink.received, b"012")
        self.assertFalse(sink.finished)
        self.assertIsNone(sink.producer)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        Cancelling the pipeline stops the source and every stage.
        """
        source = Items([b"x"] * 100, reactor=self.clock)
        stage = Stage(lambda b: [b])
        sink = BackpressureConsumer(1)
        d = pipeline(source, stage, sink=sink)
        self.clock.advance(0)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertRaises(ConsumerFinished, stage.write, b"late")
        self.assertFalse(source.producing)
        self.assertIsNone(sink.producer)

    def test_sinkGoesAway(self) -> None:
        """
        A sink that stops its producer (a lost connection) stops the chain.
        """
        source = Items([b"x"] * 100, reactor=self.clock)
        sink = BackpressureConsumer(1)
        d = pipeline(source, Stage(lambda b: [b]), sink=sink)
        self.clock.advance(0)
        sink.loseConnection()
        self.failureResultOf(d, ProducerStopped)
        self.assertFalse(source.producing)

    def test_pullSource(self) -> None:
        """
        A pull producer (our FileSender) as the source, through a stateful
        stage, ends with the stage flushed and the sink finished.
        """
        path = self.mktemp()
        data = os.urandom(300_000)
        with open(path, "wb") as f:
            f.write(data)
        stage = HashStage(reactor=self.clock)
        sink = BackpressureConsumer(2**62)
        sender = FileSender()
        sender.CHUNK_SIZE = 65536
        d = pipeline(lambda c: sender.beginFileTransfer(path, c), stage, sink=sink)
        while not d.called:
            self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(sink.received, data)
        self.assertTrue(sink.finished)
        self.assertEqual(stage.hexdigest(), hashlib.sha256(data).hexdigest())


class _Receiver(Protocol):
    """
    Feed what arrives into a stage, with the transport as its producer.
    """

    def __init__(self, stage: Stage, sink: BackpressureConsumer) -> None:
        self.stage = stage
        self.sink = sink

    def connectionMade(self) -> None:
        self.stage.attach(self.sink)
        self.stage.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.stage.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.stage.unregisterProducer()
        self.stage.finish()


class LoopbackTests(TestCase):
    """
    Stages over a real TCP connection.
    """

    async def test_compressOverTCPAndBack(self) -> None:
        """
        A file goes through a compressing stage to a TCP peer and back out of
        a decompressing stage there, byte-exact.
        """
        path = self.mktemp()
        data = os.urandom(1_000_000) + b"z" * 3_000_000
        with open(path, "wb") as f:
            f.write(data)
        decompress = Decompress()
        sink = BackpressureConsumer(2**62)
        port = reactor.listenTCP(
            0,
            Factory.forProtocol(lambda: _Receiver(decompress, sink)),
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)
        client = Protocol()
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client
        )
        compress = Compress()
        sent = HashStage()
        await pipeline(
            lambda c: FileSender().beginFileTransfer(path, c),
            compress,
            sent,
            sink=client.transport,  # type: ignore[arg-type]
        )
        client.transport.loseConnection()  # type: ignore[union-attr]
        await decompress.done
        self.assertEqual(sink.received, data)
        self.assertTrue(sink.finished)
        self.assertLess(compress.bytesOut, len(data))
        self.assertEqual(sent.bytesIn, compress.bytesOut)
