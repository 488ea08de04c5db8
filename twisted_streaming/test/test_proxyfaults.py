"""
Faults of the proxy found by an adversarial run (issue 18), each over real
loopback connections, through a L{ProxyFactory} in this process or a real
C{twistd stream-proxy}: a TLS upstream's reply kept when the client's end
of stream arrives before the handshake has finished; a reset noticed while
that side's reading is paused, with both sockets and pipes released; a
reset forwarded as a reset and a clean close as a clean close; the
connection slot freed when the client side is gone.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
from typing import Any, Callable, List, Optional, Tuple, cast

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from twisted_streaming._proxy import _ClientSide
from twisted_streaming._resetwatch import ResetWatch
from twisted_streaming.test._extras import skipTLS
from twisted_streaming.test.test_plugin import _Twistd, twistd
from twisted_streaming.test.test_proxy import (
    MiB,
    Peer,
    ProxyTestsMixin,
    RecordingProxyFactory,
    paused,
    turn,
)
from twisted_streaming.test.test_splice import openDescriptors

if skipTLS is None:
    from cryptography.hazmat.primitives import serialization
    from twisted.internet.ssl import (
        Certificate,
        CertificateOptions,
        optionsForClientTLS,
    )

    from twisted_streaming.test.test_faults import selfSigned

reactor: Any = _globalReactor


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class Scripted(Protocol):
    """
    One end of a test connection that keeps what it receives and how its
    connection ended, and does what it is told at each event.

    @ivar onConnect: Called with the protocol when connected.
    @ivar onData: Called with the protocol after each read.
    @ivar onHandshake: Called with the protocol when its TLS handshake is
        done.
    @ivar acted: For the callbacks' own use: whether they have acted.
    """

    def __init__(
        self,
        onConnect: Optional[Callable[[Scripted], None]] = None,
        onData: Optional[Callable[[Scripted], None]] = None,
        onHandshake: Optional[Callable[[Scripted], None]] = None,
    ) -> None:
        self.onConnect, self.onData = onConnect, onData
        self.onHandshake = onHandshake
        self.data = b""
        self.eof = False
        self.acted = False
        self.reason: Optional[Failure] = None
        self.lost: Deferred[None] = Deferred()
        self.received: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if self.onConnect is not None:
            self.onConnect(self)

    def handshakeCompleted(self) -> None:
        if self.onHandshake is not None:
            self.onHandshake(self)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if not self.received.called:
            self.received.callback(None)
        if self.onData is not None:
            self.onData(self)

    def readConnectionLost(self) -> None:
        self.eof = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.lost.callback(None)


def banner(protocol: Scripted) -> None:
    """
    Send a banner as soon as connected (over TLS, once the handshake is
    done).
    """
    protocol.transport.write(b"banner")  # type: ignore[union-attr]


def pauseReading(protocol: Scripted) -> None:
    protocol.transport.pauseProducing()  # type: ignore[union-attr]


def bannerThenPause(protocol: Scripted) -> None:
    """
    Send a banner, and read nothing: over TLS, the handshake then waits.
    """
    banner(protocol)
    pauseReading(protocol)


def logged(process: _Twistd, pattern: bytes, count: int = 1) -> Deferred[None]:
    """
    Fire once C{process} has logged C{count} lines matching C{pattern}.
    """
    d: Deferred[None] = Deferred()
    original = process.outReceived

    def check() -> None:
        if not d.called and len(re.findall(pattern, process.output)) >= count:
            d.callback(None)

    def outReceived(data: bytes) -> None:
        original(data)
        check()

    process.outReceived = process.errReceived = outReceived  # type: ignore[method-assign]
    check()
    return d


class TLSMixin(ProxyTestsMixin):
    """
    TLS servers and clients on 127.0.0.1, all with one self-signed
    certificate for C{localhost}.
    """

    def setUp(self) -> None:
        key, cert = selfSigned("localhost")
        self.serverOptions = CertificateOptions(
            privateKey=cast(Any, key), certificate=cast(Any, cert)
        )
        self.certificatePEM = cert.public_bytes(serialization.Encoding.PEM)
        self.clientOptions = optionsForClientTLS(
            "localhost", trustRoot=Certificate.loadPEM(self.certificatePEM)
        )

    def listenTLS(self, factory: Any) -> int:
        port = reactor.listenSSL(
            0, factory, self.serverOptions, interface="127.0.0.1", backlog=1024
        )
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def tlsPeers(self, make: Callable[[], Scripted]) -> Tuple[int, List[Scripted]]:
        """
        A TLS server of C{make}'s protocols: its port, and the protocols made
        so far.
        """
        made: List[Scripted] = []

        def build() -> Scripted:
            made.append(make())
            return made[-1]

        return self.listenTLS(Factory.forProtocol(build)), made

    def tlsEndpoint(self, port: int) -> Any:
        return wrapClientTLS(
            self.clientOptions, TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )

    async def connect(self, endpoint: Any, protocol: Scripted) -> Scripted:
        await connectProtocol(endpoint, protocol)

        def cleanup() -> Any:
            if not protocol.lost.called:
                protocol.transport.abortConnection()  # type: ignore[union-attr]
            return protocol.lost

        self.addCleanup(cleanup)
        return protocol


class TLSEndOfStreamTests(TLSMixin, TestCase):
    """
    A client's end of stream that arrives before the TLS upstream's
    handshake has finished.
    """

    async def test_endOfStreamBeforeHandshake(self) -> None:
        """
        A client that half-closes before sending a byte, while the TLS
        upstream's handshake has not finished, still gets the upstream's
        reply, and the upstream sees a clean close (before, Twisted's TLS
        transport aborted the upstream connection closed mid-handshake, and
        the client got nothing).
        """
        port, upstreams = self.tlsPeers(lambda: Scripted(onConnect=bannerThenPause))
        factory = RecordingProxyFactory.forEndpoint(self.tlsEndpoint(port))
        proxyPort = self.listen(factory, backlog=1024)
        endOfStream: Deferred[None] = Deferred()
        original = _ClientSide.readConnectionLost

        def readConnectionLost(side: _ClientSide) -> None:
            original(side)
            endOfStream.callback(None)

        self.patch(_ClientSide, "readConnectionLost", readConnectionLost)
        client = await self.connect(
            TCP4ClientEndpoint(reactor, "127.0.0.1", proxyPort),
            Scripted(onConnect=lambda p: p.transport.loseWriteConnection()),  # type: ignore[union-attr]
        )
        # The upstream reads nothing, so its handshake waits, until the
        # proxy has read the client's end of stream.
        await endOfStream
        [upstream] = upstreams
        self.assertIsNot(factory.clients[0].connection.upstream, None)
        upstream.transport.resumeProducing()  # type: ignore[union-attr]
        await client.lost
        await upstream.lost
        self.assertEqual(client.data, b"banner")
        for end in (client, upstream):
            assert end.reason is not None
            self.assertTrue(end.reason.check(ConnectionDone), end.reason)
        stats = await factory.clients[0].connection.done
        self.assertEqual((stats.bytesToUpstream, stats.bytesToClient), (0, 6))
        self.assertEqual(stats.reason, "closed")

    async def test_realTwistd(self) -> None:
        """
        A client of a real C{twistd stream-proxy --connect tls:...} that
        connects and at once shuts down its write side gets the TLS
        upstream's banner (before, it got an empty reply, and the upstream
        saw its connection reset).
        """
        made: List[Scripted] = []
        waiting: List[Tuple[int, Deferred[None]]] = []

        def build() -> Scripted:
            made.append(Scripted(onConnect=banner if made else bannerThenPause))
            for n, d in list(waiting):
                if len(made) >= n:
                    waiting.remove((n, d))
                    d.callback(None)
            return made[-1]

        def upstreamMade(n: int) -> Deferred[None]:
            # The proxy may connect upstream before the client's own connect
            # is reported here: then it has already been made.
            if len(made) >= n:
                return succeed(None)
            d: Deferred[None] = Deferred()
            waiting.append((n, d))
            return d

        port = self.listenTLS(Factory.forProtocol(build))
        roots = self.mktemp()
        os.mkdir(roots)
        with open(os.path.join(roots, "localhost.pem"), "wb") as f:
            f.write(self.certificatePEM)
        process, stop = twistd(
            cast(TestCase, self),
            [
                "stream-proxy",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--connect",
                f"tls:localhost:{port}:trustRoots={roots}",
            ],
            rb"ProxyFactory starting on (\d+)",
        )
        proxyPort = await process.port
        raw = socket.create_connection(("127.0.0.1", proxyPort))
        raw.shutdown(socket.SHUT_WR)
        # The first upstream reads nothing, so its handshake waits.  Two
        # more connections, one after the other, make sure that twistd has
        # run past the turn where it reads the client's end of stream (it
        # reads it in the turn after its upstream connection is up, at the
        # latest in the turn where it takes the second of them).
        await upstreamMade(1)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", proxyPort)
        for n in (2, 3):
            await self.connect(endpoint, Scripted())
            await upstreamMade(n)
        made[0].transport.resumeProducing()  # type: ignore[union-attr]
        client = Scripted()
        reactor.adoptStreamConnection(
            raw.fileno(), socket.AF_INET, Factory.forProtocol(lambda: client)
        )
        raw.close()
        await client.lost
        self.assertEqual(client.data, b"banner")
        await made[0].lost
        assert made[0].reason is not None
        self.assertTrue(made[0].reason.check(ConnectionDone), made[0].reason)
        await stop()
        self.assertIn(b"0 bytes up, 6 bytes down", process.output)

    if skipTLS:
        skip = skipTLS


def resetWhenTold(protocol: Scripted) -> None:
    """
    Send 1 MiB when first spoken to; reset the connection when told to
    (with C{b"!"}).
    """
    if b"!" in protocol.data:
        protocol.transport.abortConnection()  # type: ignore[union-attr]
    elif protocol.data == b"go":
        protocol.transport.write(b"x" * MiB)  # type: ignore[union-attr]


class ResetForwardingTests(ProxyTestsMixin, TestCase):
    """
    A reset on one side reaches the other side as a reset, and a clean end
    of stream as a clean one, on the zero-copy path
    (L{OrdinaryPathResetForwardingTests} repeats them on the ordinary path).
    """

    def scriptedUpstream(self, make: Callable[[], Scripted]) -> List[Scripted]:
        made: List[Scripted] = []

        def build() -> Scripted:
            made.append(make())
            return made[-1]

        self.proxyPort = self.proxy(self.listen(Factory.forProtocol(build)))
        return made

    async def scriptedClient(self, client: Scripted) -> Scripted:
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxyPort), client
        )
        self.addCleanup(lambda: client.lost)
        return client

    async def test_upstreamReset(self) -> None:
        """
        An upstream that resets mid-stream resets the client's connection
        (before, the client saw a clean end of stream, so a truncated
        transfer looked complete).
        """
        upstreams = self.scriptedUpstream(lambda: Scripted(onData=resetWhenTold))

        def tell(client: Scripted) -> None:
            if not client.acted:
                client.acted = True
                client.transport.write(b"!")  # type: ignore[union-attr]

        client = await self.scriptedClient(
            Scripted(onConnect=lambda p: p.transport.write(b"go"), onData=tell)  # type: ignore[union-attr]
        )
        await client.lost
        await upstreams[0].lost
        assert client.reason is not None
        self.assertTrue(client.reason.check(ConnectionLost), client.reason)
        self.assertFalse(client.eof)
        self.assertLess(len(client.data), MiB + 1)
        connection = self.factory.clients[0].connection
        self.assertPath(connection)
        stats = await connection.done
        self.assertEqual(stats.reason, "upstream lost")

    async def test_clientReset(self) -> None:
        """
        A client that resets mid-stream resets the upstream connection.
        """

        def ackOnce(protocol: Scripted) -> None:
            if not protocol.acted:
                protocol.acted = True
                protocol.transport.write(b"ack")  # type: ignore[union-attr]

        upstreams = self.scriptedUpstream(lambda: Scripted(onData=ackOnce))
        client = await self.scriptedClient(
            Scripted(
                onConnect=lambda p: p.transport.write(b"x" * MiB),  # type: ignore[union-attr]
                onData=lambda p: p.transport.abortConnection(),  # type: ignore[union-attr]
            )
        )
        await client.lost
        await upstreams[0].lost
        reason = upstreams[0].reason
        assert reason is not None
        self.assertTrue(reason.check(ConnectionLost), reason)
        connection = self.factory.clients[0].connection
        self.assertPath(connection)
        stats = await connection.done
        self.assertEqual(stats.reason, "client lost")

    async def test_cleanEnds(self) -> None:
        """
        A client's clean end of stream reaches upstream as one, and
        upstream's clean close reaches the client as one.
        """

        def echo(protocol: Scripted) -> None:
            protocol.transport.write(protocol.data)  # type: ignore[union-attr]
            protocol.data = b""

        upstreams = self.scriptedUpstream(lambda: Scripted(onData=echo))

        def send(protocol: Scripted) -> None:
            protocol.transport.write(b"y" * MiB)  # type: ignore[union-attr]
            protocol.transport.loseWriteConnection()  # type: ignore[union-attr]

        client = await self.scriptedClient(Scripted(onConnect=send))
        await client.lost
        await upstreams[0].lost
        self.assertEqual(client.data, b"y" * MiB)
        self.assertTrue(upstreams[0].eof)
        for end in (client, upstreams[0]):
            assert end.reason is not None
            self.assertTrue(end.reason.check(ConnectionDone), end.reason)
        stats = await self.factory.clients[0].connection.done
        self.assertEqual(stats.reason, "closed")


class OrdinaryPathResetForwardingTests(ResetForwardingTests):
    """
    The same, with the zero-copy path turned off.
    """

    zeroCopy = False


class PausedResetTests(ProxyTestsMixin, TestCase):
    """
    The proxy notices a reset on a side whose reading it has paused, and
    lets go of everything the connection held: both sockets and both pipes
    (L{OrdinaryPathPausedResetTests} repeats this on the ordinary path).
    """

    def isReading(self, connection: Any, side: Any) -> bool:
        if connection.splice is not None:
            return bool(connection.splice.isReading(side.transport))
        return side.transport in reactor.getReaders()

    async def pausedReset(self, resetting: str) -> None:
        """
        First a connection that ends cleanly (after which the proxy keeps
        empty pipes for the next ones), then one where the C{resetting} side
        sends until the proxy stops reading it, because the other side reads
        nothing, and then resets.  The proxy ends the connection and is left
        with the descriptors it had before it, while the other side still
        reads nothing.
        """
        makeUpstream = [
            lambda: Peer(echo=True),
            lambda: (
                Peer(readPaused=True)
                if resetting == "client"
                else Peer(send=64 * MiB, seed=1)
            ),
        ]
        port = self.proxy(self.upstream(lambda: makeUpstream.pop(0)()))
        first = await self.client(port, Peer(send=1000, seed=2))
        await first.lost
        await self.upstreams[0].lost
        await self.factory.clients[0].connection.done
        before = openDescriptors()
        if resetting == "client":
            sender = await self.client(port, Peer(send=64 * MiB, seed=3))
            receiver = await self.upstreamNumber(2)
        else:
            receiver = await self.client(port, Peer(readPaused=True))
            sender = await self.upstreamNumber(2)
        # (The upstream's Deferred fires before it is connected.)
        await turn()
        proxied = self.factory.clients[1].connection
        self.assertPath(proxied)
        sending = proxied.client if resetting == "client" else proxied.upstream
        assert sender.producer is not None
        await paused(sender.producer)
        for _ in range(10_000):
            if not self.isReading(proxied, sending):
                break
            await turn()
        self.assertFalse(self.isReading(proxied, sending))
        sender.transport.abortConnection()  # type: ignore[union-attr]
        await sender.lost
        stats = await proxied.done
        self.assertEqual(stats.reason, f"{resetting} lost")
        # All that is left of the connection is the receiver's own socket.
        self.assertFalse(receiver.lost.called)
        self.assertEqual(len(openDescriptors()), len(before) + 1)
        # When it reads again, it finds its connection reset.
        receiver.transport.resumeProducing()  # type: ignore[union-attr]
        await receiver.lost
        assert receiver.reason is not None
        self.assertTrue(receiver.reason.check(ConnectionLost), receiver.reason)
        self.assertEqual(openDescriptors(), before)

    async def test_clientResetWhilePaused(self) -> None:
        """
        A client that resets while the proxy has stopped reading it (upstream
        reads nothing) is noticed.
        """
        await self.pausedReset("client")

    async def test_upstreamResetWhilePaused(self) -> None:
        """
        An upstream that resets while the proxy has stopped reading it (the
        client reads nothing) is noticed.
        """
        await self.pausedReset("upstream")

    # Without the fix these waited for ever.
    test_clientResetWhilePaused.timeout = 30  # type: ignore[attr-defined]
    test_upstreamResetWhilePaused.timeout = 30  # type: ignore[attr-defined]


class OrdinaryPathPausedResetTests(PausedResetTests):
    """
    The same, with the zero-copy path turned off.
    """

    zeroCopy = False


class SlotTests(TLSMixin, TestCase):
    """
    C{maxConnections} counts clients.
    """

    async def test_slotFreedWhenClientGone(self) -> None:
        """
        A client's slot is free once its connection has closed, even while
        the upstream side is still closing (here a TLS upstream that never
        answers the proxy's close): the next client is served.  Before,
        the slot was held until both sides had closed.
        """
        port, upstreams = self.tlsPeers(
            lambda: Scripted(onConnect=banner, onHandshake=pauseReading)
        )
        factory = RecordingProxyFactory.forEndpoint(
            self.tlsEndpoint(port), maxConnections=1
        )
        proxyEndpoint = self.tlsEndpoint(self.listenTLS(factory))

        def closeOnBanner(protocol: Scripted) -> None:
            if protocol.data == b"banner":
                protocol.transport.loseConnection()  # type: ignore[union-attr]

        first = await self.connect(proxyEndpoint, Scripted(onData=closeOnBanner))
        await first.lost
        proxied = factory.clients[0].connection
        for _ in range(10_000):
            if proxied.client.lost:
                break
            await turn()
        self.assertTrue(proxied.client.lost)
        self.assertEqual(factory.connections, 0)
        second = await self.connect(proxyEndpoint, Scripted(onData=closeOnBanner))
        await second.lost
        self.assertEqual(second.data, b"banner")
        # The first upstream connection was still closing all along.
        self.assertFalse(upstreams[0].lost.called)
        self.assertIs(proxied.statistics.ended, None)
        for upstream in upstreams:
            upstream.transport.resumeProducing()  # type: ignore[union-attr]
        await gatherResults([u.lost for u in upstreams])
        finished = await gatherResults([c.connection.done for c in factory.clients])
        self.assertEqual([s.reason for s in finished], ["client lost"] * 2)

    if skipTLS:
        skip = skipTLS


class ResetWatchTests(SynchronousTestCase):
    """
    L{ResetWatch} over real TCP sockets on 127.0.0.1, timed by a L{Clock}.
    """

    def tcpPair(self) -> Tuple[socket.socket, socket.socket]:
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        for s in (client, accepted):
            self.addCleanup(s.close)
        return client, accepted

    def reset(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def test_resetNoticedWithinInterval(self) -> None:
        """
        A reset of a watched socket is reported with its error at the first
        check after it, C{interval} seconds after watching began; then the
        watch is empty and sets no timer.
        """
        clock = Clock()
        watch = ResetWatch(clock, interval=0.5)
        mine, theirs = self.tcpPair()
        errors: List[Failure] = []
        watch.watch("key", mine, errors.append)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.reset(theirs)
        clock.advance(0.4)
        self.assertEqual(errors, [])
        clock.advance(0.1)
        [reason] = errors
        self.assertTrue(reason.check(ConnectionLost))
        self.assertIn(errno.errorcode[errno.ECONNRESET], reason.getErrorMessage())
        self.assertEqual(len(watch), 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cleanEndNotReported(self) -> None:
        """
        A clean end of stream, or data, is not an error: the socket stays
        watched.
        """
        clock = Clock()
        watch = ResetWatch(clock, interval=0.5)
        mine, theirs = self.tcpPair()
        errors: List[Failure] = []
        watch.watch(mine, mine, errors.append)
        theirs.sendall(b"data")
        theirs.shutdown(socket.SHUT_WR)
        mine.shutdown(socket.SHUT_WR)
        clock.advance(0.5)
        clock.advance(0.5)
        self.assertEqual(errors, [])
        self.assertEqual(len(watch), 1)
        self.assertEqual(mine.recv(10), b"data")

    def test_unwatch(self) -> None:
        """
        A socket no longer watched is not reported, and once nothing is
        watched the timer is cancelled.
        """
        clock = Clock()
        watch = ResetWatch(clock, interval=0.5)
        mine, theirs = self.tcpPair()
        errors: List[Failure] = []
        watch.watch("a", mine, errors.append)
        watch.watch("b", theirs, errors.append)
        watch.unwatch("a")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        watch.unwatch("b")
        watch.unwatch("b")
        self.assertEqual(clock.getDelayedCalls(), [])
        self.reset(theirs)
        clock.advance(1)
        self.assertEqual(errors, [])

    def test_closedSocketForgotten(self) -> None:
        """
        A watched socket closed here without being unwatched is forgotten at
        the next check, not reported.
        """
        clock = Clock()
        watch = ResetWatch(clock, interval=0.5)
        mine, _ = self.tcpPair()
        errors: List[Failure] = []
        watch.watch("a", mine, errors.append)
        mine.close()
        clock.advance(0.5)
        self.assertEqual(errors, [])
        self.assertEqual(len(watch), 0)
