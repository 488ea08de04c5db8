"""
Tests for L{twisted_streaming.Merge}: many producers into one consumer.
"""

from __future__ import annotations

import io
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    ConsumerFinished,
    ContextFailure,
    FileSender,
    Frame,
    IFinishableConsumer,
    Merge,
    MergeInput,
    ProducerStateError,
    ProducerStopped,
    Stage,
    Unframe,
)
from twisted_streaming.test._fan import (
    EagerProducer,
    Framed,
    Frames,
    RecordingSink,
    connect,
    reactor,
    runFor,
    shares,
)
from twisted_streaming.test.test_flow import RefusingConsumer
from twisted_streaming.test.test_push import runTurn
from twisted_streaming.test.test_stages import Items
from twisted_streaming.testing import (
    FILE_DATA,
    BackpressureConsumer,
    ConsumerConformanceMixin,
    FedPushProducer,
    PushProducerConformanceMixin,
    RecordingPullProducer,
    RecordingPushProducer,
)


class Boom(Exception):
    """
    A source's own failure.
    """


class Failing(Framed):
    """
    Produce C{count} chunks, then fail.
    """

    def produce(self) -> Optional[bytes]:
        if self.left == 0:
            raise Boom("the source broke")
        return super().produce()


def assertFair(
    testCase: SynchronousTestCase, log: Any, idents: List[Any], stretch: int
) -> List[Dict[Any, float]]:
    """
    Assert that over every stretch of C{stretch} bytes of C{log} while all
    of C{idents} have data, each gets between 1/(2N) and 2/N of the bytes;
    return the shares.
    """
    measured = shares(log, idents, stretch)
    testCase.assertGreaterEqual(len(measured), 3, "too few stretches to judge")
    count = len(idents)
    for share in measured:
        for ident, part in share.items():
            testCase.assertTrue(
                1 / (2 * count) <= part <= 2 / count,
                f"input {ident!r} got {part:.3f} of a stretch: {share!r}",
            )
    return measured


