"""
Stages: a consumer toward upstream and a push producer toward downstream,
transforming items on the way, with backpressure, end of stream and errors
passing through; L{pipeline} connects a source, stages and a sink.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import deque
from typing import Any, Callable, Deque, Iterable, List, Optional, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._pull import _unregister
from twisted_streaming._util import failureWithContext, getReactor, isFinishable
from twisted_streaming.interfaces import (
    ConsumerFinished,
    IFinishableConsumer,
    ProducerStopped,
)

__all__ = [
    "Compress",
    "Decompress",
    "Frame",
    "HashStage",
    "LineJoiner",
    "LineSplitter",
    "Stage",
    "Unframe",
    "pipeline",
]

_log = Logger()


# An item's size is len(item) for these, 1 for anything else; counted
# inline on the per-item paths of Stage, where a call costs more than the test.
_BYTES = (bytes, bytearray, memoryview)


@implementer(IFinishableConsumer, IPushProducer)
class Stage:
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
        L{lowWater} (or empty).  A pull producer upstream is asked for more on
        a later reactor turn each time the buffer is below L{lowWater} (or
        empty).
      - B{End of stream}: C{finish()} flushes the stage, delivers the buffer,
        unregisters from downstream and finishes downstream if it is
        finishable; then L{done} fires with the number of items delivered.
      - B{Errors}: an exception in L{process}, L{flush} or the downstream
        consumer's C{write} stops the upstream producer, is passed to
        downstream stages, and fails L{done} with a
        L{ContextFailure <twisted_streaming.ContextFailure>} naming the stage
        and how many items and bytes had passed through it.

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
        reactor: Optional[Any] = None,
    ) -> None:
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
        self._reactor = reactor
        self.upstream: Optional[Any] = None
        self._upstreamStreaming = True
        self._upstreamPaused = False
        self.downstream: Optional[IConsumer] = None
        self._paused = False
        self._buffer: Deque[Any] = deque()
        self._buffered = 0
        self._finishing = False
        self._ended = False
        # _finishing or _ended, in one attribute for the per-item path.
        self._closed = False
        self._pullScheduled = False
        self.itemsIn = self.bytesIn = self.itemsOut = self.bytesOut = 0
        self.done: Deferred[int] = Deferred()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} at {id(self):#x}>"

    # What subclasses override

    def process(self, item: Any) -> Iterable[Any]:
        """
        Return the output items for C{item} (by default, C{fn(item)}).

        A list or a tuple is the cheapest to return, and is not copied, so
        do not change it afterwards; any other iterable is read to the end
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
        """
        self.downstream = downstream
        downstream.registerProducer(self, True)

    def pauseProducing(self) -> None:
        if self._ended or self._paused:
            return
        self._paused = True
        self._pauseUpstream()

    def resumeProducing(self) -> None:
        if self._ended or not self._paused:
            return
        self._paused = False
        self._drain()

    def stopProducing(self) -> None:
        """
        Downstream went away: stop upstream, unregister from downstream
        (unless it has already forgotten this stage, as a transport does) and
        fail with L{ProducerStopped}.
        """
        self._end(Failure(ProducerStopped(self, self.bytesOut, self.itemsOut)))

    # Toward upstream

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.upstream = producer
        self._upstreamStreaming = streaming
        self._upstreamPaused = False
        if not streaming:
            self._schedulePull()

    def unregisterProducer(self) -> None:
        self.upstream = None

    def write(self, item: Any) -> None:
        if self._closed:
            raise ConsumerFinished(f"{self!r} has already been finished")
        self.itemsIn += 1
        self.bytesIn += len(item) if isinstance(item, _BYTES) else 1
        try:
            produced = self.process(item)
            kind = type(produced)
            # A list or a tuple is used as it is; anything else is made into
            # a list here, inside the try, since a generator raises as it is
            # consumed.
            outputs: Sequence[Any] = (
                produced  # type: ignore[assignment]
                if kind is tuple or kind is list
                else list(produced)
            )
        except Exception as error:
            self._fail(error)
            return
        if self._paused or self._buffer:
            self._emit(outputs)
            return
        # The fast path, for a stage that is neither paused nor holding
        # anything: the first output goes straight downstream and only the
        # rest is buffered, which leaves the stage in the state _drain would
        # have left it in while it wrote that first output.
        count = len(outputs)
        if count:
            downstream = self.downstream
            assert downstream is not None, f"{self!r} is not attached"
            if count > 1:
                self._emitLater(outputs[1:])
            first = outputs[0]
            self.itemsOut += 1
            self.bytesOut += len(first) if isinstance(first, _BYTES) else 1
            try:
                downstream.write(first)
            except Exception as error:
                self._fail(error)
                return
        # What is left of _drain; nothing, unless something is buffered, a
        # write paused, stopped or finished this stage, or upstream needs
        # resuming or pulling.
        if (
            self._buffer
            or self._paused
            or self._closed
            or self._upstreamPaused
            or not self._upstreamStreaming
        ):
            self._drain()

    def finish(self) -> None:
        if self._closed:
            raise ConsumerFinished(f"{self!r} has already been finished")
        self._finishing = self._closed = True
        try:
            outputs = list(self.flush())
        except Exception as error:
            self._fail(error)
            return
        self._emit(outputs)

    # Internals

    def _emit(self, outputs: Iterable[Any]) -> None:
        self._emitLater(outputs)
        self._drain()

    def _emitLater(self, outputs: Iterable[Any]) -> None:
        buffer = self._buffer
        buffered = 0
        for item in outputs:
            buffer.append(item)
            buffered += len(item) if isinstance(item, _BYTES) else 1
        self._buffered += buffered

    def _drain(self) -> None:
        downstream = self.downstream
        buffer = self._buffer
        while buffer and not self._paused and not self._ended:
            assert downstream is not None, f"{self!r} is not attached"
            item = buffer.popleft()
            size = len(item) if isinstance(item, _BYTES) else 1
            self._buffered -= size
            self.itemsOut += 1
            self.bytesOut += size
            try:
                downstream.write(item)
            except Exception as error:
                # Raised into upstream, it would escape into the reactor
                # from a pull, or be lost inside a finish().
                self._fail(error)
                return
        if self._ended:
            return
        if self._buffer and self._buffered >= self.highWater:
            self._pauseUpstream()
        elif not self._paused and self._wantsMore():
            self._resumeUpstream()
        if self._finishing and not self._buffer and not self._ended:
            self._complete()

    def _wantsMore(self) -> bool:
        # An empty buffer always wants more, whatever the water marks (with
        # a low water mark of 0, "below it" would never happen).
        return not self._buffer or self._buffered < self.lowWater

    def _pauseUpstream(self) -> None:
        if self.upstream is not None and self._upstreamStreaming:
            if not self._upstreamPaused:
                self._upstreamPaused = True
                self.upstream.pauseProducing()

    def _resumeUpstream(self) -> None:
        if self.upstream is None or self._finishing:
            return
        if self._upstreamStreaming:
            if self._upstreamPaused:
                self._upstreamPaused = False
                self.upstream.resumeProducing()
        else:
            self._schedulePull()

    def _schedulePull(self) -> None:
        if not self._pullScheduled:
            self._pullScheduled = True
            getReactor(self._reactor).callLater(0, self._pull)

    def _pull(self) -> None:
        self._pullScheduled = False
        upstream = self.upstream
        if (
            upstream is not None
            and not self._upstreamStreaming
            and not self._paused
            and not self._ended
            and not self._finishing
            and self._wantsMore()
        ):
            upstream.resumeProducing()

    def _complete(self) -> None:
        self._ended = self._closed = True
        downstream = self.downstream
        if downstream is not None:
            downstream.unregisterProducer()
            if isFinishable(downstream):
                downstream.finish()  # type: ignore[attr-defined]
        self.done.callback(self.itemsOut)

    def _fail(self, error: BaseException) -> None:
        self._end(failureWithContext(error, self, self.bytesIn, self.itemsIn))

    def _end(self, reason: Failure) -> None:
        """
        Tear down on an error or a stop: report it, then stop upstream and
        end downstream stages with the same reason.
        """
        if self._ended:
            return
        self._ended = self._closed = True
        self._buffer.clear()
        upstream, self.upstream = self.upstream, None
        self.done.errback(reason)
        if isinstance(upstream, Stage):
            upstream._end(reason)
        elif upstream is not None:
            try:
                upstream.stopProducing()
            except Exception:
                _log.failure("Stopping {producer!r} failed", producer=upstream)
        downstream = self.downstream
        if isinstance(downstream, Stage):
            downstream._end(reason)
        elif downstream is not None:
            # Also when stopped: a consumer that stops its producer need not
            # forget it (a transport does, and is then left alone).
            _unregister(downstream, self)


class LineSplitter(Stage):
    """
    Bytes in, lines out (without their delimiter); a last line without a
    delimiter is emitted at the end.
    """

    def __init__(self, delimiter: bytes = b"\n", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delimiter = delimiter
        self._partial = b""

    def process(self, item: bytes) -> Iterable[bytes]:
        lines = (self._partial + item).split(self.delimiter)
        self._partial = lines.pop()
        return lines

    def flush(self) -> Iterable[bytes]:
        return [self._partial] if self._partial else []


class LineJoiner(Stage):
    """
    Lines in (bytes, or str encoded as UTF-8), bytes out, each followed by
    the delimiter.
    """

    def __init__(self, delimiter: bytes = b"\n", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delimiter = delimiter

    def process(self, item: Any) -> Iterable[bytes]:
        line = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        return [line + self.delimiter]


class Compress(Stage):
    """
    Compress bytes with zlib, or gzip with C{gzip=True}.
    """

    def __init__(self, level: int = 6, gzip: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31 if gzip else 15)

    def process(self, item: bytes) -> Iterable[bytes]:
        out = self._compressor.compress(item)
        return [out] if out else []

    def flush(self) -> Iterable[bytes]:
        return [self._compressor.flush()]


class Decompress(Stage):
    """
    Decompress zlib or gzip bytes (detected from the header).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._decompressor = zlib.decompressobj(47)

    def process(self, item: bytes) -> Iterable[bytes]:
        out = self._decompressor.decompress(item)
        return [out] if out else []

    def flush(self) -> Iterable[bytes]:
        out = self._decompressor.flush()
        if not self._decompressor.eof:
            raise zlib.error("compressed stream ended early")
        return [out] if out else []


