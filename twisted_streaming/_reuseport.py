"""
L{ReusePortServerEndpoint}: a TCP server endpoint whose socket is bound with
C{SO_REUSEPORT}, so that several processes can listen on one address and
the kernel spreads the connections between them.

Twisted's C{tcp:} endpoint cannot set the option (twisted/twisted#994, still
open); this one makes the listening socket itself and hands it to the
reactor with C{IReactorSocket.adoptStreamPort}, a public API, so no private
attribute of Twisted is touched.  The C{reuseport:} endpoint string
(C{reuseport:8080:interface=127.0.0.1:backlog=1024}) is parsed by
L{parseReusePort}, registered by the package's dropin.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
)
from zope.interface import implementer

__all__ = [
    "DEFAULT_BACKLOG",
    "ReusePortServerEndpoint",
    "parseReusePort",
    "reusePortDescription",
]

#: The listen backlog of every listener the package makes, unless told
#: otherwise: Twisted's default of 50 overflows with a few hundred
#: simultaneous connections (the kernel caps it at net.core.somaxconn,
#: 4096 by default).
DEFAULT_BACKLOG = 1024


@implementer(IStreamServerEndpoint)
class ReusePortServerEndpoint:
    """
    Listen on a TCP port with C{SO_REUSEPORT} (and C{SO_REUSEADDR}, as
    Twisted's own TCP ports do): every process (of the same user) listening
    so on the same address and port gets a share of the new connections.

    @param reactor: A reactor providing C{IReactorSocket} (every reactor on
        Linux and the BSDs does).
    @param port: The port number; 0 for one chosen by the system (then each
        endpoint gets a port of its own).
    @param backlog: The listen backlog.
    @param interface: The address to listen on; an IPv6 address makes an
        IPv6 socket.  The default, C{""}, is every IPv4 address.
    """

    def __init__(
        self,
        reactor: IReactorSocket,
        port: int,
        backlog: int = DEFAULT_BACKLOG,
        interface: str = "",
    ) -> None:
        self._reactor = reactor
        self._port = port
        self._backlog = backlog
        self._interface = interface

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Bind, listen and hand the socket to the reactor.

        @return: A Deferred firing with the L{IListeningPort}, or failing
            with the C{OSError} of binding (C{AF_INET}'s C{EADDRINUSE} when
            a process listens there without C{SO_REUSEPORT}).
        """
        family = socket.AF_INET6 if isIPv6Address(self._interface) else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            return fail()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
            sock.setblocking(False)
            # The reactor takes a duplicate of the descriptor; ours is closed
            # below either way.
            port = self._reactor.adoptStreamPort(
                sock.fileno(),
                family,
                protocolFactory,  # type: ignore[arg-type]
            )
        except BaseException:
            return fail()
        finally:
            sock.close()
        return succeed(port)


def parseReusePort(
    reactor: Any,
    port: str,
    backlog: str = str(DEFAULT_BACKLOG),
    interface: str = "",
) -> ReusePortServerEndpoint:
    """
    Make a L{ReusePortServerEndpoint} from the arguments of a C{reuseport:}
    endpoint string, which are those of C{tcp:}: C{reuseport:PORT} with
    optional C{backlog=} (default L{DEFAULT_BACKLOG}) and C{interface=}
    (escape the colons of an IPv6 address: C{interface=\\:\\:1}).
    """
    return ReusePortServerEndpoint(
        reactor, int(port), backlog=int(backlog), interface=interface
    )


def reusePortDescription(description: str) -> Optional[str]:
    """
    The C{reuseport:} endpoint string for a C{tcp:} or C{tcp6:} one (same
    port, interface and backlog), kept inside C{haproxy:} if it is there;
    L{None} if C{description} is of another kind.
    """
    kind, _, rest = description.partition(":")
    if kind == "haproxy":
        inner = reusePortDescription(rest)
        return None if inner is None else f"haproxy:{inner}"
    if kind not in ("tcp", "tcp6"):
        return None
    if kind == "tcp6" and "interface=" not in rest:
        # tcp6: listens on every IPv6 address by default.
        rest += r":interface=\:\:"
    return f"reuseport:{rest}"
