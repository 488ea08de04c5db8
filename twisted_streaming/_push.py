"""
L{BasePushProducer}: the base class for correct push producers.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.python.failure import Failure

from twisted_streaming._flow import FAILED, RUNNING, STOPPED, Flow
from twisted_streaming.interfaces import ProducerStateError

__all__ = ["BasePushProducer"]

#: The most bytes one step of the L{BasePushProducer.produce} loop writes
#: before the turn loop moves on to the next flow: one call of the loop per
#: chunk would cost more than small chunks do.
STEP_BYTES = 128 * 1024


class BasePushProducer(Flow):
    """
    Subclass this to write a push producer that is correct with real
    transports.

    There are two ways to produce data:

      - B{Generated data}: override L{produce} to return the next chunk of
        bytes (or any object, for a consumer of objects), or L{None} when
        the stream is complete.  The base class calls it on the reactor's
        turn loop while the consumer wants data, stops as soon as the
        consumer pauses (even from inside C{write()}), and carries on, on a
        later turn, when the consumer resumes.  Every producer of this
        package on one reactor shares one budget per turn (see
        L{TurnLoop <twisted_streaming._flow.TurnLoop>}: 5 ms or 1 MiB), so
        a consumer that never pauses cannot starve other connections, and
        neither can a thousand of them.

      - B{Event-driven}: leave L{produce} alone, call L{write} when data
        arrives from elsewhere and L{finishProducing} (or
        L{failProducing}) when the stream ends.  Override L{producingPaused},
        L{producingResumed} and L{producingStopped} to pause, resume and stop
        the source of the data; L{producingStarted} is called once, when
        production begins.

    Pause and resume are idempotent flags, as real transports require: any
    number of pauses is undone by one resume.  After L{producingResumed},
    C{resumeProducing} carries on with the C{produce} loop at once, as a
    transport expects of a producer it resumes, but only within what is
    left of the reactor's budget for this turn (see L{TurnLoop
    <twisted_streaming.TurnLoop>}), and never inside another producer's
    work: a resume that arrives from inside a C{write} (of this producer or
    any other of the package), or once the turn's budget is spent, leaves
    the loop for a later turn.  A consumer that resumes several producers
    in a row must therefore expect each to write before the call returns.
    Stop is idempotent, and pause, resume or stop after the producer has
    finished or stopped do nothing.

    L{write} after the producer has finished, failed or stopped raises
    L{ProducerStateError}, where a Twisted transport would drop the data
    silently: data that can no longer arrive is a bug worth hearing of.
    """

    def __init__(self, **kwargs: Any) -> None:
        """
        @param reactor: The reactor whose turn loop the producer runs on
            (anything with C{callLater} and C{seconds}, such as
            L{twisted.internet.task.Clock}); the global reactor if L{None},
            looked up when production starts.
        @param cooperator: Run on this L{twisted.internet.task.Cooperator}
            instead of the reactor's turn loop.
        """
        super().__init__(**kwargs)
        self._begun = False
        self._generated = type(self).produce is not BasePushProducer.produce

    # Starting

    def startProducing(self, consumer: IConsumer) -> Deferred[int]:
        """
        Register with C{consumer} as a streaming producer and start producing
        on a later reactor turn.

        @return: A L{Deferred} that fires with the number of bytes written
            (items that are not bytes count as 1) when the producer
            finishes, after it has unregistered from C{consumer} and called
            C{consumer.finish()} if C{consumer} is finishable.  It fails
            with L{ProducerStopped} if the producer is stopped first (the
            consumer went away); with the error raised by L{produce},
            C{consumer.write} or C{consumer.finish} if production fails;
            with the error C{consumer.registerProducer} raised if the
            consumer refuses the producer (a transport that already has
            one), in which case nothing is written to it and its own
            producer is left alone; and with L{CancelledError} if it is
            cancelled, which stops the producer and unregisters it.  Errors
            come in a L{ContextFailure <twisted_streaming.ContextFailure>}
            naming this producer, how far it had got and the chain it was
            part of.

        @raise ProducerStateError: If this producer has already been started.
        """
        deferred = self._start(consumer, True)
        if self.producing:
            self._turns().wake()
        return deferred

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
        Production ended before the stream was complete: the consumer stopped
        it, its Deferred was cancelled, or it failed (L{produce}, the
        consumer's C{write} or C{finish}, or L{failProducing}).  Release
        resources here.  Called once, after the producer has unregistered and
        before its Deferred fires; not called if it ended before
        L{producingStarted}.
        """

    # Event-driven production

    def write(self, data: bytes) -> None:
        """
        Write C{data} to the consumer, counting it.

        Data written while paused still reaches the consumer (a transport
        buffers it), so event-driven subclasses should pause their source in
        L{producingPaused} rather than write more.

        @raise ProducerStateError: If the producer is not producing: it has
            not started, or it has finished, failed or stopped.
        """
        if not self.producing:
            raise ProducerStateError(f"{self!r} cannot write: it is {self._state}")
        self.bytesWritten += len(data) if isinstance(data, (bytes, bytearray)) else 1
        self.chunksWritten += 1
        self.consumer.write(data)

    def finishProducing(self) -> None:
        """
        The stream is complete: unregister from the consumer, finish it if it
        is finishable, and fire the completion L{Deferred} (or fail it, with
        context, if the consumer's C{finish} raises).

        Does nothing if the producer has already stopped or failed.

        @raise ProducerStateError: If it has not started, or has already
            finished.
        """
        if self._state is STOPPED or self._state is FAILED:
            return
        if not self.producing:
            raise ProducerStateError(f"{self!r} cannot finish: it is {self._state}")
        self._finish(self.bytesWritten)

    def failProducing(self, reason: Optional[BaseException] = None) -> None:
        """
        The stream has failed with C{reason} (by default, the exception being
        handled): unregister from the consumer and fail the completion
        L{Deferred} with a L{ContextFailure <twisted_streaming.ContextFailure>}.
        Does nothing unless producing.
        """
        if not self.producing:
            return
        if reason is None:
            reason = Failure().value
        assert reason is not None
        self._fail(reason)

    # The flow core's hooks

    def _flowPauseChanged(self, paused: bool) -> None:
        if not self._begun:
            # Reported right after producingStarted, by the first step.
            return
        # The task exists once begun: the first step ran in it.
        task = self._task
        if paused:
            if task is not None:
                task.sleep()
            self.producingPaused()
        else:
            self.producingResumed()
            if (
                self._generated
                and task is not None
                and self._state is RUNNING
                and not self._pause.paused
            ):
                task.wake(now=True)

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        if reason is not None and self._begun:
            self.producingStopped()

    def _flowStep(self) -> bool:
        if not self._begun:
            self._begun = True
            try:
                self.producingStarted()
                if self.paused and self.producing:
                    self.producingPaused()
            except BaseException as error:
                self._fail(error)
                return False
        pause = self._pause
        if pause.paused or self._state is not RUNNING or not self._generated:
            return False
        write = self.consumer.write
        produce = self.produce
        task = self._task
        assert task is not None
        # What this step may write: a step's worth, or what is left of the
        # turn's budget if less (at least one chunk); each write counts as
        # at least 1 KiB, so a step of small chunks or objects ends after 128
        # of them.  Charged to the turn once, at the end of the step.
        room = task.room()
        limit = STEP_BYTES if room > STEP_BYTES else room
        written = weight = 0
        try:
            while True:
                chunk = produce()
                if chunk is None:
                    task.charge(written)
                    self._finish(self.bytesWritten)
                    return False
                if chunk:
                    size = len(chunk) if isinstance(chunk, (bytes, bytearray)) else 1
                    self.bytesWritten += size
                    self.chunksWritten += 1
                    write(chunk)
                    written += size
                    weight += size if size > 1024 else 1024
                    if pause.paused or self._state is not RUNNING:
                        task.charge(written)
                        return False
                    if weight >= limit:
                        task.charge(written)
                        return True
        except BaseException as error:
            task.charge(written)
            self._fail(error)
            return False
