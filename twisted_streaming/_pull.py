"""
Pull producers: L{FileSender}, a drop-in for Twisted's, and L{PullToPush},
which lets any pull producer feed a consumer that wants a streaming producer.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import time
from typing import IO, Any, Callable, Optional, Tuple, Union

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

# Errors from os.sendfile that mean the peer is gone, not the file.
_CONNECTION_ERRNOS = frozenset(
    {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN}
)


def _zeroCopyTarget(consumer: IConsumer) -> Optional[int]:
    """
    Return the socket's file descriptor if C{consumer} is a plain (not TLS)
    TCP or UNIX transport that L{os.sendfile} can write to directly, else
    L{None}.
    """
    if not hasattr(os, "sendfile"):
        return None
    # Imported here: twisted.internet.tcp pulls in more than we need at
    # import time, and an unusual reactor may not have these at all.
    try:
        from twisted.internet import tcp
    except ImportError:  # pragma: no cover
        return None
    # UNIX stream transports (twisted.internet.unix.Server and Client)
    # subclass tcp.Connection too.
    if not isinstance(consumer, tcp.Connection):
        return None
    # Queued file descriptors (sendFileDescriptor) ride on written bytes.
    if getattr(consumer, "_sendmsgQueue", None):
        return None
    # startTLS() on a transport sets TLS and routes writes through OpenSSL.
    if getattr(consumer, "TLS", False) or not consumer.connected:
        return None
    try:
        return int(consumer.fileno())
    except Exception:
        return None


def _regularFileDescriptor(file: IO[bytes]) -> Optional[int]:
    """
    Return C{file}'s descriptor if it is a regular file, else L{None}.
    """
    try:
        fd = file.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


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

    Zero-copy: when C{consumer} is a plain (not TLS) TCP or UNIX transport
    from C{twisted.internet.tcp} or C{twisted.internet.unix}, there is no
    C{transform} and the file is a regular file with a descriptor, the file
    is sent with L{os.sendfile}, driven by the transport's writability.
    Bytes already buffered in the transport are sent first, and bytes
    written to it after the L{Deferred} fires are sent after the file.  The
    consumer must not be written to by anyone else during the transfer.

    @cvar CHUNK_SIZE: Bytes read and written per C{resumeProducing}.
    @cvar ZERO_COPY: Set to C{False} (on the class or an instance) to always
        read and write.
    @cvar ZERO_COPY_BYTES_PER_CALL: The most bytes given to L{os.sendfile}
        per C{resumeProducing}, so that one transfer does not hog the reactor.
    @ivar zeroCopyBytes: Bytes of the current (or last) transfer sent with
        L{os.sendfile}.
    @ivar bytesSent: Bytes of the file sent so far in the current (or last)
        transfer, counted before C{transform}.
    @ivar chunksSent: Writes made so far in the current (or last) transfer.
    @ivar lastSent: The last byte written to the consumer.
    """

    # 64 KiB.  The chunk size matters only on the read-and-write path:
    # TLS, a transform, a file without a descriptor (plain TCP and UNIX
    # transports take os.sendfile).  `python -m bench.bench_filesender
    # --sweep` (2026-11-29, docs/performance.rst): over TLS, CPU per byte
    # from 64 KiB to 512 KiB is within 7% of 64 KiB's, and only 1 MiB saves
    # more (14-15%), for sixteen times the memory per transfer; side by
    # side with Twisted's FileSender at 64 KiB, ours at 64 KiB is at parity.
    # Over plain TCP the sweep rises fourfold from 4 KiB to 32 KiB and is
    # within this machine's noise from there on.
    CHUNK_SIZE: int = 64 * 1024
    ZERO_COPY: bool = True
    ZERO_COPY_BYTES_PER_CALL: int = 4 * 1024 * 1024

    file: Optional[IO[bytes]] = None
    consumer: Optional[IConsumer] = None
    deferred: Optional[Deferred[bytes]] = None
    lastSent: bytes = b""
    bytesSent: int = 0
    chunksSent: int = 0
    zeroCopyBytes: int = 0

    def __init__(self, *, reactor: Optional[Any] = None) -> None:
        """
        @param reactor: Unused by the read-and-write path; accepted so that
            every producer of this package can be given a reactor.
        """
        self._reactor = reactor
        self._transform: Optional[Callable[[bytes], bytes]] = None
        self._remaining: Optional[int] = None
        self._ownsFile = False
        # (socket fd, file fd) while sending with os.sendfile.
        self._zeroCopy: Optional[Tuple[int, int]] = None
        self._position = 0
        self._lastPosition: Optional[int] = None

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
            zeroCopy: Optional[Tuple[int, int]] = None
            if self.ZERO_COPY and transform is None:
                socketFD = _zeroCopyTarget(consumer)
                if socketFD is not None:
                    fileFD = _regularFileDescriptor(fileObject)
                    if fileFD is not None:
                        # sendfile takes an explicit offset and leaves the
                        # file position alone; _end moves it afterwards.
                        self._position = fileObject.tell()
                        zeroCopy = (socketFD, fileFD)
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
        self.zeroCopyBytes = 0
        self._zeroCopy = zeroCopy
        self._lastPosition = None
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
        if self._zeroCopy is not None:
            self._sendZeroCopy(self._zeroCopy)
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

    def _sendZeroCopy(self, descriptors: Tuple[int, int]) -> None:
        """
        Send with L{os.sendfile} until the socket is full, the budget is
        spent or the range ends; then ask the transport to call
        C{resumeProducing} again when it is writable, or finish.
        """
        # Only called with a twisted.internet.abstract.FileDescriptor.
        transport: Any = self.consumer
        if len(transport.dataBuffer) - transport.offset or transport._tempDataLen:
            # Earlier writes go first: the transport's doWrite drains them and
            # then, since we are a non-streaming producer, calls us again.
            transport.startWriting()
            return
        socketFD, fileFD = descriptors
        budget = self.ZERO_COPY_BYTES_PER_CALL
        sentNow = 0
        finished = False
        while sentNow < budget:
            count = budget - sentNow
            if self._remaining is not None:
                if self._remaining <= 0:
                    finished = True
                    break
                count = min(count, self._remaining)
            try:
                sent = os.sendfile(socketFD, fileFD, self._position, count)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as error:
                self._zeroCopyFailed(error)
                return
            if sent == 0:
                finished = True
                break
            self._position += sent
            self._lastPosition = self._position - 1
            sentNow += sent
            self.bytesSent += sent
            self.zeroCopyBytes += sent
            if self._remaining is not None:
                self._remaining -= sent
        if sentNow:
            self.chunksSent += 1
        if not finished:
            # doWrite finds the transport's buffer empty and calls
            # resumeProducing when the socket is writable again.
            transport.startWriting()
            return
        try:
            if self._lastPosition is not None:
                self.lastSent = os.pread(fileFD, 1, self._lastPosition)
        except OSError as error:
            self._end(failureWithContext(error, self, self.bytesSent, self.chunksSent))
            return
        self._end(self.lastSent)

    def _zeroCopyFailed(self, error: OSError) -> None:
        """
        Handle an L{os.sendfile} error: a lost peer stops the transfer, a
        file that cannot be sent this way falls back to reading and writing,
        anything else fails the transfer.
        """
        if error.errno in _CONNECTION_ERRNOS:
            # The transport notices the broken socket on its own and calls
            # connectionLost; this transfer is over either way.
            self._end(Failure(ProducerStopped(self, self.bytesSent, self.chunksSent)))
        elif error.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            assert self.file is not None
            self._zeroCopy = None
            try:
                self.file.seek(self._position)
            except Exception as seekError:
                self._end(
                    failureWithContext(seekError, self, self.bytesSent, self.chunksSent)
                )
                return
            self.resumeProducing()
        else:
            self._end(failureWithContext(error, self, self.bytesSent, self.chunksSent))

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
        zeroCopy, self._zeroCopy = self._zeroCopy, None
        if file is not None and zeroCopy is not None and not self._ownsFile:
            # Leave a caller's file where a read-and-write transfer would.
            try:
                file.seek(self._position)
            except Exception:
                _log.failure("Seeking {file!r} failed", file=file)
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
