"""
The flow core: what every producer, stage and consumer of this package does,
written once.

  - L{TurnLoop}: one turn loop per reactor, a L{Cooperator} whose budget
    (L{TurnLoop.secondsPerTurn} of the reactor's own clock, or
    L{TurnLoop.bytesPerTurn}, whichever comes first) is shared by every
    flow on it, so a thousand busy producers take no longer per reactor
    pass than one.  A flow's place on it is a L{Task}.
  - L{PauseFlag}: paused or not, a flag and never a count (transports
    repeat their pauses), with a callback on each change; a
    L{ReadingFlag} pauses and resumes a connection's reading.
  - L{Upstream}: a consumer's view of the producer registered with it: one
    at a time (a second registration raises, as a transport's does),
    paused and resumed through a L{PauseFlag}, pulled, stopped.
  - L{WaterMarkBuffer}: what a consumer holds, counted in bytes or items,
    with the high and low marks that pause and resume its producer.
  - L{Completion}: the outcome of something that ends once, for any
    number of Deferreds asked for before or after.
  - L{PassThrough}: a consumer whose writes reach another unchanged, so
    that a C{FileSender} can send around it with C{sendfile}.
  - L{BufferedConsumer}: what a consumer that holds what it is written
    shares: its producer, its task on the turn loop, and its end, once.
  - L{Flow}: a producer's lifecycle, C{idle -> running -> finished |
    stopped | failed}, with registration last (rolled back if the consumer
    refuses it) and one end path: cancel what is scheduled, unregister if
    still registered and still the consumer's producer, finish the consumer
    if asked, run the one cleanup hook, and fire the Deferred last.
"""

from __future__ import annotations

import sys
import weakref
from collections import deque
from typing import (
    Any,
    Callable,
    Deque,
    Generic,
    Iterable,
    Iterator,
    Optional,
    Tuple,
    TypeVar,
    Union,
    cast,
)

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IProducer,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.task import CooperativeTask, Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._transportinternals import isRegistered
from twisted_streaming.interfaces import (
    ConsumerFinished,
    IFinishableConsumer,
    ProducerStateError,
    ProducerStopped,
)

__all__ = [
    "BYTES",
    "FAILED",
    "FINISHED",
    "IDLE",
    "RUNNING",
    "STOPPED",
    "BufferedConsumer",
    "Completion",
    "Flow",
    "OnTurnLoop",
    "PassThrough",
    "PauseFlag",
    "ReadingFlag",
    "Task",
    "TurnLoop",
    "Upstream",
    "WaterMarkBuffer",
    "getReactor",
    "isFinishable",
    "regulateHeld",
    "sizeOf",
    "turnLoop",
]

_log = Logger()

_T = TypeVar("_T")


def getReactor(reactor: Optional[_T]) -> _T:
    """
    Return C{reactor}, or the global reactor if it is L{None}.

    The global reactor is imported here, lazily, so that importing this
    package never installs a reactor.
    """
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as globalReactor

    return cast(_T, globalReactor)


def isFinishable(consumer: IConsumer) -> bool:
    """
    Does C{consumer} take an end of stream through C{finish()}?

    True for providers of L{IFinishableConsumer}, and of
    C{twisted.protocols.ftp.IFinishableConsumer} when that module has been
    imported (it imports the global reactor, so it is never imported here).
    """
    if IFinishableConsumer.providedBy(consumer):
        return True
    ftp = sys.modules.get("twisted.protocols.ftp")
    return ftp is not None and bool(ftp.IFinishableConsumer.providedBy(consumer))


#: Items of these types are counted by their length; anything else is 1.
BYTES = (bytes, bytearray, memoryview)


def sizeOf(item: Any) -> int:
    """
    The size of C{item} in a stream: its length if it is bytes, else 1.
    """
    return len(item) if isinstance(item, BYTES) else 1


# The turn loop


