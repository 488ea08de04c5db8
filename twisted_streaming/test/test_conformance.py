"""
The producer conformance suite of L{twisted_streaming.testing}, applied to the
producers of this package, and shown to fail deliberately broken producers.
"""

from __future__ import annotations

import builtins
import functools
import io
import random
import struct
import zlib
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableDescriptor,
    IHandshakeListener,
    IPullProducer,
    IPushProducer,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides, implementer

from twisted_streaming import (
    BasePushProducer,
    Compress,
    Decompress,
    FileConsumer,
    Frame,
    HashStage,
    IFinishableConsumer,
    LineJoiner,
    LineSplitter,
    ProducerStopped,
    ProxyFactory,
    PullToPush,
    Stage,
    Unframe,
    pipeline,
)
from twisted_streaming import FileSender as OurFileSender
from twisted_streaming._flow import turnLoop
from twisted_streaming.randomintegers import IntegerLines, RandomIntegerProducer
from twisted_streaming.test.test_stages import Items
from twisted_streaming.testing import (
    FILE_DATA,
    BackpressureConsumer,
    ConsumerConformanceMixin,
    FedPushProducer,
    PullProducerConformanceMixin,
    PushProducerConformanceMixin,
    RecordingPushProducer,
    checkCompletion,
    checkConsumer,
    checkNoWriteAfterPause,
    checkOneWritePerResume,
    checkPullProducer,
    checkPushProducer,
    checkStop,
)


def chunks(count: int) -> List[bytes]:
    """
    C{count} distinct chunks of a few bytes each.
    """
    return [b"%05d;" % (i,) for i in range(count)]


