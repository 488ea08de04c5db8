"""
Tests for the fakes of L{twisted_streaming.testing}.
"""

from __future__ import annotations

import ast
import re
from typing import Any, List

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IConsumer, IPullProducer, IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import reporter
from twisted.trial.unittest import FailTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import BasePushProducer, ConsumerFinished, IFinishableConsumer
from twisted_streaming.test.test_conformance import WriteAfterPauseProducer
from twisted_streaming.testing import (
    BackpressureConsumer,
    ConsumerConformanceMixin,
    FedPushProducer,
    PushProducerConformanceMixin,
    RecordingPullProducer,
    RecordingPushProducer,
    checkConsumer,
    checkNoWriteAfterPause,
    loopbackReceive,
)


class BackpressureConsumerTests(SynchronousTestCase):
    """
    L{BackpressureConsumer} applies backpressure like a real transport.
    """

    def test_interfaces(self) -> None:
        """
        It provides IConsumer and IFinishableConsumer.
        """
        consumer = BackpressureConsumer()
        self.assertTrue(verifyObject(IConsumer, consumer))
        self.assertTrue(verifyObject(IFinishableConsumer, consumer))

    def test_pausesOnEveryWriteOverThresholdResumesOnce(self) -> None:
        """
        Every write over the threshold pauses again; a full drain resumes once.
        """
        consumer = BackpressureConsumer(threshold=3)
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        consumer.write(b"ab")
        consumer.write(b"cd")
        consumer.write(b"ef")
        self.assertEqual(producer.calls, [("pause",), ("pause",)])
        consumer.drain(5)
        self.assertEqual(producer.calls, [("pause",), ("pause",)])
        consumer.drain()
        self.assertEqual(producer.calls, [("pause",), ("pause",), ("resume",)])
        consumer.drain()
        self.assertEqual(len(producer.calls), 3)
        self.assertEqual(consumer.received, b"abcdef")

    def test_recordsCallsInOrder(self) -> None:
        """
        Every call received or made is recorded, in order.
        """
        consumer = BackpressureConsumer(threshold=1)
        consumer.registerProducer(RecordingPushProducer(), True)
        consumer.write(b"xy")
        consumer.drain()
        consumer.unregisterProducer()
        consumer.finish()
        self.assertEqual(
            consumer.calls,
            [
                ("registerProducer", True),
                ("write", 2),
                ("pause",),
                ("drain", 2),
                ("resume",),
                ("unregisterProducer",),
                ("finish",),
            ],
        )

    def test_drainsOnClock(self) -> None:
        """
        With a clock, the buffer drains drainRate per interval and nothing
        stays scheduled once it is empty.
        """
        clock = Clock()
        consumer = BackpressureConsumer(
            threshold=0, clock=clock, drainRate=2, drainInterval=1.0
        )
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        consumer.write(b"abcde")
        clock.advance(1)
        self.assertEqual(consumer.buffered, 3)
        clock.advance(1)
        self.assertEqual(producer.calls, [("pause",)])
        clock.advance(1)
        self.assertEqual(consumer.buffered, 0)
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_drivesPullProducer(self) -> None:
        """
        A pull producer is resumed on registration and after each drain.
        """
        consumer = BackpressureConsumer()
        producer = RecordingPullProducer(consumer, (b"a", b"b"))
        self.assertTrue(verifyObject(IPullProducer, producer))
        consumer.registerProducer(producer, False)
        self.assertEqual(consumer.received, b"a")
        consumer.drain()
        consumer.drain()
        self.assertEqual(consumer.received, b"ab")
        self.assertEqual(producer.calls, [("resume",), ("resume",), ("resume",)])
        self.assertIsNone(consumer.producer)

    def test_raisesOnWrite(self) -> None:
        """
        failOnWrite is raised once failAfterWrites writes have succeeded.
        """
        consumer = BackpressureConsumer(failOnWrite=OSError("boom"), failAfterWrites=1)
        consumer.write(b"a")
        self.assertRaises(OSError, consumer.write, b"b")
        self.assertEqual(consumer.received, b"a")

    def test_writeAfterFinishRaises(self) -> None:
        """
        Writing or finishing after finish raises ConsumerFinished.
        """
        consumer = BackpressureConsumer()
        consumer.finish()
        self.assertRaises(ConsumerFinished, consumer.write, b"a")
        self.assertRaises(ConsumerFinished, consumer.finish)

    def test_loseConnectionStopsProducer(self) -> None:
        """
        Losing the connection stops and forgets the producer; registering
        afterwards stops the new producer at once.
        """
        consumer = BackpressureConsumer()
        producer = RecordingPushProducer()
        self.assertTrue(verifyObject(IPushProducer, producer))
        consumer.registerProducer(producer, True)
        consumer.loseConnection()
        self.assertEqual(producer.calls, [("stop",)])
        self.assertIsNone(consumer.producer)
        later = RecordingPushProducer()
        consumer.registerProducer(later, True)
        self.assertEqual(later.calls, [("stop",)])

    def test_objectStream(self) -> None:
        """
        With objects=True, items are recorded in a list and counted one each.
        """
        consumer = BackpressureConsumer(threshold=1, objects=True)
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        consumer.write({"a": 1})
        consumer.write([2])
        self.assertEqual(consumer.received, [{"a": 1}, [2]])
        self.assertEqual(producer.calls, [("pause",)])

    def test_conformsAsConsumer(self) -> None:
        """
        Draining on a clock, it passes the consumer conformance suite.
        """
        checkConsumer(
            lambda clock: BackpressureConsumer(1024, clock=clock, drainRate=512),
            received=lambda consumer: consumer.received,
        )

    def test_writesAfterPause(self) -> None:
        """
        writesAfterPause finds writes between a pause and the next resume.
        """
        consumer = BackpressureConsumer(threshold=0)
        consumer.registerProducer(RecordingPushProducer(), True)
        consumer.write(b"a")
        consumer.write(b"b")
        self.assertEqual(consumer.writesAfterPause(), [3])


