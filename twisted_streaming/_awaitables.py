"""
Awaitables between Twisted and asyncio: running one on the right driver, and
one that either driver can wait on.

A coroutine that awaits L{Deferred}s must run on Twisted's driver
(L{Deferred.fromCoroutine}); one that awaits asyncio futures must run in an
L{asyncio.Task}, and only on a reactor that is an asyncio event loop
(C{AsyncioSelectorReactor}).  Under that reactor the package runs them in a
task and lets them await L{Deferred}s too (L{awaitNow}), and
what the package itself hands to a coroutine (L{Waiter}) can be awaited
from either driver.
"""

from __future__ import annotations

from typing import (
    Any,
    Awaitable,
    Callable,
    Generator,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_streaming._transportinternals import asyncioLoop

__all__ = ["Waiter", "awaitNow", "onTwistedDriver"]

_T = TypeVar("_T")


def _futureOf(d: Deferred[Any], loop: Any) -> Any:
    """
    A future of C{loop} done when C{d} fires, leaving C{d}'s result to
    C{d}'s awaiter (unlike L{Deferred.asFuture}, which takes it); cancelling
    the future cancels C{d}.
    """
    future = loop.create_future()

    def fired(result: Any) -> Any:
        if not future.done():
            future.set_result(None)
        return result

    def cancelled(future: Any) -> None:
        if future.cancelled():
            d.cancel()

    d.addBoth(fired)
    future.add_done_callback(cancelled)
    return future


_UNSTARTED = object()


def _drive(
    inner: Generator[Any, Any, _T], loop: Any, yielded: Any = _UNSTARTED
) -> Generator[Any, Any, _T]:
    """
    Run C{inner} (or go on running it, if it has just yielded C{yielded}) on
    the driver running this generator: Twisted's (C{loop} is L{None}), which
    waits on the L{Deferred}s it yields; or an L{asyncio.Task} of C{loop},
    to which each L{Deferred} is handed as a future of C{loop} and asyncio
    futures unchanged, so that everything asyncio offers a task
    (C{current_task}, timeouts, cancellation) works.
    """
    if yielded is _UNSTARTED:
        try:
            yielded = inner.send(None)
        except StopIteration as stop:
            return stop.value
    while True:
        error: Optional[BaseException] = None
        send: Any = None
        if loop is not None and isinstance(yielded, Deferred):
            try:
                yield from _futureOf(yielded, loop)
            except BaseException as e:
                # The task was cancelled, which cancelled the Deferred: the
                # Deferred's own result (its CancelledError, handled by
                # being raised) is what the coroutine sees, if it has one.
                if not yielded.called:
                    error = e
        else:
            try:
                send = yield yielded
            except BaseException as e:
                error = e
        try:
            yielded = inner.throw(error) if error is not None else inner.send(send)
        except StopIteration as stop:
            return stop.value


class _Awaitable:
    __slots__ = ("_generator",)

    def __init__(self, generator: Generator[Any, Any, Any]) -> None:
        self._generator = generator

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._generator


def awaitNow(awaitable: Awaitable[_T], reactor: Any) -> Tuple[bool, Any]:
    """
    Await C{awaitable} on the driver that suits C{reactor}.

    Under an asyncio reactor it runs in an L{asyncio.Task} of the reactor's
    loop, and may await asyncio futures and L{Deferred}s alike.  Under any
    other reactor it starts now, and what does not complete at once goes on
    on Twisted's driver, awaiting L{Deferred}s.  Cancelling the L{Deferred} cancels what the awaitable is
    waiting on.

    @return: C{(True, result)} if it completed at once, else C{(False, d)},
        a L{Deferred} of its result.
    @raise Exception: What C{awaitable} raised, if it did at once.
    """
    inner = awaitable.__await__()
    loop = asyncioLoop(reactor)
    if loop is not None:
        # In a task from the start: a task cancelled before its first step
        # never runs, and would leave an awaitable started here running (an
        # async generator that can then never be closed).
        import asyncio

        task = asyncio.ensure_future(_Awaitable(_drive(inner, loop)), loop=loop)
        return False, Deferred.fromFuture(task)
    try:
        yielded = inner.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, onTwistedDriver(inner, yielded)


def onTwistedDriver(inner: Generator[Any, Any, _T], yielded: Any) -> Deferred[_T]:
    """
    Go on running C{inner}, an awaitable's iterator that has just yielded
    C{yielded}, on Twisted's driver.
    """
    return Deferred.fromCoroutine(_drive(inner, None, yielded))


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)


class Waiter:
    """
    One event a coroutine waits for, awaitable from Twisted's driver
    (L{Deferred.fromCoroutine}, C{inlineCallbacks}) and, under an asyncio
    reactor, from an L{asyncio.Task} too, without knowing which it is.

    L{fire} ends the wait with a value or a L{Failure}; firing twice does
    nothing.  C{onCancel} is called if the driver cancels the wait (the
    L{Deferred} it waits on is cancelled, or the task is).
    """

    __slots__ = ("_loop", "_onCancel", "_result", "_wake", "fired")

    def __init__(
        self, reactor: Any, onCancel: Optional[Callable[[], None]] = None
    ) -> None:
        self._loop = asyncioLoop(reactor)
        self._onCancel = onCancel
        self._wake: Optional[Callable[[], None]] = None
        self._result: Any = None
        self.fired = False

    def fire(self, result: Union[Any, Failure]) -> None:
        if self.fired:
            return
        self.fired = True
        self._result = result
        wake, self._wake = self._wake, None
        if wake is not None:
            wake()

    def _cancelled(self, *args: Any) -> None:
        if not self.fired and self._onCancel is not None:
            self._onCancel()

    def __await__(self) -> Generator[Any, Any, Any]:
        if not self.fired:
            loop = self._loop
            waited = False
            if loop is not None:
                # Offered to the driver first: an asyncio task waits on it;
                # Twisted's driver sends back what it does not know, and then
                # gets a Deferred.
                future = loop.create_future()
                future._asyncio_future_blocking = True
                self._wake = lambda: _settle(future)
                try:
                    sent = yield future
                except BaseException:
                    self._wake = None
                    self._cancelled()
                    raise
                waited = sent is not future
            if not waited and not self.fired:
                d: Deferred[None] = Deferred(self._cancelled)

                def wake() -> None:
                    if not d.called:
                        d.callback(None)

                self._wake = wake
                yield d
        result = self._result
        if isinstance(result, Failure):
            result.raiseException()
        return result