class GeneratedProducer(BasePushProducer):
    """
    A generated-data producer of L{chunks}.
    """

    def __init__(self, count: int = 40, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pending = chunks(count)
        self.stoppedHook = False

    def produce(self) -> Optional[bytes]:
        return self.pending.pop(0) if self.pending else None

    def producingStopped(self) -> None:
        self.stoppedHook = True


class EventDrivenProducer(BasePushProducer):
    """
    An event-driven producer whose source is a timer on the clock, paused
    and stopped through the hooks: every C{interval} seconds while not
    paused it writes the next chunk (L{_next}), or finishes.
    """

    def __init__(self, clock: Any, count: int = 40, interval: float = 0.01) -> None:
        super().__init__(reactor=clock)
        self.clock = clock
        self.pending = chunks(count)
        self.interval = interval
        self.timer: Any = None

    def producingStarted(self) -> None:
        # A pause can arrive before production starts (producingPaused is
        # then called before producingStarted): the source must stay off.
        if not self.paused:
            self._arm()

    def producingPaused(self) -> None:
        self._disarm()

    def producingResumed(self) -> None:
        self._arm()

    def producingStopped(self) -> None:
        self._disarm()

    def _arm(self) -> None:
        if self.timer is None:
            self.timer = self.clock.callLater(self.interval, self._tick)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _next(self) -> Optional[bytes]:
        """
        The next chunk, or L{None} at the end.
        """
        return self.pending.pop(0) if self.pending else None

    def _tick(self) -> None:
        self.timer = None
        chunk = self._next()
        if chunk is None:
            self.finishProducing()
            return
        self.write(chunk)
        if self.producing and not self.paused:
            self._arm()


class GeneratedProducerConformanceTests(
    PushProducerConformanceMixin, SynchronousTestCase
):
    """
    A generated-data L{BasePushProducer} conforms.
    """

    def makeProducer(self, clock: Clock) -> Any:
        return GeneratedProducer(reactor=clock)

    def expectedData(self, producer: Any) -> Any:
        return b"".join(chunks(40))

    def resourcesReleased(self, producer: Any) -> bool:
        return bool(producer.stoppedHook)


class EventDrivenProducerConformanceTests(
    PushProducerConformanceMixin, SynchronousTestCase
):
    """
    An event-driven L{BasePushProducer} conforms.
    """

    def makeProducer(self, clock: Clock) -> Any:
        return EventDrivenProducer(clock)

    def expectedData(self, producer: Any) -> Any:
        return b"".join(chunks(40))

    def resourcesReleased(self, producer: Any) -> bool:
        return producer.timer is None


class RandomIntegerProducerConformanceTests(
    PushProducerConformanceMixin, SynchronousTestCase
):
    """
    L{RandomIntegerProducer} conforms.
    """

    def makeProducer(self, clock: Clock) -> Any:
        producer = RandomIntegerProducer(
            500, IntegerLines(0, 99, random.Random(1)), reactor=clock
        )
        producer.batchSize = 20
        return producer

    def expectedData(self, producer: Any) -> Any:
        return _randomLines()


def _randomLines() -> bytes:
    """
    What a L{RandomIntegerProducer} of 500 lines seeded with 1 and batches of
    20 writes.
    """
    lines = IntegerLines(0, 99, random.Random(1))
    return b"".join(lines.lines(20) for _ in range(25))


@implementer(IPushProducer)
class PauseCountingProducer:
    """
    Broken: counts pauses, so one resume does not undo several.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending = chunks(20)
        self.pauses = 0
        self.consumer: Optional[IConsumer] = None
        self.call: Any = None

    def start(self, consumer: IConsumer) -> None:
        self.consumer = consumer
        consumer.registerProducer(self, True)
        self.call = self.clock.callLater(0, self.run)

    def run(self) -> None:
        self.call = None
        while self.pauses == 0 and self.consumer is not None:
            if not self.pending:
                consumer, self.consumer = self.consumer, None
                consumer.unregisterProducer()
                return
            self.consumer.write(self.pending.pop(0))

    def pauseProducing(self) -> None:
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.pauses -= 1
        if self.pauses == 0 and self.call is None:
            self.call = self.clock.callLater(0, self.run)

    def stopProducing(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            consumer.unregisterProducer()
        if self.call is not None:
            self.call.cancel()
            self.call = None


class WriteAfterPauseProducer(PauseCountingProducer):
    """
    Broken: pause is a flag, but it only looks at it every other write.
    """

    paused = False

    def run(self) -> None:
        self.call = None
        while self.consumer is not None:
            for _ in range(2):
                if not self.pending:
                    consumer, self.consumer = self.consumer, None
                    consumer.unregisterProducer()
                    return
                self.consumer.write(self.pending.pop(0))
            if self.paused:
                return

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.call is None and self.consumer is not None:
            self.call = self.clock.callLater(0, self.run)


@implementer(IPullProducer)
class SkippingPullProducer:
    """
    Broken: a pull producer that returns without writing on every third
    resumeProducing, so a real transport never calls it again.
    """

    def __init__(self, consumer: Optional[IConsumer] = None) -> None:
        self.consumer = consumer
        self.pending = chunks(20)
        self.resumes = 0

    def resumeProducing(self) -> None:
        self.resumes += 1
        if self.consumer is None or self.resumes % 3 == 0:
            return
        if not self.pending:
            consumer, self.consumer = self.consumer, None
            consumer.unregisterProducer()
            return
        self.consumer.write(self.pending.pop(0))

    def stopProducing(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            consumer.unregisterProducer()


@implementer(IPullProducer)
class GoodPullProducer(SkippingPullProducer):
    """
    A correct pull producer: one write per resume.
    """

    def resumeProducing(self) -> None:
        self.resumes = 1
        super().resumeProducing()


def startPull(producer: Any, consumer: Any) -> None:
    """
    A conformance C{start} hook: give C{producer} its consumer and register
    it as a pull producer.
    """
    producer.consumer = consumer
    consumer.registerProducer(producer, False)


class PullProducerConformanceTests(PullProducerConformanceMixin, SynchronousTestCase):
    """
    A correct pull producer conforms.
    """

    def makeProducer(self, clock: Clock) -> Any:
        return GoodPullProducer()

    def start(self, producer: Any, consumer: Any) -> None:
        startPull(producer, consumer)

    def expectedData(self, producer: Any) -> Any:
        return b"".join(chunks(20))


class TwistedFileSenderTests(SynchronousTestCase):
    """
    The suite applies to Twisted's own C{FileSender} through the default
    C{beginFileTransfer} start.
    """

    def test_deliversOneChunkPerResume(self) -> None:
        """
        Twisted's FileSender writes once per resume and delivers the file.
        """
        checkOneWritePerResume(lambda clock: FileSender())
        checkCompletion(lambda clock: FileSender(), expected=lambda p: FILE_DATA)

    def test_doesNotUnregisterWhenStopped(self) -> None:
        """
        Twisted's FileSender fails the stop check: it leaves itself registered
        (its transports unregister it themselves).
        """
        with self.assertRaises(AssertionError) as e:
            checkStop(lambda clock: FileSender())
        self.assertIn("did not unregister", str(e.exception))


class BrokenProducerTests(SynchronousTestCase):
    """
    Each deliberately broken producer fails the conformance suite.
    """

    def test_pauseCountingProducerFails(self) -> None:
        """
        A producer that counts pauses fails the idempotent-pause check.
        """

        def start(producer: Any, consumer: Any) -> None:
            producer.start(consumer)

        with self.assertRaises(AssertionError) as e:
            checkPushProducer(PauseCountingProducer, start)
        self.assertIn("3 pauses and 1 resume", str(e.exception))

    def test_writeAfterPauseProducerFails(self) -> None:
        """
        A producer that writes after a pause from inside write fails.
        """

        def start(producer: Any, consumer: Any) -> None:
            producer.start(consumer)

        self.assertRaises(
            AssertionError, checkPushProducer, WriteAfterPauseProducer, start
        )
        with self.assertRaises(AssertionError) as e:
            checkNoWriteAfterPause(WriteAfterPauseProducer, start)
        self.assertIn("wrote after a pause", str(e.exception))

    def test_skippingPullProducerFails(self) -> None:
        """
        A pull producer that skips a write fails the one-write-per-resume
        check.
        """
        with self.assertRaises(AssertionError) as e:
            checkPullProducer(lambda clock: SkippingPullProducer(), startPull)
        self.assertIn("wrote 0 times", str(e.exception))

    def test_correctProducersPassFromPlainFunctions(self) -> None:
        """
        The pytest-friendly checks pass a correct push and pull producer.
        """
        checkPushProducer(
            lambda clock: GeneratedProducer(reactor=clock),
            expected=lambda p: b"".join(chunks(40)),
        )
        checkPullProducer(
            lambda clock: GoodPullProducer(),
            startPull,
            expected=lambda p: b"".join(chunks(20)),
        )


class FileSenderConformanceTests(PullProducerConformanceMixin, SynchronousTestCase):
    """
    The package's L{FileSender <twisted_streaming.FileSender>} conforms, sending
    a path it opens (and must close).
    """

    def makeProducer(self, clock: Clock) -> Any:
        sender = OurFileSender(reactor=clock)
        sender.CHUNK_SIZE = 4096
        return sender

    def start(self, producer: Any, consumer: Any) -> Any:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(FILE_DATA)
        opened: List[Any] = []
        real = open

        def spyOpen(*args: Any, **kwargs: Any) -> Any:
            opened.append(real(*args, **kwargs))
            return opened[-1]

        self.opened = opened
        self.patch(builtins, "open", spyOpen)
        try:
            return producer.beginFileTransfer(path, consumer)
        finally:
            self.patch(builtins, "open", real)

    def expectedData(self, producer: Any) -> Any:
        return FILE_DATA

    def resourcesReleased(self, producer: Any) -> bool:
        closed = bool(self.opened) and all(f.closed for f in self.opened)
        return producer.file is None and closed


class PullToPushConformanceTests(PushProducerConformanceMixin, SynchronousTestCase):
    """
    L{PullToPush <twisted_streaming.PullToPush>} driving a FileSender conforms
    as a push producer.
    """

    def makeProducer(self, clock: Clock) -> Any:
        def connect(consumer: Any) -> Tuple[Any, Any]:
            adapter = PullToPush(consumer, reactor=clock)
            turnLoop(clock).bytesPerTurn = 8192
            sender = OurFileSender()
            sender.CHUNK_SIZE = 1000
            return adapter, sender.beginFileTransfer(io.BytesIO(FILE_DATA), adapter)

        return FedPushProducer(connect)

    def expectedData(self, producer: Any) -> Any:
        return FILE_DATA


# Stages, as push producers toward downstream, fed by a source upstream


def pieces(data: bytes, size: int) -> List[bytes]:
    """
    C{data} cut into pieces of C{size} bytes (the last may be shorter).
    """
    return [data[i : i + size] for i in range(0, len(data), size)]


_FRAMED = b"".join(struct.pack("!I", len(p)) + p for p in pieces(FILE_DATA, 1000))
# Small water marks, so a 40 KiB stream pauses and resumes the source.
_WATER: Dict[str, Any] = {"highWater": 2048, "lowWater": 512}


class StageConformanceMixin(PushProducerConformanceMixin):
    """
    Put a chain of stages through the push producer suite: a source on the
    suite's clock feeds L{inputs} into the first stage, and the last stage is
    the producer under test, registered with the suite's consumer through
    L{pipeline}.  With L{pull}, the source is the package's C{FileSender}
    (a pull producer) sending the inputs joined; otherwise a push producer
    writing one input per turn of its loop.
    """

    inputs: List[bytes] = pieces(FILE_DATA, 1000)
    output: bytes = FILE_DATA
    pull = False

    def makeStages(self, clock: Clock) -> List[Stage]:
        raise NotImplementedError

    def makeProducer(self, clock: Clock) -> Any:
        def connect(consumer: Any) -> Tuple[Any, Any]:
            self.stages = self.makeStages(clock)
            self.source: Any
            start: Any
            if self.pull:
                self.source = sender = OurFileSender()
                sender.CHUNK_SIZE = 1000
                data = io.BytesIO(b"".join(self.inputs))
                start = functools.partial(sender.beginFileTransfer, data)
            else:
                self.source = start = Items(self.inputs, reactor=clock)
            return self.stages[-1], pipeline(start, *self.stages, sink=consumer)

        return FedPushProducer(connect)

    def expectedData(self, producer: Any) -> Any:
        return self.output

    def resourcesReleased(self, producer: Any) -> bool:
        sourceStopped = (
            self.source.file is None if self.pull else not self.source.producing
        )
        return sourceStopped and all(s.upstream is None for s in self.stages)


class FunctionStageConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    A L{Stage} made from a function conforms.
    """

    output = b"".join(p[::-1] for p in pieces(FILE_DATA, 1000))

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Stage(lambda b: [b[::-1]], reactor=clock, **_WATER)]


class ZeroWaterStageConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    Stages with water marks of 0 conform, with a push and a pull source.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        water: Dict[str, Any] = {"highWater": 0, "lowWater": 0}
        return [HashStage(reactor=clock, **water), Frame(reactor=clock, **water)]

    output = _FRAMED


class ZeroWaterPulledStageConformanceTests(ZeroWaterStageConformanceTests):
    """
    Stages with water marks of 0 conform, fed by a pull producer.
    """

    pull = True


class LineSplitterConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    L{LineSplitter} conforms, fed by a pull producer.
    """

    output = b"".join(FILE_DATA.split(b"\n"))
    pull = True

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [LineSplitter(reactor=clock, **_WATER)]


class LineJoinerConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    L{LineJoiner} conforms.
    """

    inputs = FILE_DATA.split(b"\n")
    output = FILE_DATA + b"\n"

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [LineJoiner(reactor=clock, **_WATER)]


class CompressConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    L{Compress} conforms, fed by a pull producer.
    """

    output = zlib.compress(FILE_DATA, 6)
    pull = True

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Compress(reactor=clock, **_WATER)]


class DecompressConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    L{Decompress} conforms.
    """

    inputs = pieces(zlib.compress(FILE_DATA, 1), 100)

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Decompress(reactor=clock, **_WATER)]


class HashStageConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    L{HashStage} conforms.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [HashStage(reactor=clock, **_WATER)]


class FrameConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    L{Frame} conforms.
    """

    output = _FRAMED

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Frame(reactor=clock, **_WATER)]


class UnframeConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    L{Unframe} conforms, fed by a pull producer that cuts the frames
    anywhere.
    """

    inputs = [_FRAMED]
    pull = True

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Unframe(reactor=clock, **_WATER)]


class PipelineConformanceTests(StageConformanceMixin, SynchronousTestCase):
    """
    A whole L{pipeline} (compress, decompress, split and join lines, hash)
    conforms as the producer of its last stage.
    """

    output = FILE_DATA + b"\n"

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [
            Compress(reactor=clock, **_WATER),
            Decompress(reactor=clock, **_WATER),
            LineSplitter(reactor=clock, **_WATER),
            LineJoiner(reactor=clock, **_WATER),
            HashStage(reactor=clock, **_WATER),
        ]


class StageRegressionTests(SynchronousTestCase):
    """
    Regression tests for what the stage conformance and property tests
    found.
    """

    def settle(self, clock: Clock, d: Deferred[Any]) -> None:
        for _ in range(1000):
            if d.called and not clock.getDelayedCalls():
                return
            clock.advance(0.001)

    def test_stopUnregistersFromDownstream(self) -> None:
        """
        A stage stopped by a consumer that does not forget it (as a transport
        does on connection loss) unregisters itself, so the consumer can take
        another producer; a consumer that has forgotten it is left alone.
        """
        stage = Stage(lambda b: [b])
        sink = BackpressureConsumer()
        stage.attach(sink)
        stage.stopProducing()
        self.assertIsNone(sink.producer)
        self.assertEqual(sink.calls[-1], ("unregisterProducer",))
        self.failureResultOf(stage.done, ProducerStopped)
        sink.registerProducer(RecordingPushProducer(), True)

        lost = Stage(lambda b: [b])
        gone = BackpressureConsumer()
        lost.attach(gone)
        gone.loseConnection()
        self.assertEqual(gone.calls, [("registerProducer", True), ("stop",)])
        self.failureResultOf(lost.done, ProducerStopped)

    def test_emptyBufferResumesUpstream(self) -> None:
        """
        A stage with a low water mark of 0 resumes its source once its buffer
        is empty (before, "below 0" never happened and the pipeline stalled;
        Hypothesis shrank it to one chunk through Frame and Unframe with
        C{highWater=1} and a sink that pauses on every write).
        """
        for pull in (False, True):
            clock = Clock()
            sink = BackpressureConsumer(0, clock=clock, drainRate=1)
            stages: List[Stage] = [Frame(highWater=1, lowWater=0, reactor=clock)]
            stages.append(Unframe(highWater=1, lowWater=0, reactor=clock))
            source: Any = Items([b"ab", b"c"], reactor=clock)
            if pull:
                sender = OurFileSender()
                source = functools.partial(sender.beginFileTransfer, io.BytesIO(b"abc"))
            d = pipeline(source, *stages, sink=sink)
            self.settle(clock, d)
            # The bytes delivered to the sink, whatever the source.
            self.assertEqual(self.successResultOf(d), 3)
            self.assertEqual(sink.received, b"abc")

    def test_downstreamWriteErrorFailsTheStage(self) -> None:
        """
        An error raised by the stage's consumer fails the stage and the
        pipeline, instead of escaping into the reactor from a pull (or being
        lost inside the source's C{finish()}, leaving the pipeline hanging).
        """
        for pull in (False, True):
            clock = Clock()
            sink = BackpressureConsumer(
                clock=clock, failOnWrite=OSError("disk full"), failAfterWrites=0
            )
            splitter = LineSplitter(reactor=clock)
            source: Any = Items([b"no newline"], reactor=clock)
            if pull:
                sender = OurFileSender()
                source = functools.partial(sender.beginFileTransfer, io.BytesIO(b"a\n"))
            d = pipeline(source, splitter, LineJoiner(reactor=clock), sink=sink)
            self.settle(clock, d)
            failure = self.failureResultOf(d, OSError)
            self.assertIn("LineJoiner", failure.getErrorMessage())
            self.assertIsNone(sink.producer)
            self.assertEqual(clock.getDelayedCalls(), [])
            if pull:
                self.assertIsNone(sender.file)
            else:
                self.assertFalse(source.producing)