class FedPushProducerTests(SynchronousTestCase):
    """
    L{FedPushProducer} connects the producer under test when started and
    passes the suite's calls to it.
    """

    def test_connectsAndForwards(self) -> None:
        """
        startProducing calls connect with the consumer and returns its
        completion; pause, resume and stop reach the producer it returned.
        """
        inner = RecordingPushProducer()
        completion: Deferred[None] = Deferred()
        seen: List[Any] = []

        def connect(consumer: Any) -> Any:
            seen.append(consumer)
            consumer.registerProducer(inner, True)
            return inner, completion

        fed = FedPushProducer(connect)
        self.assertTrue(verifyObject(IPushProducer, fed))
        self.assertIsNone(fed.producer)
        consumer = BackpressureConsumer()
        self.assertIs(fed.startProducing(consumer), completion)
        self.assertEqual(seen, [consumer])
        self.assertIs(fed.producer, inner)
        self.assertIs(consumer.producer, inner)
        fed.pauseProducing()
        fed.resumeProducing()
        fed.stopProducing()
        self.assertEqual(inner.calls, [("pause",), ("resume",), ("stop",)])


class Chunks(BasePushProducer):
    """
    Produce C{count} chunks of 16 KiB.
    """

    def __init__(self, count: int) -> None:
        super().__init__()
        self.left = count

    def produce(self) -> Any:
        if self.left <= 0:
            return None
        self.left -= 1
        return b"%015d\n" % (self.left,) * 1024


class LoopbackTests(TestCase):
    """
    L{loopbackReceive} sends a stream over real loopback TCP and cleans up.
    """

    def test_receivesEverything(self) -> Deferred[bytes]:
        """
        All bytes arrive, in order, with a slow reader, and no port or
        connection is left open.
        """
        expected = b"".join(b"%015d\n" % (i,) * 1024 for i in reversed(range(64)))

        def start(transport: Any) -> Deferred[int]:
            return Chunks(64).startProducing(transport)

        d = loopbackReceive(start, slowReader=2)
        d.addCallback(self.assertEqual, expected)
        return d

    def test_failureOfStartIsPassedOn(self) -> Deferred[None]:
        """
        If the stream fails, the result fails with that error, after cleanup.
        """

        def start(transport: Any) -> Deferred[None]:
            transport.write(b"partial")
            return fail(ValueError("stream broke"))

        d = loopbackReceive(start)
        self.assertFailure(d, ValueError)
        return d.addCallback(lambda e: self.assertEqual(str(e), "stream broke"))