class HashStage(Stage):
    """
    Pass bytes through unchanged, hashing them; L{hexdigest} gives the digest
    of everything that passed.
    """

    def __init__(self, algorithm: str = "sha256", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hash = hashlib.new(algorithm)

    def process(self, item: bytes) -> Iterable[bytes]:
        self._hash.update(item)
        return [item]

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Frame(Stage):
    """
    Messages (bytes) in, each prefixed with its length as a 4-byte
    big-endian integer.
    """

    def process(self, item: bytes) -> Iterable[bytes]:
        return [struct.pack("!I", len(item)) + item]


class Unframe(Stage):
    """
    Length-prefixed bytes in, messages out; a message longer than
    C{maxLength} or a stream that ends mid-message is an error.
    """

    def __init__(self, maxLength: int = 16 * 1024 * 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maxLength = maxLength
        self._data = b""

    def process(self, item: bytes) -> Iterable[bytes]:
        self._data += item
        messages = []
        while len(self._data) >= 4:
            (length,) = struct.unpack("!I", self._data[:4])
            if length > self.maxLength:
                raise ValueError(f"message of {length} bytes over {self.maxLength}")
            if len(self._data) < 4 + length:
                break
            messages.append(self._data[4 : 4 + length])
            self._data = self._data[4 + length :]
        return messages

    def flush(self) -> Iterable[bytes]:
        if self._data:
            raise ValueError(f"stream ended inside a message ({len(self._data)} bytes)")
        return ()


def pipeline(source: Any, *stages: Stage, sink: IConsumer) -> Deferred[int]:
    """
    Connect C{source} through C{stages} to C{sink} and return one Deferred
    for the whole chain.

    @param source: A L{BasePushProducer <twisted_streaming.BasePushProducer>}
        (anything with C{startProducing(consumer) -> Deferred}), or a callable
        that starts any producer on the consumer it is given and returns its
        Deferred, e.g. C{lambda c: FileSender().beginFileTransfer(f, c)}.
    @param sink: Any consumer: a transport, a
        L{FileConsumer <twisted_streaming.FileConsumer>}, a request.
    @return: Fires with the number of items the last stage delivered (or the
        source's result if there are no stages) once everything has reached
        C{sink}; fails with the first error, in a
        L{ContextFailure <twisted_streaming.ContextFailure>} naming where it
        happened, after every producer has been stopped.  Cancelling it stops
        the whole chain.
    """
    chain = list(stages)
    for stage, after in zip(chain, [*chain[1:], sink]):
        stage.attach(after)
    first: IConsumer = chain[0] if chain else sink
    start = getattr(source, "startProducing", source)
    sourceDone: Deferred[Any] = start(first)
    outcome: List[Optional[Failure]] = []

    def cancel(d: Deferred[Any]) -> None:
        stop(Failure(CancelledError()))

    result: Deferred[Any] = Deferred(cancel)

    def stop(reason: Failure) -> None:
        if outcome:
            return
        outcome.append(reason)
        if not sourceDone.called:
            sourceDone.cancel()
        for stage in chain:
            stage._end(reason)
        result.errback(reason)

    def sourceFailed(reason: Failure) -> None:
        if outcome:
            return None
        stop(reason)
        return None

    def sourceFinished(value: Any) -> Any:
        # A pull producer such as FileSender does not finish its consumer.
        head = chain[0] if chain else None
        if head is not None and not (head._finishing or head._ended):
            head.finish()
        return value

    sourceDone.addCallbacks(sourceFinished, sourceFailed)
    if not chain:
        sourceDone.addCallback(
            lambda value: result.callback(value) if not outcome else None
        )
        return result

    def lastDone(items: int) -> None:
        if not outcome:
            outcome.append(None)
            result.callback(items)

    def stageFailed(reason: Failure) -> None:
        stop(reason)

    for stage in chain[:-1]:
        stage.done.addErrback(stageFailed)
    chain[-1].done.addCallbacks(lastDone, stageFailed)
    return result
