"""
L{Merge}: many producers into one consumer (fan-in), with backpressure,
whole writes, fair shares and tags.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import (
    BYTES,
    FAILED,
    RUNNING,
    Flow,
    Task,
    Upstream,
)
from twisted_streaming.interfaces import (
    ConsumerFinished,
    IFinishableConsumer,
    ProducerStateError,
)

__all__ = ["Merge", "MergeInput"]

# The tag of an input that has none: its items are delivered as they are.
_NO_TAG: Any = object()


@implementer(IPushProducer)
class Merge(Flow):
    """
    Merge many streams into one consumer: each input is a consumer that any
    producer, push or pull, registers with and writes to; the merge is one
    streaming producer registered with C{consumer}, from the moment it is
    made.

      - B{Whole writes}: each C{write} to an input reaches C{consumer} as
        one write, at once, never split and never interleaved with another
        input's.  With a tag (L{input}C{(tag)}), it is delivered as
        C{(tag, item)}, so that one connection carries several logical
        streams (encode the pairs before a byte consumer, as in the guide).
      - B{Backpressure}: when C{consumer} pauses the merge, every input's
        producer is paused (a pull producer is no longer asked for data).
        When it resumes, the inputs are resumed one after the other, the
        least served first (the one that has delivered the fewest bytes),
        and the loop stops as soon as the merge is paused again: a producer
        of this package resumed by its consumer writes at once, and often
        fills the consumer's buffer before the next input is reached.  So
        over any stretch where every input has data, each of N inputs gets
        about 1/N of the bytes, whatever the sizes of their writes.  An
        input that had nothing to send for a while catches up by at most
        L{catchUp} bytes, not by all it missed.
      - B{End}: L{close} says that no more inputs will be added.  Once it
        has been called and every input has finished (its C{finish()} was
        called), the merge unregisters from C{consumer}, calls
        C{consumer.finish()} if it is finishable, and L{done} fires with
        the bytes delivered (items that are not bytes count as 1; tags are
        not counted).
      - B{An input that fails}: the other inputs carry on, undisturbed,
        and L{done} fails only at the end, once every other input has
        finished, with a L{ContextFailure
        <twisted_streaming.ContextFailure>} naming the first input that
        failed (C{consumer} is then not finished).  An input fails when
        its producer's L{Deferred} fails, for a source started with
        L{addSource}, or when L{MergeInput.fail} is called.  This choice
        (carry on, then report) delivers everything that can be delivered
        and loses no error; to stop everything at the first failure
        instead, cancel L{done} from the failed input's errback.
      - B{Stop}: cancelling L{done}, or C{consumer} stopping the merge
        (its connection was lost), stops every input's producer;
        L{done} fails with L{CancelledError
        <twisted.internet.defer.CancelledError>} or L{ProducerStopped
        <twisted_streaming.ProducerStopped>}.  An error from
        C{consumer.write} fails the merge the same way, with context.

    If C{consumer} refuses the merge (it already has a producer), L{done}
    has failed with that error by the time the merge is made; an input
    made after the merge has ended stops whatever producer registers with
    it, as a closed transport does.

    @ivar done: Fires as described above.
    @ivar bytesWritten: Bytes delivered to C{consumer} (items that are not
        bytes count as 1).
    @ivar chunksWritten: Writes delivered to C{consumer}.
    @cvar catchUp: How far, in bytes, an input that was idle may fall
        behind the most served input before its count is raised: the most
        it catches up once it has data again.
    """

    catchUp: int = 256 * 1024

    def __init__(
        self,
        consumer: IConsumer,
        *,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        Register with C{consumer} as a streaming producer.

        @param consumer: Where the merged stream goes: a transport, a
            L{Stage <twisted_streaming.Stage>}, any consumer.
        @param reactor: The reactor whose turn loop asks the inputs' pull
            producers for data; the global reactor if L{None}.
        @param cooperator: Use this L{Cooperator} instead of the turn loop.
        """
        super().__init__(reactor=reactor, cooperator=cooperator)
        self._inputs: List[MergeInput] = []
        self._closed = False
        self._made = 0
        # The largest write so far: inputs served within twice that of each
        # other are not behind.
        self._largest = 0
        # The first input's failure, reported once the others have finished.
        self._inputFailure: Optional[Failure] = None
        # The inputs still to resume in this round, the next one last.
        self._round: List[MergeInput] = []
        self.done: Deferred[int] = self._start(consumer, True)

    @property
    def inputs(self) -> Tuple[MergeInput, ...]:
        """
        The inputs that have not ended.
        """
        return tuple(self._inputs)

    def input(self, tag: Any = _NO_TAG) -> MergeInput:
        """
        Make a new input: a consumer that a producer registers with and
        writes to, and that is finished (C{finish()}) when its stream ends.

        @param tag: If given (any object, L{None} included), each item
            written to this input is delivered as C{(tag, item)}.
        @raise ProducerStateError: If L{close} has been called.
        """
        if self._closed:
            raise ProducerStateError(f"{self!r} is closed: no more inputs")
        made = MergeInput(self, tag, self._made)
        self._made += 1
        if self._state is RUNNING:
            self._inputs.append(made)
        else:
            made.ended = True
        return made

    def addSource(self, source: Any, tag: Any = _NO_TAG) -> MergeInput:
        """
        Make a new input and start C{source} on it; the input finishes when
        C{source}'s L{Deferred} fires, and fails when it fails.

        @param source: A L{BasePushProducer
            <twisted_streaming.BasePushProducer>} (anything with
            C{startProducing(consumer)} returning a L{Deferred}), or a
            callable that starts any producer on the consumer it is given
            and returns its L{Deferred}, such as C{lambda consumer:
            FileSender().beginFileTransfer(f, consumer)}.
        @param tag: As for L{input}.
        @return: The input.
        @raise ProducerStateError: If L{close} has been called.
        """
        made = self.input(tag)
        start = getattr(source, "startProducing", source)
        try:
            started: Optional[Deferred[Any]] = start(made)
        except BaseException:
            made.fail()
            return made
        if started is not None:
            started.addCallbacks(made._sourceFinished, made.fail)
        return made

    def close(self) -> None:
        """
        No more inputs will be added: once every input has ended, the merge
        ends.  Idempotent.
        """
        self._closed = True
        self._maybeDone()

    # Inputs

    def _deliver(self, source: MergeInput, item: Any, size: int) -> None:
        """
        Write C{item} from C{source} to the consumer, whole.
        """
        self.bytesWritten += size
        self.chunksWritten += 1
        if size > self._largest:
            self._largest = size
        try:
            self.consumer.write(item)
        except Exception as error:
            self._fail(
                error,
                item=item,
                itemIndex=self.chunksWritten - 1,
                itemOffset=self.bytesWritten - size,
                itemOf=f"its output (written to {self.consumer!r})",
            )

    def _inputEnded(self, ended: MergeInput, failure: Optional[Failure]) -> None:
        try:
            self._inputs.remove(ended)
        except ValueError:
            pass
        if failure is not None and self._inputFailure is None:
            self._inputFailure = failure
        self._maybeDone()

    def _maybeDone(self) -> None:
        if self._closed and not self._inputs and self._state is RUNNING:
            if self._inputFailure is not None:
                self._abort(FAILED, self._inputFailure)
            else:
                self._finish(self.bytesWritten)

    def _resumeInputs(self) -> None:
        """
        Resume the inputs, least served first, until one of them fills the
        consumer and the merge is paused again.  An input that does not
        write at once (it has nothing to send, or the turn loop's budget is
        spent and it waits for the next turn) hands the rest of the round
        to the turn loop, one input a step: so an input that writes there
        can pause the merge before every other input has been resumed, and
        paused again.
        """
        inputs = self._inputs
        if not inputs:
            return
        top = max(each.served for each in inputs)
        floor = top - max(self.catchUp, 2 * self._largest)
        for each in inputs:
            if each.served < floor:
                each.served = floor
        # Among equals, the one that wrote least recently.
        self._round = sorted(inputs, key=_turnOf)
        self._round.reverse()
        self._resumeRound(1 << 62)

    def _resumeRound(self, most: int) -> bool:
        """
        Resume up to C{most} of this round's inputs, while the merge is not
        paused, or until one does not write at once.

        @return: Whether some are left for a later step.
        """
        pending, pause = self._round, self._pause
        while pending and most > 0:
            if pause.paused or self._state is not RUNNING:
                pending.clear()
                return False
            each = pending.pop()
            if each.ended:
                continue
            most -= 1
            before = self.chunksWritten
            if each._resume() and self.chunksWritten == before and pending:
                self._turns().wake()
                return True
        return bool(pending) and not pause.paused

    # The flow core's hooks

    def _flowStep(self) -> bool:
        return self._resumeRound(1)

    def _flowPauseChanged(self, paused: bool) -> None:
        if paused:
            self._round.clear()
            for each in self._inputs:
                up = each._up
                # Most were never resumed in this round: skip them cheaply.
                if not (up.paused and up.streaming):
                    each._pause()
        else:
            self._resumeInputs()

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        inputs, self._inputs = self._inputs, []
        for each in inputs:
            each._stop()


