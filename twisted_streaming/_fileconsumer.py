"""
L{FileConsumer}: a consumer that writes what it receives to a file, with
backpressure.
"""

from __future__ import annotations

import os
from typing import IO, Any, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import BufferedConsumer
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

__all__ = ["FileConsumer"]

_log = Logger()


@implementer(IConsumer, IFinishableConsumer)
class FileConsumer(BufferedConsumer):
    """
    Write everything written to this consumer to a file.

    C{write()} only buffers: the file is written on the reactor's turn loop,
    at most L{batchBytes} per step, so one fast producer cannot stall the
    reactor on disk writes.  A registered I{streaming} producer is paused
    when L{highWater} bytes or more are waiting, and resumed once fewer than
    L{lowWater} are (or none); a I{pull} producer is asked for more
    (C{resumeProducing}) on the turn loop when it is registered and each
    time the buffer has been written out.  So memory stays bounded by about
    C{highWater} plus one producer chunk.

    One producer at a time: registering a second before the first has
    unregistered raises L{ProducerStateError
    <twisted_streaming.ProducerStateError>}, as a transport does.

    @cvar highWater: Buffered bytes at which a streaming producer is paused.
    @cvar lowWater: Buffered bytes below which it is resumed.
    @cvar batchBytes: The most bytes written to the file per step of the
        turn loop.
    @ivar bytesWritten: Bytes written to the file so far.
    """

    highWater: int = 1024 * 1024
    lowWater: int = 256 * 1024
    batchBytes: int = 256 * 1024

    bytesWritten: int = 0

    def __init__(
        self,
        fileOrPath: Union[IO[bytes], str, bytes, os.PathLike[str], FilePath[Any]],
        *,
        fsync: bool = False,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        @param fileOrPath: A binary file object open for writing, or a path,
            which is opened (truncated) here and closed when finished.
        @param fsync: Call C{os.fsync} on the file before reporting that the
            data is written.
        @param reactor: The reactor whose turn loop writes the file; the
            global reactor if L{None}, looked up when first needed.
        @param cooperator: Write on this L{twisted.internet.task.Cooperator}
            instead.
        """
        super().__init__(reactor=reactor, cooperator=cooperator)
        if isinstance(fileOrPath, FilePath):
            fileOrPath = fileOrPath.path
        self._ownsFile = isinstance(fileOrPath, (str, bytes, os.PathLike))
        self.file: IO[bytes] = (
            open(fileOrPath, "wb")  # type: ignore[arg-type,assignment]
            if self._ownsFile
            else fileOrPath
        )
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.bytesWritten} bytes at {id(self):#x}>"

    # IConsumer

    def write(self, data: bytes) -> None:
        """
        Buffer C{data} to be written to the file on the turn loop.

        @raise ConsumerFinished: If L{finish} has been called.
        """
        if self._finished:
            raise ConsumerFinished(f"{self!r} is finished")
        if self._ended:
            return  # A write failed; the error has been reported.
        if data:
            self._buffer.append(data)
            self._turns().wake()
            self._buffer.regulate(self._up)

    # IFinishableConsumer

    def finish(self) -> None:
        """
        No more data will be written: write out what is buffered, flush (and
        fsync, if asked), close the file if it was opened here, and fire
        L{whenFinished}.

        @raise ConsumerFinished: If called twice.
        """
        super().finish()

    def whenFinished(self) -> Deferred[int]:
        """
        @return: A L{Deferred} that fires with the number of bytes written
            once everything has been written and flushed after L{finish}, or
            fails with the error (in a
            L{ContextFailure <twisted_streaming.ContextFailure>}) if writing
            the file failed.
        """
        return super().whenFinished()

    # Internals

    def _step(self) -> bool:
        """
        One step of the turn loop: write at most L{batchBytes}, then
        regulate the producer, pull a pull producer once the buffer is
        empty, or complete once finished and empty.
        """
        buffer = self._buffer
        try:
            budget = self.batchBytes
            while buffer and budget > 0:
                data = buffer.popleft()
                if len(data) > budget:
                    buffer.appendleft(data[budget:])
                    data = data[:budget]
                self.file.write(data)
                self.bytesWritten += len(data)
                budget -= len(data)
            self._turns().charge(self.batchBytes - budget)
            if not buffer and self._finished:
                self.file.flush()
                if self._fsync:
                    os.fsync(self.file.fileno())
                self._complete(self.bytesWritten)
                return False
        except Exception as error:
            self._complete(failureWithContext(error, self, self.bytesWritten, 0))
            return False
        # A pull producer that wrote nothing is not asked again until it
        # writes of its own accord, as a transport would not ask it again.
        return self._regulate() and bool(buffer)

    def _released(self, outcome: Any) -> None:
        if self._ownsFile:
            try:
                self.file.close()
            except Exception:
                _log.failure("Closing {file!r} failed", file=self.file)
