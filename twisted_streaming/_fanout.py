"""
The fan-out that L{Broadcast <twisted_streaming.Broadcast>} and L{Balance
<twisted_streaming.Balance>} are: a consumer for one source whose writes go
out to several outputs, each a push producer (a L{FanOutput}) registered
with a consumer of its own.
"""

from __future__ import annotations

from typing import Any, List, Optional, Set, Tuple, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import (
    BYTES,
    FAILED,
    STOPPED,
    Flow,
    OnTurnLoop,
    Task,
    Upstream,
)
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

__all__ = ["FanOut", "FanOutput"]


@implementer(IPushProducer)
class FanOutput(Flow):
    """
    One output of a L{Broadcast <twisted_streaming.Broadcast>} or a
    L{Balance <twisted_streaming.Balance>}: the streaming producer
    registered with that output's consumer, paused and resumed by it.

    @ivar consumer: The output's consumer.
    @ivar bytesWritten: Bytes written to it (items that are not bytes count
        as 1).
    @ivar chunksWritten: Writes made to it.
    @ivar lag: Bytes (or items) written to it since it was paused; 0 while
        it is not paused.
    @ivar droppedBytes: Bytes (or items) it did not receive because it was
        too far behind (a broadcast's C{"drop"} policy).
    @ivar droppedChunks: Writes it did not receive.
    @ivar dropping: Whether writes to it are being dropped now.
    """

    def __init__(self, fan: FanOut, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fan = fan
        self.lag = 0
        self.droppedBytes = self.droppedChunks = 0
        self.dropping = False
        # Part of the fan-out's outputs: added, and not yet ended.
        self._attached = False
        # A timer that disconnects it if it stays paused too long.
        self._timer: Any = None
        # Close its transport once it has unregistered.
        self._closeTransport = False

    def __repr__(self) -> str:
        paused = " paused" if self.paused and self.producing else ""
        return (
            f"<{type(self).__name__} {self._state}{paused} to {self.consumer!r} "
            f"at {id(self):#x}>"
        )

    @property
    def upstream(self) -> FanOut:
        """
        The broadcast or balance this output belongs to.
        """
        return self._fan

    def _flowPauseChanged(self, paused: bool) -> None:
        if self._attached:
            self._fan._outputPaused(self, paused)

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        self._fan._outputEnded(self, reason)


@implementer(IFinishableConsumer)
class FanOut(OnTurnLoop):
    """
    A finishable consumer for one source that writes to several outputs.
    Subclasses say where each write goes (L{write}) and when the source is
    paused (L{_blocked}).

    @ivar done: Fires with the bytes written to it (items that are not
        bytes count as 1) once the source has finished and every output
        has been finished or removed; fails as L{fail} says.
    @ivar bytesIn: Bytes written to it by the source.
    @ivar chunksIn: Writes made to it by the source.
    """

    def __init__(
        self,
        *,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        self._reactor = reactor
        self._cooperator = cooperator
        self._up = Upstream(self)
        self._outputs: List[FanOutput] = []
        # The outputs as they were before this write: one may end during it.
        self._snapshot: Tuple[FanOutput, ...] = ()
        self._paused: Set[FanOutput] = set()
        self._task: Optional[Task] = None
        self._stepping = False
        self._finishing = False
        self._ended = False
        self._failure: Optional[Failure] = None
        self.bytesIn = self.chunksIn = 0
        self.done: Deferred[int] = Deferred(self._cancel)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self._outputs)} outputs at {id(self):#x}>"

    @property
    def producer(self) -> Optional[Any]:
        """
        The source registered with it, or L{None}.
        """
        return self._up.producer

    @property
    def upstream(self) -> Optional[Any]:
        """
        The source registered with it, or L{None} (for the chain a failure
        names).
        """
        return self._up.producer

    @property
    def outputs(self) -> Tuple[FanOutput, ...]:
        """
        The outputs, in the order they were added, with their counters.
        """
        return tuple(self._outputs)

    # Outputs

    def addOutput(self, consumer: IConsumer) -> Deferred[int]:
        """
        Add C{consumer} as an output, at any time, also in the middle of
        the stream: it gets the writes from now on.  A streaming producer
        (a L{FanOutput}) is registered with it.

        @return: A L{Deferred} that fires with the bytes written to this
            output (items that are not bytes count as 1) once it has been
            finished (after it unregistered and C{consumer.finish()} was
            called, if it is finishable) or removed with L{removeOutput}.
            It fails with L{ProducerStopped
            <twisted_streaming.ProducerStopped>} if C{consumer} stops it
            (a transport whose connection was lost), with L{ConsumerTooSlow
            <twisted_streaming.ConsumerTooSlow>} if a policy disconnected
            it, with the error of C{consumer.write} or C{consumer.finish}
            (in a L{ContextFailure <twisted_streaming.ContextFailure>}),
            with the error C{consumer.registerProducer} raised if it refused
            (nothing is then written to it), and as L{done} fails if the
            source fails.  An output added after the end is finished (or
            failed) at once.
        """
        output = FanOutput(self, reactor=self._reactor, cooperator=self._cooperator)
        added = output._start(consumer, True)
        if not output.producing:
            return added
        if self._ended:
            if self._failure is None:
                output._finish(0)
            else:
                output._abort(FAILED, self._failure)
            return added
        output._attached = True
        self._outputs.append(output)
        self._snapshot = tuple(self._outputs)
        if output.paused:
            # Paused from inside its registration, as a stage may be.
            self._outputPaused(output, True)
        self._outputAdded(output)
        self._regulate()
        return added

    def removeOutput(self, consumer: IConsumer) -> None:
        """
        Stop writing to C{consumer}: its producer unregisters (C{consumer}
        is not finished) and the L{Deferred} L{addOutput} returned fires
        with the bytes it was given.  Does nothing if C{consumer} is not an
        output.
        """
        for output in self._snapshot:
            if output.consumer is consumer and output.producing:
                output._finish(output.bytesWritten, finishConsumer=False)
                return

    # IConsumer, for the source

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register the source: a streaming producer is paused at once if no
        output can take its writes; a pull producer is asked for data on the
        turn loop while some can.  A source registered after the end is
        stopped at once.

        @raise ProducerStateError: If a producer is already registered.
        """
        self._up.register(producer, streaming)
        if self._ended:
            self._up.stop()
        else:
            self._regulate()

    def unregisterProducer(self) -> None:
        """
        Forget the source.
        """
        self._up.unregister()

    def write(self, data: Any) -> None:
        """
        Pass C{data} on to the outputs.

        @raise ConsumerFinished: If it has been finished.
        """
        raise NotImplementedError

    def finish(self) -> None:
        """
        The source's stream is complete: once every write has reached its
        output, every output is finished (its producer unregisters and a
        finishable consumer is finished), then L{done} fires.

        @raise ConsumerFinished: If called twice, or after L{fail}.
        """
        if self._finishing:
            raise ConsumerFinished(f"{self!r} has already been finished")
        self._finishing = True
        self._maybeComplete()

    def fail(self, reason: Optional[Union[BaseException, Failure]] = None) -> None:
        """
        The source's stream failed with C{reason} (by default the exception
        being handled): the source is stopped if it is still registered,
        every output's producer unregisters and its L{Deferred} fails, and
        L{done} fails, with C{reason} in a L{ContextFailure
        <twisted_streaming.ContextFailure>}.  A source of this package
        says it failed through its own L{Deferred}; errback it here, e.g.
        C{pipeline(source, sink=broadcast).addErrback(broadcast.fail)}.
        Does nothing once it has ended.
        """
        if self._ended:
            return None
        if reason is None:
            reason = Failure()
        error = reason.value if isinstance(reason, Failure) else reason
        assert isinstance(error, BaseException)
        failure = failureWithContext(error, self, self.bytesIn, self.chunksIn)
        self._end(failure)
        self.done.errback(failure)
        return None

    # For subclasses

    def _accept(self, data: Any) -> Optional[int]:
        """
        Count a write of C{data} from the source.

        @return: Its size (1 for an item that is not bytes), or L{None} if
            it comes late, after a failure or cancellation stopped the
            source, and is to be dropped.

        @raise ConsumerFinished: If it has been finished.
        """
        if self._finishing:
            if self._failure is None:
                raise ConsumerFinished(f"{self!r} has been finished")
            return None
        size = len(data) if isinstance(data, BYTES) else 1
        self.bytesIn += size
        self.chunksIn += 1
        return size

    def _blocked(self) -> bool:
        """
        Should the source be paused now?
        """
        raise NotImplementedError

    def _outputAdded(self, output: FanOutput) -> None:
        """
        C{output} has been added.
        """

    def _outputChanged(self, output: FanOutput, paused: bool) -> None:
        """
        C{output} was paused or resumed (its counters are up to date).
        """

    def _outputEnded(self, output: FanOutput, reason: Optional[Failure]) -> None:
        """
        C{output} has ended, with C{reason} (L{None} if it was finished or
        removed): it is no longer an output.  Subclasses call this first.
        """
        if output._timer is not None:
            output._timer.cancel()
            output._timer = None
        if not output._attached:
            return
        output._attached = False
        self._outputs.remove(output)
        self._snapshot = tuple(self._outputs)
        self._paused.discard(output)
        self._regulate()

    def _ready(self) -> bool:
        """
        May the outputs be finished now that the source has finished?
        """
        return True

    def _charge(self, size: int, copies: int) -> None:
        """
        Charge the turn loop for C{copies} writes of C{size}: those beyond
        the one the source charges itself for (all of them while a pull
        source is being asked for data).
        """
        extra = copies if self._stepping else copies - 1
        if extra > 0:
            self._turns().charge(size * extra)

    def _deliverTo(self, output: FanOutput, data: Any, size: int) -> bool:
        """
        Write C{data} to C{output}, counted.  An error fails that output
        alone, with context.

        @return: Whether it was written.
        """
        output.bytesWritten += size
        output.chunksWritten += 1
        try:
            output.consumer.write(data)
        except Exception as error:
            output._fail(
                error,
                item=data,
                itemIndex=output.chunksWritten - 1,
                itemOffset=output.bytesWritten - size,
                itemOf=f"its output (written to {output.consumer!r})",
            )
            return False
        return True

    # Internals

    def _regulate(self) -> None:
        """
        Pause the source while it is blocked, resume it (or wake the turn
        loop to pull it) once it is not.
        """
        up = self._up
        if self._ended or up.producer is None:
            return
        blocked = self._blocked()
        if up.streaming:
            if blocked:
                up.pause()
            else:
                up.resume()
        elif not blocked and not self._finishing:
            self._turns().wake()

    def _step(self) -> bool:
        """
        Ask a pull source for data, once.
        """
        up = self._up
        if (
            self._ended
            or self._finishing
            or up.producer is None
            or up.streaming
            or self._blocked()
        ):
            return False
        before = self.chunksIn
        self._stepping = True
        try:
            failure = up.pull()
        finally:
            self._stepping = False
        if failure is not None:
            self.fail(failure)
            return False
        # A pull producer that wrote nothing is not asked again until more
        # is wanted, as a transport would not ask it again at all.
        return self.chunksIn != before and not self._ended and not self._blocked()

    def _outputPaused(self, output: FanOutput, paused: bool) -> None:
        output.lag = 0
        if paused:
            self._paused.add(output)
        else:
            self._paused.discard(output)
            output.dropping = False
        self._outputChanged(output, paused)
        self._regulate()

    def _maybeComplete(self) -> None:
        if not self._finishing or self._ended or not self._ready():
            return
        self._end(None)
        self.done.callback(self.bytesIn)

    def _end(self, failure: Optional[Failure], state: str = FAILED) -> None:
        """
        End every output: finish them, or if C{failure} is given stop the
        source and end them with it, in C{state} (stopped or failed).
        """
        self._ended = self._finishing = True
        self._failure = failure
        self._stopTurns()
        if failure is not None:
            self._up.stop()
        outputs = self._snapshot
        for output in outputs:
            output._attached = False
        self._outputs = []
        self._snapshot = ()
        self._paused.clear()
        for output in outputs:
            if failure is None:
                output._finish(output.bytesWritten)
            else:
                output._abort(state, failure)

    def _cancel(self, deferred: Deferred[int]) -> None:
        # Deferred.cancel fails it with CancelledError once this returns.
        if not self._ended:
            self._end(Failure(CancelledError()), STOPPED)
