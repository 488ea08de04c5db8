"""
L{toAsyncIterator}: iterate any source with C{async for}, with backpressure.
"""

from __future__ import annotations

from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Optional,
    Type,
)

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._awaitables import Waiter
from twisted_streaming._flow import Upstream, WaterMarkBuffer, getReactor
from twisted_streaming._pipeline import Source, pipeline
from twisted_streaming._transportinternals import asyncioLoop
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

__all__ = ["StreamIterator", "toAsyncIterator"]

_log = Logger()

# The stream ended well.
_FINISHED = object()


@implementer(IConsumer, IFinishableConsumer)
class _Feed:
    """
    The consumer a L{StreamIterator} reads from: it holds what the source
    writes until the iterator takes it, pausing a streaming source while
    full and pulling a pull source when the iterator wants more.

    It does not refer to its iterator, so that an iterator left behind
    (C{break}) is collected, which stops the source.
    """

    def __init__(self, highWater: int, lowWater: int, reactor: Any) -> None:
        self.highWater = highWater
        self.lowWater = lowWater
        self.reactor = reactor
        self.loop = asyncioLoop(reactor)
        self._up = Upstream(self)
        self.buffer: WaterMarkBuffer[Any] = WaterMarkBuffer(self)
        #: Hands the next item (or a Failure) to the loop waiting for it.
        self.wake: Optional[Callable[[Any], object]] = None
        #: L{None} while the stream goes on; then _FINISHED or a Failure.
        self.end: Any = None
        self._finished = False
        self.done: Optional[Deferred[int]] = None

    def __repr__(self) -> str:
        return f"<async iterator at {id(self):#x}>"

    @property
    def producer(self) -> Optional[Any]:
        return self._up.producer

    # IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._up.register(producer, streaming)
        if self.end is not None:
            self._up.stop()
        elif streaming:
            self.buffer.regulate(self._up)
        elif self.wake is not None:
            self.pull()

    def unregisterProducer(self) -> None:
        self._up.unregister()

    def write(self, item: Any) -> None:
        if self._finished:
            raise ConsumerFinished(f"{self!r} is finished")
        if self.end is not None:
            return
        wake = self.wake
        if wake is not None:
            # The loop is waiting, so nothing is held: straight to it.
            self.wake = None
            wake(item)
            return
        buffer = self.buffer
        buffer.append(item)
        if buffer.size >= self.highWater:
            buffer.regulate(self._up)

    def finish(self) -> None:
        if self._finished:
            raise ConsumerFinished(f"{self!r} is already finished")
        self._finished = True

    # The iterator's side

    def ended(self, outcome: Any) -> None:
        """
        The source finished (C{outcome} is the bytes delivered) or failed.
        """
        if self.end is None:
            self.end = outcome if isinstance(outcome, Failure) else _FINISHED
        wake, self.wake = self.wake, None
        if wake is not None:
            wake(self.endOfStream())

    def endOfStream(self) -> Failure:
        """
        What the loop raises at the end: the source's error, once, then
        L{StopAsyncIteration}.
        """
        end = self.end
        if end is _FINISHED:
            return Failure(StopAsyncIteration())
        self.end = _FINISHED
        assert isinstance(end, Failure)
        return end

    def waitFor(self) -> Any:
        """
        An awaitable of the next item, which L{write} (or L{ended}) hands
        over: a L{Deferred}, or under an asyncio reactor a L{Waiter}, which
        an asyncio task can await too.
        """
        if self.loop is None:
            d: Deferred[Any] = Deferred(self.cancelWait)
            self.wake = d.callback
            return d
        waiter = Waiter(self.reactor, self.cancelled)
        self.wake = waiter.fire
        return waiter

    def take(self) -> Any:
        buffer = self.buffer
        item = buffer.popleft()
        up = self._up
        if up.producer is not None and buffer.wantsMore:
            if up.streaming:
                up.resume()
            elif not buffer:
                self.pull()
        return item

    def pull(self) -> None:
        failure = self._up.pull()
        if failure is not None:
            self.stop(failure)

    def cancelWait(self, waiting: Deferred[Any]) -> None:
        self.cancelled()

    def cancelled(self) -> None:
        # The coroutine waiting for the next item was cancelled.
        self.wake = None
        self.stop(Failure(CancelledError()))

    def stop(self, reason: Failure) -> None:
        """
        Stop the source, or the whole pipeline, and end with C{reason}.
        """
        if self.end is not None:
            return
        self.end = reason
        self.buffer.clear()
        done = self.done
        if done is not None and not done.called:
            done.cancel()
        # A source that is not a producer of this package may not stop its
        # producer when its Deferred is cancelled.
        self._up.stop()
        self.ended(reason)


