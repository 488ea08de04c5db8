"""
Tests for L{twisted_streaming._transportinternals}: the private attributes of
Twisted's transports that the zero-copy paths rely on, checked on real
transports, so that a Twisted release that changes them fails here, loudly,
and not in a transfer.
"""

from __future__ import annotations

import os
import socket
from typing import Any, List, Tuple, cast

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectionAborted, ConnectionLost
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import twisted
from twisted_streaming import FileSender, StreamProtocol
from twisted_streaming._transportinternals import (
    CHECKED_VERSIONS,
    abortNow,
    asyncioLoop,
    connectTCPArguments,
    isRegistered,
    isTCPTransport,
    markWriteDisconnected,
    pendingBytes,
    queuesFileDescriptors,
    unsentBytes,
    writeClosing,
    zeroCopySocket,
)
from twisted_streaming.test._extras import skipTLS

reactor: Any = _globalReactor

#: What each function reads or writes, for the message when it is gone.
_ATTRIBUTES: Tuple[str, ...] = ("dataBuffer", "offset", "_tempDataLen")
_ATTRIBUTES += ("_writeDisconnecting", "_writeDisconnected", "TLS")


class _End(StreamProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.made: Deferred[None] = Deferred()
        self.reasons: List[Failure] = []

    def connectionMade(self) -> None:
        self.made.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reasons.append(reason)
        super().connectionLost(reason)


class TransportInternalsTests(TestCase):
    """
    The attributes, on real TCP, UNIX and TLS transports of the installed
    Twisted.
    """

    async def connection(self, unix: bool = False) -> Tuple[_End, _End]:
        server = _End()
        factory = Factory.forProtocol(lambda: server)
        if unix:
            path = self.mktemp()
            port = reactor.listenUNIX(path, factory)
            endpoint: Any = UNIXClientEndpoint(reactor, path)
        else:
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        self.addCleanup(port.stopListening)
        client = _End()
        await connectProtocol(endpoint, client)
        await server.made

        def close() -> Deferred[Any]:
            for end in (client, server):
                if not end.lost.called:
                    end.transport.abortConnection()
            return server.lost.addCallback(lambda _: client.lost)

        self.addCleanup(close)
        return client, server

    async def tlsConnection(self) -> Tuple[_End, _End]:
        """
        A TLS client connected to a TLS server, both as made by
        C{twisted.protocols.tls}; the server as it is made.
        """
        from twisted.internet import ssl
        from twisted.internet.endpoints import wrapClientTLS

        from twisted_streaming.test.test_faults import selfSignedPEM

        server = _End()
        options = ssl.PrivateCertificate.loadPEM(selfSignedPEM("127.0.0.1")).options()
        port = reactor.listenSSL(
            0, Factory.forProtocol(lambda: server), options, interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        client = _End()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await connectProtocol(wrapClientTLS(ssl.CertificateOptions(), endpoint), client)
        return client, server

    async def test_attributesExist(self) -> None:
        """
        Every private attribute this package touches is on a connected TCP
        transport of the installed Twisted.
        """
        client, _ = await self.connection()
        transport = client.transport
        missing = [name for name in _ATTRIBUTES if not hasattr(transport, name)]
        self.assertEqual(
            missing,
            [],
            f"Twisted {twisted.__version__} no longer has {missing} on "
            f"{type(transport).__name__}; twisted_streaming._transportinternals "
            f"was checked against {CHECKED_VERSIONS}: update it",
        )
        self.assertTrue(isTCPTransport(transport))
        self.assertFalse(isTCPTransport(StringTransport()))

    async def test_unsentBytes(self) -> None:
        """
        C{unsentBytes} counts what was written and not yet sent, whichever
        of the transport's buffers holds it.
        """
        client, server = await self.connection()
        server.transport.pauseProducing()
        transport = client.transport
        self.assertEqual(unsentBytes(transport), 0)
        for _ in range(64):
            transport.write(b"x" * 65536)
        held = unsentBytes(transport)
        self.assertEqual(held, 64 * 65536)
        done: Deferred[None] = Deferred()

        def sent() -> None:
            if unsentBytes(transport) < held:
                done.callback(None)
            else:
                reactor.callLater(0, sent)

        reactor.callLater(0, sent)
        await done
        self.assertGreater(unsentBytes(transport), 0)

    async def test_writeClosing(self) -> None:
        """
        C{writeClosing} says a half-close was asked for; after
        C{markWriteDisconnected} it says so too.
        """
        client, server = await self.connection()
        self.assertFalse(writeClosing(client.transport))
        client.transport.loseWriteConnection()
        self.assertTrue(writeClosing(client.transport))
        transport: Any = server.transport
        transport.socket.shutdown(socket.SHUT_WR)
        markWriteDisconnected(transport)
        self.assertTrue(writeClosing(transport))
        self.assertTrue(transport._writeDisconnected)

    async def test_abortNow(self) -> None:
        """
        C{abortNow} reports the connection lost (aborted) before it returns,
        once only (the loss C{abortConnection} scheduled does nothing), and
        the peer sees a reset.
        """
        client, server = await self.connection()
        abortNow(client.transport)
        self.assertTrue(client.lost.called)
        await server.lost
        for _ in range(2):
            d: Deferred[None] = Deferred()
            reactor.callLater(0, d.callback, None)
            await d
        self.assertEqual(len(client.reasons), 1)
        self.assertTrue(client.reasons[0].check(ConnectionAborted))
        self.assertTrue(server.reasons[0].check(ConnectionLost))
        self.assertFalse(server.reasons[0].check(ConnectionAborted))

    async def test_abortNowThroughTLS(self) -> None:
        """
        Through a TLS transport, C{abortNow} reports the loss at once too
        (as TLS reports it: lost, not aborted).
        """
        client, server = await self.tlsConnection()
        await server.made
        abortNow(client.transport)
        self.assertTrue(client.lost.called)
        await server.lost
        self.assertEqual(len(client.reasons), 1)
        self.assertTrue(client.reasons[0].check(ConnectionLost))

    async def test_zeroCopySocket(self) -> None:
        """
        A plain TCP or UNIX transport gives its socket; one with file
        descriptors queued, or anything else, none.
        """
        client, _ = await self.connection()
        transport: Any = client.transport
        self.assertEqual(zeroCopySocket(transport), transport.fileno())
        self.assertIsNone(zeroCopySocket(StringTransport()))
        unixClient, _ = await self.connection(unix=True)
        unix: Any = unixClient.transport
        self.assertEqual(zeroCopySocket(unix), unix.fileno())
        self.assertFalse(queuesFileDescriptors(unix))
        readEnd, writeEnd = os.pipe()
        self.addCleanup(os.close, readEnd)
        self.addCleanup(os.close, writeEnd)
        unix.sendFileDescriptor(readEnd)
        self.assertTrue(queuesFileDescriptors(unix))
        self.assertIsNone(zeroCopySocket(unix))

    async def test_isRegisteredThroughTLS(self) -> None:
        """
        A pull producer registered with a TLS transport (which wraps it
        twice) is found registered, until it unregisters.
        """
        client, server = await self.tlsConnection()
        await server.made
        transport = cast(Any, client.transport)
        sender = FileSender()
        registered: List[bool] = []
        sender.resumeProducing = lambda: registered.append(  # type: ignore[method-assign]
            isRegistered(transport, sender)
        )
        transport.registerProducer(sender, False)
        self.assertTrue(isRegistered(transport, sender))
        self.assertFalse(isRegistered(transport, FileSender()))
        transport.unregisterProducer()
        self.assertFalse(isRegistered(transport, sender))
        self.assertFalse(isRegistered(StringTransport(), sender))
        self.assertTrue(isRegistered(object(), sender))
        transport.loseConnection()
        await client.lost
        await server.lost

    async def test_pendingBytes(self) -> None:
        """
        C{pendingBytes} is C{unsentBytes} for TCP, counts what a TLS
        transport holds in clear and what its TCP transport holds, and is
        L{None} for a transport it does not know.
        """
        client, server = await self.connection()
        server.transport.pauseProducing()
        client.transport.write(b"x" * 100_000)
        self.assertEqual(pendingBytes(client.transport), 100_000)
        self.assertIsNone(pendingBytes(StringTransport()))

        tlsClient, tlsServer = await self.tlsConnection()
        transport: Any = tlsClient.transport
        # Before the handshake, what is written waits in clear.
        before = pendingBytes(transport)
        assert before is not None
        transport.write(b"y" * 100_000)
        self.assertEqual(pendingBytes(transport), before + 100_000)
        self.assertEqual(pendingBytes(transport.transport), before)
        transport.loseConnection()
        await tlsClient.lost
        await tlsServer.made
        await tlsServer.lost

    if skipTLS:
        test_isRegisteredThroughTLS.skip = skipTLS  # type: ignore[attr-defined]
        test_abortNowThroughTLS.skip = skipTLS  # type: ignore[attr-defined]
        test_pendingBytes.skip = skipTLS  # type: ignore[attr-defined]


class AsyncioLoopTests(TestCase):
    """
    L{asyncioLoop}, on an C{AsyncioSelectorReactor} that is not installed.
    """

    def test_asyncioReactorsLoop(self) -> None:
        """
        The loop of an asyncio reactor is found; other reactors have none.
        """
        import asyncio

        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        self.assertIs(asyncioLoop(AsyncioSelectorReactor(loop)), loop)
        self.assertIsNone(asyncioLoop(reactor))


class ConnectTCPArgumentsTests(TestCase):
    """
    L{connectTCPArguments} on the endpoints C{clientFromString} makes.
    """

    def test_tcpEndpoints(self) -> None:
        """
        A C{tcp:} endpoint string to an IPv4 or IPv6 address gives what its
        endpoint passes to C{connectTCP}; to a name, or of another kind,
        none.
        """
        from twisted.internet.endpoints import clientFromString

        self.assertEqual(
            connectTCPArguments(
                clientFromString(
                    reactor, "tcp:127.0.0.1:80:timeout=4:bindAddress=127.0.0.1"
                )
            ),
            (reactor, "127.0.0.1", 80, 4, ("127.0.0.1", 0)),
        )
        six = TCP6ClientEndpoint(reactor, "::1", 81, 9)
        self.assertEqual(connectTCPArguments(six), (reactor, "::1", 81, 9, None))
        for other in ("tcp:localhost:80", "unix:/nowhere"):
            self.assertIsNone(connectTCPArguments(clientFromString(reactor, other)))
        self.assertIsNone(connectTCPArguments(TCP6ClientEndpoint(reactor, "x", 1)))
