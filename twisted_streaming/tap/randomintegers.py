"""
Options and service makers for the twistd plugins of twisted_streaming.
"""

from __future__ import annotations

from typing import Optional

from twisted.application import strports
from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from twisted_streaming.randomintegers import RandomIntegerFactory


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise usage.UsageError(f"{value!r} is not an integer") from None


class Options(usage.Options):
    """
    Options for C{twistd random-integers}.
    """

    synopsis = "[--port ENDPOINT] [--min N] [--max N] [--max-count N] [--seed N]"
    longdesc = (
        "Serve random integers over TCP with a push producer: a client sends a "
        "count on a line and gets that many integers, one per line."
    )
    optParameters = [
        ["port", "p", "tcp:1234", "The endpoint to listen on."],
        ["min", None, 0, "The smallest integer sent.", _integer],
        ["max", None, 10000, "The largest integer sent (inclusive).", _integer],
        ["max-count", None, 10**9, "The largest count a client may ask for.", _integer],
        ["seed", None, None, "Seed for reproducible output.", _integer],
    ]

    def postOptions(self) -> None:
        if self["min"] > self["max"]:
            raise usage.UsageError(
                f"--min ({self['min']}) must not be greater than --max ({self['max']})"
            )
        if self["max-count"] < 0:
            raise usage.UsageError("--max-count must not be negative")


def makeService(options: Options, reactor: Optional[IReactorTime] = None) -> IService:
    """
    The random-integer server, listening on C{options["port"]}.
    """
    factory = RandomIntegerFactory(
        minimum=options["min"],
        maximum=options["max"],
        maxCount=options["max-count"],
        seed=options["seed"],
        reactor=reactor,
    )
    return strports.service(options["port"], factory)
