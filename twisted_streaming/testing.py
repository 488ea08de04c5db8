"""
Test helpers for producers and consumers: fakes that apply backpressure the
way real transports do, a producer conformance suite, and a loopback helper.

Twisted's own doubles (C{StringTransport}) never pause a producer and never
drive a pull producer, so producer bugs pass their tests.  L{BackpressureConsumer}
behaves like a TCP transport: it pauses a streaming producer when its buffer
passes a threshold, I{repeats} the pause on every further write while over it,
resumes once when drained, and calls C{resumeProducing} on a pull producer
after registration and after each drain.

The conformance suite checks a producer against the contract; use
L{PushProducerConformanceMixin} or L{PullProducerConformanceMixin} with trial,
or L{checkPushProducer} / L{checkPullProducer} from plain pytest.  A producer
that is fed by a source (a stage, an adapter, one direction of a proxy) goes
through the same suite wrapped in a L{FedPushProducer}.  The consumer side of
the contract is checked by L{ConsumerConformanceMixin} or L{checkConsumer}.

Importing this module does not install a reactor.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Tuple, Type, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPullProducer, IPushProducer
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._util import getReactor
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

__all__ = [
    "FILE_DATA",
    "BackpressureConsumer",
    "ConsumerConformanceMixin",
    "FedPushProducer",
    "PullProducerConformanceMixin",
    "PushProducerConformanceMixin",
    "RecordingPullProducer",
    "RecordingPushProducer",
    "checkCompletion",
    "checkConsumer",
    "checkConsumerDrivesPullProducer",
    "checkConsumerPausesPushProducer",
    "checkIdempotentPause",
    "checkNoWriteAfterPause",
    "checkOneWritePerResume",
    "checkPullProducer",
    "checkPushProducer",
    "checkStop",
    "defaultStart",
    "loopbackReceive",
]

Call = Tuple[Any, ...]


@implementer(IConsumer, IFinishableConsumer)
class BackpressureConsumer:
    """
    A fake consumer that applies backpressure exactly as Twisted's transports
    do, and records every call it receives or makes.

    Recorded in L{calls}, in order: C{("registerProducer", streaming)},
    C{("write", size)}, C{("pause",)} and C{("resume",)} (calls this consumer
    made on its producer), C{("stop",)} (from L{loseConnection}),
    C{("unregisterProducer",)}, C{("finish",)} and C{("drain", size)}.

    @ivar received: Everything written, in order: bytes, or a list of the
        items written if C{objects} is true.
    @ivar buffered: How much of L{received} is still in the buffer (bytes, or
        items for object streams).
    @ivar producer: The registered producer, or L{None}.
    @ivar streaming: Whether L{producer} was registered as streaming.
    @ivar finished: Whether C{finish()} has been called.
    @ivar producerPaused: Whether this consumer has paused its producer and
        not resumed it since.
    """

    def __init__(
        self,
        threshold: int = 65536,
        *,
        clock: Optional[Clock] = None,
        drainRate: Optional[int] = None,
        drainInterval: float = 0.001,
        objects: bool = False,
        failOnWrite: Optional[BaseException] = None,
        failAfterWrites: int = 0,
    ) -> None:
        """
        By default the buffer only empties when the test calls L{drain}: a
        test that gives no C{clock} decides exactly when the transport
        "sends".  Given a C{clock}, the consumer drains I{by itself} on it,
        like a transport whose peer reads steadily, so that a producer runs
        to its end just by advancing the clock.

        @param threshold: A streaming producer is paused (again) on every
            write that leaves more than this in the buffer, in bytes (items
            if C{objects} is true); C{0} pauses on every write.  Like a TCP
            transport's C{bufferSize}.  A pull producer is never paused.
        @param clock: If given (a L{Clock <twisted.internet.task.Clock>}),
            the buffer drains itself on it: while it is not empty,
            C{drainRate} is removed every C{drainInterval} seconds (the
            first time C{drainInterval} after the write that found it
            empty), and a drain that empties it resumes the producer as
            L{drain} does.  Nothing is left scheduled once the buffer is
            empty, or after L{loseConnection}.  If L{None}, only L{drain}
            empties it.
        @param drainRate: How much (bytes, or items) each timed drain
            removes; L{None} for everything buffered.  Only used with
            C{clock}.
        @param drainInterval: Seconds between a write and the timed drain
            it schedules, and between timed drains.  Only used with
            C{clock}.
        @param objects: If true, the consumer takes any objects (a stream of
            items, as a L{Stage <twisted_streaming.Stage>} can produce):
            L{received} is a list of them and each counts as 1 toward
            C{threshold}.  If false, it takes bytes.
        @param failOnWrite: An exception to raise from C{write}, to test how
            a producer handles a consumer that fails; L{None} never to
            fail.  The failing write is recorded in L{calls} but not in
            L{received}.
        @param failAfterWrites: How many writes succeed before
            C{failOnWrite} is raised, by this and every later write; C{0}
            fails the first.  Only used with C{failOnWrite}.
        """
        self.threshold = threshold
        self.clock = clock
        self.drainRate = drainRate
        self.drainInterval = drainInterval
        self.objects = objects
        self.failOnWrite = failOnWrite
        self.failAfterWrites = failAfterWrites
        self.calls: List[Call] = []
        self.received: Union[bytes, List[Any]] = [] if objects else b""
        self.buffered = 0
        self.producer: Any = None
        self.streaming: Optional[bool] = None
        self.finished = False
        self.producerPaused = False
        self.disconnected = False
        self._writes = 0
        self._drainCall: Any = None

    # IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register C{producer}; start a pull producer at once.  Like a
        transport, stop the producer at once if the connection was lost.

        @raise RuntimeError: If a producer is already registered.
        """
        self.calls.append(("registerProducer", streaming))
        if self.producer is not None:
            raise RuntimeError(f"{self.producer!r} is already registered")
        if self.disconnected:
            self.calls.append(("stop",))
            producer.stopProducing()
            return
        self.producer = producer
        self.streaming = bool(streaming)
        self.producerPaused = False
        if not streaming:
            self.calls.append(("resume",))
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        """
        Forget the producer.
        """
        self.calls.append(("unregisterProducer",))
        self.producer = None
        self.streaming = None
        self.producerPaused = False

    def write(self, data: Any) -> None:
        """
        Buffer C{data}; pause a streaming producer if the buffer is over the
        threshold, as often as this is called while it stays over.

        @raise ConsumerFinished: If C{finish()} was called.
        """
        size = 1 if self.objects else len(data)
        self.calls.append(("write", size))
        if self.finished:
            raise ConsumerFinished(f"{self!r} was written to after finish()")
        if self.failOnWrite is not None and self._writes >= self.failAfterWrites:
            raise self.failOnWrite
        self._writes += 1
        if self.disconnected:
            return
        if self.objects:
            assert isinstance(self.received, list)
            self.received.append(data)
        else:
            self.received += data
        self.buffered += size
        self._scheduleDrain()
        if self.producer is not None and self.streaming:
            if self.buffered > self.threshold:
                self.producerPaused = True
                self.calls.append(("pause",))
                self.producer.pauseProducing()

    # IFinishableConsumer

    def finish(self) -> None:
        """
        Record the end of the stream.

        @raise ConsumerFinished: If called twice.
        """
        self.calls.append(("finish",))
        if self.finished:
            raise ConsumerFinished(f"{self!r} was finished twice")
        self.finished = True

    # Driving

    def drain(self, n: Optional[int] = None) -> int:
        """
        Remove C{n} (all if L{None}) from the buffer.  If it empties, resume
        a paused streaming producer (once) or call C{resumeProducing} on a
        pull producer, as a transport does.

        @return: How much was drained.
        """
        amount = self.buffered if n is None else min(n, self.buffered)
        if amount <= 0:
            return 0
        self.calls.append(("drain", amount))
        self.buffered -= amount
        if self.buffered == 0 and self.producer is not None:
            if not self.streaming or self.producerPaused:
                self.producerPaused = False
                self.calls.append(("resume",))
                self.producer.resumeProducing()
        return amount

    def loseConnection(self) -> None:
        """
        The peer went away: discard the buffer and stop and forget the
        producer, as a transport does on connection loss.
        """
        self.disconnected = True
        self.buffered = 0
        self._cancelDrain()
        producer, self.producer = self.producer, None
        if producer is not None:
            self.calls.append(("stop",))
            producer.stopProducing()

    def writesAfterPause(self) -> List[int]:
        """
        Indexes into L{calls} of writes made after a pause and before the
        next resume: each one breaks the push producer contract.
        """
        bad = []
        paused = False
        for i, call in enumerate(self.calls):
            if call[0] == "pause":
                paused = True
            elif call[0] in ("resume", "unregisterProducer", "registerProducer"):
                paused = False
            elif call[0] == "write" and paused:
                bad.append(i)
        return bad

    def _scheduleDrain(self) -> None:
        if self.clock is None or self._drainCall is not None:
            return
        self._drainCall = self.clock.callLater(self.drainInterval, self._timedDrain)

    def _cancelDrain(self) -> None:
        if self._drainCall is not None and self._drainCall.active():
            self._drainCall.cancel()
        self._drainCall = None

    def _timedDrain(self) -> None:
        self._drainCall = None
        self.drain(self.drainRate)
        if self.buffered > 0:
            self._scheduleDrain()


