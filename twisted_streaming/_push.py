"""
L{BasePushProducer}: the base class for correct push producers.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._util import failureWithContext, getReactor, isFinishable
from twisted_streaming.interfaces import ProducerStateError, ProducerStopped

_log = Logger()

# The states of a producer.  Pause is a separate flag, since a producer can be
# paused only while it is running.
_IDLE = "idle"
_RUNNING = "running"
_FINISHED = "finished"
_STOPPED = "stopped"
_FAILED = "failed"


@implementer(IPushProducer)
class BasePushProducer:
    """
    Subclass this to write a push producer that is correct with real
    transports.

    There are two ways to produce data:

      - B{Generated data}: override L{produce} to return the next chunk of
        bytes, or L{None} when the stream is complete.  The base class calls
        it in a loop while the consumer wants data, stops the loop as soon as
        the consumer pauses (even from inside C{write()}), restarts it when
        the consumer resumes, and yields to the reactor after
        L{maxBytesPerTurn} bytes or L{maxSecondsPerTurn} seconds so that a
        consumer that never pauses cannot starve other connections.

      - B{Event-driven}: leave L{produce} alone, call L{write} when data
        arrives from elsewhere and L{finishProducing} (or
        L{failProducing}) when the stream ends.  Override L{producingPaused},
        L{producingResumed} and L{producingStopped} to pause, resume and stop
        the source of the data; L{producingStarted} is called once, when
        production begins.

    Pause and resume are idempotent flags, as real transports require: any
    number of pauses is undone by one resume.  Stop is idempotent, and pause,
    resume or stop after the producer has finished or stopped do nothing.

    @cvar maxBytesPerTurn: The most bytes the L{produce} loop writes in one
        reactor turn before yielding.
    @cvar maxSecondsPerTurn: The most time the L{produce} loop spends in one
        reactor turn before yielding.
    """

    maxBytesPerTurn: int = 1024 * 1024
    maxSecondsPerTurn: float = 0.005

    consumer: Optional[IConsumer] = None
    bytesWritten: int = 0
    chunksWritten: int = 0

    def __init__(self, *, reactor: Optional[Any] = None) -> None:
        """
        @param reactor: The reactor used to schedule production (anything with
            C{callLater}, such as L{twisted.internet.task.Clock}); the global
            reactor if L{None}, looked up when production starts.
        """
        self._reactor = reactor
        self._state = _IDLE
        self._paused = False
        self._inLoop = False
        self._begun = False
        self._registered = False
        self._call: Optional[IDelayedCall] = None
        self._deferred: Optional[Deferred[int]] = None

    def __repr__(self) -> str:
        paused = " paused" if self._paused and self._state == _RUNNING else ""
        return f"<{type(self).__name__} {self._state}{paused} at {id(self):#x}>"

    # Public state

    @property
    def paused(self) -> bool:
        """
        Has the consumer paused this producer (and not resumed it since)?
        """
        return self._paused

    @property
    def producing(self) -> bool:
        """
        Has production started and not yet finished, failed or stopped?
        """
        return self._state == _RUNNING

    # Starting

    def startProducing(self, consumer: IConsumer) -> Deferred[int]:
        """
        Register with C{consumer} as a streaming producer and start producing
        on a later reactor turn.

        @return: A L{Deferred} that fires with the number of bytes written
            when the producer finishes, after it has unregistered from
            C{consumer} and called C{consumer.finish()} if C{consumer} is
            finishable.  It fails with L{ProducerStopped} if the producer is
            stopped first (the consumer went away), with the error raised by
            L{produce} or C{consumer.write} if production fails (in a
            L{ContextFailure <twisted_streaming.ContextFailure>} naming this
            producer and how far it had got), and with L{CancelledError} if it
            is cancelled, which stops the producer and unregisters it.

        @raise ProducerStateError: If this producer has already been started.
        """
        if self._state != _IDLE:
            raise ProducerStateError(f"{self!r} has already been started")
        self._state = _RUNNING
        self.consumer = consumer
        self._deferred = Deferred(self._cancel)
        deferred = self._deferred
        self._call = getReactor(self._reactor).callLater(0, self._begin)
        # A disconnected transport calls stopProducing() from in here, and
        # then must not be unregistered from.
        consumer.registerProducer(self, True)
        self._registered = self._state == _RUNNING
        return deferred

    def _begin(self) -> None:
        self._call = None
        try:
            self.producingStarted()
            # A pause that arrived before the first turn (or during
            # producingStarted) is reported now, so the hooks always see
            # started before paused.
            self._begun = True
            if self._paused and self._state == _RUNNING:
                self.producingPaused()
        except BaseException as e:
            self._fail(e)
            return
        self._run()

    # Hooks for subclasses

    def produce(self) -> Optional[bytes]:
        """
        Return the next chunk to write, or L{None} when the stream is complete.

        Override this for generated data.  Chunks of tens of KiB make the best
        use of a transport; an empty chunk is skipped.  An exception raised
        here fails the producer.
        """
        raise NotImplementedError

    def producingStarted(self) -> None:
        """
        Production has begun (a reactor turn after L{startProducing}).
        """

    def producingPaused(self) -> None:
        """
        The consumer has paused this producer.  Event-driven subclasses pause
        their source here.  Called once per pause, however often the consumer
        repeats it, and never before L{producingStarted} has returned: a
        pause that arrives earlier is reported right after it (and a pause
        undone before then is not reported at all).
        """

    def producingResumed(self) -> None:
        """
        The consumer has resumed this producer after a pause.
        """

    def producingStopped(self) -> None:
        """
        The producer has been stopped before finishing; release resources here.
        """

    # Event-driven production

    def write(self, data: bytes) -> None:
        """
        Write C{data} to the consumer, counting it.

        Data written while paused still reaches the consumer (a transport
        buffers it), so event-driven subclasses should pause their source in
        L{producingPaused} rather than write more.

        @raise ProducerStateError: If the producer is not producing.
        """
        if self._state != _RUNNING or self.consumer is None:
            raise ProducerStateError(f"{self!r} cannot write: it is {self._state}")
        self.bytesWritten += len(data)
        self.chunksWritten += 1
        self.consumer.write(data)

    def finishProducing(self) -> None:
        """
        The stream is complete: unregister from the consumer, finish it if it
        is finishable, and fire the completion L{Deferred} (or fail it, with
        context, if the consumer's C{finish} raises).

        Does nothing if the producer has already stopped or failed.
        """
        if self._state in (_STOPPED, _FAILED):
            return
        if self._state != _RUNNING:
            raise ProducerStateError(f"{self!r} cannot finish: it is {self._state}")
        self._state = _FINISHED
        self._cancelCall()
        consumer = self.consumer
        assert consumer is not None
        self._registered = False
        consumer.unregisterProducer()
        if isFinishable(consumer):
            try:
                consumer.finish()  # type: ignore[attr-defined]
            except BaseException as error:
                self._fire(
                    failureWithContext(
                        error, self, self.bytesWritten, self.chunksWritten
                    )
                )
                return
        self._fire(self.bytesWritten)

    def failProducing(self, reason: Optional[BaseException] = None) -> None:
        """
        The stream has failed with C{reason} (by default, the exception being
        handled): unregister from the consumer and fail the completion
        L{Deferred} with a L{ContextFailure <twisted_streaming.ContextFailure>}.
        """
        if self._state != _RUNNING:
            return
        if reason is None:
            reason = Failure().value
        assert reason is not None
        self._fail(reason)

    # IPushProducer

    def pauseProducing(self) -> None:
        """
        Pause production; idempotent.  Called by the consumer.
        """
        if self._state != _RUNNING or self._paused:
            return
        self._paused = True
        if self._begun:
            self.producingPaused()

    def resumeProducing(self) -> None:
        """
        Resume production after a pause; idempotent.  Called by the consumer.

        If the L{produce} loop is already running (the resume arrived from
        inside C{write()}), it simply carries on; a second loop is never
        started.
        """
        if self._state != _RUNNING or not self._paused:
            return
        self._paused = False
        if self._begun:
            self.producingResumed()
        # While a turn is scheduled (including the first), it will do the work.
        if self._call is None:
            self._run()

    def stopProducing(self) -> None:
        """
        Stop for good: unregister from the consumer and fail the completion
        L{Deferred} with L{ProducerStopped}.  Idempotent; does nothing once
        the producer has finished.
        """
        self._stop(
            Failure(ProducerStopped(self, self.bytesWritten, self.chunksWritten))
        )

    # Internals

    def _isGenerated(self) -> bool:
        return type(self).produce is not BasePushProducer.produce

    def _cancel(self, deferred: Deferred[int]) -> None:
        # Deferred.cancel fails it with CancelledError once this returns, even
        # if the producer was already finishing (from inside finish()).
        self._deferred = None
        self._stop(Failure(CancelledError()))

    def _stop(self, reason: Failure) -> None:
        if self._state == _IDLE:
            # Stopped before starting: nothing to unregister or fire.
            self._state = _STOPPED
            return
        if self._state != _RUNNING:
            return
        self._state = _STOPPED
        self._cancelCall()
        self._unregister()
        try:
            self.producingStopped()
        except BaseException:
            _log.failure("{producer!r}.producingStopped() failed", producer=self)
        self._fire(reason)

    def _fail(self, error: BaseException) -> None:
        failure = failureWithContext(error, self, self.bytesWritten, self.chunksWritten)
        self._state = _FAILED
        self._cancelCall()
        self._unregister()
        self._fire(failure)

    def _unregister(self) -> None:
        consumer = self.consumer
        if consumer is None or not self._registered:
            return
        self._registered = False
        try:
            consumer.unregisterProducer()
        except BaseException:
            _log.failure("Unregistering {producer!r} failed", producer=self)

    def _fire(self, result: Any) -> None:
        deferred, self._deferred = self._deferred, None
        if deferred is None:
            return
        if isinstance(result, Failure):
            deferred.errback(result)
        else:
            deferred.callback(result)

    def _cancelCall(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _schedule(self) -> None:
        if self._call is None:
            self._call = getReactor(self._reactor).callLater(0, self._nextTurn)

    def _nextTurn(self) -> None:
        self._call = None
        self._run()

    def _run(self) -> None:
        """
        Run the L{produce} loop for at most one turn's budget.
        """
        if (
            self._inLoop
            or self._paused
            or self._state != _RUNNING
            or not self._isGenerated()
        ):
            return
        consumer = self.consumer
        assert consumer is not None
        budget = self.maxBytesPerTurn
        deadline = time.perf_counter() + self.maxSecondsPerTurn
        produce: Callable[[], Optional[bytes]] = self.produce
        write = consumer.write
        self._inLoop = True
        try:
            while self._state == _RUNNING and not self._paused:
                chunk = produce()
                if chunk is None:
                    self.finishProducing()
                    return
                if chunk:
                    budget -= len(chunk)
                    self.bytesWritten += len(chunk)
                    self.chunksWritten += 1
                    write(chunk)
                if budget <= 0 or time.perf_counter() >= deadline:
                    # Yield, so that a consumer that never pauses cannot
                    # starve the rest of the reactor.
                    if self._state == _RUNNING and not self._paused:
                        self._schedule()
                    return
        except BaseException as e:
            if self._state == _RUNNING:
                self._fail(e)
            else:
                _log.failure("{producer!r} failed after it had ended", producer=self)
        finally:
            self._inLoop = False
