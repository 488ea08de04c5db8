"""
Tests for L{twisted_streaming.PullToPush}.
"""

from __future__ import annotations

import io

from twisted.internet.interfaces import IConsumer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_streaming import FileSender, IPushProducer, ProducerStopped, PullToPush
from twisted_streaming._flow import turnLoop


def _turn(clock: Clock) -> None:
    """
    Run the calls due now, once: one reactor turn.  (C{Clock.advance(0)}
    would also run the calls they schedule, forever for an endless loop.)
    """
    due = [call for call in clock.calls if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


class _CountingPull:
    """A pull producer that writes one byte per resumeProducing, forever."""

    def __init__(self) -> None:
        self.resumes = 0
        self.stopped = False
        self.consumer: IConsumer

    def resumeProducing(self) -> None:
        self.resumes += 1
        self.consumer.write(b"x")

    def stopProducing(self) -> None:
        self.stopped = True


class PullToPushTests(SynchronousTestCase):
    """
    L{PullToPush} with a L{Clock} and a L{StringTransport}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = StringTransport()
        self.adapter = PullToPush(self.transport, reactor=self.clock)

    def _startFile(self, data: bytes, chunk: int = 4) -> FileSender:
        sender = FileSender()
        sender.CHUNK_SIZE = chunk
        self.result = sender.beginFileTransfer(io.BytesIO(data), self.adapter)
        return sender

    def test_interface(self) -> None:
        """PullToPush provides IPushProducer and IConsumer."""
        self.assertTrue(verifyObject(IPushProducer, self.adapter))
        self.assertTrue(verifyObject(IConsumer, self.adapter))

    def test_registersStreaming(self) -> None:
        """A pull producer registering makes the adapter a streaming producer."""
        self._startFile(b"abc")
        self.assertIs(self.transport.producer, self.adapter)
        self.assertTrue(self.transport.streaming)
        self.assertEqual(self.transport.value(), b"")

    def test_sendsWholeFileAndUnregisters(self) -> None:
        """The loop drives a FileSender to the end, which unregisters."""
        self._startFile(b"abcdefghij")
        _turn(self.clock)
        self.assertEqual(self.transport.value(), b"abcdefghij")
        self.assertEqual(self.successResultOf(self.result), b"j")
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_yieldsAfterByteBudget(self) -> None:
        """The loop writes at most its reactor's turn budget per turn."""
        turnLoop(self.clock).bytesPerTurn = 8
        self._startFile(b"x" * 20)
        _turn(self.clock)
        self.assertEqual(len(self.transport.value()), 8)
        _turn(self.clock)
        self.assertEqual(len(self.transport.value()), 16)

    def test_pausesAreFlags(self) -> None:
        """Two pauses are undone by one resume."""
        self._startFile(b"x" * 12)
        self.adapter.pauseProducing()
        self.adapter.pauseProducing()
        _turn(self.clock)
        self.assertEqual(self.transport.value(), b"")
        self.adapter.resumeProducing()
        _turn(self.clock)
        self.assertEqual(self.transport.value(), b"x" * 12)
        self.successResultOf(self.result)

    def test_pauseFromInsideWriteStopsLoop(self) -> None:
        """A pause during write() stops the loop after that write."""
        pull = _CountingPull()
        pull.consumer = self.adapter
        self.adapter.registerProducer(pull, False)
        original = self.transport.write

        def write(data: bytes) -> None:
            original(data)
            self.adapter.pauseProducing()

        self.transport.write = write  # type: ignore[method-assign]
        _turn(self.clock)
        self.assertEqual(pull.resumes, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopStopsPullAndUnregisters(self) -> None:
        """stopProducing stops the pull producer and unregisters."""
        self._startFile(b"x" * 100)
        self.adapter.stopProducing()
        self.failureResultOf(self.result, ProducerStopped)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopOfEndlessProducer(self) -> None:
        """An endless pull producer is stopped and its loop cancelled."""
        pull = _CountingPull()
        pull.consumer = self.adapter
        turnLoop(self.clock).bytesPerTurn = 5
        self.adapter.registerProducer(pull, False)
        _turn(self.clock)
        self.assertEqual(pull.resumes, 5)
        self.adapter.stopProducing()
        self.assertTrue(pull.stopped)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_streamingProducerPassedThrough(self) -> None:
        """A streaming producer is registered with the consumer unchanged."""
        pull = _CountingPull()
        self.adapter.registerProducer(pull, True)
        self.assertIs(self.transport.producer, pull)
        self.adapter.unregisterProducer()
        self.assertIsNone(self.transport.producer)


class _Silent:
    """
    A pull producer that writes only when told to, and otherwise nothing.
    """

    def __init__(self, consumer: IConsumer) -> None:
        self.consumer = consumer
        self.resumes = 0
        self.stopped = False
        self.say: list[bytes] = []

    def resumeProducing(self) -> None:
        self.resumes += 1
        if self.say:
            self.consumer.write(self.say.pop(0))

    def stopProducing(self) -> None:
        self.stopped = True


class _Raising(_Silent):
    def resumeProducing(self) -> None:
        self.resumes += 1
        raise ValueError("the pull producer broke")


class PullContractTests(SynchronousTestCase):
    """
    L{PullToPush} calls a pull producer only when the pull contract says a
    transport would: each test failed before the flow core.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = StringTransport()
        self.adapter = PullToPush(self.transport, reactor=self.clock)

    def test_producerThatWritesNothingIsNotCalledAgain(self) -> None:
        """
        A pull producer whose C{resumeProducing} wrote nothing is not called
        again (before, it was called on every turn, for ever), until it
        writes of its own accord or the consumer resumes the adapter after a
        pause.
        """
        pull = _Silent(self.adapter)
        self.adapter.registerProducer(pull, False)
        for _ in range(3):
            _turn(self.clock)
        self.assertEqual(pull.resumes, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        pull.say = [b"a", b"b"]
        self.adapter.pauseProducing()
        self.adapter.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(pull.resumes, 4)
        self.assertEqual(self.transport.value(), b"ab")
        self.adapter.write(b"c")
        self.clock.advance(0)
        self.assertEqual(pull.resumes, 5)
        self.assertIs(self.transport.producer, self.adapter)

    def test_raisingProducerIsLoggedAndLetGo(self) -> None:
        """
        An exception from the pull producer is logged with context instead
        of escaping into the reactor; the producer is not called again, and
        the adapter unregisters.
        """
        pull = _Raising(self.adapter)
        self.adapter.registerProducer(pull, False)
        _turn(self.clock)
        errors = self.flushLoggedErrors(ValueError)
        self.assertEqual(len(errors), 1)
        self.assertIn("_Raising", errors[0].getErrorMessage())
        self.assertIsNone(self.transport.producer)
        self.assertIsNone(self.adapter.producer)
        self.clock.advance(1)
        self.assertEqual((pull.resumes, pull.stopped), (1, False))
        self.assertEqual(self.clock.getDelayedCalls(), [])
