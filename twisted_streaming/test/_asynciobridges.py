"""
Both async bridges under the asyncio reactor, run in a process of its own
by C{test_asyncioreactor} (a reactor is installed once per process):

    python -m twisted_streaming.test._asynciobridges

Prints C{ok NAME} for each check that passed, and exits with 1 at the first
that fails.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, AsyncIterator, Awaitable, Callable, List, Tuple

from twisted.internet import asyncioreactor


async def chunks(count: int, closed: List[str], reactor: Any) -> AsyncIterator[bytes]:
    """
    Yield C{count} chunks of 32 KiB, awaiting an asyncio future and a
    Deferred for each, from inside an asyncio task.
    """
    from twisted.internet.task import deferLater

    try:
        for i in range(count):
            await asyncio.sleep(0)
            await deferLater(reactor, 0, lambda: None)
            assert asyncio.current_task() is not None, "not in an asyncio task"
            yield bytes([i % 256]) * 32768
    finally:
        closed.append("finally")


def expected(count: int) -> bytes:
    return b"".join(bytes([i % 256]) * 32768 for i in range(count))


async def checks(reactor: Any) -> None:
    from twisted.internet.defer import CancelledError, Deferred
    from twisted.internet.task import deferLater

    from twisted_streaming import (
        CollectBytes,
        ContextFailure,
        fromAsyncIterable,
        pipeline,
        toAsyncIterator,
    )
    from twisted_streaming.testing import loopbackReceive

    async def turn() -> None:
        # A turn of the reactor, for this coroutine on Twisted's driver
        # (where asyncio.sleep(0) returns at once).
        await deferLater(reactor, 0, lambda: None)

    # Into the asyncio loop, which starts running after startup.
    await turn()

    def inTask(coroutine: Awaitable[Any]) -> Deferred[Any]:
        return Deferred.fromFuture(asyncio.ensure_future(coroutine))

    # fromAsyncIterable: an asyncio generator to a real TCP peer.
    closed: List[str] = []
    received = await loopbackReceive(
        fromAsyncIterable(chunks(100, closed, reactor)).startProducing, slowReader=2
    )
    assert received == expected(100), "fromAsyncIterable over TCP"
    assert closed == ["finally"], closed
    print("ok fromAsyncIterable over TCP")

    # toAsyncIterator, looped over in an asyncio task and on Twisted's driver.
    async def loop_(count: int, inTask: bool, stopAt: int = -1) -> bytes:
        got = []
        async for chunk in toAsyncIterator(
            fromAsyncIterable(chunks(count, closedHere, reactor))
        ):
            got.append(chunk)
            if inTask:
                await asyncio.sleep(0)
            else:
                await turn()
            if len(got) == stopAt:
                break
        return b"".join(got)

    runners: List[Tuple[str, Callable[[Any], Deferred[Any]], bool]] = [
        ("an asyncio task", inTask, True),
        ("Twisted's driver", Deferred.fromCoroutine, False),
    ]
    for name, run, task in runners:
        closedHere: List[str] = []
        assert await run(loop_(50, task)) == expected(50), name
        assert closedHere == ["finally"], closedHere
        closedHere = []
        assert await run(loop_(1000, task, stopAt=3)) == expected(3), name
        for _ in range(100):
            if closedHere:
                break
            await turn()
        assert closedHere == ["finally"], f"break did not stop the source: {name}"
        print(f"ok toAsyncIterator in {name}")

    # Cancelling stops a generator waiting on an asyncio future.
    waiting: List[str] = []

    async def forever() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.Future()
            yield b"never"
        except asyncio.CancelledError:
            waiting.append("cancelled")
            raise
        finally:
            waiting.append("finally")

    sink = CollectBytes()
    d = pipeline(fromAsyncIterable(forever()), sink=sink)
    while sink.size == 0:
        await turn()
    d.cancel()
    try:
        await d
    except CancelledError:
        pass
    for _ in range(100):
        if "finally" in waiting:
            break
        await turn()
    assert waiting == ["cancelled", "finally"], waiting
    print("ok cancel closes the generator")

    # Errors come with their context, in a task too.
    async def failing() -> AsyncIterator[bytes]:
        yield b"abc"
        await asyncio.sleep(0)
        raise ZeroDivisionError("in the generator")

    failures: List[Any] = []
    done = pipeline(fromAsyncIterable(failing()), sink=CollectBytes())
    done.addErrback(failures.append)
    while not failures:
        await turn()
    assert isinstance(failures[0], ContextFailure), failures
    assert failures[0].check(ZeroDivisionError)
    assert failures[0].bytesWritten == 3

    async def iterateFailing() -> str:
        try:
            async for _ in toAsyncIterator(fromAsyncIterable(failing())):
                pass
        except ZeroDivisionError as e:
            return " ".join(getattr(e, "__notes__", []))
        return ""

    note = await inTask(iterateFailing())
    assert "AsyncIterableProducer" in note, note
    print("ok errors with context")


def main() -> None:
    asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    assert type(reactor).__name__ == "AsyncioSelectorReactor"
    failed: List[BaseException] = []

    def run(r: Any) -> Deferred[None]:
        d = Deferred.fromCoroutine(checks(r))

        def report(failure: Any) -> None:
            failed.append(failure.value)
            failure.printTraceback(file=sys.stdout)

        d.addErrback(report)
        return d

    runner: Callable[[Any], Deferred[None]] = run
    try:
        react(runner)
    except SystemExit as e:
        sys.exit(1 if failed else e.code)


if __name__ == "__main__":
    main()