class ConformanceReportTests(SynchronousTestCase):
    """
    A broken contract is reported as a test failure, with enough to find
    the broken call.
    """

    def runAlone(self, case: type, name: str) -> reporter.TestResult:
        """
        Run the test C{name} of the test case class C{case} (defined inside
        a test method, so that no runner finds it) on its own.
        """
        result = reporter.TestResult()
        case(name).run(result)
        return result

    def test_brokenProducerContractIsAFailure(self) -> None:
        """
        A producer mixin's test that finds a broken contract fails with the
        test case's C{failureException} (trial's [FAIL]), not an error.
        """

        class WriteAfterPauseTests(PushProducerConformanceMixin, SynchronousTestCase):
            def makeProducer(self, clock: Clock) -> Any:
                return WriteAfterPauseProducer(clock)

            def start(self, producer: Any, consumer: Any) -> None:
                producer.start(consumer)

        result = self.runAlone(WriteAfterPauseTests, "test_noWriteAfterPause")
        self.assertEqual((len(result.failures), result.errors), (1, []))
        [(_, failure)] = result.failures
        assert isinstance(failure, Failure)
        self.assertTrue(failure.check(FailTest))
        self.assertIn("wrote after a pause", failure.getErrorMessage())

    def test_brokenConsumerContractIsAFailure(self) -> None:
        """
        A consumer mixin's test that finds a broken contract fails with the
        test case's C{failureException}, not an error.
        """

        class NeverPausesTests(ConsumerConformanceMixin, SynchronousTestCase):
            def makeConsumer(self, clock: Clock) -> Any:
                return StringTransport()

        result = self.runAlone(NeverPausesTests, "test_pausesPushProducerWhileBehind")
        self.assertEqual((len(result.failures), result.errors), (1, []))
        [(_, failure)] = result.failures
        assert isinstance(failure, Failure)
        self.assertIn("never paused", failure.getErrorMessage())

    def test_ownAssertionIsAnError(self) -> None:
        """
        An C{AssertionError} raised by the code under test itself is not a
        broken contract found by the suite: it stays an error.
        """

        class OwnAssertTests(PushProducerConformanceMixin, SynchronousTestCase):
            def makeProducer(self, clock: Clock) -> Any:
                return RecordingPushProducer()

            def start(self, producer: Any, consumer: Any) -> None:
                raise AssertionError("the producer's own assert")

        result = self.runAlone(OwnAssertTests, "test_completesOnceAndCleanly")
        self.assertEqual((result.failures, len(result.errors)), ([], 1))
        [(_, error)] = result.errors
        assert isinstance(error, Failure)
        self.assertEqual(error.getErrorMessage(), "the producer's own assert")

    def test_plainCheckRaisesAssertionError(self) -> None:
        """
        From plain pytest, the C{check} functions raise an C{AssertionError}.
        """

        def start(producer: Any, consumer: Any) -> None:
            producer.start(consumer)

        with self.assertRaises(AssertionError) as e:
            checkNoWriteAfterPause(WriteAfterPauseProducer, start)
        self.assertNotIsInstance(e.exception, FailTest)

    def test_writeAfterPausePrintsTheWholeCallLog(self) -> None:
        """
        The message of a write after a pause gives the indexes of the bad
        writes and the whole call log they index into.
        """

        def start(producer: Any, consumer: Any) -> None:
            producer.start(consumer)

        with self.assertRaises(AssertionError) as e:
            checkNoWriteAfterPause(WriteAfterPauseProducer, start)
        match = re.search(
            r"wrote after a pause at calls (\[.*?\]) of (\[.*\])$", str(e.exception)
        )
        assert match is not None, str(e.exception)
        bad, calls = ast.literal_eval(match.group(1)), ast.literal_eval(match.group(2))
        self.assertTrue(bad)
        self.assertEqual(calls[0], ("registerProducer", True))
        self.assertEqual([calls[i][0] for i in bad], ["write"] * len(bad))
        self.assertEqual(calls[bad[0] - 1], ("pause",))
        self.assertEqual(calls[-1], ("unregisterProducer",))
