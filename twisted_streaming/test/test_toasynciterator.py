"""
Tests for L{twisted_streaming.toAsyncIterator}, over fakes on a L{Clock}.
(Over real connections: C{test_connection} and C{test_httpbody}; under the
asyncio reactor: C{test_asyncioreactor}.)
"""

from __future__ import annotations

import gc
import io
from typing import Any, AsyncIterator, List, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_streaming import (
    ConsumerFinished,
    FileSender,
    ProducerStopped,
    fromAsyncIterable,
    toAsyncIterator,
)
from twisted_streaming.test.test_fromasynciterable import Chunks, endless
from twisted_streaming.testing import RecordingPushProducer


class Fed:
    """
    A source the test feeds by hand: a recording push producer registered
    with the iterator's consumer; L{end} finishes or fails the stream.
    """

    def __init__(self) -> None:
        self.producer = RecordingPushProducer()
        self.consumer: Any = None
        self.done: Deferred[int] = Deferred()

    def __call__(self, consumer: IConsumer) -> Deferred[int]:
        self.consumer = consumer
        consumer.registerProducer(self.producer, True)
        return self.done

    def write(self, *chunks: Any) -> None:
        for chunk in chunks:
            self.consumer.write(chunk)

    def end(self, error: Optional[BaseException] = None) -> None:
        self.consumer.unregisterProducer()
        if error is None:
            self.consumer.finish()
            self.done.callback(0)
        else:
            self.done.errback(error)


def collect(iterator: AsyncIterator[Any], stopAt: Any = None) -> Deferred[List[Any]]:
    """
    Iterate C{iterator} in a coroutine on Twisted's driver, up to C{stopAt}
    (then break) or its end.
    """

    async def run() -> List[Any]:
        items = []
        async for item in iterator:
            items.append(item)
            if item == stopAt:
                break
        return items

    return Deferred.fromCoroutine(run())


def take(iterator: AsyncIterator[Any]) -> Deferred[Any]:
    """
    The next item, awaited on Twisted's driver.
    """

    async def one() -> Any:
        return await iterator.__anext__()

    return Deferred.fromCoroutine(one())