class TurnLoop(Cooperator):
    """
    The turn loop of one reactor: a L{Cooperator} whose turns run on that
    reactor and end after L{secondsPerTurn} of the reactor's own clock
    (C{IReactorTime.seconds}, so a L{task.Clock <twisted.internet.task.Clock>}
    gives deterministic tests) or after L{bytesPerTurn} bytes charged by the
    flows on it, whichever comes first.  Between turns the reactor serves
    everything else: new connections, reads, timers.

    Every flow of this package runs on the loop of its reactor (see
    L{turnLoop}) unless it is given a C{cooperator}; any L{Cooperator} will
    do, including Twisted's global one, which ends its turns after 10 ms of
    real time and knows nothing of bytes.

    @ivar secondsPerTurn: The most time one turn runs for.
    @ivar bytesPerTurn: The most bytes one turn writes, counted by
        L{charge}.
    """

    secondsPerTurn: float = 0.005
    bytesPerTurn: int = 1024 * 1024

    def __init__(self, reactor: IReactorTime) -> None:
        # Held weakly, so that the loop of a reactor (a test's Clock) goes
        # when the reactor does.
        reactorRef: Any = weakref.ref(reactor)
        self._seconds = lambda: reactorRef().seconds()
        self._spent = 0
        self._limit = self.bytesPerTurn
        # The budget's window closes at this time: none is open until the
        # first turn opens one.
        self._deadline = 0.0
        # A turn, or a flow's step run at once, is running.
        self._running = False
        super().__init__(
            terminationPredicateFactory=self._newTurn,
            scheduler=lambda tick: reactorRef().callLater(0, self._turn, tick),
        )

    def charge(self, size: int) -> bool:
        """
        Count C{size} bytes written in this turn against its budget.

        @return: Whether the turn's bytes are spent, so that a step that
            writes several chunks can stop early.
        """
        self._spent += size
        return self._spent >= self._limit

    def room(self) -> int:
        """
        The bytes left in this turn's budget (none, or less, once spent).
        """
        return self._limit - self._spent

    def runNow(self, step: Callable[[], bool]) -> Optional[bool]:
        """
        Run C{step} now, again while it says it has more to do, within what
        is left of the budget of the last turn (a flow resumed by its
        transport between two turns carries on at once, as it would have
        without the loop); unless a turn or another step is running (a
        resume from inside a write never re-enters anything) or the budget
        is spent (a thousand resumes in one reactor pass share one budget).

        @return: L{None} if C{step} was not run, and must wait for a turn;
            else whether it has more to do.
        """
        if (
            self._running
            or self._spent >= self._limit
            or self._seconds() >= self._deadline
        ):
            return None
        self._running = True
        try:
            while step():
                if self._spent >= self._limit or self._seconds() >= self._deadline:
                    return True
            return False
        except BaseException:
            _log.failure("A step of {step!r} failed", step=step)
            return False
        finally:
            self._running = False

    def _turn(self, tick: Callable[[], None]) -> None:
        self._running = True
        try:
            tick()
        finally:
            self._running = False

    def _newTurn(self) -> Callable[[], bool]:
        seconds = self._seconds
        self._deadline = seconds() + self.secondsPerTurn
        self._limit = self.bytesPerTurn
        self._spent = 0

        def over() -> bool:
            return self._spent >= self._limit or seconds() >= self._deadline

        return over


_loops: weakref.WeakKeyDictionary[Any, TurnLoop] = weakref.WeakKeyDictionary()


def turnLoop(reactor: Optional[IReactorTime] = None) -> TurnLoop:
    """
    The turn loop shared by every flow on C{reactor} (the global reactor if
    L{None}), made when first asked for.
    """
    reactor = getReactor(reactor)
    loop = _loops.get(reactor)
    if loop is None:
        loop = _loops[reactor] = TurnLoop(reactor)
    return loop


