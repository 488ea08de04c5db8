"""
L{fromAsyncIterable}: an async iterable (an C{async def} generator, say) as
a push producer.
"""

from __future__ import annotations

from typing import Any, AsyncIterable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._awaitables import awaitNow, onTwistedDriver
from twisted_streaming._flow import BYTES, RUNNING, Flow, getReactor
from twisted_streaming._transportinternals import asyncioLoop

__all__ = ["AsyncIterableProducer", "fromAsyncIterable"]

_log = Logger()

#: The most bytes one step of the turn loop writes (each item counting as at
#: least 1 KiB) before the loop moves on to the next flow.
STEP_BYTES = 128 * 1024

# Nothing held back for the consumer.
_NOTHING = object()


@implementer(IPushProducer)
class AsyncIterableProducer(Flow):
    """
    A push producer of what an async iterable yields: see
    L{fromAsyncIterable}.

    @ivar iterable: The async iterable it produces from.
    """

    def __init__(
        self,
        iterable: AsyncIterable[Any],
        *,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        super().__init__(reactor=reactor, cooperator=cooperator)
        self.iterable = iterable
        self._iterator: Any = None
        # The next item, being awaited on the coroutine's driver.
        self._pending: Optional[Deferred[Any]] = None
        # An item that arrived while the consumer was paused.
        self._held: Any = _NOTHING

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} of {self.iterable!r} {self._state}"
            f"{' paused' if self.paused and self.producing else ''}>"
        )

    def startProducing(self, consumer: IConsumer) -> Deferred[int]:
        """
        Register with C{consumer} as a streaming producer and start iterating
        on a later reactor turn.

        @return: A L{Deferred} that fires with the number of bytes written
            (items that are not bytes count as 1) once the iterable is
            exhausted, after the producer has unregistered and finished
            C{consumer} if it is finishable.  It fails with
            L{ProducerStopped <twisted_streaming.ProducerStopped>} if the
            consumer stopped it, with L{CancelledError
            <twisted.internet.defer.CancelledError>} if it is cancelled (in
            both cases after the iterator has been closed), with what the
            iterator raised, or with what C{consumer.write} raised, in a
            L{ContextFailure <twisted_streaming.ContextFailure>}.

        @raise ProducerStateError: If it has already been started.
        """
        deferred: Deferred[int] = self._start(consumer, True)
        if self.producing:
            self._turns().wake()
        return deferred

    # Producing

    def _aiter(self) -> Any:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = self.iterable.__aiter__()
        return iterator

    def _await(self, pending: Deferred[Any]) -> None:
        self._pending = pending
        pending.addCallbacks(self._arrived, self._raised)

    def _write(self, item: Any) -> bool:
        """
        Write C{item} to the consumer.

        @return: Whether to go on: still running, and not paused.
        """
        index = self.chunksWritten
        offset = self.bytesWritten
        self.bytesWritten = offset + (len(item) if isinstance(item, BYTES) else 1)
        self.chunksWritten = index + 1
        try:
            self.consumer.write(item)
        except BaseException as error:
            self._failWrite(error, item, index, offset)
            return False
        return self._state is RUNNING and not self._pause.paused

    def _failWrite(
        self, error: BaseException, item: Any, index: int, offset: int
    ) -> None:
        self._fail(
            error,
            item=item,
            itemIndex=index,
            itemOffset=offset,
            itemOf=f"its output (written to {self.consumer!r})",
        )

    def _flowStep(self) -> bool:
        if (
            self._state is not RUNNING
            or self._pause.paused
            or self._pending is not None
        ):
            return False
        held, self._held = self._held, _NOTHING
        if held is not _NOTHING and not self._write(held):
            return False
        task = self._turns()
        reactor = getReactor(self._reactor)
        if asyncioLoop(reactor) is not None:
            # Every item in an asyncio task.
            try:
                self._await(awaitNow(self._aiter().__anext__(), reactor)[1])
            except BaseException as error:
                self._fail(error)
            return False
        try:
            anext = self._aiter().__anext__
            room = task.room()
            limit = STEP_BYTES if room > STEP_BYTES else room
            weight = written = 0
            consumer = self.consumer
            pause = self._pause
            while True:
                # awaitNow, inline: the next item at once, if it is ready.
                awaiting = anext().__await__()
                try:
                    yielded = awaiting.send(None)
                except StopIteration as stop:
                    item = stop.value
                else:
                    task.charge(written)
                    self._await(onTwistedDriver(awaiting, yielded))
                    return False
                if isinstance(item, BYTES):
                    size = len(item)
                    if not size:
                        continue
                    weight += size if size > 1024 else 1024
                else:
                    size = 1
                    weight += 1024
                index = self.chunksWritten
                self.bytesWritten += size
                self.chunksWritten = index + 1
                written += size
                try:
                    consumer.write(item)
                except BaseException as error:
                    task.charge(written)
                    self._failWrite(error, item, index, self.bytesWritten - size)
                    return False
                if pause.paused or self._state is not RUNNING:
                    task.charge(written)
                    return False
                if weight >= limit:
                    task.charge(written)
                    return True
        except StopAsyncIteration:
            self._finish(self.bytesWritten)
        except BaseException as error:
            self._fail(error)
        return False

    def _arrived(self, item: Any) -> None:
        self._pending = None
        if self._state is not RUNNING:
            return
        if isinstance(item, BYTES) and not item:
            pass
        elif self._pause.paused:
            self._held = item
            return
        elif not self._write(item):
            return
        self._turns().wake()

    def _raised(self, failure: Failure) -> None:
        self._pending = None
        if self._state is not RUNNING:
            return
        if failure.check(StopAsyncIteration):
            self._finish(self.bytesWritten)
            return
        error = failure.value
        assert isinstance(error, BaseException)
        self._fail(error)

    # The flow core's hooks

    def _flowPauseChanged(self, paused: bool) -> None:
        task = self._task
        if task is None or self._state is not RUNNING:
            return
        if paused:
            task.sleep()
        elif not self._pending:
            task.wake(now=True)

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        self._held = _NOTHING
        iterator, self._iterator = self._iterator, None
        pending, self._pending = self._pending, None
        if reason is None or iterator is None:
            return
        # Close the iterator, so that a generator's finally runs: after the
        # next item it is waiting for, which is cancelled first (a
        # generator cannot be closed while it runs).
        if pending is None:
            self._close(iterator)
        else:
            pending.addBoth(lambda _: self._close(iterator))
            pending.cancel()

    def _close(self, iterator: Any) -> None:
        aclose = getattr(iterator, "aclose", None)
        if aclose is None:
            return
        try:
            ready, closing = awaitNow(aclose(), getReactor(self._reactor))
        except BaseException:
            _log.failure("Closing {iterator!r} failed", iterator=iterator)
            return
        if not ready:
            closing.addErrback(
                lambda f: _log.failure(
                    "Closing {iterator!r} failed", f, iterator=iterator
                )
            )


