"""
What both twistd plugins share: the options of a server in production
(C{--reuse-port}, C{--drain-timeout}, C{--idle-timeout},
C{--max-connections}, C{--metrics}) and the service they make: the
listener, drained on stop, beside the metrics.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from twisted_streaming._drain import DrainingService
from twisted_streaming._limits import ConnectionLimits, raiseFileLimit
from twisted_streaming._reuseport import DEFAULT_BACKLOG, reusePortDescription

__all__ = [
    "ServerOptions",
    "count",
    "limitParameters",
    "positive",
    "serverService",
    "withBacklog",
]


def _positive(kind: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise usage.UsageError(f"{value!r} is not {name}") from None
        if number <= 0:
            raise usage.UsageError(f"{value!r} is not positive")
        return number

    return parse


#: A number of seconds greater than 0.
positive: Callable[[str], float] = _positive(float, "a number")

#: A whole number greater than 0.
count: Callable[[str], int] = _positive(int, "an integer")


def _orNone(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parseOrNone(value: str) -> Any:
        return None if value.lower() == "none" else parse(value)

    return parseOrNone


def _drainTimeout(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise usage.UsageError(f"{value!r} is not a number") from None
    if number < 0:
        raise usage.UsageError(f"{value!r} is negative")
    return number


def limitParameters(
    idleTimeout: Optional[float], maxConnections: Optional[int], idle: str
) -> List[List[Any]]:
    """
    The C{--idle-timeout} and C{--max-connections} options, with a
    service's defaults; C{none} turns either off.

    @param idle: What idle means for the service, for C{--help}.
    """
    return [
        [
            "idle-timeout",
            None,
            idleTimeout,
            f"Close a connection after this many seconds {idle} ('none': never).",
            _orNone(positive),
        ],
        [
            "max-connections",
            None,
            maxConnections,
            "Refuse clients beyond this many open connections ('none': no limit).",
            _orNone(count),
        ],
    ]


def withBacklog(description: str) -> str:
    """
    C{description}, a server endpoint string, with a listen backlog of
    L{DEFAULT_BACKLOG} if it is a C{tcp:}, C{tcp6:}, C{ssl:} or C{unix:}
    one (or C{haproxy:} around one) that names none (Twisted's default of
    50 overflows with a few hundred simultaneous connections).
    """
    kind, _, rest = description.partition(":")
    if kind == "haproxy":
        return f"haproxy:{withBacklog(rest)}"
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


class ServerOptions(usage.Options):
    """
    The options of both services (each adds its limits with
    L{limitParameters}).

    @cvar listenOption: The name of the service's listening endpoint option.
    """

    listenOption = "port"

    optFlags = [
        [
            "reuse-port",
            None,
            "Listen with SO_REUSEPORT (a tcp: endpoint, or haproxy:tcp:), so "
            "that several processes share the port.",
        ],
    ]
    optParameters = [
        [
            "drain-timeout",
            None,
            0.0,
            "On SIGTERM or SIGINT, stop accepting and let open connections "
            "finish for up to this many seconds, then close them (a second "
            "signal closes them at once; 0: close at once).",
            _drainTimeout,
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics over HTTP on this endpoint, e.g. "
            "tcp:9100:interface=127.0.0.1 (needs the metrics extra).",
        ],
    ]

    def postOptions(self) -> None:
        name = self.listenOption
        if not self[name]:
            raise usage.UsageError(f"--{name} is required")
        listen = withBacklog(self[name])
        if self["reuse-port"]:
            reusing = reusePortDescription(listen)
            if reusing is None:
                raise usage.UsageError(
                    f"--reuse-port needs a tcp: or tcp6: --{name}, not {listen!r}"
                )
            listen = reusing
        self[name] = listen
        if self["metrics"]:
            from twisted_streaming._metrics import requireMetrics

            missing = requireMetrics()
            if missing is not None:
                raise usage.UsageError(missing)
            self["metrics"] = withBacklog(self["metrics"])


def serverService(
    options: ServerOptions,
    factory: Any,
    limits: ConnectionLimits,
    collect: Callable[[], Iterable[Any]],
    reactor: Any,
    filesPerConnection: int = 1,
) -> IService:
    """
    The service of a server: C{factory} listening where the options say,
    drained on stop as C{--drain-timeout} says, and the metrics if
    C{--metrics} asks.  The soft limit on open files is raised (up to the
    hard limit) to what C{--max-connections} needs.

    @param limits: C{factory}'s open connections.
    @param collect: Gives the service's metrics (see
        L{twisted_streaming._metrics}).
    @param filesPerConnection: File descriptors one connection may hold.
    """
    if limits.maxConnections is not None:
        raiseFileLimit(limits.maxConnections * filesPerConnection + 256)
    listening = StreamServerEndpointService(
        serverFromString(reactor, options[options.listenOption]), factory
    )
    service = DrainingService(listening, limits, options["drain-timeout"], reactor)
    if options["metrics"]:
        from twisted_streaming._metrics import metricsService

        metricsService(
            serverFromString(reactor, options["metrics"]), collect
        ).setServiceParent(service)
    return service
