"""
L{FileConsumer}: a consumer that writes what it receives to a file, with
backpressure.
"""

from __future__ import annotations

import os
from typing import IO, Any, List, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from twisted_streaming._util import failureWithContext, getReactor
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

_log = Logger()


@implementer(IConsumer, IFinishableConsumer)
class FileConsumer:
    """
    Write everything written to this consumer to a file.

    C{write()} only buffers: the file is written on later reactor turns, at
    most L{batchBytes} per turn, so one fast producer cannot stall the
    reactor on disk writes.  A registered I{streaming} producer is paused
    when L{highWater} bytes or more are waiting, and resumed once fewer than
    L{lowWater} are (or none); a I{pull} producer is asked for more
    (C{resumeProducing}) when it is registered and each time the buffer has
    been written out.  So memory stays bounded by about C{highWater} plus
    one producer chunk.

    @cvar highWater: Buffered bytes at which a streaming producer is paused.
    @cvar lowWater: Buffered bytes below which it is resumed.
    @cvar batchBytes: The most bytes written to the file per reactor turn.
    @ivar bytesWritten: Bytes written to the file so far.
    @ivar producer: The registered producer, or L{None}.
    """

    highWater: int = 1024 * 1024
    lowWater: int = 256 * 1024
    batchBytes: int = 1024 * 1024

    bytesWritten: int = 0

    def __init__(
        self,
        fileOrPath: Union[IO[bytes], str, bytes, os.PathLike[str], FilePath[Any]],
        *,
        fsync: bool = False,
        reactor: Optional[Any] = None,
    ) -> None:
        """
        @param fileOrPath: A binary file object open for writing, or a path,
            which is opened (truncated) here and closed when finished.
        @param fsync: Call C{os.fsync} on the file before reporting that the
            data is written.
        @param reactor: Used to schedule the writes (anything with
            C{callLater}); the global reactor if L{None}.
        """
        if isinstance(fileOrPath, FilePath):
            fileOrPath = fileOrPath.path
        self._ownsFile = isinstance(fileOrPath, (str, bytes, os.PathLike))
        self.file: IO[bytes] = (
            open(fileOrPath, "wb")  # type: ignore[arg-type,assignment]
            if self._ownsFile
            else fileOrPath
        )
        self._fsync = fsync
        self._reactor = reactor
        self._buffer: List[bytes] = []
        self._buffered = 0
        self._call: Optional[IDelayedCall] = None
        self._finished = False
        self._done = False
        self._result: Optional[Union[int, Failure]] = None
        self._waiters: List[Deferred[int]] = []
        self._paused = False
        self.producer: Optional[Any] = None
        self._streaming = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.bytesWritten} bytes at {id(self):#x}>"

    # IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register a producer; a pull producer is asked for data at once.

        @raise RuntimeError: If a producer is already registered.
        """
        if self.producer is not None:
            raise RuntimeError(f"{self!r} already has producer {self.producer!r}")
        self.producer = producer
        self._streaming = streaming
        self._paused = False
        if self._done:
            producer.stopProducing()
        elif streaming:
            self._checkWater()
        else:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        """
        Forget the registered producer.
        """
        self.producer = None

    def write(self, data: bytes) -> None:
        """
        Buffer C{data} to be written to the file on a later reactor turn.

        @raise ConsumerFinished: If L{finish} has been called.
        """
        if self._finished:
            raise ConsumerFinished(f"{self!r} is finished")
        if self._done:
            return  # A write failed; the error has been reported.
        if data:
            self._buffer.append(data)
            self._buffered += len(data)
            self._schedule()
            self._checkWater()

    # IFinishableConsumer

    def finish(self) -> None:
        """
        No more data will be written: write out what is buffered, flush (and
        fsync, if asked), close the file if it was opened here, and fire
        L{whenFinished}.

        @raise ConsumerFinished: If called twice.
        """
        if self._finished:
            raise ConsumerFinished(f"{self!r} is already finished")
        self._finished = True
        if not self._done:
            self._schedule()

    def whenFinished(self) -> Deferred[int]:
        """
        @return: A L{Deferred} that fires with the number of bytes written
            once everything has been written and flushed after L{finish}, or
            fails with the error (in a
            L{ContextFailure <twisted_streaming.ContextFailure>}) if writing
            the file failed.
        """
        d: Deferred[int] = Deferred()
        if self._result is None:
            self._waiters.append(d)
        elif isinstance(self._result, Failure):
            d.errback(self._result)
        else:
            d.callback(self._result)
        return d

    # Internals

    def _schedule(self) -> None:
        if self._call is None:
            self._call = getReactor(self._reactor).callLater(0, self._writeBatch)

    def _checkWater(self) -> None:
        if self.producer is None or not self._streaming:
            return
        if not self._paused and self._buffer and self._buffered >= self.highWater:
            self._paused = True
            self.producer.pauseProducing()
        elif self._paused and (not self._buffer or self._buffered < self.lowWater):
            # Empty always resumes: with a low water mark of 0, "below it"
            # would never happen.
            self._paused = False
            self.producer.resumeProducing()

    def _writeBatch(self) -> None:
        self._call = None
        try:
            budget = self.batchBytes
            while self._buffer and budget > 0:
                data = self._buffer.pop(0)
                if len(data) > budget:
                    self._buffer.insert(0, data[budget:])
                    data = data[:budget]
                self.file.write(data)
                self._buffered -= len(data)
                self.bytesWritten += len(data)
                budget -= len(data)
            if not self._buffer and self._finished:
                self.file.flush()
                if self._fsync:
                    os.fsync(self.file.fileno())
                self._complete(self.bytesWritten)
                return
        except Exception as error:
            self._fail(error)
            return
        if self._buffer:
            self._schedule()
        self._checkWater()
        if self.producer is not None and not self._streaming and not self._buffer:
            self.producer.resumeProducing()

    def _fail(self, error: Exception) -> None:
        failure = failureWithContext(error, self, self.bytesWritten, 0)
        self._buffer = []
        self._buffered = 0
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()
        self._complete(failure)

    def _complete(self, result: Union[int, Failure]) -> None:
        self._done = True
        if self._ownsFile:
            try:
                self.file.close()
            except Exception:
                _log.failure("Closing {file!r} failed", file=self.file)
        self._result = result
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
        if isinstance(result, Failure) and not waiters:
            _log.failure("Writing {consumer!r} failed", result, consumer=self)
