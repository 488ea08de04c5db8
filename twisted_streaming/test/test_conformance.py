"""
The producer conformance suite of L{twisted_streaming.testing}, applied to the
producers of this package, and shown to fail deliberately broken producers.
"""

from __future__ import annotations

import builtins
import io
import random
from typing import Any, List, Optional

from twisted.internet.interfaces import IConsumer, IPullProducer, IPushProducer
from twisted.internet.task import Clock
from twisted.protocols.basic import FileSender
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_streaming import BasePushProducer
from twisted_streaming.randomintegers import IntegerLines, RandomIntegerProducer
from twisted_streaming.testing import (
    FILE_DATA,
    PullProducerConformanceMixin,
    PushProducerConformanceMixin,
    checkCompletion,
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
    and stopped through the hooks.
    """

    def __init__(self, clock: Clock, count: int = 40) -> None:
        super().__init__(reactor=clock)
        self.clock = clock
        self.pending = chunks(count)
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
            self.timer = self.clock.callLater(0.01, self._tick)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self) -> None:
        self.timer = None
        if not self.pending:
            self.finishProducing()
            return
        self.write(self.pending.pop(0))
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
        from twisted_streaming import FileSender as OurFileSender

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


class PullToPushSubject:
    """
    A push producer for the suite: the package's FileSender sending
    L{FILE_DATA} through a L{PullToPush <twisted_streaming.PullToPush>}.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.adapter: Any = None

    def startProducing(self, consumer: Any) -> Any:
        from twisted_streaming import FileSender as OurFileSender
        from twisted_streaming import PullToPush

        self.adapter = PullToPush(consumer, reactor=self.clock)
        self.adapter.maxBytesPerTurn = 8192
        sender = OurFileSender()
        sender.CHUNK_SIZE = 1000
        return sender.beginFileTransfer(io.BytesIO(FILE_DATA), self.adapter)

    def pauseProducing(self) -> None:
        self.adapter.pauseProducing()

    def resumeProducing(self) -> None:
        self.adapter.resumeProducing()

    def stopProducing(self) -> None:
        self.adapter.stopProducing()


class PullToPushConformanceTests(PushProducerConformanceMixin, SynchronousTestCase):
    """
    L{PullToPush <twisted_streaming.PullToPush>} driving a FileSender conforms
    as a push producer.
    """

    def makeProducer(self, clock: Clock) -> Any:
        return PullToPushSubject(clock)

    def expectedData(self, producer: Any) -> Any:
        return FILE_DATA
