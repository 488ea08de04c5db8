"""
Tests for L{twisted_streaming._drain.DrainingService}: over fakes on a
L{Clock} here; with real twistd processes in L{DrainTwistdTests}.
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any, Callable, List, Tuple

from twisted.application.service import Service
from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError, ProcessTerminated
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_streaming._drain import DrainingService, onStopSignals
from twisted_streaming._limits import ConnectionLimits
from twisted_streaming.randomintegers import PROMPT
from twisted_streaming.test._extras import skipTLS
from twisted_streaming.test.test_limits import Connection
from twisted_streaming.test.test_plugin import twistdProxy, twistdRandomIntegers
from twisted_streaming.test.test_proxy import Peer
from twisted_streaming.test.test_randomintegers import _Client, values

reactor: Any = _globalReactor


class Listening(Service):
    """
    A listening service that records when it stops.
    """

    def __init__(self, log: List[str], name: str = "listening") -> None:
        self.log = log
        self.label = name

    def stopService(self) -> None:
        super().stopService()
        self.log.append(f"{self.label} stopped")


class Ending(Connection):
    """
    A connection that ends (leaves its limits) when aborted.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__()
        self.limits = limits
        limits.add(self)

    def abort(self, why: str) -> None:
        super().abort(why)
        self.limits.remove(self, why)


