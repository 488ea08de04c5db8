"""
Options and service makers for the twistd plugins of twisted_streaming.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import IService
from twisted.python import usage

from twisted_streaming._flow import getReactor
from twisted_streaming._metrics import randomIntegerMetrics
from twisted_streaming.randomintegers import RandomIntegerFactory
from twisted_streaming.tap._server import ServerOptions, limitParameters, serverService


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise usage.UsageError(f"{value!r} is not an integer") from None


class Options(ServerOptions):
    """
    Options for C{twistd random-integers}.
    """

    synopsis = (
        "[--port ENDPOINT] [--min N] [--max N] [--max-count N] [--seed N] [options]"
    )
    longdesc = (
        "Serve random integers over TCP with a push producer: a client sends a "
        "count on a line and gets that many integers, one per line.  A tcp: "
        "--port without backlog= gets a backlog of 1024."
    )
    optParameters = [
        ["port", "p", "tcp:1234", "The endpoint to listen on."],
        ["min", None, 0, "The smallest integer sent.", _integer],
        ["max", None, 10000, "The largest integer sent (inclusive).", _integer],
        ["max-count", None, 10**9, "The largest count a client may ask for.", _integer],
        ["seed", None, None, "Seed for reproducible output.", _integer],
        *limitParameters(
            60.0, 1000, idle="without a request, or with none of its integers read"
        ),
    ]

    def postOptions(self) -> None:
        if self["min"] > self["max"]:
            raise usage.UsageError(
                f"--min ({self['min']}) must not be greater than --max ({self['max']})"
            )
        if self["max-count"] < 0:
            raise usage.UsageError("--max-count must not be negative")
        super().postOptions()


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    The random-integer server, listening on C{options["port"]}.
    """
    reactor = getReactor(reactor)
    factory = RandomIntegerFactory(
        minimum=options["min"],
        maximum=options["max"],
        maxCount=options["max-count"],
        seed=options["seed"],
        reactor=reactor,
        maxConnections=options["max-connections"],
        idleTimeout=options["idle-timeout"],
    )
    return serverService(
        options, factory, factory.limits, lambda: randomIntegerMetrics(factory), reactor
    )