class Task:
    """
    One flow's place on a turn loop: while awake, C{step()} is called once
    per round of the loop, each flow in turn, until it returns C{False}
    (nothing to do: the task sleeps until woken) or the turn's budget is
    spent.

    Waking and sleeping are idempotent.  A cancelled task never runs again.
    """

    __slots__ = (
        "_cancelled",
        "_cooperator",
        "_rewoken",
        "_runNow",
        "_step",
        "_task",
        "awake",
        "charge",
        "room",
    )

    def __init__(self, cooperator: Cooperator, step: Callable[[], bool]) -> None:
        self._cooperator = cooperator
        self._step = step
        self._task: Optional[CooperativeTask[Iterator[None]]] = None
        self._cancelled = False
        self._rewoken = False
        self.awake = False
        #: Count bytes against the turn's budget, if the loop keeps one;
        #: returns whether the turn's bytes are spent.
        self.charge: Callable[[int], bool] = getattr(
            cooperator, "charge", lambda size: False
        )
        #: The bytes left in the turn's budget (a lot, if it keeps none).
        self.room: Callable[[], int] = getattr(cooperator, "room", lambda: 1 << 62)
        self._runNow: Optional[Callable[[Callable[[], bool]], Optional[bool]]] = (
            getattr(cooperator, "runNow", None)
        )

    def wake(self, now: bool = False) -> None:
        """
        Run C{step} on the loop's next turn, and on later ones until it says
        it has nothing to do.  Woken while its step runs (by an event the
        step set off), it runs again even if the step says it is done: a
        step must not wake its own task for nothing.

        @param now: Run C{step} at once if the loop allows it (see
            L{TurnLoop.runNow}), and only what is left for a later turn.
        """
        if self._cancelled:
            return
        if now and self._runNow is not None:
            more = self._runNow(self._step)
            if more is False or self._cancelled:
                return
        self._rewoken = True
        if self.awake:
            return
        self.awake = True
        if self._task is None:
            self._task = self._cooperator.cooperate(self._run())
        else:
            self._task.resume()

    def sleep(self) -> None:
        """
        Do not run C{step} again until L{wake}.
        """
        if self.awake:
            self.awake = False
            assert self._task is not None
            self._task.pause()

    def cancel(self) -> None:
        """
        Never run C{step} again.
        """
        # Paused and forgotten, rather than stopped: CooperativeTask.stop
        # builds a Failure for nobody.
        self.sleep()
        self._cancelled = True
        self._task = None

    def _run(self) -> Iterator[None]:
        step = self._step
        while not self._cancelled:
            self._rewoken = False
            try:
                more = step()
            except BaseException:
                # Steps handle their own errors; one that escapes is a bug,
                # reported rather than lost in the Cooperator.
                _log.failure("A step of {step!r} failed", step=step)
                more = False
            if not more and not self._rewoken:
                self.sleep()
            yield None


# Pause state


class PauseFlag:
    """
    Paused or not: a flag, never a count, since a transport repeats its
    pause on every write while its buffer is full and resumes once.

    C{onChange(paused)} is called on each change, after the flag has
    changed, and never for a pause or resume that changes nothing.
    """

    __slots__ = ("_onChange", "paused")

    def __init__(self, onChange: Callable[[bool], None]) -> None:
        self.paused = False
        self._onChange = onChange

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._onChange(True)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._onChange(False)


class ReadingFlag(PauseFlag):
    """
    Whether a connection is being read: pausing it pauses the transport
    (which stops reading its socket), resuming it resumes the transport,
    once per change.
    """

    __slots__ = ()

    def __init__(self, transport: Callable[[], Any]) -> None:
        """
        @param transport: Returns the transport to pause and resume, or
            L{None} if there is none (any more).
        """

        def changed(paused: bool) -> None:
            current = transport()
            if current is None:
                return
            if paused:
                current.pauseProducing()
            else:
                current.resumeProducing()

        super().__init__(changed)