def _turnOf(each: MergeInput) -> Tuple[int, int]:
    return each.served, each._lastWrite


@implementer(IFinishableConsumer)
class MergeInput:
    """
    One input of a L{Merge}: a consumer that one producer at a time, push or
    pull, registers with and writes to.  Made by L{Merge.input} or
    L{Merge.addSource}.

    A streaming producer is paused while the merge is paused; a pull
    producer is asked for data (C{resumeProducing}) on the reactor's turn
    loop while the merge is not paused, until it writes nothing (it is then
    asked again once it writes of its own accord, as a transport does).
    Writes made while the merge is paused are still delivered (a transport
    buffers them).

    @ivar tag: The tag its items are delivered with, if it has one.
    @ivar bytesWritten: Bytes written to this input (items that are not
        bytes count as 1).
    @ivar chunksWritten: Writes made to this input.
    @ivar served: The count by which the merge decides whose turn it is:
        bytes delivered, raised when the input falls more than
        L{Merge.catchUp} behind.
    @ivar ended: Whether it has finished, failed or been stopped.
    @ivar failure: The L{ContextFailure <twisted_streaming.ContextFailure>}
        it failed with, or L{None}.
    """

    def __init__(self, merge: Merge, tag: Any, index: int) -> None:
        self._merge = merge
        self.tag = tag
        self._tagged = tag is not _NO_TAG
        self._index = index
        self._up = Upstream(self)
        self._task: Optional[Task] = None
        # The producer last registered, for the chain a failure names.
        self._last: Any = None
        # A pull producer is to be asked for data.
        self._wants = False
        self._stepping = False
        self._wrote = False
        self.finished = False
        self.ended = False
        self.failure: Optional[Failure] = None
        self.bytesWritten = self.chunksWritten = 0
        self.served = 0
        # The merge's count of writes when this input last wrote.
        self._lastWrite = -1

    def __repr__(self) -> str:
        tag = f" {self.tag!r}" if self._tagged else ""
        return f"<{type(self).__name__} {self._index}{tag} of {self._merge!r}>"

    @property
    def producer(self) -> Optional[Any]:
        """
        The registered producer, or L{None}.
        """
        return self._up.producer

    @property
    def upstream(self) -> Optional[Any]:
        """
        The registered producer, or the last one if none is (for the chain
        a failure names).
        """
        return self._up.producer or self._last

    @property
    def downstream(self) -> Merge:
        """
        The merge this input belongs to.
        """
        return self._merge

    # IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register C{producer}: paused at once if the merge is paused; a pull
        producer is asked for data on the turn loop.  A producer registered
        after this input ended is stopped at once.

        @raise ProducerStateError: If a producer is already registered.
        """
        self._up.register(producer, streaming)
        self._last = producer
        if self.ended:
            self._up.stop()
        elif streaming:
            if self._merge.paused:
                self._up.pause()
        else:
            self._wants = True
            if not self._merge.paused:
                self._turns().wake()

    def unregisterProducer(self) -> None:
        """
        Forget the registered producer.
        """
        self._up.unregister()
        self._wants = False

    def write(self, data: Any) -> None:
        """
        Deliver C{data} (or C{(tag, data)}) to the merge's consumer, whole.
        Writes after the merge stopped this input are dropped.

        @raise ConsumerFinished: If this input was finished.
        """
        if self.ended:
            if self.finished:
                raise ConsumerFinished(f"{self!r} has been finished")
            return
        size = len(data) if isinstance(data, BYTES) else 1
        self.bytesWritten += size
        self.chunksWritten += 1
        self.served += size
        merge = self._merge
        self._lastWrite = merge.chunksWritten
        merge._deliver(self, (self.tag, data) if self._tagged else data, size)
        if not self._up.streaming and self._up.producer is not None:
            self._wrote = True
            if self._stepping:
                self._turns().charge(size)
            elif not self._wants:
                # A write of its own accord: ask it again, as a transport
                # would.
                self._wants = True
                if not merge.paused:
                    self._turns().wake()

    # IFinishableConsumer

    def finish(self) -> None:
        """
        This input's stream is complete.  Once the merge is closed and every
        input has ended, the merge ends.  Does nothing if the input was
        stopped or failed.

        @raise ConsumerFinished: If called twice.
        """
        if self.finished:
            raise ConsumerFinished(f"{self!r} was finished twice")
        if self.ended:
            return
        self.finished = True
        self._end()
        self._up.unregister()
        self._merge._inputEnded(self, None)

    def fail(self, reason: Optional[Union[BaseException, Failure]] = None) -> None:
        """
        This input's stream failed with C{reason} (by default the exception
        being handled): its producer, if one is registered, is stopped, and
        the merge's L{done <Merge.done>} fails with it, in context, once the
        other inputs have finished.  Does nothing if the input has ended.
        """
        if self.ended:
            return None
        if reason is None:
            reason = Failure()
        error = reason.value if isinstance(reason, Failure) else reason
        assert isinstance(error, BaseException)
        self.failure = failureWithContext(
            error, self, self.bytesWritten, self.chunksWritten
        )
        self._end()
        self._up.stop()
        self._merge._inputEnded(self, self.failure)
        return None

    # For the merge

    def _sourceFinished(self, result: object) -> None:
        if not self.ended:
            self.finish()

    def _end(self) -> None:
        self.ended = True
        self._wants = False
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _stop(self) -> None:
        """
        The merge ended: stop the producer.
        """
        if not self.ended:
            self._end()
            self._up.stop()

    def _pause(self) -> None:
        if self._up.streaming:
            self._up.pause()
        elif self._task is not None:
            self._task.sleep()

    def _resume(self) -> bool:
        """
        Resume the producer, if there is one to resume.

        @return: Whether there was.
        """
        if self._up.streaming:
            self._up.resume()
            return self._up.producer is not None
        if self._wants:
            self._turns().wake(now=True)
            return True
        return False

    def _turns(self) -> Task:
        task = self._task
        if task is None:
            task = self._task = self._merge._taskFor(self._step)
        return task

    def _step(self) -> bool:
        """
        Ask a pull producer for data, once.
        """
        merge = self._merge
        if self.ended or merge.paused or not self._wants:
            return False
        self._wrote = False
        self._stepping = True
        try:
            failure = self._up.pull()
        finally:
            self._stepping = False
        if failure is not None:
            self.fail(failure)
            return False
        if not self._wrote:
            # Not asked again until it writes of its own accord.
            self._wants = False
        return self._wants and not self.ended and not merge.paused
