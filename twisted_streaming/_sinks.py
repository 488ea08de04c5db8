"""
Ready-made sinks: finishable consumers that collect a stream (to bytes or a
list), count it, or call a function per item, each with a L{Deferred} of
the outcome.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._awaitables import awaitNow
from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import BYTES, BufferedConsumer, getReactor
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

__all__ = ["CollectBytes", "CollectList", "Count", "ForEach", "Sink"]

_log = Logger()

#: The most bytes one step of the turn loop deals with (each item counting
#: as at least 1 KiB).
STEP_BYTES = 128 * 1024


@implementer(IConsumer, IFinishableConsumer)
class Sink(BufferedConsumer):
    """
    A finishable consumer that deals with each item written to it, in
    order, on the reactor's turn loop: subclass it and override L{consume}
    (and L{result}), or use L{CollectBytes}, L{CollectList}, L{Count} or
    L{ForEach}.

    C{write()} only buffers.  A registered I{streaming} producer is paused
    while L{highWater} or more (bytes, or items for objects) wait to be
    dealt with, and resumed once fewer than L{lowWater} do; a I{pull}
    producer is asked for more on the turn loop whenever nothing waits.
    L{consume} may return an awaitable (a L{Deferred}, a coroutine): the
    next item waits until it completes, meanwhile the producer is paused
    once the buffer is full.  After C{finish()}, once everything has been
    dealt with, L{whenFinished} fires with L{result}.

    One producer at a time: registering a second before the first has
    unregistered raises L{ProducerStateError
    <twisted_streaming.ProducerStateError>}, as a transport does.

    @cvar highWater: Waiting bytes (or items) at which a streaming producer
        is paused.
    @cvar lowWater: Waiting bytes (or items) below which it is resumed.
    @ivar items: Items dealt with so far.
    @ivar size: Their size: bytes, with items that are not bytes counting
        as 1.
    """

    highWater: int = 64 * 1024
    lowWater: int = 16 * 1024

    items: int = 0
    size: int = 0

    def __init__(
        self,
        *,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        @param reactor: The reactor whose turn loop deals with the items
            (and runs what L{consume} returns to await); the global reactor
            if L{None}, looked up when first needed.
        @param cooperator: Deal with them on this L{Cooperator} instead.
        """
        super().__init__(reactor=reactor, cooperator=cooperator)
        # Waiting for what consume() returned.
        self._waiting = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.items} items at {id(self):#x}>"

    # What subclasses override

    def consume(self, item: Any) -> Optional[Awaitable[Any]]:
        """
        Deal with C{item}.  An exception fails the sink, stops its producer
        and fails L{whenFinished}, naming the item.

        @return: L{None}, or an awaitable to complete before the next item.
        """
        return None

    def result(self) -> Any:
        """
        What L{whenFinished} fires with: by default, L{items}.
        """
        return self.items

    # IConsumer

    def write(self, item: Any) -> None:
        """
        Hold C{item} to be dealt with on the turn loop.

        @raise ConsumerFinished: If L{finish} has been called.
        """
        if self._finished:
            raise ConsumerFinished(f"{self!r} is finished")
        if self._ended:
            return  # It failed; the error has been reported.
        buffer = self._buffer
        buffer.append(item)
        self._turns().wake()
        if buffer.size >= self.highWater:
            buffer.regulate(self._up)

    # IFinishableConsumer

    def finish(self) -> None:
        """
        No more items: deal with what is held, then fire L{whenFinished}.

        @raise ConsumerFinished: If called twice.
        """
        super().finish()

    def whenFinished(self) -> Deferred[Any]:
        """
        @return: A L{Deferred} that fires with L{result} once everything
            has been dealt with after L{finish}, or fails with the error (in
            a L{ContextFailure <twisted_streaming.ContextFailure>}) if
            L{consume} failed.
        """
        return super().whenFinished()

    # Internals

    def _step(self) -> bool:
        """
        One step of the turn loop: deal with what is held, within a step's
        budget, then regulate the producer, pull a pull producer if nothing
        is held, or complete once finished and empty.
        """
        if self._ended or self._waiting:
            return False
        buffer = self._buffer
        task = self._turns()
        room = task.room()
        limit = STEP_BYTES if room > STEP_BYTES else room
        weight = 0
        consume = self.consume
        while buffer.items:
            item = buffer.popleft()
            size = len(item) if isinstance(item, BYTES) else 1
            index, offset = self.items, self.size
            self.items = index + 1
            self.size = offset + size
            weight += size if size > 1024 else 1024
            try:
                awaitable = consume(item)
                if awaitable is not None:
                    ready, waited = awaitNow(awaitable, getReactor(self._reactor))
                    if not ready:
                        self._waiting = True
                        waited.addCallbacks(
                            self._consumed,
                            self._failed,
                            errbackArgs=(item, index, offset),
                        )
                        task.charge(weight)
                        buffer.regulate(self._up)
                        return False
            except BaseException as error:
                self._fail(error, item, index, offset)
                return False
            if weight >= limit:
                break
        task.charge(weight)
        if self._finished and not buffer:
            self._complete(self.result())
            return False
        # A pull producer that wrote nothing is not asked again until it
        # writes of its own accord, as a transport would not ask it again.
        return self._regulate() and bool(buffer)

    def _consumed(self, _: Any) -> None:
        self._waiting = False
        if not self._ended:
            self._turns().wake()

    def _failed(self, failure: Failure, item: Any, index: int, offset: int) -> None:
        self._waiting = False
        error = failure.value
        assert isinstance(error, BaseException)
        self._fail(error, item, index, offset)

    def _fail(self, error: BaseException, item: Any, index: int, offset: int) -> None:
        self._complete(
            failureWithContext(
                error,
                self,
                self.size,
                self.items,
                item=item,
                itemIndex=index,
                itemOffset=offset,
            )
        )


class CollectBytes(Sink):
    """
    Collect a stream of bytes; L{whenFinished} fires with all of it, joined.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._chunks: List[bytes] = []
        self.consume = self._chunks.append  # type: ignore[assignment]

    def result(self) -> bytes:
        return b"".join(self._chunks)


class CollectList(Sink):
    """
    Collect a stream of items; L{whenFinished} fires with the list of them.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._items: List[Any] = []
        self.consume = self._items.append  # type: ignore[assignment]

    def result(self) -> List[Any]:
        return self._items


class Count(Sink):
    """
    Count a stream: L{whenFinished} fires with the number of items; L{size}
    is their size in bytes (items that are not bytes counting as 1).
    """


class ForEach(Sink):
    """
    Call a function with each item, in order; L{whenFinished} fires with the
    number of items.

    The function may return an awaitable (a L{Deferred}, or a coroutine from
    an C{async def} function): the next item waits for it, and while it
    waits the producer is paused once L{highWater} is held.  What it raises,
    or what its awaitable fails with, fails the sink and stops the producer.
    """

    def __init__(
        self, fn: Callable[[Any], Optional[Awaitable[Any]]], **kwargs: Any
    ) -> None:
        """
        @param fn: Called with each item.
        """
        super().__init__(**kwargs)
        self.fn = fn
        self.consume = fn  # type: ignore[method-assign, assignment]

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return f"<{type(self).__name__} {name} {self.items} items at {id(self):#x}>"