class Upstream(PauseFlag):
    """
    The producer registered with a consumer, as the consumer sees it.

    One producer at a time: registering a second before the first has
    unregistered raises L{ProducerStateError} (a L{RuntimeError}, as a
    transport raises).  A streaming producer is paused and resumed through
    this L{PauseFlag}, so it hears one pause and one resume per change
    however often the consumer asks; a pull producer is never paused, and
    is asked for data with L{pull}.

    @ivar producer: The registered producer, or L{None}.
    @ivar streaming: Whether it registered as a streaming (push) producer.
    @ivar paused: Whether the consumer has paused its streaming producer
        (and not resumed it).
    """

    __slots__ = ("_consumer", "producer", "streaming")

    def __init__(self, consumer: object) -> None:
        super().__init__(self._changed)
        self._consumer = consumer
        self.producer: Optional[Any] = None
        self.streaming = True

    def register(self, producer: IProducer, streaming: bool) -> None:
        """
        Register C{producer}.

        @raise ProducerStateError: If another is still registered.
        """
        if self.producer is not None:
            raise ProducerStateError(
                f"Cannot register producer {producer!r} with {self._consumer!r}: "
                f"{self.producer!r} is registered and was never unregistered"
            )
        self.producer = producer
        self.streaming = bool(streaming)
        self.paused = False

    def unregister(self) -> None:
        """
        Forget the producer.
        """
        self.producer = None
        self.paused = False

    def pause(self, repeat: bool = False) -> None:
        """
        Pause a streaming producer, unless it is paused already (or even
        then, if C{repeat}: what a transport does, for fakes that behave like
        one).
        """
        if self.producer is not None and self.streaming:
            if repeat and self.paused:
                self.producer.pauseProducing()
            else:
                super().pause()

    def resume(self) -> None:
        """
        Resume a streaming producer this consumer paused.
        """
        if self.producer is not None and self.streaming:
            super().resume()

    def pull(self) -> Optional[Failure]:
        """
        Ask a pull producer for data (C{resumeProducing}).

        @return: L{None}, or the failure if it raised: its own producer's
            error is returned, never raised into whoever drove the
            consumer.
        """
        producer = self.producer
        if producer is None or self.streaming:
            return None
        try:
            producer.resumeProducing()
        except BaseException:
            return Failure()
        return None

    def stop(self) -> None:
        """
        Stop the producer and forget it; an error it raises is logged.
        """
        producer = self.producer
        self.unregister()
        if producer is not None:
            try:
                producer.stopProducing()
            except BaseException:
                _log.failure("Stopping {producer!r} failed", producer=producer)

    def _changed(self, paused: bool) -> None:
        producer = self.producer
        assert producer is not None
        if paused:
            producer.pauseProducing()
        else:
            producer.resumeProducing()


class WaterMarkBuffer(Generic[_T]):
    """
    What a consumer holds for later, first in first out, counted in bytes
    (items of other types count as 1), with the marks that regulate its
    producer: it is full from its owner's C{highWater} on, and wants more
    once below its C{lowWater}, or empty (with a low mark of 0, "below it"
    never happens).

    @ivar size: The total size of the items held.
    """

    __slots__ = ("items", "marks", "size")

    def __init__(self, marks: Any) -> None:
        """
        @param marks: Whose C{highWater} and C{lowWater} attributes are the
            marks, read each time they are needed, so that an owner's marks
            may be changed at any time.
        """
        self.marks = marks
        self.items: Deque[_T] = deque()
        self.size = 0

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def append(self, item: _T) -> None:
        self.items.append(item)
        self.size += len(item) if isinstance(item, BYTES) else 1

    def extend(self, items: Iterable[_T]) -> None:
        append = self.items.append
        size = 0
        for item in items:
            append(item)
            size += len(item) if isinstance(item, BYTES) else 1
        self.size += size

    def popleft(self) -> _T:
        item = self.items.popleft()
        self.size -= len(item) if isinstance(item, BYTES) else 1
        return item

    def appendleft(self, item: _T) -> None:
        """
        Put back what L{popleft} took (or part of it).
        """
        self.items.appendleft(item)
        self.size += len(item) if isinstance(item, BYTES) else 1

    def clear(self) -> None:
        self.items.clear()
        self.size = 0

    @property
    def full(self) -> bool:
        return bool(self.items) and self.size >= self.marks.highWater

    @property
    def wantsMore(self) -> bool:
        return not self.items or self.size < self.marks.lowWater

    def regulate(self, upstream: Upstream, blocked: bool = False) -> None:
        """
        Pause C{upstream} while this buffer is full or its owner is
        C{blocked} (paused by its own consumer); resume it once the buffer
        wants more and the owner is not blocked.
        """
        regulateHeld(upstream, self.size, bool(self.items), self.marks, blocked)


