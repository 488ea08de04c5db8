"""
A stream sent over a real TCP connection on 127.0.0.1, and what arrived.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import (
    ClientFactory,
    Factory,
    ServerFactory,
)
from twisted.python.failure import Failure

from twisted_streaming._connection import StreamProtocol
from twisted_streaming._flow import getReactor

__all__ = ["loopbackReceive"]


class _Receiver(StreamProtocol):
    def __init__(self, slowReader: int, reactor: IReactorTime) -> None:
        super().__init__(reactor=reactor)
        self.slowReader = slowReader
        self.reactor = reactor
        self.chunks: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.slowReader:
            # Read again only after a few reactor turns, so the sender's
            # buffers fill and it is paused.
            self.transport.pauseProducing()
            self._later(self.slowReader)

    def _later(self, turns: int) -> None:
        if turns <= 0:
            if self.transport is not None and self.transport.connected:
                self.transport.resumeProducing()
            return
        self.reactor.callLater(0, self._later, turns - 1)


class _Sender(StreamProtocol):
    def __init__(self, startFn: Callable[[Any], Optional[Deferred[Any]]]) -> None:
        super().__init__()
        self.startFn = startFn
        self.outcome: Deferred[Any] = Deferred()

    def connectionMade(self) -> None:
        d = self.startFn(self.transport)
        if d is None:
            d = Deferred()
            d.callback(None)
        d.addBoth(self._done)

    def _done(self, result: Any) -> None:
        self.outcome.callback(result)
        self.transport.loseConnection()


class _ClientFactory(ClientFactory):
    def __init__(self, client: _Receiver, server: _Sender, outcome: List[Any]) -> None:
        self.client = client
        self.server = server
        self.outcome = outcome

    def buildProtocol(self, addr: Any) -> _Receiver:
        return self.client

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        # Nothing connected, so nothing else will end the wait.
        self.outcome.insert(0, reason)
        for d in (self.server.lost, self.client.lost):
            if not d.called:
                d.callback(None)


def loopbackReceive(
    startFn: Callable[[Any], Optional[Deferred[Any]]],
    reactor: Optional[IReactorTCP] = None,
    slowReader: int = 0,
) -> Deferred[bytes]:
    """
    Send a stream over a real TCP connection on 127.0.0.1 and return what
    arrived.

    Listens on an ephemeral port, connects, and calls C{startFn(transport)}
    with the server side transport; when the L{Deferred} it returns fires (at
    once, if it returns L{None}) the server closes the connection.

    Cleanup is done before the result fires: the port has stopped listening
    and both ends of the connection are closed, so trial's dirty reactor
    check passes without further work.  Return the L{Deferred} from a trial
    C{TestCase} method (which also runs under pytest); it needs a running
    reactor.

    @param reactor: The reactor (the global one if L{None}).
    @param slowReader: If positive, the client pauses reading after each
        read and resumes that many reactor turns later, so a fast sender is
        paused by real backpressure.

    @return: A L{Deferred} that fires with the bytes received, or fails with
        the failure of C{startFn}'s L{Deferred} (or of the connection).
    """
    from twisted.internet.defer import gatherResults

    reactor = getReactor(reactor)
    clock = cast(IReactorTime, reactor)
    server = _Sender(startFn)
    client = _Receiver(slowReader, clock)
    port = reactor.listenTCP(
        0,
        cast(ServerFactory, Factory.forProtocol(lambda: server)),
        interface="127.0.0.1",
    )
    address = cast(IPv4Address, port.getHost())
    result: Deferred[bytes] = Deferred()
    outcome: List[Any] = []
    connector = reactor.connectTCP(
        "127.0.0.1", address.port, _ClientFactory(client, server, outcome)
    )
    server.outcome.addBoth(outcome.append)

    def stop(_: Any) -> Any:
        return port.stopListening()

    def finish(_: Any) -> None:
        connector.disconnect()
        if outcome and isinstance(outcome[0], Failure):
            result.errback(outcome[0])
        else:
            result.callback(b"".join(client.chunks))

    gatherResults([server.lost, client.lost]).addBoth(stop).addBoth(finish)
    return result