class ToAsyncIteratorTests(SynchronousTestCase):
    """
    L{toAsyncIterator} on a L{Clock}.
    """

    def test_iteratesEverything(self) -> None:
        """
        C{async for} gets every item of a source, in order, and ends when
        the source finishes.
        """
        clock = Clock()
        chunks = Chunks(40, clock=clock)
        d = collect(toAsyncIterator(fromAsyncIterable(chunks, reactor=clock)))
        for _ in range(100):
            clock.advance(0.001)
        items: List[bytes] = self.successResultOf(d)
        self.assertEqual(b"".join(items), chunks.expected)
        self.assertTrue(chunks.closed)

    def test_highAndLowWater(self) -> None:
        """
        The source is paused once C{highWater} is held and resumed once the
        loop has taken what is held below C{lowWater}.
        """
        fed = Fed()
        iterator = toAsyncIterator(fed, highWater=1000, lowWater=300)
        fed.write(*[b"x" * 100] * 9)
        self.assertEqual(fed.producer.calls, [])
        fed.write(b"x" * 100)
        self.assertEqual(fed.producer.calls, [("pause",)])
        for _ in range(7):
            self.successResultOf(take(iterator))
        self.assertEqual(fed.producer.calls, [("pause",)])
        self.successResultOf(take(iterator))
        self.assertEqual(fed.producer.calls, [("pause",), ("resume",)])
        fed.end()
        self.assertEqual(len(self.successResultOf(collect(iterator))), 2)

    def test_objectsCountAsItems(self) -> None:
        """
        For a stream of objects, the marks count items.
        """
        fed = Fed()
        iterator = toAsyncIterator(fed, highWater=3, lowWater=1)
        fed.write({"a": 1}, {"b": 2})
        self.assertEqual(fed.producer.calls, [])
        fed.write({"c": 3})
        self.assertEqual(fed.producer.calls, [("pause",)])
        self.assertEqual(self.successResultOf(take(iterator)), {"a": 1})
        self.successResultOf(take(iterator))
        self.assertEqual(fed.producer.calls, [("pause",)])
        self.successResultOf(take(iterator))
        self.assertEqual(fed.producer.calls, [("pause",), ("resume",)])
        fed.end()

    def test_waitsForTheNextItem(self) -> None:
        """
        A loop that has taken everything waits for the next write, then the
        end.
        """
        fed = Fed()
        iterator = toAsyncIterator(fed)
        d = collect(iterator)
        self.assertNoResult(d)
        fed.write(b"a")
        self.assertNoResult(d)
        fed.write(b"b")
        fed.end()
        self.assertEqual(self.successResultOf(d), [b"a", b"b"])
        self.assertRaises(ConsumerFinished, fed.consumer.write, b"late")

    def test_raisesTheSourceErrorWithContext(self) -> None:
        """
        The loop gets the items that arrived, then raises the source's error
        with its context as a note.
        """

        async def failing() -> AsyncIterator[bytes]:
            yield b"ab"
            raise ZeroDivisionError("bad source")

        clock = Clock()
        d = collect(toAsyncIterator(fromAsyncIterable(failing(), reactor=clock)))
        clock.advance(0)
        failure = self.failureResultOf(d, ZeroDivisionError)
        notes = getattr(failure.value, "__notes__", [])
        self.assertTrue(
            any("AsyncIterableProducer" in n and "2 bytes" in n for n in notes),
            notes,
        )

    def test_breakStopsTheSource(self) -> None:
        """
        Leaving the loop with C{break} stops the source: an async
        generator's C{finally} runs.
        """
        clock = Clock()
        closed: List[str] = []
        d = collect(
            toAsyncIterator(fromAsyncIterable(endless(closed), reactor=clock)),
            stopAt=b"e" * 1024,
        )
        clock.advance(0)
        self.assertEqual(self.successResultOf(d), [b"e" * 1024])
        gc.collect()  # Only for interpreters that do not count references.
        self.assertEqual(closed, ["GeneratorExit", "finally"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_exceptionStopsTheSource(self) -> None:
        """
        An exception out of the loop stops the source.
        """
        fed = Fed()

        async def run() -> None:
            async for _ in toAsyncIterator(fed):
                raise ValueError("the loop failed")

        d = Deferred.fromCoroutine(run())
        fed.write(b"a")
        self.failureResultOf(d, ValueError)
        gc.collect()
        self.assertEqual(fed.producer.calls, [("stop",)])
        self.assertTrue(fed.done.called)  # Cancelled.

    def test_acloseStopsTheSource(self) -> None:
        """
        C{aclose()} stops the source, and the loop ends.
        """
        fed = Fed()
        iterator: Any = toAsyncIterator(fed)
        fed.write(b"a")
        self.successResultOf(Deferred.fromCoroutine(iterator.aclose()))
        self.assertEqual(fed.producer.calls, [("stop",)])
        self.assertTrue(fed.done.called)  # Cancelled.

    def test_asyncWithCloses(self) -> None:
        """
        Used as an async context manager, the iterator stops the source on
        the way out.
        """
        fed = Fed()

        async def run() -> bytes:
            async with toAsyncIterator(fed) as chunks:  # type: ignore[attr-defined]
                async for chunk in chunks:
                    return bytes(chunk)
            return b""

        d = Deferred.fromCoroutine(run())
        fed.write(b"first")
        self.assertEqual(self.successResultOf(d), b"first")
        self.assertEqual(fed.producer.calls, [("stop",)])

    def test_cancellingTheWaitStopsTheSource(self) -> None:
        """
        Cancelling the coroutine that waits for the next item stops the
        source.
        """
        clock = Clock()
        closed: List[str] = []
        d = collect(
            toAsyncIterator(
                fromAsyncIterable(endless(closed, Deferred()), reactor=clock)
            )
        )
        clock.advance(0)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(closed, ["CancelledError", "finally"])

    def test_stoppedByTheConsumerSide(self) -> None:
        """
        A source stopped by someone else ends the loop with
        L{ProducerStopped}.
        """
        clock = Clock()
        producer = fromAsyncIterable(endless([], Deferred()), reactor=clock)
        d = collect(toAsyncIterator(producer))
        clock.advance(0)
        producer.stopProducing()
        self.failureResultOf(d, ProducerStopped)

    def test_pullSource(self) -> None:
        """
        A pull producer (a L{FileSender}) is asked for a chunk only when the
        loop wants one and none is held.
        """
        clock = Clock()
        data = bytes(range(256)) * 1000
        sender = FileSender(reactor=clock)
        sender.CHUNK_SIZE = 10000
        iterator = toAsyncIterator(
            lambda consumer: sender.beginFileTransfer(io.BytesIO(data), consumer)
        )
        clock.advance(0)
        self.assertLessEqual(sender.bytesSent, 10000)
        first = self.successResultOf(take(iterator))
        self.assertEqual(first, data[:10000])
        self.assertLessEqual(sender.bytesSent, 20000)
        rest = self.successResultOf(collect(iterator))
        self.assertEqual(first + b"".join(rest), data)