# Consumers


class FileConsumerConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    L{FileConsumer <twisted_streaming.FileConsumer>} conforms as a consumer,
    writing a few KiB per turn.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        consumer = FileConsumer(io.BytesIO(), reactor=clock)
        consumer.highWater = 8192
        consumer.lowWater = 2048
        consumer.batchBytes = 3000
        return consumer

    def completion(self, consumer: Any) -> Any:
        return consumer.whenFinished()

    def received(self, consumer: Any) -> Any:
        return consumer.file.getvalue()


class ZeroWaterFileConsumerConformanceTests(FileConsumerConformanceTests):
    """
    A L{FileConsumer <twisted_streaming.FileConsumer>} with water marks of 0
    (pause whenever anything is waiting, resume once it is all written)
    conforms; it used to pause with nothing waiting, and never resume.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        consumer = super().makeConsumer(clock)
        consumer.highWater = consumer.lowWater = 0
        return consumer


class PullToPushConsumerConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    L{PullToPush <twisted_streaming.PullToPush>} conforms as a consumer: it
    drives a pull producer, and passes a streaming one through to a
    consumer that falls behind.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        self.sink = BackpressureConsumer(1024, clock=clock, drainRate=1024)
        return PullToPush(self.sink, reactor=clock)

    def received(self, consumer: Any) -> Any:
        return self.sink.received


class StageConsumerConformanceMixin(ConsumerConformanceMixin):
    """
    Put a chain of stages through the consumer suite: the first stage is the
    consumer under test; the last delivers to a L{BackpressureConsumer} that
    drains 1 KiB per millisecond of the suite's clock, so the chain falls
    behind.  L{decode} turns what it received back into what was written.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        raise NotImplementedError

    def decode(self, received: Any) -> bytes:
        return bytes(received)

    def makeConsumer(self, clock: Clock) -> Any:
        stages = self.makeStages(clock)
        self.sink = BackpressureConsumer(1024, clock=clock, drainRate=1024)
        for stage, after in zip(stages, [*stages[1:], self.sink]):
            stage.attach(after)
        self.last = stages[-1]
        return stages[0]

    def completion(self, consumer: Any) -> Any:
        return self.last.done

    def received(self, consumer: Any) -> Any:
        return self.decode(self.sink.received)


