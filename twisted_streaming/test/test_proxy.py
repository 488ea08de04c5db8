"""
Tests for L{twisted_streaming.ProxyFactory}, over real loopback connections
and, for timeouts and limits, over fakes on a L{Clock}.
"""

from __future__ import annotations

import hashlib
import random
import signal
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

from twisted.application.service import IServiceMaker
from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ProcessTerminated
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from twisted_streaming import (
    BasePushProducer,
    ProducerStopped,
    ProxyFactory,
    ProxyStatistics,
)
from twisted_streaming import _proxy as proxyModule
from twisted_streaming._proxy import _Reader, _UpstreamSide
from twisted_streaming._transportinternals import unsentBytes
from twisted_streaming.tap import streamproxy as proxytap
from twisted_streaming.test._extras import skipTLS
from twisted_streaming.test.test_faults import selfSigned

if skipTLS is None:
    from cryptography.hazmat.primitives import serialization
    from twisted.internet.ssl import (
        Certificate,
        CertificateOptions,
        optionsForClientTLS,
    )
from twisted_streaming.test.test_plugin import twistdProxy

reactor: Any = _globalReactor

MiB = 1024 * 1024


class Stream(BasePushProducer):
    """
    C{total} pseudo-random bytes from C{seed}, in 64 KiB chunks.
    """

    def __init__(self, seed: int, total: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.left = total

    def produce(self) -> Optional[bytes]:
        if self.left <= 0:
            return None
        size = min(self.left, 65536)
        self.left -= size
        return self.rng.randbytes(size)


def expected(seed: int, total: int) -> bytes:
    """
    The C{total} bytes a L{Stream} from C{seed} sends.
    """
    stream = Stream(seed, total)
    return b"".join(iter(stream.produce, None))


def digest(seed: int, total: int) -> bytes:
    stream = Stream(seed, total)
    h = hashlib.sha256()
    while (chunk := stream.produce()) is not None:
        h.update(chunk)
    return h.digest()


@implementer(IHalfCloseableProtocol)
class Peer(Protocol):
    """
    One end of a test connection: optionally sends a stream and half-closes,
    hashes what it receives, and optionally echoes or replies at EOF.
    """

    def __init__(
        self,
        send: int = 0,
        seed: int = 0,
        echo: bool = False,
        reply: bool = False,
        readPaused: bool = False,
    ) -> None:
        self.send, self.seed = send, seed
        self.echo, self.reply, self.readPaused = echo, reply, readPaused
        self.hash = hashlib.sha256()
        self.data = b""
        self.received = 0
        self.producer: Optional[Stream] = None
        self.eof = False
        self.lost: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None

    def connectionMade(self) -> None:
        if self.readPaused:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        if self.send:
            self.producer = Stream(self.seed, self.send)
            d = self.producer.startProducing(self.transport)  # type: ignore[arg-type]
            d.addCallbacks(
                lambda _: self.transport.loseWriteConnection(),  # type: ignore[union-attr]
                lambda f: None,
            )

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.hash.update(data)
        if self.reply:
            self.data += data
        if self.echo:
            self.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.eof = True
        if self.reply:
            self.transport.write(b"REPLY:" + self.data)  # type: ignore[union-attr]
        if self.reply or self.echo:
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif not self.send or (
            self.producer is not None and not self.producer.producing
        ):
            self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        if self.eof:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.lost.callback(None)


class Vanishing(Peer):
    """
    A L{Peer} that resets its connection once it has received 1 MiB.
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.received > MiB:
            self.transport.abortConnection()  # type: ignore[union-attr]


class RecordingProxyFactory(ProxyFactory):
    """
    A L{ProxyFactory} that keeps its client-side protocols and statistics.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients: List[Any] = []
        self.finished: List[ProxyStatistics] = []
        self.onConnectionDone = self.finished.append

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.clients.append(protocol)
        return protocol


class ProxyTestsMixin:
    """
    Helpers for tests of the proxy over real TCP connections on 127.0.0.1.

    @cvar zeroCopy: Passed to L{ProxyFactory}: the path under test.
    """

    zeroCopy = True
    addCleanup: Any
    assertIs: Any
    assertIsNot: Any

    def listen(self, factory: Any, **kwargs: Any) -> int:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1", **kwargs)
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def upstream(self, make: Any) -> int:
        self.upstreams: List[Peer] = []
        self._upstreamWaiters: List[Tuple[int, Deferred[Peer]]] = []

        def build() -> Peer:
            peer = make()
            self.upstreams.append(peer)
            for waiter in list(self._upstreamWaiters):
                if len(self.upstreams) >= waiter[0]:
                    self._upstreamWaiters.remove(waiter)
                    waiter[1].callback(peer)
            return peer

        return self.listen(Factory.forProtocol(build), backlog=1024)

    def upstreamNumber(self, n: int) -> Deferred[Peer]:
        """
        Fire with the C{n}th upstream connection (from 1) once it is made.
        """
        if len(self.upstreams) >= n:
            return succeed(self.upstreams[n - 1])
        d: Deferred[Peer] = Deferred()
        self._upstreamWaiters.append((n, d))
        return d

    def proxy(self, upstreamPort: int, **kwargs: Any) -> int:
        kwargs.setdefault("zeroCopy", self.zeroCopy)
        self.factory = RecordingProxyFactory("127.0.0.1", upstreamPort, **kwargs)
        return self.listen(self.factory, backlog=1024)

    def assertPath(self, connection: Any) -> None:
        """
        C{connection} took the zero-copy path if and only if the test asked
        for it.
        """
        if self.zeroCopy:
            self.assertIsNot(connection.splice, None)
        else:
            self.assertIs(connection.splice, None)

    async def client(self, port: int, peer: Peer) -> Peer:
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)

        def cleanup() -> Any:
            if not peer.lost.called:
                peer.transport.abortConnection()  # type: ignore[union-attr]
            return peer.lost

        self.addCleanup(cleanup)
        return peer


