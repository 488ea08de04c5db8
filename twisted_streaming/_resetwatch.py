"""
L{ResetWatch}: notice that a socket nobody is reading has been reset.

A reactor learns that a connection was reset only by reading or writing it.
A proxy that has paused reading a side (its peer is full) and has nothing
to write to it would hold both connections until the peer reads again,
which may be never.  A watch checks such sockets for an error every
C{interval} seconds, with one C{poll} system call for all of them, and
costs nothing per pause or resume but a dictionary entry.
"""

from __future__ import annotations

import errno
import select
import socket
from typing import Any, Callable, Dict, Optional, Tuple

from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

__all__ = ["ResetWatch", "socketOf"]

_POLLERR = getattr(select, "POLLERR", 8)
_POLLNVAL = getattr(select, "POLLNVAL", 32)


class ResetWatch:
    """
    Sockets checked every L{interval} seconds for an error (a reset, or a
    timeout of the kernel's), while anything is watched.

    A socket's end of stream is not an error: its data is still there to
    read, and it stays watched.

    @ivar interval: Seconds between checks: an error is reported at most
        this long after it happened.
    """

    def __init__(self, clock: IReactorTime, interval: float = 0.5) -> None:
        self.clock = clock
        self.interval = interval
        self._watched: Dict[object, Tuple[Any, Callable[[Failure], None]]] = {}
        self._check: Optional[IDelayedCall] = None

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, key: object, sock: Any, onError: Callable[[Failure], None]) -> None:
        """
        Check C{sock} (anything with a C{fileno}) until L{unwatch}ed, and
        call C{onError} with a L{ConnectionLost} failure, once, if it fails;
        it is then no longer watched.  Watching a key again replaces it.
        """
        self._watched[key] = (sock, onError)
        if self._check is None:
            self._check = self.clock.callLater(self.interval, self._checkAll)

    def unwatch(self, key: object) -> None:
        """
        Stop watching what C{key} named, if anything.
        """
        if self._watched.pop(key, None) is not None and not self._watched:
            check, self._check = self._check, None
            if check is not None:
                check.cancel()

    def _checkAll(self) -> None:
        self._check = None
        poller = select.poll()
        byFd: Dict[int, object] = {}
        for key, (sock, _) in list(self._watched.items()):
            fd = sock.fileno()
            if fd < 0:
                # Closed without being unwatched.
                del self._watched[key]
                continue
            byFd[fd] = key
            # No events asked for: poll reports errors and hang-ups anyway.
            poller.register(fd, 0)
        failed = []
        for fd, events in poller.poll(0):
            if events & _POLLNVAL:
                # Closed behind the socket object's back: nothing to report.
                del self._watched[byFd[fd]]
            elif events & _POLLERR:
                failed.append(byFd[fd])
        for key in failed:
            entry = self._watched.pop(key, None)
            if entry is None:
                # Unwatched by an earlier callback.
                continue
            sock, onError = entry
            onError(_failure(sock))
        if self._watched and self._check is None:
            self._check = self.clock.callLater(self.interval, self._checkAll)


def socketOf(transport: Any) -> Optional[socket.socket]:
    """
    The socket under C{transport} (its C{getHandle}), looking through a
    protocol wrapper such as Twisted's TLS transport, whose handle is its
    OpenSSL connection; or L{None} if it has none.
    """
    for _ in range(4):
        getHandle = getattr(transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        if isinstance(handle, socket.socket):
            return handle
        # A protocol wrapper is the protocol of the transport under it.
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


def _failure(sock: Any) -> Failure:
    """
    What C{sock}'s error was, as a L{ConnectionLost} failure.
    """
    try:
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except (OSError, AttributeError):
        code = 0
    return Failure(ConnectionLost(errno.errorcode.get(code, "socket error")))
