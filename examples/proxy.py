"""
A TCP proxy with L{twisted_streaming.ProxyFactory} that prints each
connection's statistics when it closes.

    python examples/proxy.py --listen tcp:8000 --connect tcp:127.0.0.1:8080

Both are endpoint strings, so C{--listen unix:/tmp/proxy.sock} or
C{--connect tls:example.com:443} work too.  It prints C{listening on port N}
(C{tcp:0} picks a free port) and, as each connection ends, a line such as
C{connection 1: 1048576 bytes up, 1048576 bytes down in 0.012s (closed)}.

Each side of a connection is the other side's streaming producer, so a slow
reader at either end stops the proxy reading from the other end: the proxy
holds no more than its transports' buffers, whatever the traffic.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver

from twisted_streaming import ProxyFactory, ProxyStatistics


class Report:
    """
    Print the statistics of each connection as it closes.
    """

    def __init__(self) -> None:
        self.connections = 0

    def __call__(self, stats: ProxyStatistics) -> None:
        self.connections += 1
        print(
            f"connection {self.connections}: {stats.bytesToUpstream} bytes up,"
            f" {stats.bytesToClient} bytes down in {stats.duration:.3f}s"
            f" ({stats.reason})",
            flush=True,
        )


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Forward connections.")
    parser.add_argument("--listen", default="tcp:8000:interface=127.0.0.1")
    parser.add_argument("--connect", required=True)
    parser.add_argument("--connect-timeout", type=float, default=30)
    args = parser.parse_args(argv)
    # The proxy's own log (refused or failed upstreams, each end) goes to stderr.
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    factory = ProxyFactory.forEndpoint(
        clientFromString(reactor, args.connect),
        connectTimeout=args.connect_timeout,
        onConnectionDone=Report(),
    )
    port = await serverFromString(reactor, args.listen).listen(factory)
    address = port.getHost()
    print(f"listening on port {getattr(address, 'port', address)}", flush=True)
    await Deferred()  # Serve until interrupted.


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
