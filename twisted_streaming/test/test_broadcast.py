"""
Tests for L{twisted_streaming.Broadcast}: one source to many consumers, with
a policy for those that fall behind.
"""

from __future__ import annotations

import io
from typing import Any, Dict, List, Tuple, cast

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    Broadcast,
    ConsumerFinished,
    ConsumerTooSlow,
    ContextFailure,
    FanOutput,
    FileSender,
    IFinishableConsumer,
    ProducerStateError,
    ProducerStopped,
    pipeline,
)
from twisted_streaming.test._fan import (
    Framed,
    Frames,
    Ticker,
    closeWhenDone,
    connect,
    frame,
    reactor,
    runFor,
)
from twisted_streaming.test.test_flow import RefusingConsumer
from twisted_streaming.test.test_merge import Boom, _turns
from twisted_streaming.test.test_stages import Items
from twisted_streaming.testing import (
    FILE_DATA,
    BackpressureConsumer,
    ConsumerConformanceMixin,
    FedPushProducer,
    PushProducerConformanceMixin,
    RecordingPushProducer,
)


class Transport(BackpressureConsumer):
    """
    A L{BackpressureConsumer} that can be aborted, as a TCP transport can.
    """

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def pieces(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class BroadcastTests(SynchronousTestCase):
    """
    L{Broadcast} over fakes, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: List[Dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def broadcast(self, **kwargs: Any) -> Broadcast:
        return Broadcast(reactor=self.clock, **kwargs)

    def feed(self, broadcast: Broadcast, count: int = 100, size: int = 1000) -> Any:
        source = Framed(0, size, count, reactor=self.clock)
        self.sourceDone = source.startProducing(broadcast)
        return source

    def test_interface(self) -> None:
        """
        A broadcast is a finishable consumer; each output a push producer.
        """
        broadcast = self.broadcast()
        self.assertTrue(verifyObject(IFinishableConsumer, broadcast))
        broadcast.addOutput(BackpressureConsumer())
        (output,) = broadcast.outputs
        self.assertIsInstance(output, FanOutput)
        self.assertTrue(verifyObject(IPushProducer, output))

    def test_invalidArguments(self) -> None:
        """
        An unknown policy, a negative lag or a timeout without the
        disconnect policy is refused.
        """
        self.assertRaises(ValueError, Broadcast, policy="roll")
        self.assertRaises(ValueError, Broadcast, maxLag=-1)
        self.assertRaises(ValueError, Broadcast, policy="drop", timeout=1.0)

    def test_everyWriteToEveryOutputThenFinish(self) -> None:
        """
        Every write reaches every output; the source's finish finishes every
        output, each Deferred firing with what it got, and then L{done}
        fires with what the source wrote.
        """
        broadcast = self.broadcast()
        sinks = [BackpressureConsumer(2**62) for _ in range(3)]
        order: List[Any] = []
        for sink in sinks:
            broadcast.addOutput(sink).addCallback(order.append)
        broadcast.done.addCallback(lambda n: order.append(("done", n)))
        self.feed(broadcast, 10)
        runFor(self.clock, lambda: broadcast.done.called)
        expected = frame(0, 1000) * 10
        for sink in sinks:
            self.assertEqual(sink.received, expected)
            self.assertTrue(sink.finished)
            self.assertIsNone(sink.producer)
        self.assertEqual(order, [10060, 10060, 10060, ("done", 10060)])
        self.assertEqual(broadcast.outputs, ())

    def test_pausePolicySlowestSetsThePace(self) -> None:
        """
        Under C{"pause"}, the source is paused while an output is C{maxLag}
        behind; every output gets everything, and the slow one never holds
        more than its buffer's threshold, C{maxLag} and a write.
        """
        broadcast = self.broadcast(maxLag=5000)
        fast = BackpressureConsumer(4096, clock=self.clock, drainRate=100_000)
        slow = BackpressureConsumer(4096, clock=self.clock, drainRate=1000)
        broadcast.addOutput(fast)
        broadcast.addOutput(slow)
        source = self.feed(broadcast, 200)
        held: List[int] = []
        pauses: List[int] = []
        source.producingPaused = lambda: pauses.append(1)

        def done() -> bool:
            held.append(slow.buffered)
            return broadcast.done.called

        runFor(self.clock, done)
        expected = frame(0, 1000) * 200
        self.assertEqual(fast.received, expected)
        self.assertEqual(slow.received, expected)
        self.assertLessEqual(max(held), 4096 + 5000 + 1006)
        self.assertGreater(len(pauses), 10)
        self.assertEqual(broadcast.outputs, ())

    def test_briefPausesCostNothing(self) -> None:
        """
        An output paused for less than C{maxLag} does not pause the source
        under C{"pause"}: it keeps getting the writes.
        """
        broadcast = self.broadcast(maxLag=100_000)
        sink = BackpressureConsumer(2**62)
        broadcast.addOutput(sink)
        source = RecordingPushProducer()
        broadcast.registerProducer(source, True)
        broadcast.outputs[0].pauseProducing()
        for _ in range(99):
            broadcast.write(b"x" * 1000)
        self.assertEqual(source.calls, [])
        self.assertEqual(broadcast.outputs[0].lag, 99_000)
        broadcast.write(b"x" * 1000)
        self.assertEqual(source.calls, [("pause",)])
        self.assertEqual(len(sink.received), 100_000)
        broadcast.outputs[0].resumeProducing()
        self.assertEqual(source.calls, [("pause",), ("resume",)])
        self.assertEqual(broadcast.outputs[0].lag, 0)

    def test_dropPolicy(self) -> None:
        """
        Under C{"drop"}, an output C{maxLag} behind gets no more writes
        until it resumes (they are counted), and gets whole writes after;
        the others get everything and the source is not paused for it.
        """
        broadcast = self.broadcast(policy="drop", maxLag=3000)
        fast = BackpressureConsumer(2**62)
        slow = BackpressureConsumer(2000)
        broadcast.addOutput(fast)
        fastDone = broadcast.addOutput(slow)
        slowOutput = broadcast.outputs[1]
        source = RecordingPushProducer()
        broadcast.registerProducer(source, True)
        chunk = frame(0, 994)
        for _ in range(10):
            broadcast.write(chunk)
        # Paused after its third write (over 2000), given maxLag more.
        self.assertEqual(len(slow.received), 6000)
        self.assertEqual((slowOutput.droppedBytes, slowOutput.droppedChunks), (4000, 4))
        self.assertTrue(slowOutput.dropping)
        self.assertEqual(source.calls, [])
        slow.drain()
        self.assertFalse(slowOutput.dropping)
        broadcast.write(chunk)
        self.assertEqual(len(slow.received), 7000)
        self.assertEqual(len(fast.received), 11000)
        broadcast.unregisterProducer()
        broadcast.finish()
        self.assertEqual(self.successResultOf(fastDone), 7000)
        self.assertEqual(self.successResultOf(broadcast.done), 11000)

    def test_sourcePausedOnlyWhileEveryOutputIs(self) -> None:
        """
        Under C{"drop"} and C{"disconnect"}, the source is paused while
        every output is paused, and resumed as soon as one resumes.
        """
        for policy in ("drop", "disconnect"):
            broadcast = self.broadcast(policy=policy)
            for _ in range(2):
                broadcast.addOutput(BackpressureConsumer())
            source = RecordingPushProducer()
            broadcast.registerProducer(source, True)
            first, second = broadcast.outputs
            first.pauseProducing()
            self.assertEqual(source.calls, [])
            second.pauseProducing()
            self.assertEqual(source.calls, [("pause",)])
            first.resumeProducing()
            self.assertEqual(source.calls, [("pause",), ("resume",)])

    def test_disconnectPolicy(self) -> None:
        """
        Under C{"disconnect"}, an output C{maxLag} behind is removed: its
        producer unregisters, its transport is aborted, the event is logged
        and its Deferred fails with L{ConsumerTooSlow}; the others get
        everything.
        """
        broadcast = self.broadcast(policy="disconnect", maxLag=3000)
        fast = BackpressureConsumer(2**62)
        slow = Transport(2000)
        broadcast.addOutput(fast)
        slowDone = broadcast.addOutput(slow)
        self.feed(broadcast, 20, 994)
        runFor(self.clock, lambda: broadcast.done.called)
        failure = self.failureResultOf(slowDone, ConsumerTooSlow)
        self.assertTrue(failure.check(ProducerStopped))
        self.assertIn("fell 3000 behind", str(failure.value))
        self.assertTrue(slow.aborted)
        self.assertIsNone(slow.producer)
        self.assertEqual(len(slow.received), 6000)
        self.assertEqual(len(fast.received), 20_000)
        logged = [e for e in self.events if "disconnected" in e.get("log_format", "")]
        self.assertEqual(len(logged), 1)
        self.assertIs(logged[0]["consumer"], slow)

    def test_disconnectLosesAConsumerThatCannotAbort(self) -> None:
        """
        An output without C{abortConnection} is closed with
        C{loseConnection}.
        """
        broadcast = self.broadcast(policy="disconnect", maxLag=0)
        slow = BackpressureConsumer(0)
        broadcast.addOutput(slow).addErrback(lambda f: None)
        broadcast.write(b"x")
        self.assertTrue(slow.disconnected)
        self.assertEqual(broadcast.outputs, ())

    def test_disconnectAfterTimeout(self) -> None:
        """
        Under C{"disconnect"} with a C{timeout}, an output paused for longer
        is disconnected even if it is not C{maxLag} behind; one that
        resumes in time is not, and nothing is left scheduled.
        """
        broadcast = self.broadcast(policy="disconnect", timeout=5.0)
        stuck = Transport()
        brief = Transport()
        stuckDone = broadcast.addOutput(stuck)
        briefDone = broadcast.addOutput(brief)
        first, second = broadcast.outputs
        first.pauseProducing()
        second.pauseProducing()
        self.clock.advance(4)
        second.resumeProducing()
        self.clock.advance(1)
        failure = self.failureResultOf(stuckDone, ConsumerTooSlow)
        self.assertIn("paused for more than 5.0 s", str(failure.value))
        self.assertTrue(stuck.aborted)
        self.assertFalse(brief.aborted)
        broadcast.finish()
        self.assertEqual(self.successResultOf(briefDone), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noOutputsPausesTheSource(self) -> None:
        """
        The source is paused while there is no output, resumed when one is
        added and paused again when the last is removed; what it writes
        meanwhile goes nowhere.
        """
        broadcast = self.broadcast()
        source = RecordingPushProducer()
        broadcast.registerProducer(source, True)
        self.assertEqual(source.calls, [("pause",)])
        broadcast.write(b"nowhere")
        sink = BackpressureConsumer()
        done = broadcast.addOutput(sink)
        self.assertEqual(source.calls, [("pause",), ("resume",)])
        broadcast.write(b"abc")
        broadcast.removeOutput(sink)
        self.assertEqual(source.calls[-1], ("pause",))
        self.assertEqual(self.successResultOf(done), 3)
        self.assertEqual(sink.received, b"abc")
        self.assertFalse(sink.finished)
        self.assertIsNone(sink.producer)
        broadcast.removeOutput(sink)

    def test_outputsAddedAndRemovedMidStream(self) -> None:
        """
        An output added in the middle of the stream gets the writes from
        then on, whole; one removed gets no more, and the others go on.
        """
        broadcast = self.broadcast(maxLag=0)
        first = BackpressureConsumer(1000, clock=self.clock, drainRate=500)
        broadcast.addOutput(first)
        source = Framed(0, 100, 50, reactor=self.clock)
        source.startProducing(broadcast)
        later = BackpressureConsumer(2**62)
        gone = BackpressureConsumer(2**62)
        broadcast.addOutput(gone)
        runFor(self.clock, lambda: len(first.received) >= 10 * 106)
        broadcast.addOutput(later)
        broadcast.removeOutput(gone)
        runFor(self.clock, lambda: broadcast.done.called)
        self.assertEqual(first.received, frame(0, 100) * 50)
        self.assertEqual(later.received, frame(0, 100) * (len(later.received) // 106))
        self.assertGreater(len(later.received), 20 * 106)
        self.assertEqual(len(gone.received) + len(later.received), 50 * 106)
        self.assertTrue(later.finished)
        self.assertFalse(gone.finished)

    def test_outputRefuses(self) -> None:
        """
        A consumer that already has a producer refuses its output: that
        Deferred fails, nothing is written to it, the others are unaffected.
        """
        broadcast = self.broadcast()
        refusing = RefusingConsumer()
        refused = broadcast.addOutput(refusing)
        self.failureResultOf(refused, ProducerStateError)
        self.assertEqual(broadcast.outputs, ())
        broadcast.addOutput(BackpressureConsumer())
        broadcast.write(b"x")
        self.assertEqual(refusing.received, b"")
        self.assertIs(refusing.producer, refusing.first)

    def test_outputWriteFails(self) -> None:
        """
        An output whose C{write} raises fails alone, with context; the
        source and the other outputs go on.
        """
        broadcast = self.broadcast()
        broken = BackpressureConsumer(failOnWrite=Boom("full"), failAfterWrites=1)
        good = BackpressureConsumer()
        brokenDone = broadcast.addOutput(broken)
        broadcast.addOutput(good)
        broadcast.write(b"one")
        broadcast.write(b"two")
        failure = self.failureResultOf(brokenDone, Boom)
        self.assertIsInstance(failure, ContextFailure)
        self.assertEqual(failure.itemIndex, 1)
        broadcast.write(b"three")
        self.assertEqual(good.received, b"onetwothree")
        self.assertEqual(len(broadcast.outputs), 1)

    def test_outputGoesAway(self) -> None:
        """
        An output whose consumer stops it (the peer went away) is removed,
        its Deferred failing with L{ProducerStopped}.
        """
        broadcast = self.broadcast()
        sink = BackpressureConsumer()
        done = broadcast.addOutput(sink)
        sink.loseConnection()
        self.failureResultOf(done, ProducerStopped)
        self.assertEqual(broadcast.outputs, ())

    def test_failEndsEveryOutput(self) -> None:
        """
        L{Broadcast.fail} stops the source, fails every output's Deferred
        and L{done}, in context, and unregisters every output.
        """
        broadcast = self.broadcast()
        sinks = [BackpressureConsumer() for _ in range(2)]
        outputs = [broadcast.addOutput(sink) for sink in sinks]
        source = RecordingPushProducer()
        broadcast.registerProducer(source, True)
        broadcast.write(b"abc")
        broadcast.fail(Boom("the feed broke"))
        failure = self.failureResultOf(broadcast.done, Boom)
        self.assertIn("after writing 3 bytes in 1 chunks", failure.getErrorMessage())
        for output in outputs:
            self.assertIs(self.failureResultOf(output, Boom), failure)
        for sink in sinks:
            self.assertIsNone(sink.producer)
            self.assertFalse(sink.finished)
        self.assertEqual(source.calls, [("stop",)])
        broadcast.write(b"late")
        broadcast.fail(Boom("again"))
        late = BackpressureConsumer()
        self.failureResultOf(broadcast.addOutput(late), Boom)
        self.assertIsNone(late.producer)

    def test_failFromAPipeline(self) -> None:
        """
        A source that fails, started with L{pipeline}, fails the broadcast
        through C{addErrback(broadcast.fail)}.
        """

        class Failing(Framed):
            def produce(self) -> Any:
                raise Boom("no more")

        broadcast = self.broadcast()
        done = broadcast.addOutput(BackpressureConsumer())
        pipeline(Failing(0, 10, reactor=self.clock), sink=broadcast).addErrback(
            broadcast.fail
        )
        self.clock.advance(0)
        self.failureResultOf(broadcast.done, Boom)
        self.failureResultOf(done, Boom)

    def test_cancelStopsEverything(self) -> None:
        """
        Cancelling L{done} stops the source and every output.
        """
        broadcast = self.broadcast()
        sink = BackpressureConsumer()
        output = broadcast.addOutput(sink)
        source = RecordingPushProducer()
        broadcast.registerProducer(source, True)
        broadcast.done.cancel()
        self.failureResultOf(broadcast.done, CancelledError)
        self.failureResultOf(output, CancelledError)
        self.assertEqual(source.calls, [("stop",)])
        self.assertIsNone(sink.producer)

    def test_finishTwiceOrWriteAfter(self) -> None:
        """
        Finishing twice, or writing after the finish, raises
        L{ConsumerFinished}; an output added after the end is finished at
        once.
        """
        broadcast = self.broadcast()
        broadcast.finish()
        self.assertEqual(self.successResultOf(broadcast.done), 0)
        self.assertRaises(ConsumerFinished, broadcast.finish)
        self.assertRaises(ConsumerFinished, broadcast.write, b"x")
        late = BackpressureConsumer()
        self.assertEqual(self.successResultOf(broadcast.addOutput(late)), 0)
        self.assertTrue(late.finished)
        source = RecordingPushProducer()
        broadcast.registerProducer(source, True)
        self.assertEqual(source.calls, [("stop",)])

    def test_pullSource(self) -> None:
        """
        A pull producer (the package's C{FileSender}) as the source is asked
        for data while the outputs can take it, and every output gets the
        whole file.
        """
        broadcast = self.broadcast(maxLag=0)
        sinks = [
            BackpressureConsumer(4096, clock=self.clock, drainRate=rate)
            for rate in (1000, 50_000)
        ]
        for sink in sinks:
            broadcast.addOutput(sink)
        sender = FileSender()
        sender.CHUNK_SIZE = 1000
        pipeline(
            lambda c: sender.beginFileTransfer(io.BytesIO(FILE_DATA), c),
            sink=broadcast,
        )
        runFor(self.clock, lambda: broadcast.done.called)
        for sink in sinks:
            self.assertEqual(sink.received, FILE_DATA)
            self.assertLessEqual(max(c[1] for c in sink.calls if c[0] == "write"), 1000)

    def test_objectsCountAsOne(self) -> None:
        """
        For a stream of objects, C{maxLag} counts items.
        """
        broadcast = self.broadcast(policy="drop", maxLag=3)
        sink = BackpressureConsumer(0, objects=True)
        broadcast.addOutput(sink)
        for item in range(10):
            broadcast.write({"item": item})
        self.assertEqual(len(sink.received), 4)
        self.assertEqual(broadcast.outputs[0].droppedChunks, 6)

    def test_maxLagZero(self) -> None:
        """
        With C{maxLag} 0, the policy applies as soon as an output is paused.
        """
        broadcast = self.broadcast(policy="drop", maxLag=0)
        sink = BackpressureConsumer(0)
        broadcast.addOutput(sink)
        broadcast.addOutput(BackpressureConsumer())
        broadcast.write(b"one")
        broadcast.write(b"two")
        self.assertEqual(sink.received, b"one")
        broadcast = self.broadcast(maxLag=0)
        broadcast.addOutput(BackpressureConsumer())
        source = RecordingPushProducer()
        broadcast.registerProducer(source, True)
        broadcast.outputs[0].pauseProducing()
        self.assertEqual(source.calls, [("pause",)])


class BroadcastConsumerConformanceMixin(ConsumerConformanceMixin):
    """
    A broadcast to two outputs, one slower than the other, conforms as a
    consumer; both get everything.
    """

    policy = "pause"

    def makeConsumer(self, clock: Clock) -> Any:
        kwargs: Dict[str, Any] = {"policy": self.policy, "maxLag": 4096}
        if self.policy != "pause":
            # Never so far behind that anything is lost.
            kwargs["maxLag"] = 2**62
        broadcast = Broadcast(reactor=clock, **kwargs)
        self.sinks = [
            BackpressureConsumer(1024, clock=clock, drainRate=rate)
            for rate in (1024, 4096)
        ]
        for sink in self.sinks:
            broadcast.addOutput(sink)
        return broadcast

    def completion(self, consumer: Any) -> Any:
        return consumer.done

    def received(self, consumer: Any) -> Any:
        first, second = (sink.received for sink in self.sinks)
        assert first == second, "the outputs got different streams"
        assert all(sink.finished for sink in self.sinks)
        return first


class PauseBroadcastConformanceTests(
    BroadcastConsumerConformanceMixin, SynchronousTestCase
):
    policy = "pause"


class DropBroadcastConformanceTests(
    BroadcastConsumerConformanceMixin, SynchronousTestCase
):
    policy = "drop"


class DisconnectBroadcastConformanceTests(
    BroadcastConsumerConformanceMixin, SynchronousTestCase
):
    policy = "disconnect"


class BroadcastOutputConformanceMixin(PushProducerConformanceMixin):
    """
    An output of a broadcast with a C{maxLag} of 0 conforms as a push
    producer, beside another output that reads fast.
    """

    policy = "pause"

    def makeProducer(self, clock: Clock) -> Any:
        def connect(consumer: Any) -> Tuple[Any, Any]:
            broadcast = Broadcast(policy=self.policy, maxLag=0, reactor=clock)
            done = broadcast.addOutput(consumer)
            broadcast.addOutput(BackpressureConsumer(2**62))
            self.source = Items(pieces(FILE_DATA, 1000), reactor=clock)
            pipeline(self.source, sink=broadcast)
            return broadcast.outputs[0], done

        return FedPushProducer(connect)


class PauseOutputConformanceTests(BroadcastOutputConformanceMixin, SynchronousTestCase):
    def expectedData(self, producer: Any) -> Any:
        return FILE_DATA


class DropOutputConformanceTests(BroadcastOutputConformanceMixin, SynchronousTestCase):
    policy = "drop"


class BroadcastOverTCPTests(TestCase):
    """
    L{Broadcast} to real TCP connections on 127.0.0.1, one of them a reader
    that stops reading.
    """

    count = 300

    async def start(
        self, policy: str, live: bool = True
    ) -> Tuple[List[Frames], Frames, Broadcast, List[Any]]:
        """
        Broadcast to three readers and one connection that does not read:
        a live feed of 10 KB every millisecond, or a source as fast as it
        can be.
        """
        broadcast = Broadcast(policy=policy, maxLag=100_000)
        readers = [Frames() for _ in range(3)]
        stalled = Frames(paused=True)
        outputs = []
        for client in [*readers, stalled]:
            server = await connect(self, client, smallBuffers=client is stalled)
            transport = server.transport
            output = broadcast.addOutput(transport)
            output.addBoth(closeWhenDone(transport))
            outputs.append(output)
        if live:
            Ticker(0, 10_000, self.count, 0.001, reactor).startProducing(broadcast)
        else:
            Framed(0, 10_000, self.count).startProducing(broadcast)
        return readers, stalled, broadcast, outputs

    async def test_dropKeepsTheOthersGoing(self) -> None:
        """
        Under C{"drop"}, the readers get the whole live feed while one
        connection does not read at all; that one gets whole frames, up to
        its lag, and counts what it missed.
        """
        readers, stalled, broadcast, outputs = await self.start("drop")
        await broadcast.done
        for client in readers:
            await client.lost
            self.assertEqual(client.log, [(0, 10_000)] * self.count)
        stalled.transport.resumeProducing()
        await stalled.lost
        self.assertEqual(stalled.errors, [])
        self.assertLess(len(stalled.log), self.count // 2)
        self.assertEqual(await outputs[3], len(stalled.log) * 10_006)

    async def test_disconnectKeepsTheOthersGoing(self) -> None:
        """
        Under C{"disconnect"}, the connection that does not read is closed
        and the readers get the whole live feed.
        """
        readers, stalled, broadcast, outputs = await self.start("disconnect")
        failures: List[Failure] = []
        outputs[3].addErrback(failures.append)
        await broadcast.done
        self.assertTrue(failures[0].check(ConsumerTooSlow))
        for client in readers:
            await client.lost
            self.assertEqual(client.log, [(0, 10_000)] * self.count)
        stalled.transport.resumeProducing()
        await stalled.lost

    async def test_pauseWaitsForTheSlowest(self) -> None:
        """
        Under C{"pause"}, the stream waits for the connection that does not
        read; once it reads, everyone gets everything.
        """
        readers, stalled, broadcast, _ = await self.start("pause", live=False)
        await _turns(50)
        self.assertFalse(broadcast.done.called)
        self.assertLess(max(c.bytes for c in readers), self.count * 10_006 // 2)
        stalled.transport.resumeProducing()
        await broadcast.done
        for client in [*readers, stalled]:
            await client.lost
            self.assertEqual(client.log, [(0, 10_000)] * self.count)