class DrainingServiceTests(SynchronousTestCase):
    """
    L{DrainingService} stops accepting, waits, then closes what is left.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.log: List[str] = []
        self.limits = ConnectionLimits()
        self.handlers: List[Callable[[], None]] = []
        self.listening = Listening(self.log)

    def installSignals(self, handler: Callable[[], None]) -> Callable[[], None]:
        self.handlers.append(handler)
        return lambda: self.log.append("signals restored")

    def service(self, timeout: float) -> DrainingService:
        service = DrainingService(
            self.listening, self.limits, timeout, self.clock, self.installSignals
        )
        Listening(self.log, "metrics").setServiceParent(service)
        service.startService()
        return service

    def test_nothingOpen(self) -> None:
        """
        With no connection open, stopping is immediate: the listener first,
        the other services after.
        """
        d = self.service(30).stopService()
        self.successResultOf(d)
        self.assertEqual(
            self.log, ["listening stopped", "signals restored", "metrics stopped"]
        )

    def test_connectionsFinishInTime(self) -> None:
        """
        Open connections are told to drain and waited for; once the last has
        ended, the service stops, before the deadline, and nothing was
        aborted.
        """
        a, b = Connection(), Connection()
        self.limits.add(a)
        self.limits.add(b)
        d = self.service(30).stopService()
        self.assertEqual(self.log, ["listening stopped"])
        self.assertEqual((a.calls, b.calls), (["drain"], ["drain"]))
        self.clock.advance(10)
        self.limits.remove(a)
        self.assertNoResult(d)
        self.limits.remove(b)
        self.successResultOf(d)
        self.assertEqual((a.calls, b.calls), (["drain"], ["drain"]))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.log[-1], "metrics stopped")

    def test_deadline(self) -> None:
        """
        At the deadline, what is still open is aborted as C{"shutdown"}.
        """
        slow = Ending(self.limits)
        d = self.service(30).stopService()
        self.clock.advance(29.9)
        self.assertNoResult(d)
        self.assertEqual(slow.calls, ["drain"])
        self.clock.advance(0.1)
        self.assertEqual(slow.calls, ["drain", "abort shutdown"])
        self.successResultOf(d)
        self.assertEqual(dict(self.limits.errors), {"shutdown": 1})

    def test_secondSignal(self) -> None:
        """
        A stop signal during the drain aborts everything at once; another
        does nothing more.
        """
        slow = Ending(self.limits)
        d = self.service(30).stopService()
        [handler] = self.handlers
        self.assertNoResult(d)
        handler()
        handler()
        self.successResultOf(d)
        self.assertEqual(slow.calls, ["drain", "abort shutdown"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noDrain(self) -> None:
        """
        With a timeout of 0, open connections are aborted at once, and the
        service stops once each has ended.
        """
        a = Connection()
        self.limits.add(a)
        d = self.service(0).stopService()
        self.assertEqual(a.calls, ["abort shutdown"])
        self.assertNoResult(d)
        self.limits.remove(a, "shutdown")
        self.successResultOf(d)

    def test_factory(self) -> None:
        """
        C{factory} is the listening service's factory.
        """
        factory = Factory()
        self.listening.factory = factory  # type: ignore[attr-defined]
        self.assertIs(self.service(0).factory, factory)


class StopSignalsTests(SynchronousTestCase):
    """
    L{onStopSignals} installs handlers for SIGTERM and SIGINT, and restores
    the previous ones.
    """

    def test_installAndRestore(self) -> None:
        """
        The handlers call the given function through C{callFromThread}; the
        previous handlers are back after the restore.
        """
        before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
        called: List[Any] = []

        class FakeReactor:
            def callFromThread(self, f: Callable[[], None]) -> None:
                called.append(f)

        def handler() -> None:
            pass

        restore = onStopSignals(FakeReactor())(handler)
        try:
            for number in (signal.SIGTERM, signal.SIGINT):
                installed: Any = signal.getsignal(number)
                installed(number, None)
        finally:
            restore()
        self.assertEqual(called, [handler, handler])
        self.assertEqual(
            (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)),
            before,
        )


class Upstream(Peer):
    """
    An upstream L{Peer} that replies at end of stream; C{received} fires on
    its first data.
    """

    def __init__(self) -> None:
        super().__init__(reply=True)
        self.gotData: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if not self.gotData.called:
            self.gotData.callback(None)


class Streaming(_Client):
    """
    A random-integer client that asks for integers and stops reading as
    soon as the first arrive (C{streaming} fires then).
    """

    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.streaming: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if not self.streaming.called and len(self.data) > len(PROMPT):
            self.transport.pauseProducing()  # type: ignore[union-attr]
            self.streaming.callback(None)


class DrainTwistdTests(TestCase):
    """
    C{--drain-timeout} on real twistd processes.
    """

    def twistdProxy(self, upstreamPort: int, *extra: str) -> Any:
        return twistdProxy(self, upstreamPort, *extra)[0]

    def upstream(self) -> Upstream:
        """
        Listen for one upstream connection, the one returned.
        """
        peer = Upstream()
        port = reactor.listenTCP(
            0, Factory.forProtocol(lambda: peer), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        self.upstreamPort = port.getHost().port
        return peer

    async def refused(self, port: int) -> None:
        """
        A new client of C{port} is refused.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        with self.assertRaises(ConnectionRefusedError):
            await connectProtocol(endpoint, Peer())

    def assertStoppedBySignal(self, process: Any) -> None:
        ended = process.reason.value
        assert isinstance(ended, ProcessTerminated), ended
        self.assertEqual(ended.signal, signal.SIGTERM)
        self.assertNotIn(b"Traceback", process.output)

    async def test_proxyInFlightFinishes(self) -> None:
        """
        SIGTERM with a proxied request in flight: twistd stops accepting (a
        new client is refused), the request's reply still arrives whole,
        and twistd then exits long before the deadline, logging the drain.
        """
        peer = self.upstream()
        process = self.twistdProxy(self.upstreamPort, "--drain-timeout", "60")
        port = await process.port
        client = Peer()
        got: List[bytes] = []
        client.dataReceived = got.append  # type: ignore[method-assign,assignment]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await connectProtocol(endpoint, client)
        client.transport.write(b"in flight")  # type: ignore[union-attr]
        # The upstream connection proves twistd has its handlers and the
        # connection is proxied.
        await peer.gotData
        began = time.monotonic()
        process.signal(signal.SIGTERM)
        await process.waitFor(rb"draining 1 connections for up to 60 seconds")
        await self.refused(port)
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await client.lost
        self.assertEqual(b"".join(got), b"REPLY:in flight")
        await process.ended
        self.assertLess(time.monotonic() - began, 30)
        self.assertIn(b"1 of 1 connections finished, 0 closed", process.output)
        self.assertRegex(process.output, rb"9 bytes up, 15 bytes down .* \(closed\)")
        self.assertStoppedBySignal(process)

    async def proxyingOne(self, drainTimeout: str) -> Tuple[Any, Peer]:
        """
        A twistd proxy with that C{--drain-timeout}, and a client of it
        whose first byte has reached upstream.
        """
        peer = self.upstream()
        process = self.twistdProxy(self.upstreamPort, "--drain-timeout", drainTimeout)
        port = await process.port
        client = Peer()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        client.transport.write(b"x")  # type: ignore[union-attr]
        await peer.gotData
        return process, client

    async def test_proxyDeadline(self) -> None:
        """
        A proxied connection that does not finish is closed at the deadline,
        logged as ended by the shutdown, and twistd exits.
        """
        process, client = await self.proxyingOne("1")
        began = time.monotonic()
        process.signal(signal.SIGTERM)
        await client.lost
        await process.ended
        elapsed = time.monotonic() - began
        # Not before the deadline; and by it (with room for a loaded machine).
        self.assertGreaterEqual(elapsed, 1)
        self.assertLess(elapsed, 20)
        self.assertIn(b"Drain deadline: closing 1 connections", process.output)
        self.assertIn(b"0 of 1 connections finished, 1 closed", process.output)
        self.assertRegex(process.output, rb"1 bytes up, 0 bytes down .* \(shutdown\)")
        self.assertStoppedBySignal(process)

    async def test_secondSignalExitsAtOnce(self) -> None:
        """
        A second SIGTERM during a long drain closes the connections and
        twistd exits at once.
        """
        process, client = await self.proxyingOne("600")
        process.signal(signal.SIGTERM)
        await process.waitFor(rb"draining 1 connections")
        began = time.monotonic()
        process.signal(signal.SIGTERM)
        await process.ended
        await client.lost
        self.assertLess(time.monotonic() - began, 60)
        self.assertIn(b"Second stop signal: closing 1 connections", process.output)
        self.assertRegex(process.output, rb"\(shutdown\)")
        self.assertStoppedBySignal(process)

    async def test_randomIntegersInFlightFinishes(self) -> None:
        """
        SIGTERM while a random-integer client is being sent its integers
        (and reading slowly) and another has not asked yet: the one still
        to ask is told the server is shutting down, a new client is
        refused, the stream completes, and twistd exits.
        """
        process, _ = twistdRandomIntegers(self, "--drain-timeout", "60")
        port = await process.port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        streaming = Streaming(b"300000\r\n")
        waiting = _Client()
        await connectProtocol(endpoint, streaming)
        await connectProtocol(endpoint, waiting)
        await waiting.prompted
        await streaming.streaming
        process.signal(signal.SIGTERM)
        await process.waitFor(rb"draining 2 connections")
        told = await waiting.done
        self.assertEqual(told, PROMPT + b"error: server shutting down\r\n")
        await self.refused(port)
        streaming.transport.resumeProducing()  # type: ignore[union-attr]
        data = await streaming.done
        self.assertEqual(len(values(data[len(PROMPT) :])), 300000)
        await process.ended
        self.assertIn(b"2 of 2 connections finished, 0 closed", process.output)
        self.assertRegex(process.output, rb"300000 integers .* \(done\)")
        self.assertRegex(process.output, rb"0 integers .* \(shutdown\)")
        self.assertStoppedBySignal(process)