class StageConsumerConformanceTests(StageConsumerConformanceMixin, SynchronousTestCase):
    """
    A L{Stage} made from a function conforms as a consumer.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Stage(lambda b: [b], reactor=clock, **_WATER)]


class ZeroWaterStageConsumerConformanceTests(
    StageConsumerConformanceMixin, SynchronousTestCase
):
    """
    A L{Stage} with water marks of 0 conforms as a consumer.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Stage(lambda b: [b], reactor=clock, highWater=0, lowWater=0)]


class HashStageConsumerConformanceTests(
    StageConsumerConformanceMixin, SynchronousTestCase
):
    """
    L{HashStage} conforms as a consumer.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [HashStage(reactor=clock, **_WATER)]


class LinesConsumerConformanceTests(StageConsumerConformanceMixin, SynchronousTestCase):
    """
    L{LineSplitter} (and the L{LineJoiner} after it) conform as consumers.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [LineSplitter(reactor=clock, **_WATER), LineJoiner(reactor=clock)]


class CompressConsumerConformanceTests(
    StageConsumerConformanceMixin, SynchronousTestCase
):
    """
    L{Compress} (and the L{Decompress} after it) conform as consumers.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Compress(reactor=clock, **_WATER), Decompress(reactor=clock)]


class FrameConsumerConformanceTests(StageConsumerConformanceMixin, SynchronousTestCase):
    """
    L{Frame} (and the L{Unframe} after it) conform as consumers.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [Frame(reactor=clock, **_WATER), Unframe(reactor=clock)]


class CompressedConsumerConformanceTests(
    StageConsumerConformanceMixin, SynchronousTestCase
):
    """
    L{Decompress} and L{Unframe} conform as consumers, seen through what
    comes out of a L{Compress} or L{Frame} in front of them.
    """

    def makeStages(self, clock: Clock) -> List[Stage]:
        return [
            Frame(reactor=clock),
            Unframe(reactor=clock, **_WATER),
            Compress(reactor=clock),
            Decompress(reactor=clock, **_WATER),
        ]


@implementer(IConsumer, IFinishableConsumer)
class FlawedConsumer:
    """
    A consumer that falls behind by four writes and catches up a reactor
    turn later; correct unless C{flaw} names one of the ways it is broken:
    C{"neverPauses"}, C{"neverResumes"}, C{"pullsOnce"} (asks a pull producer
    for data only when it registers) or C{"keepsProducer"} (stops the
    producer it should have forgotten when finished).
    """

    def __init__(self, clock: Clock, flaw: Optional[str] = None) -> None:
        self.clock = clock
        self.flaw = flaw
        self.producer: Any = None
        self.streaming = False
        self.paused = False
        self.behind = 0
        self.data: List[bytes] = []
        self.call: Any = None
        self.done: Deferred[int] = Deferred()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer, self.streaming = producer, streaming
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        if self.flaw != "keepsProducer":
            self.producer = None

    def write(self, data: bytes) -> None:
        self.data.append(data)
        self.behind += 1
        if self.call is None:
            self.call = self.clock.callLater(0, self.catchUp)
        if self.streaming and self.behind >= 4 and self.flaw != "neverPauses":
            self.paused = True
            self.producer.pauseProducing()

    def catchUp(self) -> None:
        self.call = None
        self.behind = 0
        if self.producer is None:
            return
        if self.paused and self.flaw != "neverResumes":
            self.paused = False
            self.producer.resumeProducing()
        if not self.streaming and self.flaw != "pullsOnce":
            self.producer.resumeProducing()

    def finish(self) -> None:
        if self.producer is not None:
            self.producer.stopProducing()
        self.done.callback(len(self.data))


class BrokenConsumerTests(SynchronousTestCase):
    """
    The consumer suite passes a correct consumer and fails each flawed one
    with a message naming the flaw.
    """

    def check(self, flaw: Optional[str]) -> None:
        checkConsumer(
            lambda clock: FlawedConsumer(clock, flaw),
            lambda consumer: consumer.done,
            lambda consumer: b"".join(consumer.data),
        )

    def test_correctConsumerPasses(self) -> None:
        """
        The correct consumer passes the whole suite.
        """
        self.check(None)

    def test_flawedConsumersFail(self) -> None:
        """
        Each flaw fails the suite, saying what went wrong.
        """
        for flaw, message in [
            ("neverPauses", "never paused"),
            ("neverResumes", "did not resume"),
            ("pullsOnce", "stopped asking"),
            ("keepsProducer", "called its unregistered producer"),
        ]:
            with self.assertRaises(AssertionError) as e:
                self.check(flaw)
            self.assertIn(message, str(e.exception))