def regulateHeld(
    upstream: Upstream, size: int, held: bool, marks: Any, blocked: bool = False
) -> None:
    """
    Regulate C{upstream} by the water marks of what its consumer holds, as
    L{WaterMarkBuffer.regulate} does for a buffer of the consumer's own, for
    a consumer whose data waits somewhere it only measures (a transport's
    buffer, a library's send queue): pause C{upstream} while the consumer
    is C{blocked}, or C{held} (something is waiting) with C{size} at or
    above C{marks.highWater}; resume it once not blocked and nothing is
    held or C{size} is below C{marks.lowWater}.  In between, it stays as
    it is.
    """
    if blocked or (held and size >= marks.highWater):
        upstream.pause()
    elif not held or size < marks.lowWater:
        upstream.resume()


class Completion(Generic[_T]):
    """
    The end of something that ends once, for any number of waiters: each
    L{whenDone} is a new L{Deferred}, fired (or failed) with the one result,
    so that no waiter's callbacks change what another gets, and a failure
    nobody waits for is never logged as unhandled.

    @ivar done: Whether L{fire} has been called.
    @ivar result: L{None} until then, then the result or the L{Failure}.
    """

    __slots__ = ("_waiters", "done", "result")

    def __init__(self) -> None:
        self.done = False
        self.result: Union[_T, Failure, None] = None
        self._waiters: list[Deferred[_T]] = []

    def whenDone(self) -> Deferred[_T]:
        """
        @return: A new L{Deferred} with the result, at once if it is known.
        """
        d: Deferred[_T] = Deferred()
        if not self.done:
            self._waiters.append(d)
        elif isinstance(self.result, Failure):
            d.errback(self.result)
        else:
            d.callback(cast(_T, self.result))
        return d

    def fire(self, result: Union[_T, Failure]) -> bool:
        """
        Record C{result} and give it to everyone waiting; once only: a later
        result is dropped.

        @return: Whether anyone had it: someone was waiting, or it had
            fired already (a failure nobody had is worth logging).
        """
        if self.done:
            return True
        self.done = True
        self.result = result
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
        return bool(waiters)


@implementer(IConsumer)
class PassThrough:
    """
    A consumer whose writes reach another consumer, its sink, unchanged and
    at once, counted.  It is what C{FileSender}'s zero-copy path follows:

      - C{passThroughTo} is the sink: a C{FileSender} writing to this
        consumer follows it (through a chain of pass-throughs) and, if it
        ends at a plain TCP or UNIX transport, sends the file to that with
        L{os.sendfile} instead of writing to this consumer;
      - C{passedAround(size)} is then called on each pass-through on the
        way, for the bytes sent around it, which it counts (and may check).

    A producer registers with the sink itself, so that the sink paces it.
    Subclasses add what they do with the bytes on the way (count them
    against a limit, say) and at the end.

    @ivar delivered: The bytes passed on, written or sent around (an item
        that is not bytes counts as 1).
    """

    def __init__(self, sink: IConsumer) -> None:
        self.passThroughTo = sink
        self.delivered = 0
        self._write = sink.write

    @property
    def producer(self) -> Any:
        """
        The producer registered with the sink, as the sink says.
        """
        return getattr(self.passThroughTo, "producer", None)

    @property
    def consumer(self) -> IConsumer:
        """
        The sink: the next link of the chain a failure names.
        """
        return self.passThroughTo

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.passThroughTo.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.passThroughTo.unregisterProducer()

    def write(self, data: Any) -> None:
        self.delivered += len(data) if isinstance(data, BYTES) else 1
        self._write(data)

    def passedAround(self, size: int) -> None:
        """
        C{size} bytes were sent to the sink around this consumer.
        """
        self.delivered += size


# The producer lifecycle

IDLE = "idle"
RUNNING = "running"
FINISHED = "finished"
STOPPED = "stopped"
FAILED = "failed"