class ShutdownLoggingTests(TestCase):
    """
    Fault 6: on SIGTERM (no drain) every open connection is logged once,
    however busy it is.
    """

    async def busyProxyStopped(self, path: bytes, *extra: str, tls: Any = None) -> None:
        """
        40 proxied connections, each with every buffer full (upstream does
        not read): after SIGTERM each is logged exactly once, as having
        taken C{path} and ended by the shutdown.

        @param tls: If given, upstream listens with this TLS context
            factory, and C{extra} says how to connect to it (C{{port}} is
            replaced by its port).
        """
        count = 40
        upstreams: List[Peer] = []
        allConnected: Deferred[None] = Deferred()

        def build() -> Peer:
            peer = Peer(readPaused=True)
            upstreams.append(peer)
            if len(upstreams) == count:
                allConnected.callback(None)
            return peer

        if tls is None:
            listening = reactor.listenTCP(
                0, Factory.forProtocol(build), interface="127.0.0.1", backlog=1024
            )
        else:
            listening = reactor.listenSSL(
                0, Factory.forProtocol(build), tls, interface="127.0.0.1", backlog=1024
            )
        self.addCleanup(listening.stopListening)
        upstreamPort = listening.getHost().port
        extra = tuple(a.replace("{port}", str(upstreamPort)) for a in extra)
        process, _ = twistdProxy(self, upstreamPort, *extra)
        port = await process.port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        clients = [Peer(send=16 * 2**20, seed=i) for i in range(count)]
        for client in clients:
            await connectProtocol(endpoint, client)
        await allConnected
        process.signal(signal.SIGTERM)
        await process.ended
        for client in clients:
            await client.lost
        logged = re.findall(rb"Proxied [^\n]*", process.output)
        self.assertEqual(len(logged), count, process.output[-3000:])
        ended = [line for line in logged if line.endswith(path + b" (shutdown)")]
        self.assertEqual(len(ended), count)
        self.assertIn(b"Stopping: closing %d connections" % count, process.output)
        self.assertNotIn(b"Traceback", process.output)
        for peer in upstreams:
            peer.transport.abortConnection()  # type: ignore[union-attr]

    def test_splicedConnectionsLoggedOnce(self) -> Deferred[None]:
        """
        Busy spliced connections are each logged once on SIGTERM.
        """
        return Deferred.fromCoroutine(self.busyProxyStopped(b"spliced"))

    def test_copiedConnectionsLoggedOnce(self) -> Deferred[None]:
        """
        Busy copied connections are each logged once on SIGTERM.
        """
        return Deferred.fromCoroutine(
            self.busyProxyStopped(b"copied", "--no-zero-copy")
        )

    async def test_tlsConnectionsLoggedOnce(self) -> None:
        """
        Busy connections to a TLS upstream are each logged once on SIGTERM.
        """
        from twisted.internet.ssl import PrivateCertificate

        from twisted_streaming.test.test_faults import selfSignedPEM

        pem = selfSignedPEM("localhost")
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "ca.pem"), "wb") as f:
            f.write(pem.split(b"-----BEGIN PRIVATE KEY-----")[0])
        await self.busyProxyStopped(
            b"copied",
            "--connect",
            f"tls:localhost:{{port}}:trustRoots={directory}",
            tls=PrivateCertificate.loadPEM(pem).options(),
        )

    test_tlsConnectionsLoggedOnce.skip = skipTLS  # type: ignore[attr-defined]

    async def test_randomIntegerConnectionsLoggedOnce(self) -> None:
        """
        30 random-integer clients being sent integers without reading and 30
        still to ask: after SIGTERM each is logged exactly once, and those
        still to ask are told why they are closed.
        """
        process, _ = twistdRandomIntegers(self)
        port = await process.port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        streaming = [Streaming(b"100000000\r\n") for _ in range(30)]
        waiting = [_Client() for _ in range(30)]
        for client in streaming + waiting:
            await connectProtocol(endpoint, client)
        for client in streaming:
            await client.streaming
        for client in waiting:
            await client.prompted
        process.signal(signal.SIGTERM)
        await process.ended
        for client in waiting:
            told = await client.done
            self.assertEqual(told, PROMPT + b"error: server shutting down\r\n")
        for client in streaming:
            # Reading again, it finds the connection reset.
            client.transport.resumeProducing()  # type: ignore[union-attr]
            await client.done
        logged = re.findall(rb"Served [^\n]*\(shutdown\)", process.output)
        self.assertEqual(len(logged), 60, process.output[-3000:])
        self.assertEqual(len(re.findall(rb"Served ", process.output)), 60)
        self.assertNotIn(b"Traceback", process.output)