class _Ready:
    """
    An awaitable that is done already, with C{value}: cheaper than a
    coroutine for an item that is held.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return self  # type: ignore[return-value]

    def __next__(self) -> Any:
        raise StopIteration(self.value)

    def send(self, value: Any) -> Any:
        raise StopIteration(self.value)


class StreamIterator:
    """
    An async iterator over what a source produces: see L{toAsyncIterator}.

    Also an async context manager that closes it on the way out.
    """

    def __init__(self, source: Source, highWater: int, lowWater: int, reactor: Any):
        feed = self._feed = _Feed(highWater, lowWater, reactor)
        done = feed.done = pipeline(source, sink=feed)
        done.addBoth(self._ended, feed)

    @staticmethod
    def _ended(outcome: Any, feed: _Feed) -> None:
        # Once stopped from here, the iterator says why, not the source.
        feed.ended(outcome)

    def __aiter__(self) -> StreamIterator:
        return self

    def __anext__(self) -> Awaitable[Any]:
        feed = self._feed
        if not feed.buffer.items and feed.end is None:
            if feed.producer is not None and not feed._up.streaming:
                feed.pull()
        if feed.buffer.items:
            return _Ready(feed.take())
        if feed.end is not None:
            feed.endOfStream().raiseException()
        return feed.waitFor()

    async def aclose(self) -> None:
        """
        Stop iterating: stop the source, if it is still producing, and drop
        what is held.
        """
        self._feed.stop(Failure(CancelledError("the async iterator was closed")))

    async def __aenter__(self) -> StreamIterator:
        return self

    async def __aexit__(
        self,
        excType: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Left behind (a break, an exception out of the loop): stop the
        # source rather than let it fill the buffer and wait for ever.
        try:
            self._feed.stop(Failure(CancelledError("the async iterator was dropped")))
        except BaseException:
            _log.failure("Stopping the source of a dropped async iterator failed")


def toAsyncIterator(
    source: Source,
    *,
    highWater: int = 256 * 1024,
    lowWater: int = 64 * 1024,
    reactor: Optional[IReactorTime] = None,
) -> AsyncIterator[Any]:
    """
    Iterate what C{source} produces, with C{async for}::

        async for chunk in toAsyncIterator(source):
            ...

    C{source} is anything L{pipeline <twisted_streaming.pipeline>} takes
    as a source: a producer of this package (a
    L{BasePushProducer <twisted_streaming.BasePushProducer>},
    L{fromAsyncIterable <twisted_streaming.fromAsyncIterable>}, a
    connection's L{ConnectionSource <twisted_streaming.ConnectionSource>},
    a response body from L{responseBody <twisted_streaming.responseBody>})
    or a callable that starts any producer on a consumer and returns its
    L{Deferred}, such as C{lambda c: FileSender().beginFileTransfer(f, c)}.
    It is started at once.

    At most C{highWater} bytes (items, for a stream of objects) are held
    for the loop: a streaming source is paused when they are reached (so at
    most one more write arrives) and resumed once the loop has taken them
    below C{lowWater}; a pull source is asked for more only when the loop
    wants an item and none is held.

    The loop ends when the source finishes, and raises the source's error
    (with its context, as a note) if it fails, after the items that arrived
    first.  Leaving the loop early (C{break}, an exception) stops the
    source, once nothing refers to the iterator any more; to stop it at a
    known time, C{await it.aclose()} or use the iterator as an async context
    manager (C{async with toAsyncIterator(source) as chunks:}).  Cancelling
    the coroutine that is waiting for the next item stops the source too.

    The loop may run inside L{Deferred.fromCoroutine}, under any reactor,
    and in an L{asyncio.Task} under the asyncio reactor.

    @param reactor: The reactor the loop runs under (it chooses how the
        loop is woken); the global reactor if L{None}.
    """
    return StreamIterator(source, highWater, lowWater, getReactor(reactor))
