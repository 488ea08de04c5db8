"""
Pull producers: L{FileSender}, a drop-in for Twisted's, and L{PullToPush},
which lets any pull producer feed a consumer that wants a streaming producer.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any, Callable, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPullProducer,
    IPushProducer,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from twisted_streaming._util import failureWithContext, getReactor
from twisted_streaming.interfaces import ProducerStateError, ProducerStopped

_log = Logger()

FileOrPath = Union[
    IO[bytes], str, bytes, "os.PathLike[str]", "os.PathLike[bytes]", "FilePath[Any]"
]


def _unregister(consumer: IConsumer, producer: object) -> None:
    """
    Unregister C{producer} from C{consumer}, unless the consumer says it has
    no producer any more (some forget it before calling C{stopProducing}).
    """
    if getattr(consumer, "producer", producer) is None:
        return
    try:
        consumer.unregisterProducer()
    except Exception:
        _log.failure("Unregistering {producer!r} failed", producer=producer)


@implementer(IPullProducer)
class FileSender:
    """
    Send a file, or a byte range of it, to a consumer, one chunk per
    C{resumeProducing} call.

    A drop-in for L{twisted.protocols.basic.FileSender}: it registers as a
    non-streaming producer, honours a C{CHUNK_SIZE} class or instance
    attribute, applies C{transform} to each chunk and fires with the last byte
    sent.  Unlike Twisted's, it opens and closes paths, sends byte ranges,
    fails with L{ProducerStopped} (after unregistering) when stopped early,
    fails with the read error instead of raising it into the transport, and
    can be reused once a transfer is over.

    @cvar CHUNK_SIZE: Bytes read and written per C{resumeProducing}.
    @ivar bytesSent: Bytes of the file sent so far in the current (or last)
        transfer, counted before C{transform}.
    @ivar chunksSent: Writes made so far in the current (or last) transfer.
    @ivar lastSent: The last byte written to the consumer.
    """

    # 512 KiB, from `python -m bench.bench_filesender --sweep` over TCP
    # loopback (two runs, 2026-11-22, bench/results/filesender_sweep.csv):
    # throughput rose from ~140 MB/s at 4 KiB to ~1,790 MB/s at 512 KiB;
    # 1 MiB was only ~4% faster again, for twice the memory per transfer.
    CHUNK_SIZE: int = 512 * 1024

    file: Optional[IO[bytes]] = None
    consumer: Optional[IConsumer] = None
    deferred: Optional[Deferred[bytes]] = None
    lastSent: bytes = b""
    bytesSent: int = 0
    chunksSent: int = 0

    def __init__(self, *, reactor: Optional[Any] = None) -> None:
        """
        @param reactor: Unused by the read-and-write path; accepted so that
            every producer of this package can be given a reactor.
        """
        self._reactor = reactor
        self._transform: Optional[Callable[[bytes], bytes]] = None
        self._remaining: Optional[int] = None
        self._ownsFile = False

    def __repr__(self) -> str:
        state = "sending" if self.file is not None else "idle"
        return (
            f"<{type(self).__name__} {state} {self.bytesSent} bytes at {id(self):#x}>"
        )

    def beginFileTransfer(
        self,
        file: FileOrPath,
        consumer: IConsumer,
        transform: Optional[Callable[[bytes], bytes]] = None,
        *,
        offset: int = 0,
        length: Optional[int] = None,
    ) -> Deferred[bytes]:
        """
        Begin sending C{file} to C{consumer}.

        @param file: A binary file object (read from its current position, or
            from C{offset}) or a path (C{str}, C{bytes}, C{os.PathLike} or
            L{FilePath}), which is opened here and closed when the transfer
            ends however it ends.
        @param transform: Applied to each chunk before it is written.
        @param offset: If not zero, seek to this byte before sending.
        @param length: Send at most this many bytes; L{None} for all.
        @return: A L{Deferred} that fires with the last byte sent (C{b""} if
            nothing was sent) once the sender has unregistered; it fails with
            L{ProducerStopped} if the consumer stops the transfer, or with the
            read (or C{transform}) error, in a
            L{ContextFailure <twisted_streaming.ContextFailure>}.
        @raise ProducerStateError: If a transfer is already in progress.
        """
        if self.file is not None:
            raise ProducerStateError(f"{self!r} is already sending a file")
        if length is not None and length < 0:
            raise ValueError(f"length must not be negative: {length!r}")
        if isinstance(file, FilePath):
            file = file.path
        ownsFile = isinstance(file, (str, bytes, os.PathLike))
        fileObject: IO[bytes] = open(file, "rb") if ownsFile else file  # type: ignore[arg-type,assignment]
        try:
            if offset:
                fileObject.seek(offset)
        except BaseException:
            if ownsFile:
                fileObject.close()
            raise
        self.file = fileObject
        self._ownsFile = ownsFile
        self.consumer = consumer
        self._transform = transform
        self._remaining = length
        self.lastSent = b""
        self.bytesSent = 0
        self.chunksSent = 0
        deferred: Deferred[bytes] = Deferred(self._cancel)
        self.deferred = deferred
        # Everything is ready before registering: a transport calls
        # resumeProducing (or, if disconnected, stopProducing) from inside.
        consumer.registerProducer(self, False)
        return deferred

    def resumeProducing(self) -> None:
        """
        Write the next chunk, or finish if there is none.
        """
        file = self.file
        if file is None:
            return
        size = self.CHUNK_SIZE
        if self._remaining is not None:
            size = min(size, self._remaining)
        try:
            chunk = file.read(size) if size > 0 else b""
            if not chunk:
                self._end(self.lastSent)
                return
            self.bytesSent += len(chunk)
            if self._remaining is not None:
                self._remaining -= len(chunk)
            if self._transform is not None:
                chunk = self._transform(chunk)
        except Exception as error:
            self._end(failureWithContext(error, self, self.bytesSent, self.chunksSent))
            return
        assert self.consumer is not None
        self.chunksSent += 1
        self.lastSent = chunk[-1:]
        self.consumer.write(chunk)

    def pauseProducing(self) -> None:
        """
        Nothing to do: a pull producer writes only when asked.
        """

    def stopProducing(self) -> None:
        """
        Stop the transfer: close the file if it was opened here, unregister
        and fail the L{Deferred} with L{ProducerStopped}.  Does nothing if no
        transfer is in progress.
        """
        if self.file is not None:
            self._end(Failure(ProducerStopped(self, self.bytesSent, self.chunksSent)))

    def _cancel(self, deferred: Deferred[bytes]) -> None:
        # Deferred fails itself with CancelledError after this.
        self.deferred = None
        self._end(None)

    def _end(self, result: Union[bytes, Failure, None]) -> None:
        file, self.file = self.file, None
        consumer, self.consumer = self.consumer, None
        self._transform = None
        if file is not None and self._ownsFile:
            try:
                file.close()
            except Exception:
                _log.failure("Closing {file!r} failed", file=file)
        if consumer is not None:
            _unregister(consumer, self)
        deferred, self.deferred = self.deferred, None
        if deferred is None or result is None:
            return
        if isinstance(result, Failure):
            deferred.errback(result)
        else:
            deferred.callback(result)


@implementer(IConsumer, IPushProducer)
class PullToPush:
    """
    Let a pull producer feed a consumer that wants a streaming producer.

    Give this object to the pull producer as its consumer
    (C{FileSender().beginFileTransfer(f, PullToPush(consumer))}): when the
    pull producer registers, this object registers with C{consumer} as a
    I{streaming} producer and calls the pull producer's C{resumeProducing}
    in a loop while C{consumer} has not paused it, yielding to the reactor
    after L{maxBytesPerTurn} bytes or L{maxSecondsPerTurn} seconds.  Writes
    and unregistration are passed through to C{consumer}; a streaming
    producer registered with this object is passed through unchanged.

    Pause and resume are flags: any number of pauses is undone by one resume.
    C{stopProducing} stops the loop, stops the pull producer and unregisters.

    @cvar maxBytesPerTurn: The most bytes written in one reactor turn.
    @cvar maxSecondsPerTurn: The most time spent in one reactor turn.
    @ivar bytesWritten: Bytes passed through to C{consumer}.
    """

    maxBytesPerTurn: int = 1024 * 1024
    maxSecondsPerTurn: float = 0.005

    bytesWritten: int = 0

    def __init__(self, consumer: IConsumer, *, reactor: Optional[Any] = None) -> None:
        """
        @param consumer: The consumer to register with and write to.
        @param reactor: Used to schedule the loop (anything with
            C{callLater}); the global reactor if L{None}.
        """
        self.consumer = consumer
        self._reactor = reactor
        self.producer: Optional[IPullProducer] = None
        self._paused = False
        self._inLoop = False
        self._call: Optional[IDelayedCall] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.producer!r} at {id(self):#x}>"

    @property
    def paused(self) -> bool:
        """
        Has the consumer paused this adapter (and not resumed it since)?
        """
        return self._paused

    # IConsumer, for the pull producer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register a pull producer, to be driven by this adapter, or pass a
        streaming one through to the consumer.

        @raise ProducerStateError: If a pull producer is already registered.
        """
        if streaming:
            self.consumer.registerProducer(producer, True)
            return
        if self.producer is not None:
            raise ProducerStateError(f"{self!r} already has a producer")
        self.producer = producer
        self._paused = False
        self.consumer.registerProducer(self, True)
        if self.producer is producer:
            self._schedule()

    def unregisterProducer(self) -> None:
        """
        Stop driving the pull producer and unregister from the consumer.
        """
        if self.producer is None:
            self.consumer.unregisterProducer()
            return
        self.producer = None
        self._cancelCall()
        _unregister(self.consumer, self)

    def write(self, data: bytes) -> None:
        """
        Pass C{data} through to the consumer.
        """
        self.bytesWritten += len(data)
        self.consumer.write(data)

    # IPushProducer, for the consumer

    def pauseProducing(self) -> None:
        """
        Stop calling the pull producer until L{resumeProducing}.
        """
        self._paused = True
        self._cancelCall()

    def resumeProducing(self) -> None:
        """
        Call the pull producer again, on the next reactor turn.
        """
        self._paused = False
        if self.producer is not None and not self._inLoop:
            self._schedule()

    def stopProducing(self) -> None:
        """
        Stop the loop and the pull producer, and unregister.
        """
        producer, self.producer = self.producer, None
        self._cancelCall()
        if producer is not None:
            # The pull producer may unregister from us: we already forgot it.
            producer.stopProducing()
            _unregister(self.consumer, self)

    def _schedule(self) -> None:
        if self._call is None:
            self._call = getReactor(self._reactor).callLater(0, self._run)

    def _cancelCall(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _run(self) -> None:
        self._call = None
        self._inLoop = True
        try:
            limit = self.bytesWritten + self.maxBytesPerTurn
            deadline = time.perf_counter() + self.maxSecondsPerTurn
            while self.producer is not None and not self._paused:
                if self.bytesWritten >= limit or time.perf_counter() >= deadline:
                    self._schedule()
                    return
                self.producer.resumeProducing()
        finally:
            self._inLoop = False
