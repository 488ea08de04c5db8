"""
A faithful Python 3 port of the seed's random-integer server
(../shared/seeds/004_7e32a8cb177d472c.txt), for benchmarks only.

It keeps the seed's shape: one C{random.randint} and one C{transport.write} per
integer, a C{while not paused} loop, C{int(line.strip())} on the request.  The
only changes are Python 3 ones (bytes, C{@implementer}), no prints, and a port
taken from the command line and reported on stdout.

    python bench/seed_random_server.py [PORT]
"""

from __future__ import annotations

import random
import sys
from typing import Any

from twisted.internet import interfaces
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer


@implementer(interfaces.IPushProducer)
class Producer:
    def __init__(self, proto: ServeRandom, cnt: int) -> None:
        self._proto = proto
        self._goal = cnt
        self._produced = 0
        self._paused = False

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and self._produced < self._goal:
            next_int = random.randint(0, 10000)
            self._proto.transport.write(b"%d\r\n" % (next_int,))  # type: ignore[union-attr]
            self._produced += 1
        if self._produced == self._goal:
            self._proto.transport.unregisterProducer()  # type: ignore[union-attr]
            self._proto.transport.loseConnection()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        pass


class ServeRandom(LineReceiver):
    def connectionMade(self) -> None:
        self.transport.write(b"how many random integers do you want?\r\n")  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        cnt = int(line.strip())
        producer = Producer(self, cnt)
        self.transport.registerProducer(producer, True)  # type: ignore[union-attr]
        producer.resumeProducing()


def main() -> None:
    from twisted.internet import reactor as globalReactor

    reactor: Any = globalReactor
    factory = Factory.forProtocol(ServeRandom)
    port = reactor.listenTCP(
        int(sys.argv[1]) if len(sys.argv) > 1 else 0, factory, interface="127.0.0.1"
    )
    sys.stdout.write(f"listening on {port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