class MergeTests(SynchronousTestCase):
    """
    L{Merge} over fakes, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_interface(self) -> None:
        """
        A merge is a push producer, and each input a finishable consumer.
        """
        merge = Merge(StringTransport(), reactor=self.clock)
        self.assertTrue(verifyObject(IPushProducer, merge))
        self.assertTrue(verifyObject(IFinishableConsumer, merge.input()))
        self.assertIsInstance(merge.input("tag"), MergeInput)

    def test_registersAsStreamingProducer(self) -> None:
        """
        The merge registers with its consumer as one streaming producer as
        soon as it is made.
        """
        consumer = BackpressureConsumer()
        merge = Merge(consumer, reactor=self.clock)
        self.assertIs(consumer.producer, merge)
        self.assertIs(consumer.streaming, True)

    def test_wholeWritesNeverInterleaved(self) -> None:
        """
        Every write to an input reaches the consumer as one write, whole,
        while several inputs write at once under backpressure.
        """
        sink = RecordingSink(4096, clock=self.clock)
        merge = Merge(sink, reactor=self.clock)
        sizes = [1, 700, 5000, 70_000]
        for ident, size in enumerate(sizes):
            merge.addSource(Framed(ident, size, 30, reactor=self.clock))
        merge.close()
        runFor(self.clock, lambda: merge.done.called)
        self.assertEqual(self.successResultOf(merge.done), 30 * sum(sizes) + 120 * 6)
        self.assertEqual(len(sink.log), 120)
        for ident, size in sink.log:
            self.assertEqual(size, sizes[ident])
        self.assertEqual(sink.writesAfterPause(), [])

    def test_pauseReachesEveryInput(self) -> None:
        """
        When the consumer pauses the merge, every input's producer is paused
        (a producer registered while paused at once), each once however
        often the consumer repeats it; a resume resumes them all: the first
        at once and, since it writes nothing then, the others on the turn
        loop.
        """
        merge = Merge(StringTransport(), reactor=self.clock)
        producers = [RecordingPushProducer() for _ in range(3)]
        for producer in producers[:2]:
            merge.input().registerProducer(producer, True)
        merge.pauseProducing()
        merge.pauseProducing()
        merge.input().registerProducer(producers[2], True)
        for producer in producers:
            self.assertEqual(producer.calls, [("pause",)])
        merge.resumeProducing()
        self.assertEqual([len(producer.calls) for producer in producers].count(2), 1)
        self.clock.advance(0)
        for producer in producers:
            self.assertEqual(producer.calls, [("pause",), ("resume",)])

    def test_resumeLoopStopsWhenPausedAgain(self) -> None:
        """
        On resume, a hand-written producer that writes at once fills the
        consumer, which pauses the merge: the merge resumes no other input
        until the consumer resumes it again, so nothing is written after a
        pause (the bug a user hit writing this by hand).
        """
        sink = RecordingSink(0)
        merge = Merge(sink, reactor=self.clock)
        producers = [EagerProducer(merge.input(), ident, 100, 50) for ident in range(3)]
        merge.close()
        producers[0].start()
        for _ in range(200):
            if merge.done.called:
                break
            sink.drain()
        self.assertEqual(self.successResultOf(merge.done), 150 * 106)
        self.assertEqual(sink.writesAfterPause(), [])
        # One write per resume, taking turns.
        self.assertEqual(
            [ident for ident, _ in sink.log[:9]], [0, 1, 2, 0, 1, 2, 0, 1, 2]
        )

    def test_leastServedResumedFirst(self) -> None:
        """
        On resume, the input that has delivered the fewest bytes is resumed
        first, whatever the sizes of the writes: two inputs, one writing
        writes a hundred times larger than the other, share the bytes.
        """
        sink = RecordingSink(0)
        merge = Merge(sink, reactor=self.clock)
        big = EagerProducer(merge.input(), 0, 10_000, 100)
        small = EagerProducer(merge.input(), 1, 100, 10_000)
        big.start()
        small.start()
        for _ in range(5000):
            if not sink.drain():
                break
        measured = assertFair(self, sink.log, [0, 1], 4 * 2 * 10_106)
        # Within a write of the big one, every stretch.
        for share in measured:
            self.assertLess(abs(share[0] - 0.5), 0.2)

    def test_fairOverFakes(self) -> None:
        """
        Over a fake transport that drains on the clock, N inputs of every
        write size each get between 1/(2N) and 2/N of the bytes over every
        stretch of 4N times (the consumer's buffer plus the largest write)
        while all have data, for N = 2, 3 and 8.
        """
        for count in (2, 3, 8):
            clock = Clock()
            sink = RecordingSink(65536, clock=clock)
            merge = Merge(sink, reactor=clock)
            sizes = [100, 16_384, 100_000]
            for ident in range(count):
                merge.addSource(Framed(ident, sizes[ident % 3], reactor=clock))
            stretch = 4 * count * (65536 + 100_006)
            runFor(clock, lambda s=sink, n=8 * stretch: s.logged >= n)
            assertFair(self, sink.log, list(range(count)), stretch)
            merge.done.cancel()
            self.failureResultOf(merge.done, CancelledError)

    def test_idleInputCatchesUpBoundedly(self) -> None:
        """
        An input that had nothing to send while the others delivered a lot
        catches up by at most L{Merge.catchUp} bytes once it has data, then
        takes its share.
        """
        sink = RecordingSink(0)
        merge = Merge(sink, reactor=self.clock)
        merge.catchUp = 50_000
        busy = EagerProducer(merge.input(), 0, 1000, 1000)
        late = merge.input()
        busy.start()
        for _ in range(500):
            sink.drain()
        self.assertEqual(len(sink.log), 501)
        idle = EagerProducer(late, 1, 1000, 1000)
        idle.start()
        for _ in range(300):
            sink.drain()
        run = 0
        for ident, _ in sink.log[501:]:
            if ident != 1:
                break
            run += 1
        # A burst of about catchUp, not of all it missed.
        self.assertGreater(run, 10)
        self.assertLessEqual(run * 1006, 50_000 + 2 * 1006)

    def test_closeFinishesAndFiresWithBytes(self) -> None:
        """
        Once closed and every input has finished, the merge unregisters,
        finishes a finishable consumer and fires with the bytes delivered.
        """
        sink = BackpressureConsumer(2**62)
        merge = Merge(sink, reactor=self.clock)
        first = merge.input()
        second = merge.input()
        first.write(b"abc")
        second.write(b"de")
        first.finish()
        second.finish()
        self.assertNoResult(merge.done)
        merge.close()
        self.assertEqual(self.successResultOf(merge.done), 5)
        self.assertTrue(sink.finished)
        self.assertIsNone(sink.producer)
        self.assertEqual(sink.received, b"abcde")
        self.assertRaises(ProducerStateError, merge.input)

    def test_closedWithNoInputs(self) -> None:
        """
        A merge closed with no inputs finishes at once, having delivered 0.
        """
        sink = BackpressureConsumer()
        merge = Merge(sink, reactor=self.clock)
        merge.close()
        merge.close()
        self.assertEqual(self.successResultOf(merge.done), 0)
        self.assertTrue(sink.finished)

    def test_finishTwiceAndWriteAfterFinish(self) -> None:
        """
        An input finished twice, or written to after its finish, raises
        L{ConsumerFinished}.
        """
        merge = Merge(BackpressureConsumer(), reactor=self.clock)
        each = merge.input()
        each.finish()
        self.assertRaises(ConsumerFinished, each.finish)
        self.assertRaises(ConsumerFinished, each.write, b"x")

    def test_inputFailureLetsOthersCarryOn(self) -> None:
        """
        An input whose source fails does not disturb the others: they
        deliver everything; then the merge's Deferred fails with a
        L{ContextFailure} naming the failed input, the consumer unregistered
        and not finished.
        """
        sink = RecordingSink(4096, clock=self.clock)
        merge = Merge(sink, reactor=self.clock)
        broken = merge.addSource(Failing(0, 1000, 5, reactor=self.clock))
        merge.addSource(Framed(1, 1000, 40, reactor=self.clock))
        merge.addSource(Framed(2, 1000, 40, reactor=self.clock))
        merge.close()
        runFor(self.clock, lambda: merge.done.called)
        failure = self.failureResultOf(merge.done, Boom)
        self.assertIsInstance(failure, ContextFailure)
        self.assertIs(failure.source, broken)
        self.assertIn("<MergeInput 0 of <Merge", failure.getErrorMessage())
        self.assertIn("after writing 5030 bytes in 5 chunks", failure.context)
        self.assertIs(broken.failure, failure)
        idents = [ident for ident, _ in sink.log]
        self.assertEqual(
            (idents.count(0), idents.count(1), idents.count(2)), (5, 40, 40)
        )
        # The others went on after the failure.
        self.assertGreater(len(idents) - 1 - idents[::-1].index(0), 0)
        self.assertLess(idents.index(0) + 5, len(idents) - 40)
        self.assertIsNone(sink.producer)
        self.assertFalse(sink.finished)

    def test_inputProducerStopped(self) -> None:
        """
        An input whose producer is stopped (by someone other than the merge)
        ends; the others carry on, and the merge then fails with the
        input's L{ProducerStopped}.
        """
        sink = BackpressureConsumer(100, clock=self.clock)
        merge = Merge(sink, reactor=self.clock)
        stopped = Framed(0, 10, reactor=self.clock)
        merge.addSource(stopped)
        other = merge.addSource(Framed(1, 10, 10, reactor=self.clock))
        merge.close()
        runTurn(self.clock)
        stopped.stopProducing()
        runFor(self.clock, lambda: merge.done.called)
        self.failureResultOf(merge.done, ProducerStopped)
        self.assertTrue(other.finished)
        self.assertEqual(other.bytesWritten, 160)

    def test_failStopsItsProducer(self) -> None:
        """
        L{MergeInput.fail} stops the input's producer and ends it; later
        writes are dropped, later registrations stopped.
        """
        merge = Merge(BackpressureConsumer(2**62), reactor=self.clock)
        each = merge.input()
        producer = RecordingPushProducer()
        each.registerProducer(producer, True)
        try:
            raise Boom("by hand")
        except Boom:
            each.fail()
        self.assertEqual(producer.calls, [("stop",)])
        self.assertIsNone(each.producer)
        each.write(b"late")
        late = RecordingPushProducer()
        each.registerProducer(late, True)
        self.assertEqual(late.calls, [("stop",)])
        each.fail(Boom("again"))
        merge.close()
        failure = self.failureResultOf(merge.done, Boom)
        self.assertEqual(str(failure.value), "by hand")
        self.assertEqual(merge.bytesWritten, 0)

    def test_sourceThatCannotStart(self) -> None:
        """
        A source whose start raises fails its input at once.
        """
        merge = Merge(BackpressureConsumer(), reactor=self.clock)

        def start(consumer: Any) -> Deferred[int]:
            raise Boom("no file")

        each = merge.addSource(start)
        self.assertTrue(each.ended)
        merge.close()
        self.failureResultOf(merge.done, Boom)

    def test_cancelStopsEveryInput(self) -> None:
        """
        Cancelling the merge's Deferred stops every input's producer and
        unregisters the merge.
        """
        sink = BackpressureConsumer()
        merge = Merge(sink, reactor=self.clock)
        producers = [RecordingPushProducer() for _ in range(3)]
        for producer in producers:
            merge.input().registerProducer(producer, True)
        merge.done.cancel()
        self.failureResultOf(merge.done, CancelledError)
        for producer in producers:
            self.assertEqual(producer.calls, [("stop",)])
        self.assertIsNone(sink.producer)
        self.assertEqual(merge.inputs, ())

    def test_consumerGoesAway(self) -> None:
        """
        A consumer that stops the merge (its connection was lost) stops
        every input, sources included, and the merge fails with
        L{ProducerStopped}; an input made afterwards stops its producer.
        """
        sink = BackpressureConsumer()
        merge = Merge(sink, reactor=self.clock)
        source = Framed(0, 10, reactor=self.clock)
        merge.addSource(source)
        runTurn(self.clock)
        sink.loseConnection()
        self.failureResultOf(merge.done, ProducerStopped)
        self.assertFalse(source.producing)
        late = merge.input()
        producer = RecordingPushProducer()
        late.registerProducer(producer, True)
        self.assertEqual(producer.calls, [("stop",)])
        late.write(b"dropped")

    def test_consumerRefuses(self) -> None:
        """
        A consumer that already has a producer refuses the merge: its
        Deferred has failed with the consumer's error, the consumer's own
        producer is untouched, and inputs stop what registers with them.
        """
        consumer = RefusingConsumer()
        merge = Merge(consumer, reactor=self.clock)
        self.failureResultOf(merge.done, ProducerStateError)
        self.assertIs(consumer.producer, consumer.first)
        source = Framed(0, 10, 3, reactor=self.clock)
        merge.addSource(source)
        self.clock.advance(0)
        self.assertFalse(source.producing)
        self.assertEqual(consumer.first.calls, [])

    def test_consumerFinishFails(self) -> None:
        """
        If the consumer's C{finish} raises, the merge fails with it.
        """

        class Finicky(BackpressureConsumer):
            def finish(self) -> None:
                raise Boom("cannot finish")

        merge = Merge(Finicky(), reactor=self.clock)
        merge.close()
        self.failureResultOf(merge.done, Boom)

    def test_consumerWriteFails(self) -> None:
        """
        An error from the consumer's C{write} fails the merge with context
        and stops every input; it is not raised into the input's producer.
        """
        sink = BackpressureConsumer(failOnWrite=Boom("disk full"), failAfterWrites=1)
        merge = Merge(sink, reactor=self.clock)
        each = merge.input()
        producer = RecordingPushProducer()
        each.registerProducer(producer, True)
        each.write(b"one")
        each.write(b"two")
        failure = self.failureResultOf(merge.done, Boom)
        self.assertEqual(failure.itemIndex, 1)
        self.assertEqual(producer.calls, [("stop",)])
        each.write(b"three")

    def test_taggedInputs(self) -> None:
        """
        Items written to a tagged input are delivered as C{(tag, item)};
        those of an untagged one as they are.  Tags are not counted.
        """
        sink = BackpressureConsumer(objects=True)
        merge = Merge(sink, reactor=self.clock)
        left = merge.input("left")
        none = merge.input(None)
        plain = merge.input()
        left.write(b"abc")
        none.write({"row": 1})
        plain.write(b"xy")
        for each in (left, none, plain):
            each.finish()
        merge.close()
        self.assertEqual(sink.received, [("left", b"abc"), (None, {"row": 1}), b"xy"])
        self.assertEqual(self.successResultOf(merge.done), 6)
        self.assertIn("'left'", repr(left))

    def test_pullInputs(self) -> None:
        """
        Pull producers (the package's C{FileSender}) on inputs are asked for
        data on the turn loop while the merge is not paused, and each input
        finishes when its sender's Deferred fires.
        """
        sink = BackpressureConsumer(5, clock=self.clock, objects=True)
        merge = Merge(sink, reactor=self.clock)
        files = [bytes([i]) * 100_000 for i in range(3)]
        for i, data in enumerate(files):
            sender = FileSender()
            sender.CHUNK_SIZE = 1000
            merge.addSource(
                lambda c, s=sender, d=data: s.beginFileTransfer(io.BytesIO(d), c),
                tag=i,
            )
        merge.close()
        runFor(self.clock, lambda: merge.done.called)
        self.assertEqual(self.successResultOf(merge.done), 300_000)
        received: List[Tuple[int, bytes]] = list(sink.received)  # type: ignore[arg-type]
        for i, data in enumerate(files):
            got = [item for tag, item in received if tag == i]
            self.assertEqual(b"".join(got), data)
        tags = [tag for tag, _ in received]
        # They took turns.
        self.assertLess(tags.index(2), 50)

    def test_pullProducerWritingNothingIsNotAskedAgain(self) -> None:
        """
        A pull producer whose C{resumeProducing} writes nothing is not asked
        again until it writes of its own accord, as a transport would do.
        """
        merge = Merge(BackpressureConsumer(2**62), reactor=self.clock)
        each = merge.input()
        producer = RecordingPullProducer()
        each.registerProducer(producer, False)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(producer.calls, [("resume",)])
        each.write(b"of its own accord")
        self.clock.advance(0)
        self.assertEqual(producer.calls, [("resume",), ("resume",)])

    def test_pullInputWaitsWhilePaused(self) -> None:
        """
        A pull producer is not asked for data while the merge is paused,
        and is asked again when it resumes.
        """
        sink = BackpressureConsumer(10)
        merge = Merge(sink, reactor=self.clock)
        each = merge.input()
        producer = RecordingPullProducer(each, tuple([b"x" * 20] * 5))
        each.registerProducer(producer, False)
        self.clock.advance(0)
        self.assertEqual(len(producer.calls), 1)
        self.assertTrue(merge.paused)
        self.clock.advance(0)
        self.assertEqual(len(producer.calls), 1)
        sink.drain()
        self.clock.advance(0)
        self.assertEqual(len(producer.calls), 2)

    def test_pullProducerErrorFailsItsInput(self) -> None:
        """
        A pull producer whose C{resumeProducing} raises fails its input, not
        the merge's other inputs or the reactor.
        """

        class Broken(RecordingPullProducer):
            def resumeProducing(self) -> None:
                raise Boom("read error")

        merge = Merge(BackpressureConsumer(2**62), reactor=self.clock)
        broken = merge.input()
        broken.registerProducer(Broken(), False)
        other = merge.input()
        self.clock.advance(0)
        self.assertIsInstance(broken.failure, ContextFailure)
        self.assertFalse(other.ended)
        other.finish()
        merge.close()
        self.failureResultOf(merge.done, Boom)

    def test_oneProducerAtATime(self) -> None:
        """
        Registering a second producer with an input before the first has
        unregistered raises, as a transport does; afterwards another may.
        """
        merge = Merge(BackpressureConsumer(), reactor=self.clock)
        each = merge.input()
        each.registerProducer(RecordingPushProducer(), True)
        self.assertRaises(
            ProducerStateError, each.registerProducer, RecordingPushProducer(), True
        )
        each.unregisterProducer()
        each.registerProducer(RecordingPushProducer(), True)

    def test_inputsAddedMidStream(self) -> None:
        """
        Inputs may be added while others are delivering; all arrive whole.
        """
        sink = RecordingSink(4096, clock=self.clock)
        merge = Merge(sink, reactor=self.clock)
        merge.addSource(Framed(0, 500, 100, reactor=self.clock))
        runFor(self.clock, lambda: len(sink.log) >= 20)
        merge.addSource(Framed(1, 700, 50, reactor=self.clock))
        merge.close()
        runFor(self.clock, lambda: merge.done.called)
        self.successResultOf(merge.done)
        idents = [ident for ident, _ in sink.log]
        self.assertEqual((idents.count(0), idents.count(1)), (100, 50))


class MergeConformanceTests(PushProducerConformanceMixin, SynchronousTestCase):
    """
    A merge of one input conforms as a push producer, delivering exactly
    what its source wrote.
    """

    def makeProducer(self, clock: Clock) -> Any:
        def connect(consumer: Any) -> Tuple[Any, Any]:
            merge = Merge(consumer, reactor=clock)
            pieces = [FILE_DATA[i : i + 1000] for i in range(0, len(FILE_DATA), 1000)]
            self.sources = [Items(pieces, reactor=clock)]
            for source in self.sources:
                merge.addSource(source)
            merge.close()
            return merge, merge.done

        return FedPushProducer(connect)

    def expectedData(self, producer: Any) -> Any:
        return FILE_DATA

    def resourcesReleased(self, producer: Any) -> bool:
        return not any(source.producing for source in self.sources)


class ManyInputsMergeConformanceTests(
    PushProducerConformanceMixin, SynchronousTestCase
):
    """
    A merge of push producers, hand-written ones that write as they are
    resumed and pull producers conforms as a push producer.
    """

    def makeProducer(self, clock: Clock) -> Any:
        def connect(consumer: Any) -> Tuple[Any, Any]:
            merge = Merge(consumer, reactor=clock)
            self.sources = [Framed(i, 300, 20, reactor=clock) for i in range(3)]
            for source in self.sources:
                merge.addSource(source)
            self.eager = [
                EagerProducer(merge.input(), 3 + i, 200, 20) for i in range(2)
            ]
            sender = FileSender()
            sender.CHUNK_SIZE = 700
            merge.addSource(
                lambda c: sender.beginFileTransfer(io.BytesIO(FILE_DATA), c)
            )
            self.sender = sender
            merge.close()
            for eager in self.eager:
                clock.callLater(0, eager.start)
            return merge, merge.done

        return FedPushProducer(connect)

    def resourcesReleased(self, producer: Any) -> bool:
        return (
            not any(source.producing for source in self.sources)
            and all(eager.stopped for eager in self.eager)
            and self.sender.file is None
        )


class MergeInputConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    Each input of a merge conforms as a consumer: it pauses a push producer
    while the merge's consumer is behind, and drives a pull producer.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        self.sink = BackpressureConsumer(1024, clock=clock, drainRate=1024)
        self.merge = Merge(self.sink, reactor=clock)
        each = self.merge.input()
        self.merge.close()
        return each

    def completion(self, consumer: Any) -> Any:
        return self.merge.done

    def received(self, consumer: Any) -> Any:
        return self.sink.received


class TagEncoder(Stage):
    """
    Encode C{(tag, bytes)} pairs, the tag a byte, for a L{Frame} after it.
    """

    def process(self, item: Any) -> Any:
        tag, data = item
        return [bytes([tag]) + data]


class MergeOverTCPTests(TestCase):
    """
    L{Merge} into real TCP connections on 127.0.0.1.
    """

    async def mergeInto(self, sources: List[Any], total: int) -> Frames:
        """
        Merge C{sources} into a connection, and return what arrived once
        it is all there.
        """
        client = Frames()
        server = await connect(self, client)
        merge = Merge(server.transport)
        for source in sources:
            merge.addSource(source)
        merge.close()
        self.assertEqual(await merge.done, total)
        server.transport.loseConnection()
        await client.lost
        self.assertEqual(client.errors, [])
        self.assertEqual(client.bytes, total)
        return client

    async def test_fairAndWhole(self) -> None:
        """
        N = 2, 8 and 64 inputs of our producers, with writes of different
        sizes, arrive whole over a real connection, each getting between
        1/(2N) and 2/N of every stretch of 4N times (the transport's buffer
        plus the largest write) while all have data.
        """
        for count, sizes, each in [
            (2, [1000, 65_536], 4 << 20),
            (8, [1000, 16_384, 65_536], 2 << 20),
            (64, [1000, 4096, 16_384], 1 << 20),
        ]:
            size = [sizes[i % len(sizes)] for i in range(count)]
            sources = [Framed(i, size[i], each // size[i]) for i in range(count)]
            total = sum((each // size[i]) * (size[i] + 6) for i in range(count))
            client = await self.mergeInto(sources, total)
            stretch = 4 * count * (65536 + max(sizes) + 6)
            assertFair(self, client.log, list(range(count)), stretch)

    async def test_handWrittenProducersFair(self) -> None:
        """
        Hand-written push producers that write at once whenever they are
        resumed share a real connection fairly, and nothing is lost.
        """
        count = 4
        client = Frames(paused=True)
        server = await connect(self, client)
        merge = Merge(server.transport)
        producers = []
        for i in range(count):
            size = [500, 30_000][i % 2]
            producers.append(EagerProducer(merge.input(), i, size, (4 << 20) // size))
        merge.close()
        for producer in producers:
            producer.start()
        client.transport.resumeProducing()
        await merge.done
        server.transport.loseConnection()
        await client.lost
        self.assertEqual(client.errors, [])
        assertFair(self, client.log, list(range(count)), 4 * count * (65536 + 30_006))

    async def test_tagsOverFrames(self) -> None:
        """
        Tagged inputs carry several logical streams over one connection:
        a tag-aware encoder and L{Frame} on the sending side, L{Unframe} on
        the receiving side, and each stream comes out as it went in.
        """
        streams = {tag: bytes([65 + tag]) * (200_000 + tag * 1000) for tag in range(3)}
        received: Dict[int, List[bytes]] = {tag: [] for tag in streams}

        class Collect(BackpressureConsumer):
            def write(self, data: Any) -> None:
                received[data[0]].append(bytes(data[1:]))

        unframe = Unframe()
        unframe.attach(Collect())
        client = Frames()
        client.dataReceived = unframe.write  # type: ignore[assignment]
        server = await connect(self, client)
        encoder = TagEncoder()
        framer = Frame()
        framer.attach(server.transport)
        encoder.attach(framer)
        merge = Merge(encoder)
        for tag, data in streams.items():
            pieces = [data[i : i + 7000] for i in range(0, len(data), 7000)]
            merge.addSource(Items(pieces), tag)
        merge.close()
        await merge.done
        await framer.done
        server.transport.loseConnection()
        await client.lost
        for tag, data in streams.items():
            self.assertEqual(b"".join(received[tag]), data)


def _turns(count: int) -> Deferred[None]:
    """
    Fire after C{count} passes of the global reactor.
    """
    d: Deferred[None] = Deferred()

    def later(left: int) -> None:
        if left == 0:
            d.callback(None)
        else:
            reactor.callLater(0, later, left - 1)

    later(count)
    return d
