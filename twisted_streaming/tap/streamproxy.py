"""
Options and service maker for C{twistd stream-proxy}.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.python import usage

from twisted_streaming._flow import getReactor
from twisted_streaming._proxy import ProxyFactory

#: The listen backlog used when --listen does not give one: Twisted's
#: C{tcp.Port} default of 50 overflows with a few hundred simultaneous
#: connections (the kernel caps it at net.core.somaxconn, 4096 by default).
DEFAULT_BACKLOG = 1024


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise usage.UsageError(f"{value!r} is not a number") from None
    if number <= 0:
        raise usage.UsageError(f"{value!r} is not positive")
    return number


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise usage.UsageError(f"{value!r} is not an integer") from None
    if number <= 0:
        raise usage.UsageError(f"{value!r} is not positive")
    return number


class Options(usage.Options):
    """
    Options for C{twistd stream-proxy}.
    """

    synopsis = "--listen ENDPOINT --connect ENDPOINT [options]"
    longdesc = (
        "Forward every connection accepted on --listen to --connect, with "
        "backpressure both ways and half-close.  Both are endpoint strings, "
        "e.g. --listen tcp:8080 --connect tls:example.com:443."
    )
    optFlags = [
        ["no-zero-copy", None, "Never forward with os.splice (plain TCP only)."],
    ]
    optParameters = [
        ["listen", "l", None, "The server endpoint to listen on."],
        ["connect", "c", None, "The client endpoint to forward to."],
        ["connect-timeout", None, 30.0, "Seconds to wait for upstream.", _positive],
        ["idle-timeout", None, None, "Close after this many idle seconds.", _positive],
        ["max-connections", None, None, "Refuse clients beyond this many.", _count],
    ]

    def postOptions(self) -> None:
        for name in ("listen", "connect"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")
        listen = self["listen"]
        if listen.split(":", 1)[0] in ("tcp", "tcp6", "unix") and (
            "backlog=" not in listen
        ):
            self["listen"] = f"{listen}:backlog={DEFAULT_BACKLOG}"


#: The client endpoint types whose strings take a C{timeout=}.
_TIMEOUT_TYPES = ("tcp", "tcp6", "ssl", "tls", "unix")


def _withTimeout(description: str, timeout: float) -> Tuple[str, bool]:
    """
    C{description}, a client endpoint string, with C{timeout=} set to the
    connect timeout if it takes one and gives none: such an endpoint would
    otherwise give up after its own default of 30 seconds, whatever
    C{--connect-timeout} says.

    @return: The string, and whether the endpoint now times out by itself
        after C{timeout} seconds.
    """
    kind = description.split(":", 1)[0]
    if kind not in _TIMEOUT_TYPES or "timeout=" in description:
        return description, False
    # Endpoint strings take whole seconds: a fraction is rounded up, and the
    # proxy's own timer, which then comes first, keeps the exact value.
    seconds = math.ceil(timeout)
    return f"{description}:timeout={seconds}", seconds == timeout


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    The proxy, listening on C{options["listen"]}.

    @param reactor: The reactor (the global one if L{None}); which of its
        interfaces are needed depends on the endpoint strings.
    """
    reactor = getReactor(reactor)
    connect, timesOut = _withTimeout(options["connect"], options["connect-timeout"])
    factory = ProxyFactory.forEndpoint(
        clientFromString(reactor, connect),
        timesOut=timesOut,
        reactor=reactor,
        connectTimeout=options["connect-timeout"],
        idleTimeout=options["idle-timeout"],
        maxConnections=options["max-connections"],
        zeroCopy=not options["no-zero-copy"],
    )
    return StreamServerEndpointService(
        serverFromString(reactor, options["listen"]), factory
    )
