"""
Zero-copy forwarding between two plain TCP transports with L{os.splice}:
socket to pipe to socket, one pipe per direction, the bytes never entering
Python.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import termios
from typing import Any, Callable, List, Optional, Protocol, Tuple

from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IReactorFDSet,
    IReadDescriptor,
    ISSLTransport,
    IWriteDescriptor,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._resetwatch import ResetWatch
from twisted_streaming._transportinternals import (
    isTCPTransport,
    markWriteDisconnected,
    unsentBytes,
    writeClosing,
)

__all__ = ["PipePool", "Splice", "canSplice"]

_log = Logger()

#: The pipe size asked for; a 64 KiB pipe (the default) moves too little per
#: system call to beat copying through Python by much.
PIPE_SIZE = 1024 * 1024

#: Smaller pipes than this (what an unprivileged user gets once over
#: C{/proc/sys/fs/pipe-user-pages-soft}) are not worth splicing through.
MIN_PIPE_SIZE = 64 * 1024

_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)

#: Called as C{fcntl.fcntl} is, to size pipes; replaced by tests to simulate
#: a refused enlargement.
_fcntl: Callable[..., int] = fcntl.fcntl


class SpliceOwner(Protocol):
    """
    What a L{Splice} reports to, each call naming the transport concerned.
    """

    def spliced(self, source: Any, size: int) -> None:
        """
        C{size} bytes read from C{source} were written to the other socket.
        """

    def spliceReadDone(self, source: Any) -> None:
        """
        C{source} sent its end of stream.
        """

    def spliceFinished(self) -> None:
        """
        Both directions are done: every byte forwarded, each end of stream
        passed on as a C{shutdown(SHUT_WR)}.  The splice has stopped.
        """

    def spliceFailed(self, transport: Any, reason: Failure) -> None:
        """
        C{transport}'s socket failed (reset, or gone).  The splice has
        stopped.
        """


_INET = (socket.AF_INET, socket.AF_INET6)


def canSplice(transport: Any) -> bool:
    """
    Can C{transport} take part in a L{Splice}: a connected plain TCP
    transport of a reactor with file descriptors, not TLS, with nothing
    waiting to be written, and L{os.splice} available?
    """
    if not hasattr(os, "splice") or not isTCPTransport(transport):
        return False
    sock = getattr(transport, "socket", None)
    return bool(
        # UNIX stream transports subclass tcp.Connection too.
        sock is not None
        and sock.family in _INET
        and not getattr(transport, "TLS", False)
        and not ISSLTransport.providedBy(transport)
        and transport.connected
        and not transport.disconnecting
        and not writeClosing(transport)
        and not unsentBytes(transport)
        and transport.producer is None
        and IReactorFDSet.providedBy(transport.reactor)
    )


def _openPipe() -> Optional[Tuple[int, int, int]]:
    """
    A non-blocking pipe enlarged to L{PIPE_SIZE} if the system allows:
    C{(readEnd, writeEnd, capacity)}, or L{None} if no pipe of at least
    L{MIN_PIPE_SIZE} could be had.
    """
    try:
        readEnd, writeEnd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        capacity = _fcntl(writeEnd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        # EPERM: over pipe-max-size, or over pipe-user-pages-soft.
        try:
            capacity = _fcntl(writeEnd, _F_GETPIPE_SZ)
        except OSError:
            capacity = 0
    if capacity < MIN_PIPE_SIZE:
        os.close(readEnd)
        os.close(writeEnd)
        return None
    return readEnd, writeEnd, capacity


def _closePipe(pipe: Tuple[int, int, int]) -> None:
    os.close(pipe[0])
    os.close(pipe[1])


class PipePool:
    """
    Empty pipes kept for the next splices, so that a short connection costs
    no pipe to be made, sized and closed (four system calls a pipe, two
    pipes a connection): at most L{size} of them, each holding nothing (and
    so no memory but its bookkeeping, though counted at its full size
    against C{/proc/sys/fs/pipe-user-pages-soft}).  A pipe is made only
    when none is kept, so the pipes kept and in use together never number
    more than were in use at the busiest moment: the default is sized for
    a few dozen short connections at once (a size of 8 closed three pipes
    of four under C{ab -c 50}).

    @ivar size: The most pipes kept.
    @ivar closed: L{close} was called: pipes given back are closed.
    """

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self.closed = False
        self._pipes: List[Tuple[int, int, int]] = []

    def __len__(self) -> int:
        return len(self._pipes)

    def take(self) -> Optional[Tuple[int, int, int]]:
        """
        A pipe from the pool, else a new one (see L{_openPipe}).
        """
        if self._pipes:
            return self._pipes.pop()
        return _openPipe()

    def give(self, pipe: Tuple[int, int, int], buffered: int) -> None:
        """
        Take back C{pipe}, which holds C{buffered} bytes: emptied and kept if
        there is room, else closed.
        """
        if self.closed or len(self._pipes) >= self.size:
            _closePipe(pipe)
            return
        if buffered:
            # What was in flight when a splice stopped: drop it.  (The read
            # end does not block, and the write end is ours, so this ends.)
            try:
                while os.read(pipe[0], 1 << 16):
                    pass
            except BlockingIOError:
                pass
            except OSError:
                _closePipe(pipe)
                return
        self._pipes.append(pipe)

    def open(self) -> None:
        """
        Keep pipes given back again, after L{close}.
        """
        self.closed = False

    def close(self) -> None:
        """
        Close the pipes kept, and those given back from now on (until
        L{open}).
        """
        self.closed = True
        pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            _closePipe(pipe)


def _pending(fd: int) -> int:
    """
    The bytes waiting in socket C{fd}'s receive queue.
    """
    try:
        answer = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", answer)[0])


@implementer(IReadDescriptor, IWriteDescriptor)
class _SpliceSocket:
    """
    The one reactor descriptor for one socket of a L{Splice}: reading it
    fills its C{inbound} pipe, writing it drains its C{outbound} pipe.
    (The reactor keeps one reader and one writer per file descriptor, so
    one object must own both directions.)
    """

    inbound: _Direction
    outbound: _Direction

    def __init__(self, splice: Splice, transport: Any) -> None:
        self.splice = splice
        self.transport = transport
        self.socket: socket.socket = transport.socket
        self.fd = self.socket.fileno()
        self.reading = False
        self.writing = False

    def fileno(self) -> int:
        return -1 if self.splice.stopped else self.fd

    def logPrefix(self) -> str:
        return "Splice"

    def startReading(self) -> None:
        if not self.reading and not self.splice.stopped:
            self.reading = True
            self.splice.reactor.addReader(self)

    def stopReading(self) -> None:
        if self.reading:
            self.reading = False
            self.splice.reactor.removeReader(self)

    def startWriting(self) -> None:
        if not self.writing and not self.splice.stopped:
            self.writing = True
            self.splice.reactor.addWriter(self)

    def stopWriting(self) -> None:
        if self.writing:
            self.writing = False
            self.splice.reactor.removeWriter(self)

    def doRead(self) -> None:
        inbound = self.inbound
        # A destination waiting to be writable drains when it is.
        if inbound.fill() and not inbound.dest.writing:
            inbound.drain()

    def doWrite(self) -> None:
        self.outbound.drain()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw a hang-up or error (and has already removed us),
        # or it is shutting down.
        self.reading = self.writing = False
        self.splice.failed(self, reason)


class _Direction:
    """
    One direction of a L{Splice}: C{source} socket to a pipe to C{dest}.

    @ivar buffered: Bytes in the pipe, as counted here.
    @ivar sourceFull: Reading C{source} stopped because the pipe is full.
    @ivar eof: C{source} sent its end of stream.
    @ivar done: The end of stream was passed on (all bytes forwarded, then
        C{shutdown(SHUT_WR)} on C{dest}).
    """

    def __init__(
        self,
        splice: Splice,
        source: _SpliceSocket,
        dest: _SpliceSocket,
        pipe: Tuple[int, int, int],
    ) -> None:
        self.splice = splice
        self.source = source
        self.dest = dest
        self.readEnd, self.writeEnd, self.capacity = pipe
        self.buffered = 0
        self.sourceFull = False
        self.eof = False
        self.done = False
        #: Data has been read from C{source}.
        self.filled = False
        source.inbound = self
        dest.outbound = self

    def fill(self) -> bool:
        """
        Move what the source socket has into the pipe, with one call.

        @return: C{False} if the splice stopped.
        """
        space = self.capacity - self.buffered
        try:
            moved = os.splice(self.source.fd, self.writeEnd, space, flags=_FLAGS)
        except BlockingIOError:
            # Either the socket is empty or the pipe is full (its slots can
            # run out before its bytes do); only the second stops reading.
            if self.buffered and _pending(self.source.fd):
                self.sourceFull = True
                self.source.stopReading()
                self.splice.watchForReset(self.source)
            return True
        except InterruptedError:
            return True
        except OSError as error:
            self.splice.failed(self.source, _lost(error))
            return False
        if moved == 0:
            self.eof = True
            self.source.stopReading()
            self.splice.watchForReset(self.source)
            self.splice.owner.spliceReadDone(self.source.transport)
            return not self.splice.stopped
        self.buffered += moved
        first = not self.filled
        self.filled = True
        if moved == space:
            self.sourceFull = True
            self.source.stopReading()
            self.splice.watchForReset(self.source)
        elif first:
            # The first bytes of a short connection often arrive with its
            # end of stream: look for it now, not on another turn of the
            # reactor.  (Only after the first read: in bulk the socket is
            # usually empty by now, and asking again would cost a system
            # call per read.)
            return self.fill()
        return True

    def drain(self) -> None:
        """
        Move what the pipe holds to the destination socket until it is empty
        or the socket is full; pass on the end of stream once empty.
        """
        dest = self.dest
        while self.buffered:
            try:
                moved = os.splice(self.readEnd, dest.fd, self.buffered, flags=_FLAGS)
            except BlockingIOError:
                dest.startWriting()
                return
            except InterruptedError:
                continue
            except OSError as error:
                self.splice.failed(dest, _lost(error))
                return
            self.buffered -= moved
            if self.sourceFull and not self.eof:
                self.sourceFull = False
                self.source.startReading()
                self.splice.unwatch(self.source)
            self.splice.owner.spliced(self.source.transport, moved)
            if self.splice.stopped:
                return
            if self.buffered:
                # A short write: the socket is full.
                dest.startWriting()
                return
        dest.stopWriting()
        if self.eof and not self.done:
            self.done = True
            try:
                dest.socket.shutdown(socket.SHUT_WR)
            except OSError:
                # Already gone: reading it (or the other direction) says so.
                pass
            # As the transport would have noted had it shut down itself, so
            # that its loseConnection closes at once instead of waiting for
            # the reactor to report the socket writable.
            markWriteDisconnected(dest.transport)
            self.splice.directionDone()


def _lost(error: OSError) -> Failure:
    return Failure(ConnectionLost(errno.errorcode.get(error.errno or 0, str(error))))


class Splice:
    """
    Forward both ways between two plain TCP transports (see L{canSplice})
    with L{os.splice}, through one pipe per direction.

    The transports are stopped (neither reads nor writes while the splice
    runs), and one reactor descriptor per socket does the work.  A full pipe
    stops reading its source; a full destination socket leaves the pipe
    full, so memory stays bounded by the two pipes.  A socket no longer read
    (its pipe full, or after its end of stream) is checked for a reset by a
    L{ResetWatch}, if given one.  The sockets are never closed here: the
    L{SpliceOwner} is told when both directions are done, or when a socket
    fails, and hands the transports back to Twisted.

    @ivar capacity: The size of each pipe in bytes.
    @ivar stopped: The splice has stopped; its pipes are closed (or back in
        their pool).
    """

    def __init__(
        self,
        a: Any,
        b: Any,
        owner: SpliceOwner,
        pipes: List[Tuple[int, int, int]],
        pool: Optional[PipePool] = None,
        resets: Optional[ResetWatch] = None,
    ) -> None:
        self.owner = owner
        self._resets = resets
        self.reactor: IReactorFDSet = a.reactor
        self.stopped = False
        self._pipes = pipes
        self._pool = pool
        self.capacity = min(pipes[0][2], pipes[1][2])
        for transport in (a, b):
            transport.stopReading()
            transport.stopWriting()
        self._a = _SpliceSocket(self, a)
        self._b = _SpliceSocket(self, b)
        self._directions = (
            _Direction(self, self._a, self._b, pipes[0]),
            _Direction(self, self._b, self._a, pipes[1]),
        )
        self._a.startReading()
        self._b.startReading()

    @classmethod
    def start(
        cls,
        a: Any,
        b: Any,
        owner: SpliceOwner,
        pool: Optional[PipePool] = None,
        resets: Optional[ResetWatch] = None,
    ) -> Optional[Splice]:
        """
        Start splicing between transports C{a} and C{b}, or return L{None}
        (and change nothing) if they cannot be spliced or no pipes large
        enough could be had.

        @param pool: Where to take the pipes from and give them back to when
            the splice stops; if L{None}, they are made here and closed then.
        @param resets: Where to check sockets no longer read for a reset.
        """
        if not (canSplice(a) and canSplice(b)) or a.reactor is not b.reactor:
            return None
        take = _openPipe if pool is None else pool.take
        pipes: List[Tuple[int, int, int]] = []
        for _ in range(2):
            pipe = take()
            if pipe is None:
                for made in pipes:
                    if pool is None:
                        _closePipe(made)
                    else:
                        pool.give(made, 0)
                return None
            pipes.append(pipe)
        return cls(a, b, owner, pipes, pool, resets)

    @property
    def buffered(self) -> int:
        """
        The bytes in the pipes, read but not yet written.
        """
        return sum(d.buffered for d in self._directions)

    def isReading(self, transport: Any) -> bool:
        """
        Is the splice waiting to read from C{transport}'s socket?  (Not once
        its pipe is full, nor after its end of stream.)
        """
        side = self._a if transport is self._a.transport else self._b
        return side.reading

    def stop(self) -> None:
        """
        Unregister from the reactor and close the pipes, or give them back to
        the pool (anything in them is dropped).  Does nothing if already
        stopped.
        """
        if self.stopped:
            return
        for side in (self._a, self._b):
            side.stopReading()
            side.stopWriting()
            self.unwatch(side)
        self.stopped = True
        pool = self._pool
        for pipe, direction in zip(self._pipes, self._directions):
            if pool is None:
                _closePipe(pipe)
            else:
                pool.give(pipe, direction.buffered)

    def watchForReset(self, side: _SpliceSocket) -> None:
        """
        C{side} is no longer read: have it checked for a reset, which then
        fails the splice.
        """
        if self._resets is not None and not self.stopped:
            self._resets.watch(
                side, side.socket, lambda reason: self.failed(side, reason)
            )

    def unwatch(self, side: _SpliceSocket) -> None:
        if self._resets is not None:
            self._resets.unwatch(side)

    def directionDone(self) -> None:
        first, second = self._directions
        if first.done and second.done:
            self.stop()
            self.owner.spliceFinished()

    def failed(self, side: _SpliceSocket, reason: Failure) -> None:
        if self.stopped:
            return
        self.stop()
        _log.debug(
            "Splice stopped: {error}", error=reason.getErrorMessage(), failure=reason
        )
        self.owner.spliceFailed(side.transport, reason)
