"""
Tests for stages and L{pipeline}, over fakes on a L{Clock} and over real
loopback connections.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from typing import Any, Iterable, List, Optional

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
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
    StreamProtocol,
    Unframe,
    pipeline,
)
from twisted_streaming.testing import BackpressureConsumer, RecordingPushProducer

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
        for _ in range(100_000):
            if d.called:
                break
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
        for _ in range(100_000):
            if d.called:
                break
            for stage in stages:
                self.assertLessEqual(stage.buffered, stage.highWater + 16384)
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
        for _ in range(100_000):
            if d.called:
                break
            self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(sink.received, data)
        self.assertTrue(sink.finished)
        self.assertEqual(stage.hexdigest(), hashlib.sha256(data).hexdigest())


class _Recorder:
    """
    A consumer that records what is written to it and calls C{onWrite} with
    its producer and the item before returning from each C{write}.
    """

    def __init__(self, onWrite: Optional[Any] = None) -> None:
        self.items: List[Any] = []
        self.producer: Any = None
        self.onWrite = onWrite

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, item: Any) -> None:
        self.items.append(item)
        if self.onWrite is not None:
            self.onWrite(self.producer, item)


class StageWriteTests(SynchronousTestCase):
    """
    What L{Stage.write} does with the outputs of each item, whether it
    delivers them at once or buffers them.
    """

    def attached(self, stage: Stage, onWrite: Optional[Any] = None) -> Any:
        upstream = RecordingPushProducer()
        consumer = _Recorder(onWrite)
        stage.attach(consumer)  # type: ignore[arg-type]
        stage.registerProducer(upstream, True)
        return upstream, consumer

    def test_countsBytesAndObjects(self) -> None:
        """
        Bytes count as their length and other objects as one, in and out.
        """
        stage = Stage(lambda item: [item, "tail"])
        upstream, consumer = self.attached(stage)
        for item in (b"abc", bytearray(b"de"), memoryview(b"f"), 7):
            stage.write(item)
        self.assertEqual((stage.itemsIn, stage.bytesIn), (4, 7))
        self.assertEqual((stage.itemsOut, stage.bytesOut), (8, 11))
        self.assertEqual(consumer.items[::2], [b"abc", b"de", b"f", 7])
        self.assertEqual(consumer.items[1::2], ["tail"] * 4)
        self.assertEqual(upstream.calls, [])

    def test_pauseInsideTheFirstOfSeveralOutputs(self) -> None:
        """
        A pause from inside the write of an item's first output holds back
        the rest, counted in the buffer; over the high water mark upstream
        is paused, and a resume delivers the rest in order and resumes it.
        """

        def pauseOnce(producer: Any, item: Any) -> None:
            if item == b"a1":
                producer.pauseProducing()

        stage = Stage(lambda b: [b + b"1", b + b"2", b + b"3"], highWater=4)
        upstream, consumer = self.attached(stage, pauseOnce)
        stage.write(b"a")
        self.assertEqual(consumer.items, [b"a1"])
        self.assertEqual((stage.itemsOut, stage.bytesOut, stage.buffered), (1, 2, 4))
        self.assertEqual(upstream.calls, [("pause",)])
        stage.write(b"b")
        self.assertEqual(consumer.items, [b"a1"])
        stage.resumeProducing()
        self.assertEqual(consumer.items, [b"a1", b"a2", b"a3", b"b1", b"b2", b"b3"])
        self.assertEqual((stage.itemsOut, stage.bytesOut, stage.buffered), (6, 12, 0))
        self.assertEqual(upstream.calls, [("pause",), ("resume",)])

    def test_pauseAndResumeInsideAWrite(self) -> None:
        """
        A pause and a resume from inside the write of an item's first output
        leave the outputs in order, each delivered once, and upstream
        resumed.
        """

        def pauseAndResume(producer: Any, item: Any) -> None:
            if item == b"a1":
                producer.pauseProducing()
                producer.resumeProducing()

        stage = Stage(lambda b: [b + b"1", b + b"2"], highWater=1, lowWater=1)
        upstream, consumer = self.attached(stage, pauseAndResume)
        stage.write(b"a")
        stage.write(b"b")
        self.assertEqual(consumer.items, [b"a1", b"a2", b"b1", b"b2"])
        self.assertEqual(upstream.calls, [("pause",), ("resume",)])
        self.assertEqual(stage.buffered, 0)

    def test_orderWhenUpstreamStageWritesFromInsideAWrite(self) -> None:
        """
        When a downstream write pauses and resumes the last of two stages,
        and so resumes the first, which writes what it held back from inside
        that write, everything still arrives once and in order.
        """

        def pauseAndResume(producer: Any, item: Any) -> None:
            if item == b"a1":
                producer.pauseProducing()
                producer.resumeProducing()

        first = Stage(lambda b: [b], highWater=1)
        second = Stage(lambda b: [b + b"1", b + b"2"], highWater=1)
        consumer = _Recorder(pauseAndResume)
        second.attach(consumer)  # type: ignore[arg-type]
        first.attach(second)
        first.registerProducer(RecordingPushProducer(), True)
        # The first stage holds b and c back while its consumer is paused.
        first.pauseProducing()
        first.write(b"a")
        first.write(b"b")
        first.write(b"c")
        first.resumeProducing()
        self.assertEqual(consumer.items, [b"a1", b"a2", b"b1", b"b2", b"c1", b"c2"])
        self.assertEqual((first.itemsOut, second.itemsOut), (3, 6))

    def test_generatorFailsTheWholeItem(self) -> None:
        """
        A L{Stage.process} that is a generator and raises after yielding
        delivers nothing for that item and fails the stage with its name and
        counts, stopping upstream.
        """

        class Failing(Stage):
            def process(self, item: bytes) -> Iterable[bytes]:
                yield item
                if item == b"bad":
                    raise ValueError("no")

        stage = Failing(name="failing")
        upstream, consumer = self.attached(stage)
        stage.write(b"good")
        stage.write(b"bad")
        self.assertEqual(consumer.items, [b"good"])
        failure = self.failureResultOf(stage.done, ValueError)
        assert isinstance(failure, ContextFailure)
        self.assertIn("'failing'", failure.context)
        self.assertIn("after writing 7 bytes in 2 chunks", failure.context)
        self.assertEqual(upstream.calls, [("stop",)])
        self.assertIsNone(consumer.producer)
        self.assertRaises(ConsumerFinished, stage.write, b"late")

    def test_downstreamWriteFails(self) -> None:
        """
        An error raised by the downstream consumer's C{write} fails the stage
        with its counts, stops upstream and unregisters; the rest of that
        item's outputs are not delivered.
        """

        def explode(producer: Any, item: Any) -> None:
            if item == b"b1":
                raise OSError("gone")

        stage = Stage(lambda b: [b + b"1", b + b"2"], name="pair")
        upstream, consumer = self.attached(stage, explode)
        stage.write(b"a")
        stage.write(b"b")
        self.assertEqual(consumer.items, [b"a1", b"a2", b"b1"])
        failure = self.failureResultOf(stage.done, OSError)
        assert isinstance(failure, ContextFailure)
        self.assertIn("'pair'", failure.context)
        self.assertEqual((failure.bytesWritten, failure.chunksWritten), (2, 2))
        self.assertEqual(upstream.calls, [("stop",)])
        self.assertIsNone(consumer.producer)

    def test_noOutputPullsAgain(self) -> None:
        """
        An item with no output still asks a pull producer upstream for more,
        on a later turn.
        """
        clock = Clock()
        stage = Stage(lambda b: [], reactor=clock)
        consumer = _Recorder()
        stage.attach(consumer)  # type: ignore[arg-type]
        upstream = RecordingPushProducer()
        stage.registerProducer(upstream, False)
        clock.advance(0)
        self.assertEqual(upstream.calls, [("resume",)])
        stage.write(b"x")
        clock.advance(0)
        self.assertEqual(upstream.calls, [("resume",), ("resume",)])
        self.assertEqual(consumer.items, [])

    def test_functionAndProcess(self) -> None:
        """
        A stage made from a function gives its outputs from C{process} too,
        and a C{process} set on the instance later replaces it.
        """
        stage = Stage(lambda b: [b.upper()])
        _, consumer = self.attached(stage)
        self.assertEqual(list(stage.process(b"a")), [b"A"])
        stage.write(b"b")
        stage.process = lambda b: [b, b]  # type: ignore[method-assign, assignment]
        stage.write(b"c")
        self.assertEqual(consumer.items, [b"B", b"c", b"c"])

    def test_finishDeliversHeldBackOutputs(self) -> None:
        """
        C{finish} while paused with outputs held back delivers them, then
        the flushed ones, on resume, and only then finishes.
        """

        class Tail(Stage):
            def process(self, item: bytes) -> Iterable[bytes]:
                return (item, item)

            def flush(self) -> Iterable[bytes]:
                return [b"end"]

        def pauseOnce(producer: Any, item: Any) -> None:
            if len(consumer.items) == 1:
                producer.pauseProducing()

        stage = Tail()
        _, consumer = self.attached(stage, pauseOnce)
        stage.write(b"x")
        stage.finish()
        self.assertEqual(consumer.items, [b"x"])
        self.assertNoResult(stage.done)
        stage.resumeProducing()
        self.assertEqual(consumer.items, [b"x", b"x", b"end"])
        self.assertEqual(self.successResultOf(stage.done), 3)
        self.assertIsNone(consumer.producer)


class _Receiver(StreamProtocol):
    """
    Feed what arrives through a stage into C{sink}.
    """

    def __init__(self, stage: Stage, sink: BackpressureConsumer) -> None:
        super().__init__()
        self.stage = stage
        self.sink = sink

    def connectionMade(self) -> None:
        pipeline(self.incoming, self.stage, sink=self.sink)


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
        client = StreamProtocol()
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client
        )
        compress = Compress()
        sent = HashStage()
        await pipeline(
            lambda c: FileSender().beginFileTransfer(path, c),
            compress,
            sent,
            sink=client.outgoing,
        )
        await decompress.done
        self.assertEqual(sink.received, data)
        self.assertTrue(sink.finished)
        self.assertLess(compress.bytesOut, len(data))
        self.assertEqual(sent.bytesIn, compress.bytesOut)


class _FinishFails(BackpressureConsumer):
    """
    A sink whose C{finish} raises.
    """

    def finish(self) -> None:
        super().finish()
        raise OSError("cannot flush")


class EdgeTests(SynchronousTestCase):
    """
    The edges of stages and pipelines that the flow core fixed: each test
    failed before it.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_downstreamFinishRaises(self) -> None:
        """
        A sink whose C{finish} raises fails the last stage's C{done} and the
        pipeline with that error (before, C{done} never fired and the
        pipeline succeeded); nothing escapes into the source, and C{done}
        fires only once the stage has unregistered everywhere.
        """
        stage = Stage(lambda b: [b], reactor=self.clock)
        sink = _FinishFails()
        source = Items([b"a", b"b"], reactor=self.clock)
        seen: List[Any] = []
        stage.done.addErrback(
            lambda f: seen.append((f.type, stage.upstream, sink.producer))
        )
        stage.attach(sink)
        sourceDone = source.startProducing(stage)
        self.clock.advance(0)
        self.assertEqual(seen, [(OSError, None, None)])
        self.assertEqual(self.successResultOf(sourceDone), 2)
        self.assertEqual(sink.received, b"ab")
        sink = _FinishFails()
        d = pipeline(
            Items([b"c"], reactor=self.clock),
            Stage(lambda b: [b], reactor=self.clock),
            sink=sink,
        )
        self.clock.advance(0)
        failure = self.failureResultOf(d, OSError)
        self.assertIsInstance(failure, ContextFailure)
        self.assertIsNone(sink.producer)

    def test_secondRegistrationRaises(self) -> None:
        """
        Registering a second producer with a stage raises, as a transport
        does, and leaves the first registered (before, it silently replaced
        it).
        """
        stage = Stage(lambda b: [b], reactor=self.clock)
        first, second = RecordingPushProducer(), RecordingPushProducer()
        stage.registerProducer(first, True)
        self.assertRaises(RuntimeError, stage.registerProducer, second, True)
        self.assertIs(stage.upstream, first)

    def test_noStagesFinishesTheSink(self) -> None:
        """
        With no stages and a pull source (which only unregisters), the
        pipeline still finishes a finishable sink, and fires with the bytes
        delivered to it.
        """
        sink = BackpressureConsumer(clock=self.clock)
        d = pipeline(
            lambda consumer: FileSender().beginFileTransfer(
                io.BytesIO(b"x" * 100_000), consumer
            ),
            sink=sink,
        )
        for _ in range(100):
            self.clock.advance(0.001)
        self.assertEqual(self.successResultOf(d), 100_000)
        self.assertTrue(sink.finished)

    def test_resultIsBytesDelivered(self) -> None:
        """
        Whatever the stages, the pipeline fires with the bytes delivered to
        the sink (an item that is not bytes counts as 1), not with a count
        of items.
        """
        for stages, expected in (
            ((), 12),
            ((LineSplitter(reactor=self.clock),), 10),
            ((Stage(lambda b: [len(b)], reactor=self.clock),), 2),
            ((Compress(reactor=self.clock), Decompress(reactor=self.clock)), 12),
        ):
            sink = BackpressureConsumer(objects=True)
            source = Items([b"hello\n", b"world\n"], reactor=self.clock)
            d = pipeline(source, *stages, sink=sink)
            self.clock.advance(0)
            self.assertEqual(self.successResultOf(d), expected)

    def test_sinkRefusesTheChain(self) -> None:
        """
        A sink that refuses the chain (it has a producer) fails the
        pipeline with its error, and its own producer stays registered.
        """
        sink = BackpressureConsumer()
        other = RecordingPushProducer()
        sink.registerProducer(other, True)
        source = Items([b"a"], reactor=self.clock)
        d = pipeline(source, Stage(lambda b: [b], reactor=self.clock), sink=sink)
        self.failureResultOf(d, RuntimeError)
        self.clock.advance(0)
        self.assertIs(sink.producer, other)
        self.assertEqual(sink.received, b"")
        self.assertFalse(source.producing)

    def test_sourceThatCannotStart(self) -> None:
        """
        A source that cannot start (a file that cannot be opened) fails the
        pipeline and leaves nothing registered with the sink, which can take
        another producer.
        """
        sink = BackpressureConsumer()
        d = pipeline(
            lambda consumer: FileSender().beginFileTransfer(self.mktemp(), consumer),
            Stage(lambda b: [b], reactor=self.clock),
            sink=sink,
        )
        self.failureResultOf(d, FileNotFoundError)
        self.assertIsNone(sink.producer)
        sink.registerProducer(RecordingPushProducer(), True)

    def test_stageReturningBytesSaysWhatItExpected(self) -> None:
        """
        A stage function that returns bytes, a str or something that is not
        iterable fails with an error that says it must return an iterable of
        items.
        """
        results: List[Any] = [b"abc", "abc", 7, {"a": 1}]
        for result in results:

            def bad(item: Any, result: Any = result) -> Any:
                return result

            stage = Stage(bad, name="bad", reactor=self.clock)
            d = pipeline(
                Items([b"x"], reactor=self.clock), stage, sink=BackpressureConsumer()
            )
            self.clock.advance(0)
            failure = self.failureResultOf(d, TypeError)
            self.assertIn(
                "must return an iterable of output items", failure.getErrorMessage()
            )
            self.assertIn(type(result).__name__, failure.getErrorMessage())


