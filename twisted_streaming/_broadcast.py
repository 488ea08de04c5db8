"""
L{Broadcast}: one source to many consumers (fan-out), with an explicit
policy for consumers that fall behind.
"""

from __future__ import annotations

from typing import Any, Optional, Set

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_streaming._fanout import FanOut, FanOutput
from twisted_streaming._flow import FAILED, RUNNING, STOPPED, getReactor
from twisted_streaming.interfaces import ConsumerTooSlow

__all__ = ["Broadcast"]

_log = Logger()

PAUSE = "pause"
DROP = "drop"
DISCONNECT = "disconnect"
_POLICIES = {PAUSE: PAUSE, DROP: DROP, DISCONNECT: DISCONNECT}


class Broadcast(FanOut):
    """
    Send one source's stream to many consumers: a finishable consumer that
    one producer (push or pull) registers with, and that writes everything
    written to it to every output.

    Outputs are added with L{addOutput} and removed with L{removeOutput} at
    any time, also in the middle of the stream; an output gets the writes
    made while it is an output.  Writes made while there is no output at
    all go nowhere (and the source is paused while there is none).

    An output's consumer pauses it as a transport does.  A paused output
    still gets the writes (its transport buffers them) until it has been
    given C{maxLag} bytes (or items, for a stream of objects) since it was
    paused, so a fast reader's brief pauses cost nothing; C{policy} says
    what happens to an output that falls further behind:

      - C{"pause"}: the source is paused while any output is that far
        behind; the slowest output sets the pace and nothing is lost.
      - C{"drop"}: the output gets no more writes until it resumes; they
        are counted in its L{FanOutput.droppedBytes} and
        L{FanOutput.droppedChunks}, not kept.  Each write it does get is
        whole.
      - C{"disconnect"}: the output is removed and stopped: its producer
        unregisters, its transport (if it is one) is closed with
        C{abortConnection} (C{loseConnection} for a transport without it),
        since a buffer its reader does not read would never drain, the
        event is logged and its L{Deferred} fails with L{ConsumerTooSlow
        <twisted_streaming.ConsumerTooSlow>}.  So is an output that stays
        paused for longer than C{timeout} seconds, if one is given.

    Under C{"drop"} and C{"disconnect"}, the source is paused only while
    every output is paused; the others go on at full speed.

    C{finish()} reaches every output: each is finished (its producer
    unregisters and C{consumer.finish()} is called if it is finishable,
    so a transport is left for you to close), and its L{Deferred} fires
    with the bytes it was given; then L{done} fires with the bytes the
    source wrote.  If the source fails, call L{fail}.  Cancelling L{done}
    stops the source and every output.

    @ivar policy: C{"pause"}, C{"drop"} or C{"disconnect"}.
    @ivar maxLag: How much an output may be given after it was paused
        before the policy applies to it.
    @ivar timeout: Under C{"disconnect"}, the most seconds an output may
        stay paused, or L{None} for no limit.
    """

    def __init__(
        self,
        *,
        policy: str = PAUSE,
        maxLag: int = 1024 * 1024,
        timeout: Optional[float] = None,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        @param policy: What to do with an output more than C{maxLag} behind:
            C{"pause"}, C{"drop"} or C{"disconnect"}.
        @param maxLag: Bytes (items, for objects) an output may be given
            after it was paused before the policy applies; 0 applies it as
            soon as it is paused.
        @param timeout: Under C{"disconnect"}: also disconnect an output
            that stays paused for this many seconds.
        @param reactor: The reactor for the timeout and for the turn loop
            that asks a pull source for data; the global reactor if
            L{None}.
        @param cooperator: Ask a pull source for data on this
            L{Cooperator} instead of the turn loop.
        @raise ValueError: For an unknown policy, a negative C{maxLag}, or
            a C{timeout} with a policy other than C{"disconnect"}.
        """
        if policy not in _POLICIES:
            raise ValueError(
                f"policy must be one of {', '.join(map(repr, _POLICIES))}, "
                f"not {policy!r}"
            )
        if maxLag < 0:
            raise ValueError(f"maxLag must not be negative, not {maxLag!r}")
        if timeout is not None and policy != DISCONNECT:
            raise ValueError(
                f"a timeout disconnects outputs: it needs the 'disconnect' "
                f"policy, not {policy!r}"
            )
        super().__init__(reactor=reactor, cooperator=cooperator)
        self.policy = _POLICIES[policy]
        self.maxLag = maxLag
        self.timeout = timeout
        # Under "pause", the paused outputs at least maxLag behind.
        self._behind: Set[FanOutput] = set()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.policy} to {len(self._outputs)} "
            f"outputs at {id(self):#x}>"
        )

    def write(self, data: Any) -> None:
        """
        Write C{data} to every output, as the policy allows.

        @raise ConsumerFinished: If it has been finished.
        """
        size = self._accept(data)
        if size is None:
            return
        maxLag = self.maxLag
        copies = 0
        for output in self._snapshot:
            if output._state is not RUNNING:
                # It ended during this write.
                continue
            if output._pause.paused:
                if output.dropping:
                    output.droppedBytes += size
                    output.droppedChunks += 1
                    continue
                output.lag += size
                if self._deliverTo(output, data, size):
                    copies += 1
                if output.lag >= maxLag and output._state is RUNNING:
                    self._fellBehind(output)
            elif self._deliverTo(output, data, size):
                copies += 1
        self._charge(size, copies)

    # Policies

    def _fellBehind(self, output: FanOutput) -> None:
        """
        C{output} is paused and has been given C{maxLag} or more since.
        """
        policy = self.policy
        if policy is PAUSE:
            if output not in self._behind:
                self._behind.add(output)
                self._regulate()
        elif policy is DROP:
            output.dropping = True
        else:
            self._disconnect(output, f"fell {output.lag} behind")

    def _timedOut(self, output: FanOutput) -> None:
        output._timer = None
        if output.producing:
            self._disconnect(output, f"stayed paused for more than {self.timeout} s")

    def _disconnect(self, output: FanOutput, why: str) -> None:
        _log.info(
            "{broadcast!r} disconnected {consumer!r}: it {why}",
            broadcast=self,
            consumer=output.consumer,
            why=why,
        )
        output._closeTransport = True
        output._abort(
            STOPPED,
            Failure(
                ConsumerTooSlow(output, output.bytesWritten, output.chunksWritten, why)
            ),
        )

    # The fan-out's hooks

    def _blocked(self) -> bool:
        outputs = self._outputs
        if not outputs:
            return True
        if self.policy is PAUSE:
            return bool(self._behind)
        return len(self._paused) == len(outputs)

    def _outputChanged(self, output: FanOutput, paused: bool) -> None:
        if paused:
            if self.timeout is not None and output._timer is None:
                output._timer = getReactor(self._reactor).callLater(
                    self.timeout, self._timedOut, output
                )
            if self.maxLag == 0:
                self._fellBehind(output)
        else:
            self._behind.discard(output)
            if output._timer is not None:
                output._timer.cancel()
                output._timer = None

    def _outputEnded(self, output: FanOutput, reason: Optional[Failure]) -> None:
        self._behind.discard(output)
        super()._outputEnded(output, reason)
        if output._closeTransport:
            consumer: Any = output.consumer
            close = getattr(consumer, "abortConnection", None) or getattr(
                consumer, "loseConnection", None
            )
            if close is not None:
                try:
                    close()
                except Exception:
                    _log.failure("Closing {consumer!r} failed", consumer=consumer)

    def _end(self, failure: Optional[Failure], state: str = FAILED) -> None:
        self._behind.clear()
        super()._end(failure, state)
