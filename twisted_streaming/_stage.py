"""
L{Stage}: a consumer toward upstream and a push producer toward downstream,
transforming items on the way, with backpressure, end of stream and errors
passing through.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import (
    BYTES,
    FAILED,
    RUNNING,
    Flow,
    Upstream,
    WaterMarkBuffer,
    sizeOf,
)
from twisted_streaming.interfaces import (
    ConsumerFinished,
    IFinishableConsumer,
    ProducerStateError,
)

__all__ = ["Stage"]

# What process() may not return: each would be read as a sequence of items
# (bytes as integers, a str as characters, a dict as its keys).
_NOT_ITEMS = (bytes, bytearray, memoryview, str, dict)


@implementer(IFinishableConsumer, IPushProducer)
class Stage(Flow):
    """
    Transform a stream: a consumer (and finishable consumer) toward its
    upstream producer, a streaming producer toward its downstream consumer.

    Give a function, C{Stage(fn)}, mapping each item to an iterable of
    output items, or subclass and override L{process}; override L{flush} to
    emit what a stateful stage holds at the end of the stream.  Items may be
    any objects; sizes are counted in bytes for bytes and as 1 otherwise.

      - B{Backpressure}: when downstream pauses the stage, the stage pauses
        its upstream producer and buffers what is still written to it; the
        buffer is bounded by L{highWater} (upstream is paused whenever it is
        reached) and upstream is resumed once downstream has drained it below
        L{lowWater} (or empty).  A pull producer upstream is asked for more,
        one C{resumeProducing} per step of the reactor's turn loop, while
        the buffer is below L{lowWater} (or empty), until it writes nothing.
        When downstream resumes the stage, the stage delivers what it holds
        (at most the high water mark, already produced) from inside
        C{resumeProducing}, and resumes upstream, whose own production
        resumes on the turn loop.
      - B{End of stream}: C{finish()} flushes the stage, delivers the buffer,
        unregisters from downstream and finishes downstream if it is
        finishable; then L{done} fires with the number of items delivered.
      - B{Errors}: an exception in L{process}, L{flush}, or downstream's
        C{write} or C{finish} stops the upstream producer, is passed to
        downstream stages, and fails L{done} (after all that) with a
        L{ContextFailure <twisted_streaming.ContextFailure>} naming the
        stage, how far it had got, the offending item (its index, offset and
        a short repr) and the chain it was part of.
      - B{One producer at a time}: registering a second producer before the
        first has unregistered raises L{ProducerStateError}, as a
        transport's C{registerProducer} does.

    @ivar done: Fires when the stage has delivered everything downstream.
    @ivar itemsIn: Items written to the stage.
    @ivar bytesIn: Size of the items written to the stage.
    @ivar itemsOut: Items delivered downstream.
    @ivar bytesOut: Size of the items delivered downstream.
    """

    highWater: int = 64 * 1024
    lowWater: int = 16 * 1024

    def __init__(
        self,
        fn: Optional[Callable[[Any], Iterable[Any]]] = None,
        *,
        name: Optional[str] = None,
        highWater: Optional[int] = None,
        lowWater: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        """
        @param fn: The function mapping each item to an iterable of output
            items, unless L{process} is overridden.
        @param name: What the stage is called in its C{repr} and in errors
            (by default the function's or the class's name).
        @param highWater: The buffered size at which upstream is paused.
        @param lowWater: The buffered size below which it is resumed.
        @param reactor: The reactor whose turn loop the stage runs on; the
            global reactor if L{None}.
        @param cooperator: Run on this L{twisted.internet.task.Cooperator}
            instead.
        """
        super().__init__(**kwargs)
        self._fn = fn
        if fn is not None and type(self).process is Stage.process:
            # The function itself, rather than a process() that calls it:
            # one call less per item.
            self.process = fn  # type: ignore[method-assign, assignment]
        self.name = (
            name
            or (getattr(fn, "__name__", None) if fn else None)
            or (type(self).__name__)
        )
        if highWater is not None:
            self.highWater = highWater
        if lowWater is not None:
            self.lowWater = lowWater
        self._up = Upstream(self)
        self._buffer: WaterMarkBuffer[Any] = WaterMarkBuffer(self)
        self._finishing = False
        # Finishing or ended: no more writes, in one attribute for the
        # per-item path.
        self._closed = False
        # Some item was not bytes: errors count items, not bytes.
        self._objects = False
        self.itemsIn = self.bytesIn = self.itemsOut = self.bytesOut = 0
        self.done: Deferred[int] = Deferred()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} at {id(self):#x}>"

    @property
    def upstream(self) -> Optional[Any]:
        """
        The producer registered with this stage, or L{None}.
        """
        return self._up.producer

    @property
    def producer(self) -> Optional[Any]:
        """
        The producer registered with this stage, or L{None} (the name a
        transport gives it).
        """
        return self._up.producer

    @property
    def buffered(self) -> int:
        """
        The size of the items held for downstream.
        """
        return self._buffer.size

    @property
    def downstream(self) -> Optional[IConsumer]:
        """
        The consumer this stage delivers to, once attached.
        """
        return self.consumer

    # What subclasses override

    def process(self, item: Any) -> Iterable[Any]:
        """
        Return the output items for C{item} (by default, C{fn(item)}).

        A list or a tuple is the cheapest to return, and is not copied, so
        do not change it afterwards; any other iterable (not bytes, a str or
        a dict, which would be read as their elements) is read to the end
        before any of its items is delivered, so an exception raised while
        reading it delivers nothing for C{item}.
        """
        assert self._fn is not None, "give a function or override process()"
        return self._fn(item)

    def flush(self) -> Iterable[Any]:
        """
        Return the last output items, at the end of the stream.
        """
        return ()

    # Toward downstream

    def attach(self, downstream: IConsumer) -> None:
        """
        Deliver to C{downstream}, registered with it as a streaming producer.

        @raise Exception: What C{downstream.registerProducer} raised, if it
            refused this stage (a transport that has a producer already):
            nothing is registered, and L{done} fails with it too.
        """
        started = self._start(downstream, True)
        started.chainDeferred(self.done)
        if self.producing and self._up.producer is not None and not self._up.streaming:
            # A pull producer registered before the stage was attached.
            self._turns().wake()
        if self._state is FAILED:
            refused: List[Failure] = []

            def keep(failure: Failure) -> Failure:
                refused.append(failure)
                return failure

            self.done.addErrback(keep)
            refused[0].raiseException()

    # Toward upstream

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register the upstream producer: a streaming producer is paused at
        once if the stage is paused or full; a pull producer is asked for
        data on the turn loop.

        @raise ProducerStateError: If a producer is already registered.
        """
        self._up.register(producer, streaming)
        if streaming:
            self._buffer.regulate(self._up, blocked=self.paused)
        elif self.producing:
            self._turns().wake()

    def unregisterProducer(self) -> None:
        """
        Forget the upstream producer.
        """
        self._up.unregister()

    def write(self, item: Any) -> None:
        """
        Transform C{item} and deliver the outputs, or hold them while
        downstream is paused.

        @raise ConsumerFinished: If the stage has been finished, stopped or
            has failed.
        @raise ProducerStateError: If it has not been attached.
        """
        if self._closed:
            raise ConsumerFinished(f"{self!r} has already been finished")
        index = self.itemsIn
        offset = self.bytesIn
        self.itemsIn = index + 1
        if isinstance(item, BYTES):
            self.bytesIn = offset + len(item)
        else:
            self.bytesIn = offset + 1
            self._objects = True
        try:
            produced = self.process(item)
            kind = type(produced)
            # A list or a tuple is used as it is; anything else is made into
            # a list here, inside the try, since a generator raises as it is
            # consumed.
            outputs: Sequence[Any] = (
                produced  # type: ignore[assignment]
                if kind is tuple or kind is list
                else self._items(produced)
            )
        except Exception as error:
            self._failOn(error, item, index, offset, "its input")
            return
        # Plain attributes, not properties, on the per-item path.
        buffer = self._buffer
        if self._pause.paused or buffer.items:
            buffer.extend(outputs)
            self._drain()
            return
        downstream = self.consumer
        if downstream is None:
            raise ProducerStateError(f"{self!r} is not attached")
        # The fast path, for a stage that is neither paused nor holding
        # anything: the first output goes straight downstream and only the
        # rest is buffered, which leaves the stage in the state _drain would
        # have left it in while it wrote that first output.
        count = len(outputs)
        if count:
            if count > 1:
                buffer.extend(outputs[1:])
            first = outputs[0]
            self.itemsOut += 1
            self.bytesOut += len(first) if isinstance(first, BYTES) else 1
            try:
                downstream.write(first)
            except Exception as error:
                self._failOutput(error, first)
                return
        # What is left of _drain; nothing, unless something is buffered, a
        # write paused, stopped or finished this stage, or upstream needs
        # resuming or pulling.
        up = self._up
        if (
            buffer.items
            or self._pause.paused
            or self._closed
            or up.paused
            or not up.streaming
        ):
            self._drain()

    def finish(self) -> None:
        """
        No more items: flush, deliver what is held, then finish downstream.

        @raise ConsumerFinished: If called twice, or after the stage ended.
        """
        if self._closed:
            raise ConsumerFinished(f"{self!r} has already been finished")
        self._finishing = self._closed = True
        try:
            outputs = self._items(self.flush())
        except Exception as error:
            self._failOn(error, None, None, None, "")
            return
        self._buffer.extend(outputs)
        self._drain()

    # Internals

    def _items(self, produced: Any) -> Sequence[Any]:
        if isinstance(produced, _NOT_ITEMS):
            raise TypeError(
                f"{self!r} must return an iterable of output items (a list or "
                f"tuple is cheapest), not {type(produced).__name__}: wrap a "
                f"single item, as in [item]"
            )
        try:
            return list(produced)
        except TypeError as error:
            if "not iterable" not in str(error):
                raise
            raise TypeError(
                f"{self!r} must return an iterable of output items (a list or "
                f"tuple is cheapest), not {type(produced).__name__}"
            ) from None

    def _progress(self) -> Tuple[int, int]:
        return self.bytesOut, self.itemsOut

    def _drain(self) -> None:
        """
        Deliver what is held while downstream wants it, then regulate
        upstream (waking the turn loop to pull a pull producer), or complete
        if finishing and empty.
        """
        buffer = self._buffer
        pause = self._pause
        if buffer.items and not pause.paused:
            downstream = self.consumer
            if downstream is None:
                return
            while buffer.items and not pause.paused and self._state is RUNNING:
                item = buffer.popleft()
                self.itemsOut += 1
                self.bytesOut += len(item) if isinstance(item, BYTES) else 1
                try:
                    downstream.write(item)
                except Exception as error:
                    self._failOutput(error, item)
                    return
        if not self.producing:
            return
        if self._finishing:
            if not buffer:
                self._finish(self.itemsOut)
            return
        up = self._up
        if up.producer is not None:
            buffer.regulate(up, blocked=self.paused)
            if not up.streaming and not self.paused and buffer.wantsMore:
                self._turns().wake()

    def _failOn(
        self,
        error: BaseException,
        item: Any,
        index: Optional[int],
        offset: Optional[int],
        itemOf: str,
    ) -> None:
        self._abort(
            FAILED,
            failureWithContext(
                error,
                self,
                self.bytesIn,
                self.itemsIn,
                item=item,
                itemIndex=index,
                itemOffset=offset,
                itemOf=itemOf,
                objects=self._objects,
            ),
        )

    def _failOutput(self, error: BaseException, item: Any) -> None:
        # Raised into upstream, a downstream error would escape into the
        # reactor from a pull, or be lost inside a finish().
        self._failOn(
            error,
            item,
            self.itemsOut - 1,
            self.bytesOut - sizeOf(item),
            f"its output (written to {self.consumer!r})",
        )

    # The flow core's hooks

    def _flowPauseChanged(self, paused: bool) -> None:
        if paused:
            self._up.pause()
        else:
            # What is held was produced already, and is at most the high
            # water mark: it is delivered now.  Producing more waits for the
            # turn loop (a pull) or for upstream's own (a push producer).
            self._drain()

    def _flowStep(self) -> bool:
        up = self._up
        if (
            not self.producing
            or self.paused
            or self._finishing
            or up.producer is None
            or up.streaming
            or not self._buffer.wantsMore
        ):
            return False
        before = self.itemsIn
        failure = up.pull()
        if failure is not None:
            error = failure.value
            assert isinstance(error, BaseException)
            self._failOn(error, None, None, None, "")
            return False
        # A pull producer that wrote nothing is not asked again until more
        # is wanted, as a transport would not ask it again at all.
        return self.itemsIn != before and self.producing

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        """
        Tear down on an error or a stop: stop upstream and end downstream
        stages with the same reason.
        """
        self._closed = True
        self._buffer.clear()
        if reason is None:
            return
        state = self._state
        upstream = self._up.producer
        if isinstance(upstream, Stage):
            self._up.unregister()
            upstream._abort(state, reason)
        else:
            self._up.stop()
        downstream = self.consumer
        if isinstance(downstream, Stage):
            downstream._abort(state, reason)