class ErrorContextTests(SynchronousTestCase):
    """
    A failure names the chain it travelled and the item that set it off.
    """

    def test_chainAndOffendingItem(self) -> None:
        """
        A stage that fails on its third input names the source, every stage
        and the sink, in order, and the item: its index, byte offset and a
        truncated repr; in the message, the traceback and as attributes.
        """
        clock = Clock()

        def parse(item: bytes) -> List[bytes]:
            if item.startswith(b"bad"):
                raise ValueError("cannot parse")
            return [item]

        source = Items([b"one", b"two", b"bad" + b"!" * 200, b"four"], reactor=clock)
        first = Stage(parse, name="parse", reactor=clock)
        second = Stage(lambda b: [b], name="after", reactor=clock)
        sink = BackpressureConsumer()
        d = pipeline(source, first, second, sink=sink)
        clock.advance(0)
        failure = self.failureResultOf(d, ValueError)
        assert isinstance(failure, ContextFailure)
        self.assertIs(failure.source, first)
        self.assertEqual(
            [name.split(" at ")[0] for name in failure.chain],
            [
                "<Items running",
                "<Stage 'parse'",
                "<Stage 'after'",
                "<twisted_streaming.testing._fakes.BackpressureConsumer object",
            ],
        )
        self.assertEqual((failure.itemIndex, failure.itemOffset), (2, 6))
        assert failure.item is not None
        self.assertTrue(failure.item.startswith("b'bad!!!"))
        self.assertLess(len(failure.item), 80)
        message = failure.getErrorMessage()
        self.assertIn("cannot parse", message)
        self.assertIn("at item 2 (offset 6) of its input", message)
        self.assertIn(failure.chainText, message)
        self.assertIn("<Stage 'parse'", failure.chainText)
        self.assertIn(f"chain: {failure.chainText}", failure.getTraceback())

    def test_objectStreamsCountItems(self) -> None:
        """
        A failure in a stream of objects counts items, not bytes.
        """
        clock = Clock()

        def boom(item: Any) -> List[Any]:
            if item == {"n": 1}:
                raise KeyError("n")
            return [item]

        d = pipeline(
            Items([{"n": 0}, {"n": 1}], reactor=clock),
            Stage(boom, reactor=clock),
            sink=BackpressureConsumer(objects=True),
        )
        clock.advance(0)
        failure = self.failureResultOf(d, KeyError)
        self.assertIn("after writing 2 items", failure.getErrorMessage())
        self.assertNotIn("bytes", failure.getErrorMessage())
