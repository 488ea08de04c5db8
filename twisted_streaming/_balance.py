"""
L{Balance}: one source's writes spread over several consumers, each write
to one of them.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure

from twisted_streaming._fanout import FanOut, FanOutput
from twisted_streaming._flow import BYTES, FAILED, WaterMarkBuffer

__all__ = ["Balance"]


class Balance(FanOut):
    """
    Spread one source's writes over several consumers (worker connections,
    say): a finishable consumer that one producer (push or pull) registers
    with, and that writes each write to I{one} output, the next one in
    turn that is not paused (round robin over those that can take it).

    Outputs are added with L{addOutput} and removed with L{removeOutput} at
    any time.  The source is paused only while every output is paused (or
    there is none).  A write that arrives then (a producer may write once
    more after its pause) is held, in order, and goes to the first output
    that resumes or is added; while anything is held the source stays
    paused, so it holds little.  Nothing is lost, except a write that an
    output's C{write} raised on: that output fails, with context, and the
    write with it.

    C{finish()} waits until what is held has gone out, then finishes every
    output (each producer unregisters and a finishable consumer is
    finished) and fires each output's L{Deferred} with the bytes it was
    given, then L{done} with the bytes the source wrote.  If the source
    fails, call L{fail}.  Cancelling L{done} stops the source and every
    output.

    @ivar held: Bytes (or items) written while no output could take them,
        not yet passed on.
    """

    def __init__(
        self,
        *,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        @param reactor: The reactor whose turn loop asks a pull source for
            data; the global reactor if L{None}.
        @param cooperator: Use this L{Cooperator} instead.
        """
        super().__init__(reactor=reactor, cooperator=cooperator)
        self._next = 0
        # Writes no output could take yet: anything held pauses the source,
        # so its marks are never read.
        self._held: WaterMarkBuffer[Any] = WaterMarkBuffer(self)
        self._draining = False

    @property
    def held(self) -> int:
        """
        Bytes (or items) written while no output could take them, not yet
        passed on.
        """
        return self._held.size

    def write(self, data: Any) -> None:
        """
        Write C{data} to the next output that is not paused, or hold it
        until one can take it.

        @raise ConsumerFinished: If it has been finished.
        """
        size = self._accept(data)
        if size is None:
            return
        if self._held or not self._send(data, size):
            self._held.append(data)
            self._regulate()
        elif self._stepping:
            self._charge(size, 1)

    def _send(self, data: Any, size: int) -> bool:
        """
        Write C{data} to the next output in turn that is not paused.

        @return: Whether one could take it.
        """
        outputs = self._outputs
        count = len(outputs)
        if count == len(self._paused):
            return False
        start = self._next
        for step in range(count):
            index = (start + step) % count
            output = outputs[index]
            if not output._pause.paused:
                self._next = index + 1
                self._deliverTo(output, data, size)
                return True
        return False

    def _drain(self) -> None:
        """
        Pass what is held on to outputs that can take it, then finish if
        the source has.
        """
        if self._draining:
            return
        held = self._held
        self._draining = True
        try:
            while held and not self._ended:
                item = held.popleft()
                size = len(item) if isinstance(item, BYTES) else 1
                if not self._send(item, size):
                    held.appendleft(item)
                    break
        finally:
            self._draining = False
        self._maybeComplete()

    # The fan-out's hooks

    def _blocked(self) -> bool:
        return bool(self._held) or len(self._paused) == len(self._outputs)

    def _ready(self) -> bool:
        return not self._held

    def _outputAdded(self, output: FanOutput) -> None:
        if self._held and not output.paused:
            self._drain()

    def _outputChanged(self, output: FanOutput, paused: bool) -> None:
        if not paused and self._held:
            self._drain()

    def _end(self, failure: Optional[Failure], state: str = FAILED) -> None:
        self._held.clear()
        super()._end(failure, state)
