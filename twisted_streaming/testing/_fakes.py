"""
Fakes that behave as real transports do, and producers that record what
they are told.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPullProducer, IPushProducer
from twisted.internet.task import Clock
from zope.interface import implementer

from twisted_streaming._flow import Upstream
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

__all__ = [
    "BackpressureConsumer",
    "Call",
    "FedPushProducer",
    "RecordingPullProducer",
    "RecordingPushProducer",
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
        self._up = Upstream(self)
        self.finished = False
        self.disconnected = False
        self._writes = 0
        self._drainCall: Any = None

    @property
    def producer(self) -> Any:
        """
        The registered producer, or L{None}.
        """
        return self._up.producer

    @property
    def streaming(self) -> Optional[bool]:
        """
        Whether L{producer} registered as streaming; L{None} if there is none.
        """
        return self._up.streaming if self._up.producer is not None else None

    @property
    def producerPaused(self) -> bool:
        """
        Has this consumer paused its producer and not resumed it since?
        """
        return self._up.paused

    # IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register C{producer}; start a pull producer at once.  Like a
        transport, stop the producer at once if the connection was lost.

        @raise RuntimeError: If a producer is already registered (a
            L{ProducerStateError <twisted_streaming.ProducerStateError>}).
        """
        self.calls.append(("registerProducer", streaming))
        if self.disconnected and self._up.producer is None:
            self.calls.append(("stop",))
            producer.stopProducing()
            return
        self._up.register(producer, streaming)
        if not streaming:
            self._pull()

    def unregisterProducer(self) -> None:
        """
        Forget the producer.
        """
        self.calls.append(("unregisterProducer",))
        self._up.unregister()

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
        up = self._up
        if up.producer is not None and up.streaming and self.buffered > self.threshold:
            self.calls.append(("pause",))
            # A transport repeats its pause on every write while full.
            up.pause(repeat=True)

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
        up = self._up
        if self.buffered == 0 and up.producer is not None:
            if not up.streaming:
                self._pull()
            elif up.paused:
                self.calls.append(("resume",))
                up.resume()
        return amount

    def _pull(self) -> None:
        # As a transport does, an error is raised to whoever drove it.
        self.calls.append(("resume",))
        failure = self._up.pull()
        if failure is not None:
            failure.raiseException()

    def loseConnection(self) -> None:
        """
        The peer went away: discard the buffer and stop and forget the
        producer, as a transport does on connection loss.
        """
        self.disconnected = True
        self.buffered = 0
        self._cancelDrain()
        if self._up.producer is not None:
            self.calls.append(("stop",))
            self._up.stop()

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