class OnTurnLoop:
    """
    What has work of its own on a reactor's turn loop shares: one L{Task}
    for the method L{_stepMethod} names, made when first needed on
    C{_cooperator} if given, else on the turn loop of C{_reactor}, and
    cancelled by L{_stopTurns} at the end.

    @cvar _stepMethod: The name of the method that does one step of the
        work and says whether there is more to do now.
    """

    _reactor: Optional[IReactorTime]
    _cooperator: Optional[Cooperator]
    _task: Optional[Task] = None
    _stepMethod = "_step"

    def _taskFor(self, step: Callable[[], bool]) -> Task:
        """
        A new task for C{step} on this object's turn loop (or cooperator):
        also for a part with work of its own, such as each input of a
        merge, which its owner cancels.
        """
        return Task(self._cooperator or turnLoop(self._reactor), step)

    def _turns(self) -> Task:
        """
        This object's task, made when first needed.
        """
        task = self._task
        if task is None:
            task = self._task = self._taskFor(getattr(self, self._stepMethod))
        return task

    def _stopTurns(self) -> None:
        """
        Cancel the task, if there is one: nothing is scheduled any more.
        """
        task, self._task = self._task, None
        if task is not None:
            task.cancel()


@implementer(IPushProducer)
class Flow(OnTurnLoop):
    """
    The lifecycle every producer of this package shares.

    States: C{idle -> running -> finished | stopped | failed} (a flow
    stopped before it started goes straight to C{stopped}); a reusable flow
    (L{reusable}) goes from an end back to C{idle} when started again.

    Subclasses start with L{_start}, end with L{_finish} or L{_abort}, do
    their work on the turn loop in L{_flowStep} (woken with
    C{self._turns().wake()}), hear of pauses in L{_flowPauseChanged} and
    release what they hold in L{_flowEnded}, the one cleanup hook.

    @ivar consumer: The consumer it was started on.
    @ivar bytesWritten: Bytes written to the consumer (items that are not
        bytes count as 1).
    @ivar chunksWritten: Writes made to the consumer.
    """

    reusable = False

    consumer: Any = None
    _stepMethod = "_flowStep"
    bytesWritten: int = 0
    chunksWritten: int = 0

    def __init__(
        self,
        *,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        @param reactor: Whose turn loop the flow runs on (see L{turnLoop});
            the global reactor if L{None}, looked up when first needed.
            Anything with C{callLater} and C{seconds} will do, such as a
            L{task.Clock <twisted.internet.task.Clock>}.
        @param cooperator: Run on this L{Cooperator} instead, for example one
            shared with C{twisted.web.client.FileBodyProducer}.
        """
        self._reactor = reactor
        self._cooperator = cooperator
        self._state = IDLE
        self._pause = PauseFlag(self._flowPauseChanged)
        self._task: Optional[Task] = None
        self._registered = False
        self._deferred: Optional[Deferred[Any]] = None

    def __repr__(self) -> str:
        paused = " paused" if self._pause.paused and self._state is RUNNING else ""
        return f"<{type(self).__name__} {self._state}{paused} at {id(self):#x}>"

    @property
    def paused(self) -> bool:
        """
        Has the consumer paused this producer (and not resumed it since)?
        """
        return self._pause.paused

    @property
    def producing(self) -> bool:
        """
        Has production started and not yet finished, failed or stopped?
        """
        return self._state is RUNNING

    # IPushProducer

    def pauseProducing(self) -> None:
        """
        Pause; idempotent, and does nothing unless running.
        """
        if self._state is RUNNING:
            self._pause.pause()

    def resumeProducing(self) -> None:
        """
        Resume after a pause; idempotent, and does nothing unless running.
        """
        if self._state is RUNNING:
            self._pause.resume()

    def stopProducing(self) -> None:
        """
        Stop for good: unregister, release resources and fail the completion
        L{Deferred} with L{ProducerStopped}.  Idempotent; does nothing once
        the flow has ended.
        """
        self._abort(STOPPED, Failure(ProducerStopped(self, *self._progress())))

    # For subclasses

    def _progress(self) -> Tuple[int, int]:
        """
        How far the flow has got, as C{(bytes, chunks)}, for L{ProducerStopped}
        and failures: by default what it wrote to its consumer.
        """
        return self.bytesWritten, self.chunksWritten

    def _flowStep(self) -> bool:
        """
        Do one unit of work on the turn loop.

        @return: Whether there is more to do now; if not, the task sleeps
            until woken.
        """
        return False

    def _flowPauseChanged(self, paused: bool) -> None:
        """
        The consumer paused (or resumed) this flow.
        """

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        """
        The one cleanup hook: the flow has ended, with C{reason} (L{None} if
        it finished), has unregistered and has nothing scheduled; its
        Deferred fires after this returns.
        """

    def _start(self, consumer: IConsumer, streaming: bool) -> Deferred[Any]:
        """
        Go from idle to running and register with C{consumer}, last.

        If C{consumer} refuses (its C{registerProducer} raises, as a
        transport that already has a producer does), the flow ends failed
        with that error, having written nothing and unregistered nothing,
        and the returned L{Deferred} has failed.

        @raise ProducerStateError: If the flow is not idle (or, if
            L{reusable}, has not ended).
        """
        state = self._state
        if state is not IDLE and not (self.reusable and state is not RUNNING):
            raise ProducerStateError(f"{self!r} has already been started")
        self._state = RUNNING
        self.consumer = consumer
        self.bytesWritten = self.chunksWritten = 0
        self._pause.paused = False
        deferred: Deferred[Any] = Deferred(self._cancelled)
        self._deferred = deferred
        # Registered from here on: a transport may call resumeProducing (a
        # pull producer) or stopProducing (it is disconnected) from inside.
        self._registered = True
        try:
            consumer.registerProducer(self, streaming)
        except BaseException as error:
            self._registered = False
            self._abort(FAILED, failureWithContext(error, self, *self._progress()))
        return deferred

    def _finish(self, result: Any, finishConsumer: bool = True) -> None:
        """
        End well: unregister, finish the consumer if C{finishConsumer} and
        it is finishable (if that raises, end failed instead), clean up,
        then fire with C{result}.  Does nothing unless running.
        """
        if self._state is not RUNNING:
            return
        self._state = FINISHED
        self._halt()
        consumer = self.consumer
        if finishConsumer and consumer is not None and isFinishable(consumer):
            try:
                consumer.finish()
            except BaseException as error:
                self._state = FAILED
                result = failureWithContext(error, self, *self._progress())
        self._ended(result)

    def _abort(self, state: str, reason: Failure) -> None:
        """
        End badly (C{state} is stopped or failed) with C{reason}: unregister,
        clean up, then fail.  A flow stopped before it started just becomes
        stopped.  Does nothing once the flow has ended.
        """
        if self._state is IDLE:
            self._state = STOPPED
            return
        if self._state is not RUNNING:
            return
        self._state = state
        self._halt()
        self._ended(reason)

    def _endWith(self, reason: Optional[Failure]) -> None:
        """
        End: finished, with the bytes written, if C{reason} is L{None}; else
        failed with its error, in context.
        """
        if reason is None:
            self._finish(self.bytesWritten)
        else:
            error = reason.value
            assert isinstance(error, BaseException)
            self._fail(error)

    def _fail(self, error: BaseException, **item: Any) -> None:
        """
        End failed with C{error}, which is being handled now, in context;
        C{item} is passed to L{failureWithContext}.
        """
        if self._state is RUNNING:
            self._abort(
                FAILED, failureWithContext(error, self, *self._progress(), **item)
            )
        else:
            _log.failure("{flow!r} failed after it had ended", flow=self)

    # The end path

    def _halt(self) -> None:
        self._stopTurns()
        if not self._registered:
            return
        self._registered = False
        consumer = self.consumer
        # Only if still this consumer's producer: a transport forgets its
        # producer before stopping it, and may have another by now.
        if consumer is None or not isRegistered(consumer, self):
            return
        try:
            consumer.unregisterProducer()
        except BaseException:
            _log.failure("Unregistering {producer!r} failed", producer=self)

    def _ended(self, result: Union[Any, Failure]) -> None:
        try:
            self._flowEnded(result if isinstance(result, Failure) else None)
        except BaseException:
            _log.failure("Cleaning up {flow!r} failed", flow=self)
        # Last: callbacks run user code that may re-enter this flow.
        deferred, self._deferred = self._deferred, None
        if deferred is None:
            return
        if isinstance(result, Failure):
            deferred.errback(result)
        else:
            deferred.callback(result)

    def _cancelled(self, deferred: Deferred[Any]) -> None:
        # Deferred.cancel fails it with CancelledError once this returns
        # (after the teardown), even if it was already finishing from inside
        # the consumer's finish().
        self._deferred = None
        self._abort(STOPPED, Failure(CancelledError()))


# Consumers that hold what they are written


class BufferedConsumer(OnTurnLoop):
    """
    What a consumer that holds what it is written and deals with it later,
    on the turn loop, shares: its producer (an L{Upstream}: a streaming one
    paused while the L{WaterMarkBuffer} is full, a pull one asked for more
    when it is empty), its L{Task}, and its end, once, with a result or a
    failure that stops the producer, for whoever asks (L{whenFinished}).

    Subclasses write C{write}, deal with the buffer in L{_step} (which
    completes once finished and empty, and otherwise ends with
    L{_regulate}) and end with L{_complete};
    L{_released} is their one cleanup hook.

    @cvar highWater: Held bytes (or items) at which a streaming producer is
        paused.
    @cvar lowWater: Held bytes (or items) below which it is resumed.
    """

    highWater: int = 64 * 1024
    lowWater: int = 16 * 1024

    def __init__(
        self,
        *,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        self._reactor = reactor
        self._cooperator = cooperator
        self._task: Optional[Task] = None
        self._up = Upstream(self)
        self._buffer: WaterMarkBuffer[Any] = WaterMarkBuffer(self)
        #: Told that nothing more will be written.
        self._finished = False
        #: Ended, with a result or a Failure, for whoever asks.
        self._ended = False
        self._completion: Completion[Any] = Completion()

    @property
    def producer(self) -> Optional[Any]:
        """
        The registered producer, or L{None}.
        """
        return self._up.producer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register a producer; a pull producer is asked for data on the turn
        loop.  One registered after the consumer failed is stopped at once.

        @raise ProducerStateError: If a producer is already registered.
        """
        self._up.register(producer, streaming)
        if self._ended:
            self._up.stop()
        elif streaming:
            self._buffer.regulate(self._up)
        else:
            self._turns().wake()

    def unregisterProducer(self) -> None:
        """
        Forget the registered producer.
        """
        self._up.unregister()

    def finish(self) -> None:
        """
        No more data will be written: deal with what is held, then end.

        @raise ConsumerFinished: If called twice.
        """
        if self._finished:
            raise ConsumerFinished(f"{self!r} is already finished")
        self._finished = True
        if not self._ended:
            self._turns().wake()

    def whenFinished(self) -> Deferred[Any]:
        """
        @return: A L{Deferred} that fires with the consumer's result once it
            has dealt with everything after C{finish()}, or fails with its
            error.
        """
        return self._completion.whenDone()

    # For subclasses

    def _step(self) -> bool:
        """
        One step of the turn loop.

        @return: Whether there is more to do now.
        """
        return False

    def _regulate(self) -> bool:
        """
        Pause or resume a streaming producer as the buffer says; ask a pull
        producer for more if the buffer is empty (ending failed, if that
        raises).

        @return: Whether the consumer is still going.
        """
        up = self._up
        buffer = self._buffer
        buffer.regulate(up)
        if not buffer and up.producer is not None and not up.streaming:
            failure = up.pull()
            if failure is not None:
                self._complete(failure)
                return False
        return True

    def _released(self, outcome: Any) -> None:
        """
        The one cleanup hook: the consumer has ended with C{outcome}; its
        L{whenFinished} Deferreds fire after this returns.
        """

    def _complete(self, outcome: Any) -> None:
        """
        End with C{outcome}, once: a failure drops what is held and stops
        the producer; then L{_released}, then L{whenFinished} fires (a
        failure nobody waits for is logged).
        """
        if self._ended:
            return
        self._ended = True
        if self._task is not None:
            self._task.cancel()
        if isinstance(outcome, Failure):
            self._buffer.clear()
            self._up.stop()
        try:
            self._released(outcome)
        except BaseException:
            _log.failure("Cleaning up {consumer!r} failed", consumer=self)
        waited = self._completion.fire(outcome)
        if isinstance(outcome, Failure) and not waited:
            _log.failure("{consumer!r} failed", outcome, consumer=self)
