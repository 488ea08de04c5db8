"""
L{Merge}: many producers into one consumer (fan-in), with backpressure,
whole writes, fair shares and tags.
"""

from __future__ import annotations

from bisect import insort
from typing import Any, Callable, List, Optional, Tuple, Union

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
    OnTurnLoop,
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
        # Every input, least served first (by _turnOf), except that those
        # in _moved may have moved since: they are put back in place on the
        # next resume, so that a resume costs the few inputs that wrote,
        # not a sort of all.
        self._order: List[MergeInput] = []
        self._moved: List[MergeInput] = []
        # The most any input has been served; recounted if stale (the one
        # that held it ended).
        self._top = 0
        self._topStale = False
        # The inputs that may be resumed: the only ones a pause must reach.
        self._awake: List[MergeInput] = []
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
            insort(self._order, made, key=_turnOf)
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

    def _writeFailed(self, error: Exception, item: Any, size: int) -> None:
        """
        The consumer raised C{error} from writing C{item}, just counted:
        fail, with context.
        """
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
        else:
            self._order.remove(ended)
            if ended.served >= self._top:
                self._topStale = True
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
        order = self._order
        if not order:
            return
        if self._moved:
            self._replace(self._moved)
            self._moved = []
        if self._topStale:
            self._top = max(each.served for each in order)
            self._topStale = False
        floor = self._top - max(self.catchUp, 2 * self._largest)
        if order[0].served < floor:
            # The least served come first: raise them, then put them back in
            # place among those served as much.
            behind = 0
            for each in order:
                if each.served > floor:
                    break
                each.served = floor
                behind += 1
            order[:behind] = sorted(order[:behind], key=_turnOf)
        # Among equals, the one that wrote least recently.
        self._round = order[::-1]
        self._resumeRound(1 << 62)

    def _replace(self, moved: List[MergeInput]) -> None:
        """
        Put the inputs that wrote since the last resume back in place in
        L{_order}.
        """
        order = self._order
        if 4 * len(moved) > len(order):
            for each in moved:
                each._moved = False
            order.sort(key=_turnOf)
            return
        for each in moved:
            each._moved = False
            if not each.ended:
                order.remove(each)
        for each in moved:
            if not each.ended:
                insort(order, each, key=_turnOf)

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
            self._wake(each)
            before = self.chunksWritten
            if each._resume() and self.chunksWritten == before and pending:
                self._turns().wake()
                return True
        return bool(pending) and not pause.paused

    def _wake(self, each: MergeInput) -> None:
        """
        C{each} may be resumed from now on: the next pause must reach it.
        """
        if not each._awake:
            each._awake = True
            self._awake.append(each)

    # The flow core's hooks

    def _flowStep(self) -> bool:
        return self._resumeRound(1)

    def _flowPauseChanged(self, paused: bool) -> None:
        if paused:
            self._round.clear()
            awake, self._awake = self._awake, []
            for each in awake:
                each._awake = False
                if not each.ended:
                    each._pause()
        else:
            self._resumeInputs()

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        inputs, self._inputs = self._inputs, []
        self._order, self._moved, self._awake = [], [], []
        for each in inputs:
            each._stop()


def _turnOf(each: MergeInput) -> Tuple[int, int, int]:
    # The index keeps the order of inputs that never wrote.
    return each.served, each._lastWrite, each._index


@implementer(IFinishableConsumer)
class MergeInput(OnTurnLoop):
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
        # In the merge's _moved, and _awake lists.
        self._moved = False
        self._awake = False

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
            return
        self._merge._wake(self)
        if streaming:
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
        merge = self._merge
        served = self.served = self.served + size
        if served > merge._top:
            merge._top = served
        self._lastWrite = merge.chunksWritten
        if not self._moved:
            self._moved = True
            merge._moved.append(self)
        # Delivered whole, here rather than in a method of the merge: this
        # is the cost of every write.
        item = (self.tag, data) if self._tagged else data
        merge.bytesWritten += size
        merge.chunksWritten += 1
        if size > merge._largest:
            merge._largest = size
        try:
            merge.consumer.write(item)
        except Exception as error:
            merge._writeFailed(error, item, size)
        if not self._up.streaming and self._up.producer is not None:
            self._wrote = True
            if self._stepping:
                self._turns().charge(size)
            elif not self._wants:
                # A write of its own accord: ask it again, as a transport
                # would.
                self._wants = True
                if not merge._pause.paused:
                    merge._wake(self)
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
        self._stopTurns()

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

    def _taskFor(self, step: Callable[[], bool]) -> Task:
        # On the merge's turn loop.
        return self._merge._taskFor(step)

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