# The proxy's two directions


@implementer(IHalfCloseableDescriptor)
class FakeConnection:
    """
    One of the two connections of a proxied connection, on a clock.

    What the proxy writes goes to L{remote}, the remote end's receiving
    side, which pauses the proxy's producer as a transport's buffer does.
    The remote end sends L{pending}, one chunk per reactor turn while reading
    is not paused, and then its end of stream (a half-close).
    C{loseConnection} closes on a later turn, as a transport does; L{lose}
    is the remote end resetting the connection now.  Once closed, the
    transport stops and forgets its producer and reads nothing more.  As
    with a Twisted transport, a connection told to close while it has
    paused its producer resumes it and closes once it is unregistered.
    """

    def __init__(
        self, clock: Clock, remote: BackpressureConsumer, chunks: Any = ()
    ) -> None:
        self.clock = clock
        self.remote = remote
        self.pending = list(chunks)
        self.protocol: Any = None
        self.paused = False
        self.eof = False
        self.writeClosed = False
        self.disconnecting = False
        self.waitingForProducer = False
        self.lost = False
        self._calls: List[Tuple[Any, Any]] = []

    def connect(self, protocol: Any) -> None:
        """
        Connect C{protocol} to this transport and start reading.
        """
        self.protocol = protocol
        protocol.makeConnection(self)
        self._read()

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1)

    getHost = getPeer

    # Reading

    def pauseProducing(self) -> None:
        self.paused = True
        self._cancel(self._doRead)

    def resumeProducing(self) -> None:
        self.paused = False
        self._read()

    def stopProducing(self) -> None:
        self.loseConnection()

    def _read(self) -> None:
        if self.paused or self.eof or self.disconnecting or self.protocol is None:
            return
        if not any(f == self._doRead for f, _ in self._calls):
            self._later(self._doRead)

    def _doRead(self) -> None:
        if self.pending:
            self.protocol.dataReceived(self.pending.pop(0))
            self._read()
        else:
            self.readConnectionLost(connectionDone)

    def readConnectionLost(self, reason: Failure) -> None:
        self.eof = True
        self.protocol.readConnectionLost()

    # Writing

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.remote.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.remote.unregisterProducer()
        if self.waitingForProducer:
            self.waitingForProducer = False
            self._later(self.connectionLost, connectionDone)

    def write(self, data: bytes) -> None:
        self.remote.write(data)

    def loseWriteConnection(self) -> None:
        if self.writeClosed or self.disconnecting:
            return
        self.writeClosed = True
        self.remote.finish()
        self._later(self.writeConnectionLost, connectionDone)

    def writeConnectionLost(self, reason: Failure) -> None:
        self.protocol.writeConnectionLost()

    # Closing

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        self._cancel(self._doRead)
        remote = self.remote
        if remote.producer is not None and remote.producerPaused:
            # As a Twisted transport does: resume the paused producer, and
            # close only once it has been unregistered.
            remote.calls.append(("resume",))
            remote._up.resume()
            self.waitingForProducer = remote.producer is not None
        if not self.waitingForProducer:
            self._later(self.connectionLost, connectionDone)

    def abortConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self._cancel(self._doRead)
            self._later(self.connectionLost, connectionDone)
        elif self.waitingForProducer:
            self.waitingForProducer = False
            self._later(self.connectionLost, connectionDone)

    def lose(self) -> None:
        """
        The remote end resets the connection.
        """
        self.disconnecting = True
        self.connectionLost(Failure(ConnectionLost("reset by the test")))

    def connectionLost(self, reason: Failure) -> None:
        if self.lost:
            return
        self.lost = True
        for _, call in self._calls:
            call.cancel()
        self._calls = []
        self.remote.loseConnection()
        self.protocol.connectionLost(reason)

    def _later(self, f: Any, *args: Any) -> None:
        def run() -> None:
            self._calls.remove((f, call))
            f(*args)

        call = self.clock.callLater(0, run)
        self._calls.append((f, call))

    def _cancel(self, f: Any) -> None:
        for pending in [p for p in self._calls if p[0] == f]:
            self._calls.remove(pending)
            pending[1].cancel()