def fromAsyncIterable(
    iterable: AsyncIterable[Any],
    *,
    reactor: Optional[IReactorTime] = None,
    cooperator: Optional[Cooperator] = None,
) -> AsyncIterableProducer:
    """
    A push producer of what C{iterable} yields: bytes, or any objects for a
    consumer of objects (a L{Stage <twisted_streaming.Stage>}, say).

    Start it with C{startProducing(consumer)}, or give it to
    L{pipeline <twisted_streaming.pipeline>} as its source, as any
    L{BasePushProducer <twisted_streaming.BasePushProducer>}.  It asks for
    the next item (C{__anext__}) only while the consumer has not paused it,
    on the reactor's turn loop, so what it has produced and not delivered is
    at most what the consumer buffers plus one item; an item that arrives
    after the consumer paused it is held until it resumes.

    The iterator's coroutine runs on Twisted's driver, awaiting
    Deferreds, under any reactor; under the asyncio reactor
    (C{AsyncioSelectorReactor}) it runs in an L{asyncio.Task} instead and
    may await asyncio futures and Deferreds alike.

    When it is stopped (the consumer went away), cancelled or fails, the
    item being awaited is cancelled and the iterator closed (C{aclose()}),
    so an async generator's C{finally} runs.

    @param iterable: An async iterable, such as an async generator.
    @param reactor: The reactor whose turn loop it runs on, and whose kind
        chooses the driver; the global reactor if L{None}.
    @param cooperator: Run on this L{Cooperator} instead of the reactor's
        turn loop.
    """
    return AsyncIterableProducer(iterable, reactor=reactor, cooperator=cooperator)
