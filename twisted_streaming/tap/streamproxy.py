"""
Options and service maker for C{twistd stream-proxy}.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

from twisted.application.service import IService
from twisted.internet.endpoints import clientFromString
from twisted.python import usage

from twisted_streaming._flow import getReactor
from twisted_streaming._metrics import proxyMetrics
from twisted_streaming._proxy import ProxyFactory
from twisted_streaming._proxyheader import VERSIONS
from twisted_streaming.tap._server import (
    ServerOptions,
    limitParameters,
    positive,
    serverService,
)


def _proxyVersion(value: str) -> str:
    if value not in VERSIONS:
        raise usage.UsageError(f"--send-proxy must be one of {', '.join(VERSIONS)}")
    return value


class Options(ServerOptions):
    """
    Options for C{twistd stream-proxy}.
    """

    synopsis = "--listen ENDPOINT --connect ENDPOINT [options]"
    longdesc = (
        "Forward every connection accepted on --listen to --connect, with "
        "backpressure both ways and half-close.  Both are endpoint strings, "
        "e.g. --listen tcp:8080 --connect tls:example.com:443.  A tcp: "
        "--listen without backlog= gets a backlog of 1024; haproxy:tcp:... "
        "accepts the PROXY protocol from a load balancer in front."
    )
    listenOption = "listen"
    optFlags = [
        ["no-zero-copy", None, "Never forward with os.splice (plain TCP only)."],
    ]
    optParameters = [
        ["listen", "l", None, "The server endpoint to listen on."],
        ["connect", "c", None, "The client endpoint to forward to."],
        ["connect-timeout", None, 30.0, "Seconds to wait for upstream.", positive],
        [
            "send-proxy",
            None,
            None,
            "Send HAProxy's PROXY header (v1 or v2) upstream first, with the "
            "client's address.",
            _proxyVersion,
        ],
        *limitParameters(None, None, idle="without data either way"),
    ]

    def postOptions(self) -> None:
        if not self["connect"]:
            raise usage.UsageError("--connect is required")
        super().postOptions()


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
        proxyHeader=options["send-proxy"],
    )
    # Two sockets and, spliced, two pipes of two descriptors each.
    return serverService(
        options,
        factory,
        factory.limits,
        lambda: proxyMetrics(factory),
        reactor,
        filesPerConnection=6,
    )