class ProxyTests(ProxyTestsMixin, TestCase):
    """
    The proxy over real TCP connections on 127.0.0.1, on the zero-copy path
    (L{OrdinaryPathProxyTests} repeats them on the ordinary path).
    """

    async def test_dropIn(self) -> None:
        """
        C{ProxyFactory(host, port)} keeps portforward's attributes.
        """
        factory = ProxyFactory("127.0.0.1", 4321)
        self.assertEqual((factory.host, factory.port), ("127.0.0.1", 4321))

    async def test_bothWaysAtOnce(self) -> None:
        """
        32 MiB each way at once arrive intact (SHA-256 on both ends), and the
        statistics count them.
        """
        size = 32 * MiB
        port = self.proxy(self.upstream(lambda: Peer(send=size, seed=2)))
        client = await self.client(port, Peer(send=size, seed=1))
        await client.lost
        await self.upstreams[0].lost
        self.assertEqual(client.hash.digest(), digest(2, size))
        self.assertEqual(self.upstreams[0].hash.digest(), digest(1, size))
        connection = self.factory.clients[0].connection
        self.assertPath(connection)
        stats = await connection.done
        self.assertEqual((stats.bytesToUpstream, stats.bytesToClient), (size, size))
        self.assertEqual(stats.reason, "closed")

    async def test_halfClose(self) -> None:
        """
        A client that sends, shuts down its write side and waits still gets
        the whole reply.
        """
        port = self.proxy(self.upstream(lambda: Peer(reply=True)))
        client = Peer(reply=False)
        await self.client(port, client)
        client.transport.write(b"hello")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        got: List[bytes] = []
        client.dataReceived = got.append  # type: ignore[method-assign,assignment]
        await client.lost
        self.assertEqual(b"".join(got), b"REPLY:hello")
        connection = self.factory.clients[0].connection
        self.assertPath(connection)
        stats = await connection.done
        self.assertEqual((stats.bytesToUpstream, stats.bytesToClient), (5, 11))
        self.assertEqual(stats.reason, "closed")

    async def slowReader(self, slowSide: str) -> None:
        size = 64 * MiB
        if slowSide == "upstream":
            port = self.proxy(self.upstream(lambda: Peer(readPaused=True)))
            client = await self.client(port, Peer(send=size, seed=3))
            await connected(self.factory)
            sender, reader = client, None
        else:
            port = self.proxy(self.upstream(lambda: Peer(send=size, seed=4)))
            client = await self.client(port, Peer(readPaused=True))
            await connected(self.factory)
            sender, reader = None, client
        proxied = self.factory.clients[0].connection
        self.assertPath(proxied)
        for _ in range(10_000):
            if self.upstreams:
                break
            await turn()
        source = sender.producer if sender else self.upstreams[0].producer
        assert source is not None
        await paused(source)
        # Everything is backed up: the proxy holds no more than its two
        # transports' buffers (or, splicing, its two pipes), though 64 MiB
        # are waiting to be sent.
        sides = [proxied.client, proxied.upstream]
        held = sum(unsentBytes(s.transport) for s in sides)
        limit = 512 * 1024
        if proxied.splice is not None:
            held += proxied.splice.buffered
            limit += 2 * proxied.splice.capacity
        self.assertLess(held, limit)
        if proxied.splice is not None:
            # The full pipe stopped the proxy reading the sender's socket
            # (rather than polling it in a loop).
            sending = proxied.client if sender else proxied.upstream
            for _ in range(1000):
                if not proxied.splice.isReading(sending.transport):
                    break
                await turn()
            self.assertFalse(proxied.splice.isReading(sending.transport))
        stats = proxied.statistics
        self.assertLess(stats.bytesToUpstream + stats.bytesToClient, 16 * MiB)
        # Let the slow side read: everything arrives intact.
        slow = self.upstreams[0] if reader is None else reader
        slow.transport.resumeProducing()  # type: ignore[union-attr]
        await slow.lost if reader is None else reader.lost
        await client.lost
        seed = 3 if reader is None else 4
        self.assertEqual(slow.hash.digest(), digest(seed, size))

    async def test_slowUpstreamReader(self) -> None:
        """
        An upstream that does not read pauses reading from the client; the
        proxy's buffers stay bounded.
        """
        await self.slowReader("upstream")

    async def test_slowClientReader(self) -> None:
        """
        A client that does not read pauses reading from upstream; the proxy's
        buffers stay bounded.
        """
        await self.slowReader("client")

    async def test_upstreamRefused(self) -> None:
        """
        When upstream refuses, the client is closed promptly and the
        statistics say so.
        """
        closed = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        refusedPort = closed.getHost().port
        await closed.stopListening()
        port = self.proxy(refusedPort)
        client = await self.client(port, Peer())
        await client.lost
        self.assertEqual(client.received, 0)
        stats = await self.factory.clients[0].connection.done
        self.assertEqual(stats.reason, "refused")
        self.assertEqual(self.factory.connections, 0)

    async def test_upstreamVanishesMidStream(self) -> None:
        """
        An upstream that disconnects mid-stream closes the client.
        """

        port = self.proxy(self.upstream(Vanishing))
        client = await self.client(port, Peer(send=64 * MiB, seed=5))
        await client.lost
        self.assertLess(self.upstreams[0].received, 64 * MiB)
        connection = self.factory.clients[0].connection
        self.assertPath(connection)
        stats = await connection.done
        self.assertEqual(stats.reason, "upstream lost")
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_clientVanishesMidStream(self) -> None:
        """
        A client that disconnects mid-stream closes the upstream connection.
        """

        port = self.proxy(self.upstream(lambda: Peer(send=64 * MiB, seed=6)))
        client = await self.client(port, Vanishing())
        await client.lost
        await self.upstreams[0].lost
        connection = self.factory.clients[0].connection
        self.assertPath(connection)
        stats = await connection.done
        self.assertEqual(stats.reason, "client lost")
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_manyConcurrentConnections(self) -> None:
        """
        500 concurrent connections each echo 64 KiB through the proxy.
        """
        port = self.proxy(self.upstream(lambda: Peer(echo=True)))
        clients = [Peer(send=65536, seed=i) for i in range(500)]
        await gatherResults(
            [Deferred.fromCoroutine(self.client(port, c)) for c in clients]
        )
        await gatherResults([c.lost for c in clients])
        await gatherResults([p.connection.done for p in self.factory.clients])
        for i, c in enumerate(clients):
            self.assertEqual(c.hash.digest(), digest(i, 65536), i)
        for p in self.factory.clients:
            self.assertPath(p.connection)
        self.assertEqual(len(self.factory.finished), 500)
        self.assertEqual({s.reason for s in self.factory.finished}, {"closed"})

    def tlsUpstream(self, make: Any) -> IStreamClientEndpoint:
        """
        Listen with TLS on 127.0.0.1 for C{make}'s peers, kept in
        C{self.upstreams}; return a TLS client endpoint that reaches them.
        """
        key, cert = selfSigned("localhost")
        serverOptions = CertificateOptions(
            privateKey=cast(Any, key), certificate=cast(Any, cert)
        )
        self.upstreams: List[Peer] = []

        def build() -> Peer:
            self.upstreams.append(make())
            return self.upstreams[-1]

        tlsPort = reactor.listenSSL(
            0, Factory.forProtocol(build), serverOptions, interface="127.0.0.1"
        )
        self.addCleanup(tlsPort.stopListening)
        trust = Certificate.loadPEM(cert.public_bytes(serialization.Encoding.PEM))
        return wrapClientTLS(
            optionsForClientTLS("localhost", trustRoot=trust),
            TCP4ClientEndpoint(reactor, "127.0.0.1", tlsPort.getHost().port),
        )

    def upstreamPaused(self) -> Deferred[None]:
        """
        A Deferred that fires the first time the proxy pauses reading from
        upstream because the client's side is full.
        """
        paused: Deferred[None] = Deferred()
        original = _Reader.pauseProducing

        def pauseProducing(reader: _Reader) -> None:
            original(reader)
            if isinstance(reader.side, _UpstreamSide) and not paused.called:
                paused.callback(None)

        self.patch(_Reader, "pauseProducing", pauseProducing)
        return paused

    async def test_tlsUpstream(self) -> None:
        """
        The proxy reaches a TLS upstream through a TLS client endpoint; data
        goes both ways, and the client's end of stream closes the upstream
        connection (TLS cannot half-close).  Upstream may drop what it had
        not sent when our close_notify arrives (RFC 5246, 7.2.1); what it
        did send still reaches the client.
        """
        endpoint = self.tlsUpstream(lambda: Peer(echo=True))
        factory = RecordingProxyFactory.forEndpoint(endpoint)
        port = self.listen(factory)
        client = await self.client(port, Peer(send=4 * MiB, seed=7))
        await client.lost
        await self.upstreams[0].lost
        self.assertEqual(self.upstreams[0].hash.digest(), digest(7, 4 * MiB))
        self.assertGreater(client.received, 0)
        echoed = expected(7, 4 * MiB)[: client.received]
        self.assertEqual(client.hash.digest(), hashlib.sha256(echoed).digest())
        connection = factory.clients[0].connection
        # TLS is never spliced.
        self.assertTrue(factory.zeroCopy)
        self.assertIs(connection.splice, None)
        stats = await connection.done
        self.assertEqual(stats.bytesToUpstream, 4 * MiB)
        self.assertEqual(stats.bytesToClient, client.received)
        self.assertEqual(stats.reason, "closed")
        self.assertEqual(factory.finished, [stats])

    async def test_tlsUpstreamClosedWhilePaused(self) -> None:
        """
        A client that half-closes while the proxy has paused reading from a
        TLS upstream (the client was not reading) still gets everything
        upstream sent before it closed, once it reads again: closing the
        upstream connection does not leave its reading paused for ever,
        where it could never read the close_notify that ends it.
        """
        paused = self.upstreamPaused()
        endpoint = self.tlsUpstream(lambda: Peer(echo=True))
        factory = RecordingProxyFactory.forEndpoint(endpoint)
        port = self.listen(factory)
        client = await self.client(port, Peer(readPaused=True))
        stream = Stream(8, 32 * MiB)
        sent = stream.startProducing(client.transport)  # type: ignore[arg-type]
        await paused
        await sent
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        client.transport.resumeProducing()  # type: ignore[union-attr]
        await client.lost
        await self.upstreams[0].lost
        self.assertEqual(self.upstreams[0].received, 32 * MiB)
        echoed = expected(8, 32 * MiB)[: client.received]
        self.assertEqual(client.hash.digest(), hashlib.sha256(echoed).digest())
        stats = await factory.clients[0].connection.done
        self.assertEqual(stats.bytesToClient, client.received)
        self.assertEqual(stats.reason, "closed")

    test_tlsUpstreamClosedWhilePaused.timeout = 30  # type: ignore[attr-defined]

    async def test_tlsUpstreamClientVanishesWhilePaused(self) -> None:
        """
        A client that vanishes while the proxy has paused reading from a TLS
        upstream closes the upstream connection: the proxy reads again to
        finish the TLS close and drops what arrives.
        """
        paused = self.upstreamPaused()
        endpoint = self.tlsUpstream(lambda: Peer(echo=True))
        factory = RecordingProxyFactory.forEndpoint(endpoint)
        port = self.listen(factory)
        client = await self.client(port, Peer(readPaused=True))
        sending = Stream(9, 32 * MiB).startProducing(client.transport)  # type: ignore[arg-type]
        await paused
        client.transport.abortConnection()  # type: ignore[union-attr]
        await client.lost
        await self.upstreams[0].lost
        stats = await factory.clients[0].connection.done
        self.assertEqual(stats.reason, "client lost")
        self.assertLess(stats.bytesToClient, stats.bytesToUpstream)
        await self.assertFailure(sending, ProducerStopped)
        self.assertEqual(self.flushLoggedErrors(), [])

    test_tlsUpstreamClientVanishesWhilePaused.timeout = 30  # type: ignore[attr-defined]

    if skipTLS:
        test_tlsUpstream.skip = skipTLS  # type: ignore[attr-defined]
        test_tlsUpstreamClosedWhilePaused.skip = skipTLS  # type: ignore[attr-defined]
        test_tlsUpstreamClientVanishesWhilePaused.skip = skipTLS  # type: ignore[attr-defined]