@implementer(IPushProducer)
class RecordingPushProducer:
    """
    A push producer that only records C{("pause",)}, C{("resume",)} and
    C{("stop",)} in L{calls}.
    """

    def __init__(self) -> None:
        self.calls: List[Call] = []

    def pauseProducing(self) -> None:
        self.calls.append(("pause",))

    def resumeProducing(self) -> None:
        self.calls.append(("resume",))

    def stopProducing(self) -> None:
        self.calls.append(("stop",))


@implementer(IPullProducer)
class RecordingPullProducer:
    """
    A pull producer that records C{("resume",)} and C{("stop",)} in L{calls}
    and, if given a consumer and chunks, writes one chunk per
    C{resumeProducing} and unregisters when they run out.
    """

    def __init__(
        self, consumer: Optional[IConsumer] = None, chunks: Tuple[bytes, ...] = ()
    ) -> None:
        self.calls: List[Call] = []
        self.consumer = consumer
        self.chunks = list(chunks)

    def resumeProducing(self) -> None:
        self.calls.append(("resume",))
        if self.consumer is None:
            return
        if self.chunks:
            self.consumer.write(self.chunks.pop(0))
        else:
            consumer, self.consumer = self.consumer, None
            consumer.unregisterProducer()

    def stopProducing(self) -> None:
        self.calls.append(("stop",))