class FakeTLSConnection(FakeConnection):
    """
    A L{FakeConnection} that says it is TLS, which cannot half-close, so the
    proxy closes it instead; its handshake completes on the turn after it
    connects (the proxy does not close it before).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only said: the proxy asks whether a transport is TLS, nothing more.
        alsoProvides(self, ISSLTransport)

    def connect(self, protocol: Any) -> None:
        super().connect(protocol)
        if IHandshakeListener.providedBy(protocol):
            self._later(protocol.handshakeCompleted)


@implementer(IStreamClientEndpoint)
class FakeConnectionEndpoint:
    """
    Connects to a L{FakeConnection}: at once, or when L{complete} is called.
    """

    def __init__(self, connection: FakeConnection, immediate: bool = True) -> None:
        self.connection = connection
        self.immediate = immediate
        self.attempt: Optional[Deferred[Any]] = None
        self.factory: Any = None

    def connect(self, factory: Any) -> Deferred[Any]:
        self.factory = factory
        self.attempt = Deferred()
        if self.immediate:
            self.complete()
        return self.attempt

    def complete(self) -> None:
        """
        The pending connection attempt succeeds (unless it was cancelled).
        """
        if self.attempt is None or self.attempt.called:
            return
        protocol = self.factory.buildProtocol(None)
        self.connection.connect(protocol)
        self.attempt.callback(protocol)


@implementer(IPushProducer)
class ProxyDirection:
    """
    One direction of a connection through a
    L{ProxyFactory <twisted_streaming.ProxyFactory>}, over
    L{FakeConnection}s, as a push producer for the suite.

    The near side's remote end sends L{FILE_DATA}; the far side's transport
    writes to the suite's consumer, and its remote end sends nothing (its end
    of stream comes first).  The producer under test is the near side's
    reader, which the proxy registers on the far side's transport.  A
    transport stops its producer only when its connection is lost, and the
    proxy's reader leaves the tear-down to C{connectionLost}, so
    L{stopProducing} is the far side's connection being lost.
    """

    def __init__(self, clock: Clock, toUpstream: bool) -> None:
        self.clock = clock
        self.toUpstream = toUpstream
        self.reader: Any = None

    def startProducing(self, consumer: BackpressureConsumer) -> Deferred[Any]:
        near = FakeConnection(
            self.clock, BackpressureConsumer(2**62), pieces(FILE_DATA, 1000)
        )
        self.far = FakeConnection(self.clock, consumer)
        client, upstream = (near, self.far) if self.toUpstream else (self.far, near)
        self.connections = (client, upstream)
        self.factory = ProxyFactory.forEndpoint(
            FakeConnectionEndpoint(upstream), reactor=self.clock
        )
        protocol: Any = self.factory.buildProtocol(None)
        client.connect(protocol)
        self.reader = consumer.producer
        done: Deferred[Any] = protocol.connection.done
        return done

    def pauseProducing(self) -> None:
        self.reader.pauseProducing()

    def resumeProducing(self) -> None:
        self.reader.resumeProducing()

    def stopProducing(self) -> None:
        self.far.lose()


class ProxyToUpstreamConformanceTests(
    PushProducerConformanceMixin, SynchronousTestCase
):
    """
    The client-to-upstream direction of the proxy conforms.
    """

    toUpstream = True

    def makeProducer(self, clock: Clock) -> Any:
        return ProxyDirection(clock, self.toUpstream)

    def expectedData(self, producer: Any) -> Any:
        return FILE_DATA

    def resourcesReleased(self, producer: Any) -> bool:
        lost = all(c.lost for c in producer.connections)
        return lost and producer.factory.connections == 0

    def test_closesBothWhenDone(self) -> None:
        """
        Once both ends of stream have passed, both connections are closed
        and the statistics say so and count every byte.
        """
        clock = Clock()
        consumer = BackpressureConsumer(100, clock=clock, drainRate=50)
        direction = ProxyDirection(clock, self.toUpstream)
        d = direction.startProducing(consumer)
        for _ in range(10 * len(FILE_DATA)):
            if not clock.getDelayedCalls():
                break
            clock.advance(0.001)
        stats = self.successResultOf(d)
        self.assertEqual(stats.reason, "closed")
        sent = stats.bytesToUpstream if self.toUpstream else stats.bytesToClient
        self.assertEqual((sent, consumer.received), (len(FILE_DATA), FILE_DATA))
        self.assertTrue(consumer.finished)
        self.assertTrue(self.resourcesReleased(direction))


class ProxyToClientConformanceTests(ProxyToUpstreamConformanceTests):
    """
    The upstream-to-client direction of the proxy conforms.
    """

    toUpstream = False