class OrdinaryPathProxyTests(ProxyTests):
    """
    The same, with the zero-copy path turned off.
    """

    zeroCopy = False


async def turn() -> None:
    d: Deferred[None] = Deferred()
    reactor.callLater(0, d.callback, None)
    await d


async def connected(factory: RecordingProxyFactory) -> None:
    """
    Wait until the first proxied connection has its upstream, for at most
    10,000 reactor turns.
    """
    for _ in range(10_000):
        if factory.clients and factory.clients[0].connection.upstream is not None:
            return
        await turn()
    raise AssertionError("no upstream connection after 10,000 reactor turns")


def paused(producer: BasePushProducer) -> Deferred[None]:
    """
    Fire when C{producer} is (or next gets) paused.
    """
    d: Deferred[None] = Deferred()
    if producer.paused:
        d.callback(None)
        return d
    original = producer.producingPaused

    def hook() -> None:
        original()
        if not d.called:
            d.callback(None)

    producer.producingPaused = hook  # type: ignore[method-assign]
    return d


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    An endpoint that connects to a L{StringTransport} at once, or never.
    """

    def __init__(self, never: bool = False) -> None:
        self.never = never
        self.attempts: List[Deferred[Any]] = []
        self.transports: List[StringTransport] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.never:
            d: Deferred[Any] = Deferred()
            self.attempts.append(d)
            return d
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        self.transports.append(transport)
        protocol.makeConnection(transport)
        return succeed(protocol)


class TimeoutAndLimitTests(SynchronousTestCase):
    """
    Timeouts and the connection limit, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.done: List[ProxyStatistics] = []

    def connect(self, factory: ProxyFactory) -> Any:
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport: Any = StringTransport()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return transport

    def test_statisticsOnTheReactorsClock(self) -> None:
        """
        A connection's statistics are timed by the proxy's reactor, as its
        timeouts are (before, by C{time.time}).
        """
        self.clock.advance(1000)
        factory = ProxyFactory.forEndpoint(
            FakeEndpoint(), reactor=self.clock, onConnectionDone=self.done.append
        )
        transport = self.connect(factory)
        statistics = transport.protocol.connection.statistics
        self.assertEqual(statistics.started, 1000)
        self.clock.advance(2.5)
        self.assertEqual(statistics.duration, 2.5)
        connection = transport.protocol.connection
        connection.client.connectionLost(Failure(Exception("gone")))
        connection.upstream.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.done[0].ended, 1002.5)
        self.assertEqual(self.done[0].duration, 2.5)

    def test_logLine(self) -> None:
        """
        A connection ends with one log line saying what it did, whose event
        keeps each figure as a field of its own.
        """
        factory = ProxyFactory.forEndpoint(FakeEndpoint(), reactor=self.clock)
        transport = self.connect(factory)
        connection = transport.protocol.connection
        connection.client.dataReceived(b"abc")
        events: List[Dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        connection.client.connectionLost(Failure(Exception("gone")))
        connection.upstream.connectionLost(Failure(Exception("gone")))
        [event] = [e for e in events if e["log_format"].startswith("Proxied")]
        self.assertEqual(
            formatEvent(event),
            f"Proxied {transport.getPeer()}: 3 bytes up, 0 bytes down in "
            "0.000s, copied (client lost)",
        )
        self.assertEqual(
            [event[k] for k in ("client", "up", "down", "duration", "path", "reason")],
            [transport.getPeer(), 3, 0, 0, "copied", "client lost"],
        )

    def test_connectTimeoutAppliedOnce(self) -> None:
        """
        An upstream named by host name is reached through an endpoint made
        with the connect timeout, and no second timer is set on top (before,
        there were two).
        """
        made: List[Any] = []

        class Endpoint(FakeEndpoint):
            def __init__(self, reactor: Any, host: str, port: int, timeout: float):
                super().__init__(never=True)
                self.timeout = timeout
                made.append(self)

        self.patch(proxyModule, "HostnameEndpoint", Endpoint)
        factory = ProxyFactory("localhost", 80, reactor=self.clock, connectTimeout=7)
        self.connect(factory)
        self.assertEqual([e.timeout for e in made], [7])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        made[0].attempts[0].errback(Failure(Exception("timed out")))

    def test_connectTimeout(self) -> None:
        """
        A client whose upstream does not answer within C{connectTimeout} is
        closed.
        """
        endpoint = FakeEndpoint(never=True)
        factory = ProxyFactory.forEndpoint(
            endpoint, reactor=self.clock, connectTimeout=5,
            onConnectionDone=self.done.append,
        )  # fmt: skip
        transport = self.connect(factory)
        self.assertTrue(transport.producerState == "paused")
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        transport.protocol.connectionLost(Failure(Exception("closed")))
        self.assertEqual(self.done[0].reason, "connect timeout")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idleTimeout(self) -> None:
        """
        A connection with no data either way for C{idleTimeout} seconds is
        closed; data postpones it.
        """
        endpoint = FakeEndpoint()
        factory = ProxyFactory.forEndpoint(
            endpoint, reactor=self.clock, idleTimeout=10,
            onConnectionDone=self.done.append,
        )  # fmt: skip
        transport = self.connect(factory)
        self.assertEqual(transport.producerState, "producing")
        self.clock.advance(9)
        transport.protocol.dataReceived(b"ping")
        self.assertEqual(endpoint.transports[0].value(), b"ping")
        self.clock.advance(9)
        self.assertFalse(transport.disconnected)
        self.clock.advance(1.5)
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertTrue(endpoint.transports[0].disconnecting)

    def test_closeLetsGoOfProducers(self) -> None:
        """
        Once both directions are done, each transport's producer is
        unregistered before it is asked to close, so a paused one cannot hold
        the close back.
        """
        endpoint = FakeEndpoint()
        factory = ProxyFactory.forEndpoint(endpoint, reactor=self.clock)
        client = self.connect(factory)
        upstream = endpoint.transports[0]
        self.assertIsNotNone(client.producer)
        self.assertIsNotNone(upstream.producer)
        client.producer.pauseProducing()
        connection = client.protocol.connection
        connection.client.readDone = connection.upstream.readDone = True
        connection.maybeClose()
        self.assertEqual((client.producer, upstream.producer), (None, None))
        self.assertTrue(client.disconnecting)
        self.assertTrue(upstream.disconnecting)

    def test_directConnect(self) -> None:
        """
        An IP address (no endpoint given) is connected to with the reactor's
        C{connectTCP}, whose timeout is the connect timeout, by a factory
        that logs nothing; once connected, data flows both ways.
        """
        for host in ("127.0.0.1", "::1"):
            clock = MemoryReactorClock()
            factory = ProxyFactory(
                host, 4321, reactor=clock, connectTimeout=7, zeroCopy=False
            )
            client = self.connect(factory)
            [(connectHost, port, upstreamFactory, timeout, _)] = clock.tcpClients
            self.assertEqual((connectHost, port, timeout), (host, 4321, 7))
            self.assertFalse(upstreamFactory.noisy)
            self.assertEqual(client.producerState, "paused")
            upstream = StringTransport()
            upstreamProtocol: Any = upstreamFactory.buildProtocol(None)
            upstreamProtocol.makeConnection(upstream)
            self.assertEqual(client.producerState, "producing")
            client.protocol.dataReceived(b"up")
            upstreamProtocol.dataReceived(b"down")
            self.assertEqual((upstream.value(), client.value()), (b"up", b"down"))
            connection = client.protocol.connection
            self.assertIs(connection._connecting, None)

    def test_directConnectForTCPEndpoints(self) -> None:
        """
        A plain TCP endpoint to an IP address (as C{clientFromString} makes
        for C{tcp:}) is connected to with its reactor's C{connectTCP} too,
        with its bind address and the shorter of its timeout and the
        connect timeout; one to a name, or any other endpoint, is not.
        """
        clock = MemoryReactorClock()
        endpoint = TCP6ClientEndpoint(clock, "::1", 4321, 9, ("::1", 0))
        factory = ProxyFactory.forEndpoint(endpoint, reactor=clock, connectTimeout=5)
        self.connect(factory)
        [(host, port, _, timeout, bind)] = clock.tcpClients
        self.assertEqual((host, port, timeout, bind), ("::1", 4321, 5, ("::1", 0)))

        endpoint4 = TCP4ClientEndpoint(clock, "127.0.0.1", 4322, 3)
        factory = ProxyFactory.forEndpoint(endpoint4, reactor=clock, connectTimeout=5)
        self.connect(factory)
        self.assertEqual(clock.tcpClients[1][1::2], (4322, 3))

        for other in (TCP4ClientEndpoint(clock, "localhost", 1), FakeEndpoint()):
            factory = ProxyFactory.forEndpoint(other, reactor=clock)
            self.assertIsNone(factory._directAddress())

    def test_directConnectTimeout(self) -> None:
        """
        The reactor's connector timing out is reported as a connect timeout,
        and the client is closed.
        """
        clock = MemoryReactorClock()
        factory = ProxyFactory(
            "127.0.0.1", 4321, reactor=clock, onConnectionDone=self.done.append
        )
        client = self.connect(factory)
        upstreamFactory = clock.tcpClients[0][2]
        upstreamFactory.clientConnectionFailed(
            clock.connectors[0], Failure(ConnectTimeoutError())
        )
        self.assertTrue(client.disconnecting)
        client.protocol.connectionLost(Failure(Exception("closed")))
        self.assertEqual(self.done[0].reason, "connect timeout")
        self.assertEqual(factory.connections, 0)

    def test_directConnectCancelled(self) -> None:
        """
        A client that leaves while upstream is being connected to stops the
        connector; the connection ends as "client lost".
        """
        clock = MemoryReactorClock()
        factory = ProxyFactory(
            "127.0.0.1", 4321, reactor=clock, onConnectionDone=self.done.append
        )
        client = self.connect(factory)
        client.protocol.connectionLost(Failure(Exception("gone")))
        self.assertTrue(clock.connectors[0].stoppedConnecting)
        self.assertEqual(self.done[0].reason, "client lost")

    def test_maxConnections(self) -> None:
        """
        Beyond C{maxConnections} open connections, new clients are refused.
        """
        factory = ProxyFactory.forEndpoint(
            FakeEndpoint(never=True), reactor=self.clock, maxConnections=2
        )
        self.connect(factory)
        self.connect(factory)
        self.assertIsNone(factory.buildProtocol(None))
        self.assertEqual(factory.connections, 2)
        self.clock.advance(60)


class ProxyPluginTests(ProxyTestsMixin, TestCase):
    """
    The C{stream-proxy} twistd plugin.
    """

    def parse(self, *args: str) -> proxytap.Options:
        options = proxytap.Options()
        options.parseOptions(list(args))
        return options

    def test_discovered(self) -> None:
        """
        twistd lists C{stream-proxy}, pointing at L{twisted_streaming.tap.streamproxy}.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        maker: Any = makers["stream-proxy"]
        self.assertEqual(maker.module, "twisted_streaming.tap.streamproxy")

    def test_connectTimeoutOverEndpointDefault(self) -> None:
        """
        C{--connect-timeout} longer than a C{tcp:} endpoint's default of 30
        seconds is the one that applies, once and exactly, as the timeout of
        the reactor's connector (before, the endpoint gave up after 30
        seconds whatever it said).
        """
        for given, endpointTimeout, timers in (("60", 60, 0), ("2.5", 2.5, 0)):
            reactor = MemoryReactorClock()
            options = self.parse(
                "--listen", "tcp:0", "--connect", "tcp:127.0.0.1:9",
                "--connect-timeout", given,
            )  # fmt: skip
            service: Any = proxytap.makeService(options, reactor=reactor)
            protocol = service.factory.buildProtocol(None)
            protocol.makeConnection(StringTransport())
            self.assertEqual(reactor.tcpClients[0][3], endpointTimeout)
            self.assertEqual(len(reactor.getDelayedCalls()), timers)

    def test_options(self) -> None:
        """
        The endpoints are required; timeouts and the limit are parsed; a TCP
        listener gets a large backlog unless it names one.
        """
        options = self.parse(
            "--listen", "tcp:8080", "--connect", "tcp:127.0.0.1:80",
            "--connect-timeout", "2.5", "--idle-timeout", "60",
            "--max-connections", "10",
        )  # fmt: skip
        self.assertEqual(options["listen"], "tcp:8080:backlog=1024")
        self.assertEqual(
            (options["connect-timeout"], options["idle-timeout"]), (2.5, 60.0)
        )
        self.assertEqual(options["max-connections"], 10)
        self.assertFalse(options["no-zero-copy"])
        service: Any = proxytap.makeService(options)
        self.assertTrue(service.factory.zeroCopy)
        options = self.parse("-l", "tcp:1:backlog=7", "-c", "unix:/x")
        self.assertEqual(options["listen"], "tcp:1:backlog=7")
        for listen, given in [
            ("haproxy:tcp:8080", "haproxy:tcp:8080:backlog=1024"),
            ("ssl:443:privateKey=k.pem", "ssl:443:privateKey=k.pem:backlog=1024"),
            ("unix:/run/p.sock", "unix:/run/p.sock:backlog=1024"),
            ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
        ]:
            self.assertEqual(self.parse("-l", listen, "-c", "unix:/x")["listen"], given)
        self.assertIsNone(options["idle-timeout"])
        options = self.parse("-l", "tcp:1", "-c", "tcp:h:1", "--no-zero-copy")
        self.assertTrue(options["no-zero-copy"])
        service = proxytap.makeService(options)
        self.assertFalse(service.factory.zeroCopy)

    def test_refused(self) -> None:
        """
        Missing endpoints and bad numbers are refused.
        """
        for args in (
            [],
            ["--listen", "tcp:1"],
            ["--connect", "tcp:h:1"],
            ["-l", "tcp:1", "-c", "tcp:h:1", "--connect-timeout", "x"],
            ["-l", "tcp:1", "-c", "tcp:h:1", "--idle-timeout", "-1"],
            ["-l", "tcp:1", "-c", "tcp:h:1", "--max-connections", "0"],
        ):
            self.assertRaises(usage.UsageError, self.parse, *args)

    def twistdProxy(
        self, upstreamPort: int, *extra: str
    ) -> Tuple[Any, Callable[[], Deferred[None]]]:
        """
        Start a real C{twistd -n stream-proxy} on 127.0.0.1 that forwards to
        C{upstreamPort}, with the C{extra} options.
        """
        return twistdProxy(self, upstreamPort, *extra)

    async def test_realTwistd(self) -> None:
        """
        A real C{twistd -n stream-proxy} forwards a half-closed request and
        its whole reply.
        """
        upstream = reactor.listenTCP(
            0, Factory.forProtocol(lambda: Peer(reply=True)), interface="127.0.0.1"
        )
        self.addCleanup(upstream.stopListening)
        process, stop = self.twistdProxy(upstream.getHost().port)
        port = await process.port
        client = Peer()
        got: List[bytes] = []
        client.dataReceived = got.append  # type: ignore[method-assign,assignment]
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        client.transport.write(b"hello")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await client.lost
        self.assertEqual(b"".join(got), b"REPLY:hello")
        await stop()
        # The statistics are logged when the connection ends.
        self.assertIn(b"5 bytes up, 11 bytes down", process.output)
        self.assertIn(b"(closed)", process.output)

    async def test_realTwistdStopsMidStream(self) -> None:
        """
        SIGTERM while a connection is mid-stream, spliced or not, with every
        buffer full because upstream has stopped reading: twistd stops
        cleanly, with no traceback, after closing both connections and
        logging their statistics.
        """
        upstreamPort = self.upstream(lambda: Peer(readPaused=True))
        for number, extra in enumerate(([], ["--no-zero-copy"]), 1):
            process, stop = self.twistdProxy(upstreamPort, *extra)
            port = await process.port
            client = await self.client(port, Peer(send=64 * MiB, seed=3))
            assert client.producer is not None
            # The kernel accepts and buffers before twistd's reactor runs, so
            # a paused client does not prove that twistd has its SIGTERM
            # handler yet (or is connected upstream); its upstream
            # connection does.
            upstream = await self.upstreamNumber(number)
            await paused(client.producer)
            await stop()
            await client.lost
            # Reading again, it finds that the proxy has closed.
            upstream.transport.resumeProducing()  # type: ignore[union-attr]
            await upstream.lost
            self.assertLess(upstream.received, 64 * MiB)
            # A clean stop: the reactor's shutdown ran to its end, then
            # twistd ended itself with the signal it was stopped by.
            self.assertIn(b"Main loop terminated.", process.output)
            assert process.reason is not None
            ended = process.reason.value
            assert isinstance(ended, ProcessTerminated), ended
            self.assertEqual(ended.signal, signal.SIGTERM)
            self.assertNotIn(b"Traceback", process.output)
            self.assertRegex(
                process.output, rb"Proxied .*: \d+ bytes up, \d+ bytes down"
            )

    async def test_realTwistdManyConnections(self) -> None:
        """
        200 simultaneous connections of 1 MiB each, echoed through a real
        C{twistd -n stream-proxy} with its default listen backlog, all
        complete intact and are logged as closed.
        """
        upstreamPort = self.upstream(lambda: Peer(echo=True))
        process, stop = self.twistdProxy(upstreamPort)
        port = await process.port
        clients = [Peer(send=2**20, seed=i) for i in range(200)]
        await gatherResults(
            [Deferred.fromCoroutine(self.client(port, c)) for c in clients]
        )
        await gatherResults([c.lost for c in clients])
        for i, c in enumerate(clients):
            self.assertEqual(c.hash.digest(), digest(i, 2**20), i)
        await stop()
        self.assertEqual(process.output.count(b"(closed)"), 200)