# The conformance suite

MakeProducer = Callable[[Clock], Any]
StartProducer = Callable[[Any, Any], Optional[Deferred[Any]]]

#: What L{defaultStart} gives a C{FileSender}-style producer to send: 40 KiB.
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


Connect = Callable[[Any], Tuple[Any, Optional[Deferred[Any]]]]


@implementer(IPushProducer)
class FedPushProducer:
    """
    A push producer that is fed by a source, packaged for the conformance
    suite, which wants a producer that runs on its own once started.

    A stage, a L{PullToPush <twisted_streaming.PullToPush>} adapter or one
    direction of a proxy is a consumer toward its source and a producer
    toward its consumer.  Return one of these from C{makeProducer}:
    L{startProducing} calls C{connect(consumer)}, which connects the producer
    under test to C{consumer}, starts a source (on the suite's clock)
    feeding it, and returns the producer under test and its completion
    L{Deferred}.  The suite's C{pauseProducing}, C{resumeProducing} and
    C{stopProducing} go to that producer::

        def makeProducer(self, clock):
            def connect(consumer):
                stage = LineSplitter(reactor=clock)
                source = MySource(reactor=clock)
                return stage, pipeline(source, stage, sink=consumer)
            return FedPushProducer(connect)

    @ivar producer: The producer under test, once started; L{None} before.
    """

    def __init__(self, connect: Connect) -> None:
        """
        @param connect: Called once, with the consumer, by L{startProducing};
            returns C{(producer, completion)}, where C{completion} may be
            L{None}.
        """
        self._connect = connect
        self.producer: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.producer!r}>"

    def startProducing(self, consumer: Any) -> Optional[Deferred[Any]]:
        """
        Connect the producer under test to C{consumer} and start its source.

        @return: The completion L{Deferred} C{connect} returned, or L{None}.
        """
        self.producer, completion = self._connect(consumer)
        return completion

    def pauseProducing(self) -> None:
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.producer.stopProducing()


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


