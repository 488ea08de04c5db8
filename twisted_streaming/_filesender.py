"""
L{FileSender}: a drop-in for Twisted's, with byte ranges, honest endings and
a zero-copy L{os.sendfile} path.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import IO, Any, Callable, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IConsumer, IPullProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import Flow
from twisted_streaming._transportinternals import unsentBytes, zeroCopySocket
from twisted_streaming.interfaces import ProducerStateError

__all__ = ["FileOrPath", "FileSender"]

_log = Logger()

# Errors from os.sendfile that mean the peer is gone, not the file.
_CONNECTION_ERRNOS = frozenset(
    {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN}
)

FileOrPath = Union[
    IO[bytes], str, bytes, "os.PathLike[str]", "os.PathLike[bytes]", "FilePath[Any]"
]


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


def _passThrough(consumer: Any) -> Tuple[Any, List[Any]]:
    """
    Follow C{consumer}'s C{passThroughTo} to the consumer its writes reach
    unchanged and at once (a pipeline's counting tap passes them to the sink
    this way): that consumer, and the pass-through consumers on the way,
    which are told with C{passedAround(size)} of bytes sent around them.
    """
    around: List[Any] = []
    while getattr(consumer, "passThroughTo", None) is not None and len(around) < 8:
        around.append(consumer)
        consumer = consumer.passThroughTo
    return consumer, around


@implementer(IPullProducer)
class FileSender(Flow):
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
    is sent with L{os.sendfile}, driven by the transport's writability and
    run on the reactor's turn loop, so many transfers share one budget per
    turn instead of each taking L{ZERO_COPY_BYTES_PER_CALL} per pass.
    Bytes already buffered in the transport are sent first, and bytes
    written to it after the L{Deferred} fires are sent after the file.  The
    consumer must not be written to by anyone else during the transfer.

    @cvar CHUNK_SIZE: Bytes read and written per C{resumeProducing}.
    @cvar ZERO_COPY: Set to C{False} (on the class or an instance) to always
        read and write.
    @cvar ZERO_COPY_BYTES_PER_CALL: The most bytes given to L{os.sendfile}
        per step of the turn loop.
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

    reusable = True

    file: Optional[IO[bytes]] = None
    lastSent: bytes = b""
    bytesSent: int = 0
    chunksSent: int = 0
    zeroCopyBytes: int = 0

    def __init__(self, **kwargs: Any) -> None:
        """
        @param reactor: The reactor whose turn loop runs the zero-copy path;
            the global reactor if L{None}, looked up when first needed.
        @param cooperator: Run the zero-copy path on this
            L{twisted.internet.task.Cooperator} instead.
        """
        super().__init__(**kwargs)
        self._transform: Optional[Callable[[bytes], bytes]] = None
        self._remaining: Optional[int] = None
        self._ownsFile = False
        # (transport, socket fd, file fd, pass-through consumers) while
        # sending with os.sendfile.
        self._zeroCopy: Optional[Tuple[Any, int, int, List[Any]]] = None
        self._position = 0
        self._lastPosition: Optional[int] = None

    def __repr__(self) -> str:
        state = "sending" if self.producing else "idle"
        return (
            f"<{type(self).__name__} {state} {self.bytesSent} bytes at {id(self):#x}>"
        )

    @property
    def deferred(self) -> Optional[Deferred[bytes]]:
        """
        The L{Deferred} of the transfer in progress, or L{None}.
        """
        return self._deferred

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
            nothing was sent) once the sender has unregistered.  It fails
            with L{ProducerStopped} if the consumer stops the transfer; with
            the error if the path cannot be opened or the file read (or
            C{transform} raises); and with the error C{registerProducer}
            raised if the consumer refuses the sender (a transport that
            already has a producer), having written nothing to it and
            closed what it opened.  Errors come in a
            L{ContextFailure <twisted_streaming.ContextFailure>}.
        @raise ProducerStateError: If a transfer is already in progress.
        """
        if self.producing:
            raise ProducerStateError(f"{self!r} is already sending a file")
        if length is not None and length < 0:
            raise ValueError(f"length must not be negative: {length!r}")
        if isinstance(file, FilePath):
            file = file.path
        ownsFile = isinstance(file, (str, bytes, os.PathLike))
        self.consumer = consumer
        self.lastSent = b""
        self.bytesSent = self.chunksSent = self.zeroCopyBytes = 0
        fileObject: Optional[IO[bytes]] = None
        try:
            fileObject = open(file, "rb") if ownsFile else file  # type: ignore[arg-type,assignment]
            assert fileObject is not None
            if offset:
                fileObject.seek(offset)
            zeroCopy = self._zeroCopyFor(fileObject, consumer, transform)
        except Exception as error:
            if ownsFile and fileObject is not None:
                fileObject.close()
            return fail(failureWithContext(error, self, 0, 0))
        self.file = fileObject
        self._ownsFile = ownsFile
        self._transform = transform
        self._remaining = length
        self._zeroCopy = zeroCopy
        self._lastPosition = None
        # Everything is ready before registering: a transport calls
        # resumeProducing (or, if disconnected, stopProducing) from inside.
        return self._start(consumer, False)

    def _zeroCopyFor(
        self,
        file: IO[bytes],
        consumer: IConsumer,
        transform: Optional[Callable[[bytes], bytes]],
    ) -> Optional[Tuple[Any, int, int, List[Any]]]:
        if not self.ZERO_COPY or transform is not None:
            return None
        target, around = _passThrough(consumer)
        socketFD = zeroCopySocket(target)
        if socketFD is None:
            return None
        fileFD = _regularFileDescriptor(file)
        if fileFD is None:
            return None
        # sendfile takes an explicit offset and leaves the file position
        # alone; the cleanup moves it afterwards.
        self._position = file.tell()
        return (target, socketFD, fileFD, around)

    def pauseProducing(self) -> None:
        """
        Nothing to do: a pull producer writes only when asked.
        """

    def resumeProducing(self) -> None:
        """
        Write the next chunk, or finish if there is none.  On the zero-copy
        path, send on the reactor's turn loop instead.
        """
        file = self.file
        if file is None or not self.producing:
            return
        if self._zeroCopy is not None:
            self._turns().wake(now=True)
            return
        size = self.CHUNK_SIZE
        if self._remaining is not None:
            size = min(size, self._remaining)
        try:
            chunk = file.read(size) if size > 0 else b""
            if not chunk:
                self._finish(self.lastSent, finishConsumer=False)
                return
            self.bytesSent += len(chunk)
            if self._remaining is not None:
                self._remaining -= len(chunk)
            if self._transform is not None:
                chunk = self._transform(chunk)
        except Exception as error:
            self._fail(error)
            return
        self.chunksSent += 1
        self.lastSent = chunk[-1:]
        self.consumer.write(chunk)

    def stopProducing(self) -> None:
        """
        Stop the transfer: close the file if it was opened here, unregister
        and fail the L{Deferred} with L{ProducerStopped}.  Does nothing if no
        transfer is in progress.
        """
        super().stopProducing()

    def _progress(self) -> Tuple[int, int]:
        return self.bytesSent, self.chunksSent

    # The zero-copy path, a step of the turn loop

    def _flowStep(self) -> bool:
        """
        Send with L{os.sendfile} until the socket is full, the step's budget
        is spent or the range ends; then wait for the transport to call
        C{resumeProducing} again when it is writable, or finish.
        """
        zeroCopy = self._zeroCopy
        if zeroCopy is None or not self.producing:
            return False
        transport, socketFD, fileFD, around = zeroCopy
        if unsentBytes(transport):
            # Earlier writes go first: the transport's doWrite drains them and
            # then, since we are a non-streaming producer, calls us again.
            transport.startWriting()
            return False
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
                return False
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
            for consumer in around:
                consumer.passedAround(sent)
        if sentNow:
            self.chunksSent += 1
            self._turns().charge(sentNow)
        if finished:
            try:
                if self._lastPosition is not None:
                    self.lastSent = os.pread(fileFD, 1, self._lastPosition)
            except OSError as error:
                self._fail(error)
                return False
            self._finish(self.lastSent, finishConsumer=False)
            return False
        if sentNow < budget:
            # The socket is full: doWrite finds the transport's buffer empty
            # and calls resumeProducing when it is writable again.
            transport.startWriting()
            return False
        return True

    def _zeroCopyFailed(self, error: OSError) -> None:
        """
        Handle an L{os.sendfile} error: a lost peer stops the transfer, a
        file that cannot be sent this way falls back to reading and writing,
        anything else fails the transfer.
        """
        if error.errno in _CONNECTION_ERRNOS:
            # The transport notices the broken socket on its own and calls
            # connectionLost; this transfer is over either way.
            self.stopProducing()
        elif error.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            assert self.file is not None
            self._zeroCopy = None
            try:
                self.file.seek(self._position)
            except Exception as seekError:
                self._fail(seekError)
                return
            self.resumeProducing()
        else:
            self._fail(error)

    # The one cleanup hook

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        file, self.file = self.file, None
        self._transform = None
        zeroCopy, self._zeroCopy = self._zeroCopy, None
        if file is None:
            return
        if zeroCopy is not None and not self._ownsFile:
            # Leave a caller's file where a read-and-write transfer would.
            try:
                file.seek(self._position)
            except Exception:
                _log.failure("Seeking {file!r} failed", file=file)
        if self._ownsFile:
            try:
                file.close()
            except Exception:
                _log.failure("Closing {file!r} failed", file=file)
