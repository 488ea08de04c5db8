"""
The producer conformance suite: checks that a push or pull producer keeps
the contract real transports rely on.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Type

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock

from twisted_streaming.testing._fakes import BackpressureConsumer

__all__ = [
    "FILE_DATA",
    "MakeProducer",
    "PullProducerConformanceMixin",
    "PushProducerConformanceMixin",
    "StartProducer",
    "checkCompletion",
    "checkIdempotentPause",
    "checkNoWriteAfterPause",
    "checkOneWritePerResume",
    "checkPullProducer",
    "checkPushProducer",
    "checkStop",
    "defaultStart",
]

MakeProducer = Callable[[Clock], Any]
StartProducer = Callable[[Any, Any], Optional[Deferred[Any]]]

#: What L{defaultStart} gives a C{FileSender}-style producer to send: 40 KiB,
#: each byte value in turn.
#:
#: :meta hide-value:
FILE_DATA = bytes(range(256)) * 160

# Bounds that keep a broken producer from looping forever.
_MAX_STEPS = 10000


def defaultStart(producer: Any, consumer: Any) -> Optional[Deferred[Any]]:
    """
    Start C{producer} the usual way: C{startProducing(consumer)} if it has
    it (like L{BasePushProducer <twisted_streaming.BasePushProducer>}),
    C{beginFileTransfer(file, consumer)} with L{FILE_DATA} if it has that
    (like C{FileSender}), otherwise register it with C{consumer} directly.
    """
    if hasattr(producer, "startProducing"):
        result: Optional[Deferred[Any]] = producer.startProducing(consumer)
        return result
    if hasattr(producer, "beginFileTransfer"):
        started: Optional[Deferred[Any]] = producer.beginFileTransfer(
            io.BytesIO(FILE_DATA), consumer
        )
        return started
    consumer.registerProducer(producer, IPushProducer.providedBy(producer))
    return None


class _Outcome:
    """
    Watch a completion L{Deferred}: how often it fired and with what.
    """

    def __init__(self, d: Optional[Deferred[Any]]) -> None:
        self.results: List[Any] = []
        if d is not None:
            d.addBoth(self._fired)

    def _fired(self, result: Any) -> None:
        self.results.append(result)
        # Handled here, so a failure is never logged as unhandled.
        return None


class _ContractViolation(AssertionError):
    """
    A part of the contract that the object under test broke.  An
    L{AssertionError}, so that plain pytest reports it as a failure; the
    mixins re-raise it as their test case's C{failureException}.
    """


@contextmanager
def _violationsAs(failureException: Type[BaseException]) -> Iterator[None]:
    """
    Re-raise a L{_ContractViolation} from the block as C{failureException},
    with the same message and traceback, so that trial reports a broken
    contract as a failure ([FAIL]), not as an error.  Anything else the
    object under test raises, its own C{assert}s included, passes through
    unchanged: that is an error.
    """
    try:
        yield
    except _ContractViolation as violation:
        if isinstance(violation, failureException):
            raise
        raise failureException(str(violation)).with_traceback(
            violation.__traceback__
        ) from None


def _failureException(testCase: object) -> Type[BaseException]:
    """
    The C{failureException} of the test case a mixin is mixed into (trial's
    C{FailTest}); the mixins define none, since theirs would come first in
    the method resolution order.
    """
    failureException: Type[BaseException] = getattr(
        testCase, "failureException", AssertionError
    )
    return failureException


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise _ContractViolation(message)


def _runToEnd(clock: Clock, consumer: BackpressureConsumer) -> None:
    """
    Advance C{clock} (which also drains C{consumer}) until the producer has
    gone and nothing is scheduled, within a bounded number of steps.
    """
    for _ in range(_MAX_STEPS):
        clock.advance(0)
        calls = clock.getDelayedCalls()
        if not calls:
            if consumer.producer is None:
                return
            raise _ContractViolation(
                f"producer stalled: registered, nothing scheduled "
                f"(last calls: {consumer.calls[-6:]!r})"
            )
        clock.advance(min(c.getTime() for c in calls) - clock.seconds())
    raise _ContractViolation(
        f"producer did not finish within {_MAX_STEPS} steps "
        f"(last calls: {consumer.calls[-6:]!r})"
    )


def checkIdempotentPause(
    makeProducer: MakeProducer, start: StartProducer = defaultStart
) -> None:
    """
    Several pauses are undone by one resume, and a paused producer writes
    nothing.
    """
    clock = Clock()
    consumer = BackpressureConsumer(threshold=2**62, clock=clock)
    producer = makeProducer(clock)
    outcome = _Outcome(start(producer, consumer))
    for _ in range(3):
        producer.pauseProducing()
    before = len(consumer.received)
    for _ in range(50):
        clock.advance(1)
    _check(
        len(consumer.received) == before,
        f"{producer!r} wrote while paused",
    )
    producer.resumeProducing()
    try:
        _runToEnd(clock, consumer)
    except _ContractViolation as e:
        raise _ContractViolation(f"after 3 pauses and 1 resume: {e}") from None
    _check(
        consumer.producer is None,
        f"{producer!r} did not run to the end after 3 pauses and 1 resume "
        f"(calls: {consumer.calls[-6:]!r})",
    )
    _check(len(outcome.results) <= 1, f"{producer!r} completed more than once")


def checkNoWriteAfterPause(
    makeProducer: MakeProducer, start: StartProducer = defaultStart
) -> None:
    """
    Once paused (usually from inside C{write}), a push producer does not
    write again until it is resumed.
    """
    clock = Clock()
    consumer = BackpressureConsumer(threshold=0, clock=clock, drainRate=512)
    producer = makeProducer(clock)
    _Outcome(start(producer, consumer))
    _runToEnd(clock, consumer)
    bad = consumer.writesAfterPause()
    # The whole log, so that the indexes point into what is printed.
    _check(
        not bad,
        f"{producer!r} wrote after a pause at calls {bad!r} of {consumer.calls!r}",
    )
    _check(
        not bad,
        f"{producer!r} wrote after a pause at calls {bad[:5]!r} "
        f"of {consumer.calls[: bad[0] + 1][-6:] if bad else []!r}",
    )


def checkStop(
    makeProducer: MakeProducer,
    start: StartProducer = defaultStart,
    released: Optional[Callable[[Any], bool]] = None,
) -> None:
    """
    C{stopProducing} unregisters the producer, releases its resources (as
    C{released(producer)} says), fails or fires its completion once, leaves
    nothing scheduled, and makes later calls harmless.
    """
    clock = Clock()
    consumer = BackpressureConsumer(threshold=0, clock=clock)
    producer = makeProducer(clock)
    d = start(producer, consumer)
    outcome = _Outcome(d)
    clock.advance(0)
    producer.stopProducing()
    _check(
        consumer.producer is None,
        f"{producer!r} did not unregister when stopped (calls: {consumer.calls!r})",
    )
    writes = len([c for c in consumer.calls if c[0] == "write"])
    if IPushProducer.providedBy(producer):
        producer.pauseProducing()
    producer.resumeProducing()
    producer.stopProducing()
    _runToEnd(clock, consumer)
    _check(
        writes == len([c for c in consumer.calls if c[0] == "write"]),
        f"{producer!r} wrote after it was stopped",
    )
    _check(
        d is None or len(outcome.results) == 1,
        f"{producer!r}'s completion fired {len(outcome.results)} times after stop",
    )
    _check(
        released is None or released(producer),
        f"{producer!r} did not release its resources when stopped",
    )
    _check(
        not clock.getDelayedCalls(),
        f"{producer!r} left {clock.getDelayedCalls()!r} scheduled after stop",
    )


def checkCompletion(
    makeProducer: MakeProducer,
    start: StartProducer = defaultStart,
    expected: Optional[Callable[[Any], Any]] = None,
    pull: bool = False,
) -> None:
    """
    Run to the end under backpressure: the completion fires exactly once,
    after the producer unregistered; everything expected arrived; nothing is
    left scheduled.
    """
    clock = Clock()
    consumer = BackpressureConsumer(threshold=100, clock=clock, drainRate=50)
    producer = makeProducer(clock)
    d = start(producer, consumer)
    outcome = _Outcome(d)
    _runToEnd(clock, consumer)
    if d is not None:
        _check(
            len(outcome.results) == 1,
            f"{producer!r}'s completion fired {len(outcome.results)} times",
        )
    _check(consumer.producer is None, f"{producer!r} did not unregister at the end")
    if expected is not None:
        want = expected(producer)
        _check(
            consumer.received == want,
            f"{producer!r} delivered {len(consumer.received)} of {len(want)} "
            "expected, or different data",
        )
    _check(
        not clock.getDelayedCalls(),
        f"{producer!r} left {clock.getDelayedCalls()!r} scheduled at the end",
    )


def checkOneWritePerResume(
    makeProducer: MakeProducer, start: StartProducer = defaultStart
) -> None:
    """
    A pull producer writes exactly once for each C{resumeProducing} until it
    is done (then unregisters instead).
    """
    clock = Clock()
    consumer = BackpressureConsumer(clock=None)
    producer = makeProducer(clock)
    _Outcome(start(producer, consumer))
    for _ in range(_MAX_STEPS):
        clock.advance(0)
        if consumer.producer is None:
            break
        resumes = [i for i, c in enumerate(consumer.calls) if c == ("resume",)]
        after = consumer.calls[resumes[-1] + 1 :] if resumes else []
        writes = len([c for c in after if c[0] == "write"])
        _check(
            writes == 1,
            f"{producer!r} wrote {writes} times for one resumeProducing "
            f"(calls: {consumer.calls[-6:]!r})",
        )
        consumer.drain()
    else:
        raise _ContractViolation(f"{producer!r} did not finish in {_MAX_STEPS} resumes")
    _check(
        not clock.getDelayedCalls(),
        f"{producer!r} left {clock.getDelayedCalls()!r} scheduled at the end",
    )


def checkPushProducer(
    makeProducer: MakeProducer,
    start: StartProducer = defaultStart,
    expected: Optional[Callable[[Any], Any]] = None,
    released: Optional[Callable[[Any], bool]] = None,
) -> None:
    """
    Run the whole push producer conformance suite; usable from plain pytest.

    @param makeProducer: Called with a L{Clock}; returns a new producer that,
        once started, produces its whole stream driven only by that clock and
        by the consumer's pauses and resumes.
    @param start: Starts the producer on a consumer; may return a completion
        L{Deferred}.  By default, L{defaultStart}.
    @param expected: Given the producer, returns what it should deliver.
    @param released: Given a stopped producer, says if it released its
        resources.

    @raise AssertionError: Naming the first part of the contract broken.
    """
    checkIdempotentPause(makeProducer, start)
    checkNoWriteAfterPause(makeProducer, start)
    checkStop(makeProducer, start, released)
    checkCompletion(makeProducer, start, expected)


def checkPullProducer(
    makeProducer: MakeProducer,
    start: StartProducer = defaultStart,
    expected: Optional[Callable[[Any], Any]] = None,
    released: Optional[Callable[[Any], bool]] = None,
) -> None:
    """
    Run the whole pull producer conformance suite; usable from plain pytest.
    The parameters are those of L{checkPushProducer}.

    @raise AssertionError: Naming the first part of the contract broken.
    """
    checkOneWritePerResume(makeProducer, start)
    checkStop(makeProducer, start, released)
    checkCompletion(makeProducer, start, expected)


class _ConformanceBase:
    """
    What a user of a conformance mixin supplies.
    """

    def makeProducer(self, clock: Clock) -> Any:
        """
        Make the producer under test.  Required.

        Called once per test, before L{start}.

        @param clock: A new L{Clock <twisted.internet.task.Clock>}: the
            only time the producer may use.  Give it as the producer's
            C{reactor} (or whatever schedules its work); the suite advances
            it, and fails a producer that leaves calls scheduled on it at
            the end.
        @return: A new producer, not yet started: a push producer for
            L{PushProducerConformanceMixin}, a pull producer for
            L{PullProducerConformanceMixin}.
        """
        raise NotImplementedError(f"{type(self).__name__} must define makeProducer")

    def start(self, producer: Any, consumer: Any) -> Optional[Deferred[Any]]:
        """
        Start C{producer} writing to C{consumer}.  Optional: by default
        L{defaultStart}, which calls C{producer.startProducing(consumer)} or
        C{producer.beginFileTransfer(file, consumer)} with L{FILE_DATA}, or
        else registers C{producer} with C{consumer}.

        @param producer: What L{makeProducer} returned.
        @param consumer: A L{BackpressureConsumer} on the test's clock.
        @return: The L{Deferred} that fires when the producer has finished
            (its completion, checked to fire exactly once), or L{None} if
            it has none.
        """
        return defaultStart(producer, consumer)

    def expectedData(self, producer: Any) -> Any:
        """
        What the producer should have delivered by the end.  Optional: if
        not defined, what arrives is not checked.

        @param producer: What L{makeProducer} returned, after it has run
            to its end.
        @return: The bytes it should have written, in order, compared
            with what the consumer received.
        """
        return None

    def resourcesReleased(self, producer: Any) -> bool:
        """
        Has the producer released what it holds (files, connections, timers
        of its own)?  Optional: by default C{True}.

        @param producer: What L{makeProducer} returned, just after
            C{stopProducing} stopped it in the middle of its stream.
        @return: C{True} if it has released its resources, for example if
            the file it opened is closed.
        """
        return True

    def _expected(self) -> Optional[Callable[[Any], Any]]:
        if type(self).expectedData is _ConformanceBase.expectedData:
            return None
        return self.expectedData

    def test_stopUnregistersAndIsFinal(self) -> None:
        """
        Stop unregisters, releases resources and makes later calls harmless.
        """
        with _violationsAs(_failureException(self)):
            checkStop(self.makeProducer, self.start, self.resourcesReleased)

    def test_completesOnceAndCleanly(self) -> None:
        """
        The completion fires exactly once and nothing is left scheduled.
        """
        with _violationsAs(_failureException(self)):
            checkCompletion(self.makeProducer, self.start, self._expected())


class PushProducerConformanceMixin(_ConformanceBase):
    """
    Mix into a trial test case (C{SynchronousTestCase}) and define
    L{makeProducer} (and optionally L{start}, L{expectedData},
    L{resourcesReleased}) to check a push producer against the contract::

        class MyProducerTests(PushProducerConformanceMixin, SynchronousTestCase):
            def makeProducer(self, clock):
                return MyProducer(reactor=clock)

    Each C{test_} method runs one check on a new producer, consumer and
    clock.  A broken contract fails the test with the test case's
    C{failureException} (trial's [FAIL]); anything the producer raises
    itself is an error.
    """

    def test_pauseIsIdempotent(self) -> None:
        """
        Several pauses are undone by one resume.
        """
        with _violationsAs(_failureException(self)):
            checkIdempotentPause(self.makeProducer, self.start)

    def test_noWriteAfterPause(self) -> None:
        """
        No write follows a pause, even one that arrived from inside write.
        """
        with _violationsAs(_failureException(self)):
            checkNoWriteAfterPause(self.makeProducer, self.start)


class PullProducerConformanceMixin(_ConformanceBase):
    """
    Mix into a trial test case (C{SynchronousTestCase}) and define
    L{makeProducer} (and optionally L{start}, for example to call
    C{beginFileTransfer} with a file of your own, L{expectedData} and
    L{resourcesReleased}) to check a pull producer against the contract.
    A broken contract fails the test with the test case's
    C{failureException}, as in L{PushProducerConformanceMixin}.
    """

    def test_oneWritePerResume(self) -> None:
        """
        Each resumeProducing gets exactly one write until the end.
        """
        with _violationsAs(_failureException(self)):
            checkOneWritePerResume(self.makeProducer, self.start)
