"""
Tests for the ready-made sinks: L{CollectBytes}, L{CollectList}, L{Count}
and L{ForEach}, over fakes and through the consumer conformance suite.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    CollectBytes,
    CollectList,
    ConsumerFinished,
    ContextFailure,
    Count,
    ForEach,
    IFinishableConsumer,
    fromAsyncIterable,
    pipeline,
)
from twisted_streaming.test.test_fromasynciterable import Chunks
from twisted_streaming.testing import ConsumerConformanceMixin, RecordingPushProducer


class CollectBytesConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    The consumer contract, for L{CollectBytes}.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        return CollectBytes(reactor=clock)

    def completion(self, consumer: Any) -> Optional[Deferred[Any]]:
        self.result: List[Any] = []
        d: Deferred[Any] = consumer.whenFinished()
        return d.addCallback(self.result.append)

    def received(self, consumer: Any) -> Any:
        return self.result[0]


class CollectListConformanceTests(CollectBytesConformanceTests):
    """
    The consumer contract, for L{CollectList}.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        return CollectList(reactor=clock)

    def received(self, consumer: Any) -> Any:
        return b"".join(self.result[0])


class CountConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    The consumer contract, for L{Count}.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        return Count(reactor=clock)

    def completion(self, consumer: Any) -> Optional[Deferred[Any]]:
        d: Deferred[Any] = consumer.whenFinished()
        return d


class ForEachConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    The consumer contract, for L{ForEach} with a plain function.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        self.seen: List[bytes] = []
        return ForEach(self.seen.append, reactor=clock)

    def completion(self, consumer: Any) -> Optional[Deferred[Any]]:
        d: Deferred[Any] = consumer.whenFinished()
        return d

    def received(self, consumer: Any) -> Any:
        return b"".join(self.seen)


class AsyncForEachConformanceTests(ForEachConformanceTests):
    """
    The consumer contract, for L{ForEach} with an C{async def} function
    that waits for the clock.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        self.seen = []

        async def handle(item: bytes) -> None:
            await deferLater(clock, 0.001, lambda: None)
            self.seen.append(item)

        return ForEach(handle, reactor=clock)


class SinkTests(SynchronousTestCase):
    """
    The sinks over fakes, on a L{Clock}.
    """

    def test_interfaces(self) -> None:
        """
        Every sink is a finishable consumer.
        """
        for sink in (CollectBytes(), CollectList(), Count(), ForEach(print)):
            self.assertTrue(verifyObject(IConsumer, sink))
            self.assertTrue(verifyObject(IFinishableConsumer, sink))

    def test_countsItemsAndBytes(self) -> None:
        """
        L{Count} fires with the number of items, and counts their size.
        """
        clock = Clock()
        count = Count(reactor=clock)
        d = pipeline(fromAsyncIterable(Chunks(30, size=7), reactor=clock), sink=count)
        clock.advance(0)
        self.assertEqual(self.successResultOf(d), 210)
        self.assertEqual(self.successResultOf(count.whenFinished()), 30)
        self.assertEqual(count.size, 210)

    def test_collectsObjects(self) -> None:
        """
        L{CollectList} keeps objects as they are.
        """
        clock = Clock()
        sink = CollectList(reactor=clock)
        sink.write({"a": 1})
        sink.write(None)
        sink.finish()
        clock.advance(0)
        self.assertEqual(self.successResultOf(sink.whenFinished()), [{"a": 1}, None])

    def test_writeAfterFinish(self) -> None:
        """
        Writing to or finishing a finished sink raises L{ConsumerFinished}.
        """
        sink = CollectBytes()
        sink.finish()
        self.assertRaises(ConsumerFinished, sink.write, b"x")
        self.assertRaises(ConsumerFinished, sink.finish)

    def test_awaitingPausesTheProducer(self) -> None:
        """
        While L{ForEach}'s function awaits, items wait, and the producer is
        paused once L{ForEach.highWater} is held, resumed once it has caught
        up.
        """
        clock = Clock()
        waiting: List[Deferred[None]] = []

        def handle(item: bytes) -> Deferred[None]:
            waiting.append(Deferred())
            return waiting[-1]

        sink = ForEach(handle, reactor=clock)
        sink.highWater, sink.lowWater = 300, 100
        producer = RecordingPushProducer()
        sink.registerProducer(producer, True)
        sink.write(b"x" * 100)
        sink.write(b"x" * 100)
        clock.advance(0)
        self.assertEqual(len(waiting), 1)
        sink.write(b"x" * 100)
        self.assertEqual(producer.calls, [])
        sink.write(b"x" * 100)
        self.assertEqual(producer.calls, [("pause",)])
        for _ in range(3):
            waiting[-1].callback(None)
            clock.advance(0)
        self.assertEqual(len(waiting), 4)
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        waiting[-1].callback(None)
        sink.unregisterProducer()
        sink.finish()
        clock.advance(0)
        self.assertEqual(self.successResultOf(sink.whenFinished()), 4)

    def test_failureHasContextAndStopsTheProducer(self) -> None:
        """
        An exception from L{ForEach}'s function fails L{whenFinished} with
        the item in context, and stops the producer.
        """
        clock = Clock()

        def handle(item: bytes) -> None:
            if item == b"bad":
                raise ValueError("cannot handle")

        sink = ForEach(handle, reactor=clock)
        d = sink.whenFinished()
        producer = RecordingPushProducer()
        sink.registerProducer(producer, True)
        sink.write(b"good")
        sink.write(b"bad")
        clock.advance(0)
        failure = self.failureResultOf(d, ValueError)
        assert isinstance(failure, ContextFailure)
        self.assertEqual((failure.itemIndex, failure.itemOffset), (1, 4))
        self.assertEqual(failure.item, "b'bad'")
        self.assertEqual(producer.calls, [("stop",)])
        sink.write(b"ignored")
        self.failureResultOf(sink.whenFinished(), ValueError)

    def test_awaitableFailure(self) -> None:
        """
        What an awaitable returned by the function fails with fails the
        sink, naming the item.
        """
        clock = Clock()

        async def handle(item: bytes) -> None:
            await deferLater(clock, 1, lambda: None)
            raise KeyError(item)

        sink = ForEach(handle, reactor=clock)
        d = sink.whenFinished()
        sink.write(b"first")
        clock.advance(0)
        clock.advance(1)
        failure = self.failureResultOf(d, KeyError)
        assert isinstance(failure, ContextFailure)
        self.assertEqual(failure.itemIndex, 0)
        self.assertEqual(failure.item, "b'first'")
