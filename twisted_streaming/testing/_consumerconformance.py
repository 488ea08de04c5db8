"""
The consumer conformance suite: checks that a consumer pauses and drives its
producer as the contract says, and completes once with everything.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_streaming.interfaces import IFinishableConsumer
from twisted_streaming.testing._fakes import (
    Call,
    RecordingPullProducer,
    RecordingPushProducer,
)
from twisted_streaming.testing._producerconformance import (
    _MAX_STEPS,
    _check,
    _ContractViolation,
    _failureException,
    _Outcome,
    _violationsAs,
)

__all__ = [
    "ConsumerConformanceMixin",
    "MakeConsumer",
    "checkConsumer",
    "checkConsumerDrivesPullProducer",
    "checkConsumerPausesPushProducer",
]

MakeConsumer = Callable[[Clock], Any]

#: The chunks the consumer checks write: distinct numbered lines of 1 KiB.
_CONSUMER_CHUNK = 1024


def _consumerChunk(i: int) -> bytes:
    line = b"%08d " % (i,)
    return line + b"x" * (_CONSUMER_CHUNK - len(line) - 1) + b"\n"


def _settle(clock: Clock, done: Callable[[], bool]) -> bool:
    """
    Advance C{clock} from one delayed call to the next until C{done()} or
    nothing is scheduled, within a bounded number of steps.

    @return: C{done()} at the end.
    """
    for _ in range(_MAX_STEPS):
        clock.advance(0)
        if done():
            return True
        calls = clock.getDelayedCalls()
        if not calls:
            return done()
        clock.advance(min(c.getTime() for c in calls) - clock.seconds())
    raise _ContractViolation(f"still busy after {_MAX_STEPS} steps")


def _checkSucceededOnce(subject: object, outcome: _Outcome) -> None:
    """
    Check that C{subject}'s completion fired once, with success.
    """
    _check(
        len(outcome.results) == 1,
        f"{subject!r}'s completion fired {len(outcome.results)} times",
    )
    _check(
        not isinstance(outcome.results[0], Failure),
        f"{subject!r}'s completion failed: {outcome.results[0]!r}",
    )


def _finishConsumer(
    clock: Clock,
    consumer: Any,
    outcome: _Outcome,
    completion: Optional[Deferred[Any]],
    producerCalls: List[Call],
    received: Optional[Callable[[Any], Any]],
    written: bytes,
) -> None:
    """
    With the producer unregistered: finish C{consumer} (if it is
    finishable), let it work, and check that it completed once, with
    everything, without calling the producer again or leaving anything
    scheduled.
    """
    before = len(producerCalls)
    if IFinishableConsumer.providedBy(consumer):
        consumer.finish()
    _settle(clock, lambda: False)
    _check(
        producerCalls[before:] == [],
        f"{consumer!r} called its unregistered producer: {producerCalls[before:]!r}",
    )
    if completion is not None:
        _checkSucceededOnce(consumer, outcome)
    if received is not None:
        got = received(consumer)
        _check(
            got == written,
            f"{consumer!r} passed on {len(got)} of {len(written)} bytes written, "
            "or different bytes",
        )
    _check(
        not clock.getDelayedCalls(),
        f"{consumer!r} left {clock.getDelayedCalls()!r} scheduled at the end",
    )


def checkConsumerPausesPushProducer(
    makeConsumer: MakeConsumer,
    completion: Optional[Callable[[Any], Optional[Deferred[Any]]]] = None,
    received: Optional[Callable[[Any], Any]] = None,
    cycles: int = 3,
) -> None:
    """
    A streaming producer that writes while the consumer is behind is paused
    (from inside C{write}, as a transport does), and resumed once the
    consumer has caught up on later reactor turns; it is resumed only after
    a pause; once it has unregistered (and the consumer is finished, if it
    is finishable), the consumer calls it no more, completes once with
    everything written, and leaves nothing scheduled.
    """
    clock = Clock()
    consumer = makeConsumer(clock)
    d = completion(consumer) if completion is not None else None
    outcome = _Outcome(d)
    producer = RecordingPushProducer()
    consumer.registerProducer(producer, True)

    def paused() -> bool:
        states = [c for c in producer.calls if c in (("pause",), ("resume",))]
        return bool(states) and states[-1] == ("pause",)

    written: List[bytes] = []
    for cycle in range(cycles):
        for _ in range(_MAX_STEPS):
            if paused():
                break
            written.append(_consumerChunk(len(written)))
            consumer.write(written[-1])
        _check(
            paused(),
            f"{consumer!r} never paused a producer that wrote "
            f"{_MAX_STEPS * _CONSUMER_CHUNK} bytes without the reactor turning",
        )
        _check(
            _settle(clock, lambda: not paused()),
            f"{consumer!r} did not resume its producer after pause {cycle + 1}",
        )
    pausedNow = False
    for call in producer.calls:
        if call == ("resume",):
            _check(
                pausedNow,
                f"{consumer!r} resumed a producer it had not paused "
                f"(calls: {producer.calls[:10]!r})",
            )
        pausedNow = call == ("pause",) or (pausedNow and call != ("resume",))
    consumer.unregisterProducer()
    _finishConsumer(
        clock, consumer, outcome, d, producer.calls, received, b"".join(written)
    )


def checkConsumerDrivesPullProducer(
    makeConsumer: MakeConsumer,
    completion: Optional[Callable[[Any], Optional[Deferred[Any]]]] = None,
    received: Optional[Callable[[Any], Any]] = None,
    chunks: int = 50,
) -> None:
    """
    A pull producer is asked for data (C{resumeProducing}) after it
    registers and again after each write is dealt with, until it
    unregisters; then (and once the consumer is finished, if it is
    finishable) it is called no more, and the consumer completes once with
    everything written and leaves nothing scheduled.
    """
    clock = Clock()
    consumer = makeConsumer(clock)
    d = completion(consumer) if completion is not None else None
    outcome = _Outcome(d)
    data = tuple(_consumerChunk(i) for i in range(chunks))
    producer = RecordingPullProducer(consumer, data)
    consumer.registerProducer(producer, False)
    _check(
        _settle(clock, lambda: producer.consumer is None),
        f"{consumer!r} stopped asking its pull producer for data after "
        f"{len(data) - len(producer.chunks)} of {len(data)} chunks",
    )
    _finishConsumer(
        clock, consumer, outcome, d, producer.calls, received, b"".join(data)
    )


def checkConsumer(
    makeConsumer: MakeConsumer,
    completion: Optional[Callable[[Any], Optional[Deferred[Any]]]] = None,
    received: Optional[Callable[[Any], Any]] = None,
) -> None:
    """
    Run the whole consumer conformance suite; usable from plain pytest.

    @param makeConsumer: Called with a L{Clock}; returns a new consumer that
        does its work on that clock.  If it provides L{IFinishableConsumer},
        it is finished once its producer has unregistered.
    @param completion: Given the consumer (before anything is written to
        it), returns the L{Deferred} that says it has dealt with everything,
        or L{None} not to check one.
    @param received: Given the finished consumer, returns what it passed on,
        as bytes, to compare with what was written to it (lines of 1 KiB,
        each ending with C{b"\\n"}); L{None} not to check.

    @raise AssertionError: Naming the first part of the contract broken.
    """
    checkConsumerPausesPushProducer(makeConsumer, completion, received)
    checkConsumerDrivesPullProducer(makeConsumer, completion, received)


class ConsumerConformanceMixin:
    """
    Mix into a trial test case (C{SynchronousTestCase}) and define
    L{makeConsumer} (and optionally L{completion} and L{received}) to check
    a consumer against the contract.  Each C{test_} method runs one check
    on a new consumer and clock; a broken contract fails the test with the
    test case's C{failureException} (trial's [FAIL]).
    """

    def makeConsumer(self, clock: Clock) -> Any:
        """
        Make the consumer under test.  Required.

        @param clock: A new L{Clock <twisted.internet.task.Clock>}: the
            only time the consumer may use.  Give it as the consumer's
            C{reactor}; the suite advances it, and fails a consumer that
            leaves calls scheduled on it at the end.
        @return: A new consumer, with no producer registered.  If it
            provides L{IFinishableConsumer}, the suite calls its C{finish}
            once the producer has unregistered.
        """
        raise NotImplementedError(f"{type(self).__name__} must define makeConsumer")

    def completion(self, consumer: Any) -> Optional[Deferred[Any]]:
        """
        The consumer's completion.  Optional: by default L{None}, not to
        check one.

        @param consumer: What L{makeConsumer} returned, before anything is
            written to it.
        @return: The L{Deferred} that fires once C{consumer} has dealt with
            everything written to it (checked to fire exactly once, with
            success), or L{None}.
        """
        return None

    def received(self, consumer: Any) -> Any:
        """
        What the consumer passed on.  Optional: if not defined, it is not
        checked.

        @param consumer: What L{makeConsumer} returned, after the producer
            has unregistered and the consumer was finished (if it is
            finishable).
        @return: Everything the consumer passed on (wrote to its file, its
            own consumer...), as bytes, compared with what was written to
            it: numbered lines of 1 KiB, each ending with C{b"\\n"}.
        """
        return None

    def _received(self) -> Optional[Callable[[Any], Any]]:
        if type(self).received is ConsumerConformanceMixin.received:
            return None
        return self.received

    def test_pausesPushProducerWhileBehind(self) -> None:
        """
        A streaming producer is paused while the consumer is behind and
        resumed once it catches up; nothing is called after the end.
        """
        with _violationsAs(_failureException(self)):
            checkConsumerPausesPushProducer(
                self.makeConsumer, self.completion, self._received()
            )

    def test_drivesPullProducer(self) -> None:
        """
        A pull producer is asked for data until it is done; nothing is called
        after the end.
        """
        with _violationsAs(_failureException(self)):
            checkConsumerDrivesPullProducer(
                self.makeConsumer, self.completion, self._received()
            )
