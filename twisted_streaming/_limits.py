"""
The open connections of a server and the limits on them: how many may be
open at once, and how long one may stay idle.  One implementation for every
server of the package (the proxy and the random-integer server), so that
their C{--max-connections} and C{--idle-timeout} behave the same, and so
that a drain (L{twisted_streaming._drain}) and the metrics
(L{twisted_streaming._metrics}) see every connection.
"""

from __future__ import annotations

import resource
from collections import Counter
from typing import Any, Callable, List, Optional, Protocol, Set

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["ConnectionLimits", "IdleTimer", "Limited", "raiseFileLimit"]

_log = Logger()


class Limited(Protocol):
    """
    One open connection, as L{ConnectionLimits} sees it.
    """

    def drain(self) -> None:
        """
        The server has stopped accepting and is waiting for the open
        connections to finish: close now if nothing is in flight (saying why
        where the protocol allows), else carry on.
        """

    def abort(self, why: str) -> None:
        """
        Close at once, abortively where something is in flight, and end as
        C{why} (logged with the connection's end, as usual).
        """


class IdleTimer:
    """
    Call C{onIdle} once, when C{timeout} seconds of C{reactor}'s clock have
    passed without L{touch}.

    L{touch} only notes the time (it is called for every read or write);
    the timer, when it expires, looks at that note and sets itself again for
    the time left, so a busy connection costs one timer call per
    C{timeout}, not one rescheduling per read.
    """

    def __init__(
        self, reactor: IReactorTime, timeout: float, onIdle: Callable[[], None]
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._onIdle = onIdle
        #: When data last moved, by C{reactor.seconds()}.
        self.lastActivity = reactor.seconds()
        self._call: Optional[IDelayedCall] = reactor.callLater(timeout, self._expired)

    def touch(self) -> None:
        """
        Data moved: the idle time starts again.
        """
        self.lastActivity = self._reactor.seconds()

    def cancel(self) -> None:
        """
        Never call C{onIdle}.  Does nothing if already cancelled or expired.
        """
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _expired(self) -> None:
        self._call = None
        left = self.lastActivity + self._timeout - self._reactor.seconds()
        # (A microsecond's tolerance for rounding, which would otherwise
        # reschedule for nothing.)
        if left > 1e-6:
            self._call = self._reactor.callLater(left, self._expired)
            return
        self._onIdle()


class ConnectionLimits:
    """
    The open connections of one server: admitted up to L{maxConnections},
    each given an L{IdleTimer} of L{idleTimeout} if it asks, counted, and
    closed all together when the server drains or stops.

    A server calls L{admit} for each new client (and refuses it, saying why
    where its protocol allows, if that returns C{False}), L{add} for each
    admitted one, L{remove} when one has ended, and L{release} if one stops
    counting against L{maxConnections} before it has ended (a proxied
    connection whose client has gone while its upstream side is closing).

    @ivar maxConnections: Refuse new clients beyond this many open
        connections; L{None} for no limit.
    @ivar idleTimeout: Seconds a connection may stay idle (the server says
        what idle means for it); L{None} for ever.
    @ivar open: The open connections.
    @ivar counted: The open connections that count against
        L{maxConnections}: those not L{release}d.
    @ivar accepted: Connections admitted since the start.
    @ivar refused: Clients refused because L{maxConnections} were open.
    @ivar errors: How many connections ended badly, by kind (the server's
        words: C{"idle timeout"}, C{"refused"}, ...).
    @ivar draining: L{drain} was called: the server has stopped accepting.
    """

    def __init__(
        self,
        maxConnections: Optional[int] = None,
        idleTimeout: Optional[float] = None,
    ) -> None:
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.open: Set[Limited] = set()
        self.counted: Set[Limited] = set()
        self.accepted = 0
        self.refused = 0
        self.errors: Counter[str] = Counter()
        self.draining = False
        self._empty: List[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self.open)

    def admit(self, address: Any) -> bool:
        """
        May a new client from C{address} be served?  If not, it is counted
        in L{refused} and logged; the caller closes it.
        """
        limit = self.maxConnections
        if limit is None or len(self.counted) < limit:
            return True
        self.refused += 1
        _log.info(
            "Refusing {address}: {open} connections open (the limit)",
            address=address,
            open=len(self.counted),
        )
        return False

    def add(self, connection: Limited) -> None:
        """
        C{connection} was admitted and is open.
        """
        self.open.add(connection)
        self.counted.add(connection)
        self.accepted += 1

    def release(self, connection: Limited) -> None:
        """
        C{connection} is still open but no longer counts against
        L{maxConnections}.
        """
        self.counted.discard(connection)

    def remove(self, connection: Limited, error: Optional[str] = None) -> None:
        """
        C{connection} has ended, badly if C{error} (its kind) is given.
        """
        self.open.discard(connection)
        self.counted.discard(connection)
        if error is not None:
            self.errors[error] += 1
        if not self.open and self._empty:
            waiting, self._empty = self._empty, []
            for d in waiting:
                d.callback(None)

    def idleTimer(
        self, reactor: IReactorTime, onIdle: Callable[[], None]
    ) -> Optional[IdleTimer]:
        """
        An L{IdleTimer} of L{idleTimeout} seconds calling C{onIdle}, or
        L{None} if there is no idle timeout.
        """
        if self.idleTimeout is None:
            return None
        return IdleTimer(reactor, self.idleTimeout, onIdle)

    def whenEmpty(self) -> Deferred[None]:
        """
        A Deferred that fires once no connection is open (at once if none
        is).
        """
        d: Deferred[None] = Deferred()
        if self.open:
            self._empty.append(d)
        else:
            d.callback(None)
        return d

    def drain(self) -> None:
        """
        The server has stopped accepting: tell every open connection (see
        L{Limited.drain}).
        """
        self.draining = True
        for connection in list(self.open):
            connection.drain()

    def abortAll(self, why: str) -> None:
        """
        Close every open connection at once (see L{Limited.abort}).
        """
        for connection in list(self.open):
            connection.abort(why)


def raiseFileLimit(needed: int) -> int:
    """
    Raise this process's soft limit on open files (C{RLIMIT_NOFILE}) to
    C{needed}, or as near as the hard limit allows; never lower it.

    @return: The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if ceiling > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (OSError, ValueError):
            return soft
        return ceiling
    return soft