# The consumer side

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
        _check(
            len(outcome.results) == 1,
            f"{consumer!r}'s completion fired {len(outcome.results)} times",
        )
        _check(
            not isinstance(outcome.results[0], Failure),
            f"{consumer!r}'s completion failed: {outcome.results[0]!r}",
        )
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


# Loopback


class _Receiver(Protocol):
    def __init__(self, slowReader: int, reactor: Any) -> None:
        self.slowReader = slowReader
        self.reactor = reactor
        self.chunks: List[bytes] = []
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.slowReader:
            # Read again only after a few reactor turns, so the sender's
            # buffers fill and it is paused.
            self.transport.pauseProducing()  # type: ignore[union-attr]
            self._later(self.slowReader)

    def _later(self, turns: int) -> None:
        if turns <= 0:
            if self.transport is not None and self.transport.connected:  # type: ignore[attr-defined]
                self.transport.resumeProducing()  # type: ignore[attr-defined]
            return
        self.reactor.callLater(0, self._later, turns - 1)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class _Sender(Protocol):
    def __init__(self, startFn: Callable[[Any], Optional[Deferred[Any]]]) -> None:
        self.startFn = startFn
        self.outcome: Deferred[Any] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        d = self.startFn(self.transport)
        if d is None:
            d = Deferred()
            d.callback(None)
        d.addBoth(self._done)

    def _done(self, result: Any) -> None:
        self.outcome.callback(result)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class _ClientFactory(ClientFactory):
    def __init__(self, client: _Receiver, server: _Sender, outcome: List[Any]) -> None:
        self.client = client
        self.server = server
        self.outcome = outcome

    def buildProtocol(self, addr: Any) -> _Receiver:
        return self.client

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        # Nothing connected, so nothing else will end the wait.
        self.outcome.insert(0, reason)
        for d in (self.server.lost, self.client.lost):
            if not d.called:
                d.callback(None)


def loopbackReceive(
    startFn: Callable[[Any], Optional[Deferred[Any]]],
    reactor: Any = None,
    slowReader: int = 0,
) -> Deferred[bytes]:
    """
    Send a stream over a real TCP connection on 127.0.0.1 and return what
    arrived.

    Listens on an ephemeral port, connects, and calls C{startFn(transport)}
    with the server side transport; when the L{Deferred} it returns fires (at
    once, if it returns L{None}) the server closes the connection.

    Cleanup is done before the result fires: the port has stopped listening
    and both ends of the connection are closed, so trial's dirty reactor
    check passes without further work.  Return the L{Deferred} from a trial
    C{TestCase} method (which also runs under pytest); it needs a running
    reactor.

    @param reactor: The reactor (the global one if L{None}).
    @param slowReader: If positive, the client pauses reading after each
        read and resumes that many reactor turns later, so a fast sender is
        paused by real backpressure.

    @return: A L{Deferred} that fires with the bytes received, or fails with
        the failure of C{startFn}'s L{Deferred} (or of the connection).
    """
    from twisted.internet.defer import gatherResults

    reactor = getReactor(reactor)
    server = _Sender(startFn)
    client = _Receiver(slowReader, reactor)
    port = reactor.listenTCP(
        0, Factory.forProtocol(lambda: server), interface="127.0.0.1"
    )
    result: Deferred[bytes] = Deferred()
    outcome: List[Any] = []
    connector = reactor.connectTCP(
        "127.0.0.1", port.getHost().port, _ClientFactory(client, server, outcome)
    )
    server.outcome.addBoth(outcome.append)

    def stop(_: Any) -> Any:
        return port.stopListening()

    def finish(_: Any) -> None:
        connector.disconnect()
        if outcome and isinstance(outcome[0], Failure):
            result.errback(outcome[0])
        else:
            result.callback(b"".join(client.chunks))

    gatherResults([server.lost, client.lost]).addBoth(stop).addBoth(finish)
    return result
