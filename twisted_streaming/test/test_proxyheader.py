"""
Tests for the PROXY protocol header the proxy sends upstream
(C{ProxyFactory(proxyHeader=...)}, C{stream-proxy --send-proxy}): read back
by parsers this project did not write, Twisted's C{haproxy:} server
endpoint and HAProxy itself, over real loopback connections.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any, List, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
    serverFromString,
)
from twisted.internet.interfaces import IAddress, IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.haproxy import proxyEndpoint
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from twisted_streaming import ProxyFactory
from twisted_streaming._proxyheader import proxyHeader, sendFirst
from twisted_streaming.tap import streamproxy as proxytap
from twisted_streaming.test._extras import skipHAProxy
from twisted_streaming.test.test_plugin import twistd

reactor: Any = _globalReactor


class Seen(Protocol):
    """
    An upstream protocol under a PROXY-parsing wrapper, which hands on what
    follows the header: C{seen} fires with the client's address and the
    proxy's, as the wrapper reports them, when the first data arrives; it
    echoes.
    """

    def __init__(self, seen: Deferred[Tuple[IAddress, IAddress]]) -> None:
        self.seen = seen

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.seen.called:
            self.seen.callback((self.transport.getPeer(), self.transport.getHost()))
        self.transport.write(data)


@implementer(IStreamServerEndpoint)
class _Capture:
    """
    A server endpoint that keeps the factory it is asked to listen with.
    """

    factory: Any = None

    def listen(self, factory: Any) -> Deferred[Any]:
        self.factory = factory
        return succeed(None)


def wrappingFactory(factory: Any) -> Any:
    """
    The factory with which Twisted's C{haproxy:} endpoint (its public
    C{proxyEndpoint}) wraps C{factory}.
    """
    capture = _Capture()
    proxyEndpoint(capture).listen(factory)
    return capture.factory


def samePlace(address: Any) -> Tuple[bytes, int]:
    """
    An IPv6 address and port, however the address is written (Twisted's
    parser writes it uncompressed).
    """
    return socket.inet_pton(socket.AF_INET6, address.host), address.port


def parsed(header: bytes) -> Tuple[IAddress, IAddress]:
    """
    The addresses Twisted's PROXY parser (its C{haproxy:} endpoint's
    wrapper) reads from C{header}, over a L{StringTransport} whose own
    addresses are 192.0.2.1:1 and 192.0.2.2:2.
    """
    seen: Deferred[Tuple[IAddress, IAddress]] = Deferred()
    wrapper = wrappingFactory(Factory.forProtocol(lambda: Seen(seen)))
    protocol = wrapper.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
    assert protocol is not None
    protocol.makeConnection(
        StringTransport(
            hostAddress=IPv4Address("TCP", "192.0.2.2", 2),
            peerAddress=IPv4Address("TCP", "192.0.2.1", 1),
        )
    )
    protocol.dataReceived(header + b"data")
    return SynchronousTestCase().successResultOf(seen)


class HeaderTests(SynchronousTestCase):
    """
    L{proxyHeader} makes headers that Twisted's parser reads back.
    """

    v4 = (IPv4Address("TCP", "203.0.113.7", 4242), IPv4Address("TCP", "10.0.0.1", 80))
    v6 = (
        IPv6Address("TCP", "2001:db8::7", 4242),
        IPv6Address("TCP", "2001:db8::1", 443),
    )
    unix = (UNIXAddress(b"/run/client.sock"), UNIXAddress(b"/run/proxy.sock"))

    def test_v1Text(self) -> None:
        """
        Version 1 is the text line of the specification.
        """
        self.assertEqual(
            proxyHeader("v1", *self.v4),
            b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 80\r\n",
        )
        self.assertEqual(
            proxyHeader("v1", *self.v6),
            b"PROXY TCP6 2001:db8::7 2001:db8::1 4242 443\r\n",
        )

    def test_v1RoundTrip(self) -> None:
        """
        Twisted reads IPv4 and IPv6 addresses back from version 1; a UNIX
        address, which version 1 cannot carry, is sent as unknown, in the
        only form HAProxy accepts.
        """
        self.assertEqual(parsed(proxyHeader("v1", *self.v4)), self.v4)
        self.assertEqual(parsed(proxyHeader("v1", *self.v6)), self.v6)
        self.assertEqual(proxyHeader("v1", *self.unix), b"PROXY UNKNOWN\r\n")

    def test_v2RoundTrip(self) -> None:
        """
        Twisted reads IPv4, IPv6 and UNIX addresses back from version 2.
        """
        for pair in (self.v4, self.unix):
            self.assertEqual(parsed(proxyHeader("v2", *pair)), pair)
        source, destination = parsed(proxyHeader("v2", *self.v6))
        self.assertEqual(samePlace(source), samePlace(self.v6[0]))
        self.assertEqual(samePlace(destination), samePlace(self.v6[1]))
        self.assertEqual(len(proxyHeader("v2", *self.v4)), 16 + 12)
        self.assertEqual(len(proxyHeader("v2", *self.v6)), 16 + 36)
        self.assertEqual(len(proxyHeader("v2", *self.unix)), 16 + 216)

    def test_v2Unknown(self) -> None:
        """
        Addresses of mixed or other families are sent with the LOCAL
        command (use the connection's addresses), as HAProxy sends them.
        """
        header = proxyHeader("v2", self.v4[0], self.v6[1])
        self.assertEqual(header[12:], b"\x20\x00\x00\x00")
        self.assertEqual(
            parsed(header),
            (IPv4Address("TCP", "192.0.2.1", 1), IPv4Address("TCP", "192.0.2.2", 2)),
        )

    def test_badVersion(self) -> None:
        """
        Another version is refused, by the function and by the factory.
        """
        self.assertRaises(ValueError, proxyHeader, "v3", *self.v4)
        self.assertRaises(ValueError, ProxyFactory, "h", 1, proxyHeader="v3")

    def test_sendFirstWithoutSocket(self) -> None:
        """
        A transport without a socket (TLS, a fake) is written to.
        """
        transport = StringTransport()
        sendFirst(transport, b"header", direct=True)
        self.assertEqual(transport.value(), b"header")

    def test_option(self) -> None:
        """
        C{--send-proxy} takes v1 or v2, and nothing else.
        """
        options = proxytap.Options()
        options.parseOptions(["-l", "tcp:1", "-c", "tcp:h:1", "--send-proxy", "v2"])
        self.assertEqual(options["send-proxy"], "v2")
        from twisted.python import usage

        self.assertRaises(
            usage.UsageError,
            proxytap.Options().parseOptions,
            ["-l", "tcp:1", "-c", "tcp:h:1", "--send-proxy", "v3"],
        )


class ParsedByTwistedTests(TestCase):
    """
    A L{ProxyFactory} sending PROXY to Twisted's C{haproxy:} server endpoint
    over real loopback connections, on both paths: the upstream sees the
    client's address, then the bytes both ways unchanged.
    """

    async def upstream(self) -> Tuple[int, Deferred[Tuple[IAddress, IAddress]]]:
        """
        Listen with C{haproxy:}; return the port, and a Deferred of what
        the first connection's wrapper reports (see L{Seen}).
        """
        seen: Deferred[Tuple[IAddress, IAddress]] = Deferred()
        port = await serverFromString(
            reactor, "haproxy:tcp:0:interface=127.0.0.1"
        ).listen(Factory.forProtocol(lambda: Seen(seen)))
        self.addCleanup(port.stopListening)
        return port.getHost().port, seen

    async def roundTrip(
        self, version: str, zeroCopy: bool, listen: str, client: Any
    ) -> Tuple[Any, Any, IAddress, IAddress]:
        """
        Proxy from C{listen} to a C{haproxy:} upstream; connect with
        C{client} (a function of the proxy's port giving a Deferred of a
        connected L{Echoed}); return the proxy's connection, the client,
        and what the upstream saw.
        """
        upstreamPort, seen = await self.upstream()
        factory = ProxyFactory(
            "127.0.0.1", upstreamPort, proxyHeader=version, zeroCopy=zeroCopy
        )
        connections: List[Any] = []
        build: Any = factory.buildProtocol

        def recording(addr: Any) -> Any:
            protocol = build(addr)
            connections.append(protocol.connection)
            return protocol

        factory.buildProtocol = recording  # type: ignore[method-assign]
        port = await serverFromString(reactor, listen).listen(factory)
        self.addCleanup(port.stopListening)
        echoed = await client(port.getHost())
        echoed.transport.write(b"after the header")
        peer, host = await seen
        got = await echoed.done
        self.assertEqual(got, b"after the header")
        await connections[0].done
        return connections[0], echoed, peer, host

    async def test_ipv4BothPathsBothVersions(self) -> None:
        """
        IPv4: the upstream sees the client's address and port and the
        proxy's, with either version, spliced or copied.
        """
        for version in ("v1", "v2"):
            for zeroCopy in (True, False):
                connection, client, peer, host = await self.roundTrip(
                    version,
                    zeroCopy,
                    "tcp:0:interface=127.0.0.1",
                    lambda address: connectEchoed(
                        TCP4ClientEndpoint(reactor, "127.0.0.1", address.port)
                    ),
                )
                self.assertEqual(peer, client.address)
                self.assertEqual(host, client.peerAddress)
                self.assertEqual(
                    connection.statistics.path, "spliced" if zeroCopy else "copied"
                )

    async def test_ipv6(self) -> None:
        """
        IPv6: the upstream sees the client's IPv6 address.
        """
        for version in ("v1", "v2"):
            _, client, peer, host = await self.roundTrip(
                version,
                True,
                r"tcp6:0:interface=\:\:1",
                lambda address: connectEchoed(
                    TCP6ClientEndpoint(reactor, "::1", address.port)
                ),
            )
            self.assertIsInstance(peer, IPv6Address)
            self.assertEqual(samePlace(peer), samePlace(client.address))
            self.assertEqual(samePlace(host), samePlace(client.peerAddress))

    async def test_unix(self) -> None:
        """
        UNIX: version 2 carries the client's socket path and the proxy's.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "proxy.sock")
        clientPath = os.path.join(directory, "client.sock")
        self.addCleanup(os.unlink, clientPath)

        def connect(address: Any) -> Deferred[Echoed]:
            # A client socket bound to a path of its own, so that it has an
            # address to send.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(clientPath)
            sock.connect(path)
            sock.setblocking(False)
            echoed = Echoed()
            reactor.adoptStreamConnection(
                sock.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: echoed)
            )
            sock.close()
            return echoed.made

        _, _, peer, host = await self.roundTrip("v2", True, f"unix:{path}", connect)
        self.assertEqual(peer, UNIXAddress(clientPath.encode()))
        self.assertEqual(host, UNIXAddress(path.encode()))


class Echoed(Protocol):
    """
    A client that collects what it gets back: C{done} fires with it once
    C{expected} bytes have arrived, and the client closes.
    """

    expected = len(b"after the header")

    def __init__(self) -> None:
        self.made: Deferred[Echoed] = Deferred()
        self.done: Deferred[bytes] = Deferred()
        self.data = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.address = self.transport.getHost()
        self.peerAddress = self.transport.getPeer()
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.expected and not self.done.called:
            assert self.transport is not None
            self.transport.loseConnection()
            self.done.callback(self.data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.callback(self.data)


async def connectEchoed(endpoint: Any) -> Echoed:
    echoed = Echoed()
    await connectProtocol(endpoint, echoed)
    return echoed


class _HAProxy(ProcessProtocol):
    """
    A HAProxy process: C{ended} fires when it exits.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class Answer(Protocol):
    """
    Sends an HTTP request and collects the whole answer.
    """

    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.address = self.transport.getHost()
        self.transport.write(b"GET / HTTP/1.0\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.done.callback(self.data)


class TwistdTests(TestCase):
    """
    C{twistd stream-proxy --send-proxy} and C{--listen haproxy:...} against
    real peers.
    """

    def haproxy(self) -> int:
        """
        Start HAProxy on a listening socket made here (so it is ready before
        HAProxy is), accepting PROXY and answering each HTTP request with
        the client address it read: C{"SRC SRC_PORT DST DST_PORT"}.
        """
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(64)
        port = listening.getsockname()[1]
        config = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
        self.addCleanup(os.unlink, config.name)
        with config:
            config.write(
                "defaults\n"
                "    mode http\n"
                "    timeout connect 5s\n"
                "    timeout client 30s\n"
                "    timeout server 30s\n"
                "frontend fe\n"
                "    bind fd@3 accept-proxy\n"
                "    http-request return status 200 content-type text/plain "
                'lf-string "%[src] %[src_port] %[dst] %[dst_port]"\n'
            )
        process = _HAProxy()
        transport = reactor.spawnProcess(
            process,
            "haproxy",
            ["haproxy", "-db", "-f", config.name],
            env=dict(os.environ),
            childFDs={0: "w", 1: "r", 2: "r", 3: listening.fileno()},
        )
        listening.close()

        def stop() -> Deferred[None]:
            if not process.ended.called:
                transport.signalProcess("TERM")
            return process.ended

        self.addCleanup(stop)
        return port

    async def test_haproxyReadsTheClientAddress(self) -> None:
        """
        HAProxy configured with C{accept-proxy} behind C{twistd stream-proxy
        --send-proxy v1} and C{v2} reads the client's address and port, and
        the proxy's, over IPv4 and IPv6.  From a UNIX listener, version 1
        says C{UNKNOWN} and HAProxy takes the connection's own addresses
        (it refuses version 2's UNIX family; see L{proxyHeader}).
        """
        upstream = self.haproxy()
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        unix = os.path.join(directory, "proxy-1.sock")
        cases = [
            ("v1", "tcp:0:interface=127.0.0.1", "127.0.0.1"),
            ("v2", "tcp:0:interface=127.0.0.1", "127.0.0.1"),
            ("v1", r"tcp6:0:interface=\:\:1", "::1"),
            ("v2", r"tcp6:0:interface=\:\:1", "::1"),
            ("v1", f"unix:{unix}", None),
        ]
        # Started together: each twistd takes a while to start.
        started = []
        for version, listen, _ in cases:
            started.append(
                twistd(
                    self,
                    [
                        "stream-proxy",
                        "--listen",
                        listen,
                        "--connect",
                        f"tcp:127.0.0.1:{upstream}",
                        "--send-proxy",
                        version,
                    ],
                    rb"ProxyFactory starting on (?:'[^']*proxy-)?(\d+)",
                )
            )
        for (version, _, host), (process, stop) in zip(cases, started):
            port = await process.port
            client = Answer()
            if host is None:
                endpoint: Any = UNIXClientEndpoint(reactor, unix)
            elif host == "::1":
                endpoint = TCP6ClientEndpoint(reactor, host, port)
            else:
                endpoint = TCP4ClientEndpoint(reactor, host, port)
            await connectProtocol(endpoint, client)
            answer = await client.done
            if host is None:
                # The proxy's own connection to HAProxy.
                expected = rb"127\.0\.0\.1 \d+ 127\.0\.0\.1 %d$" % (upstream,)
            else:
                me: Any = client.address
                expected = rb"%s %d %s %d$" % (
                    host.encode(),
                    me.port,
                    host.encode(),
                    port,
                )
            self.assertRegex(answer, expected, version)
            self.assertIn(b" 200 ", answer.split(b"\r\n", 1)[0])
            await stop()

    test_haproxyReadsTheClientAddress.skip = skipHAProxy  # type: ignore[attr-defined]

    async def test_acceptProxy(self) -> None:
        """
        C{--listen haproxy:tcp:...} accepts PROXY from a balancer in front
        (with Twisted's own endpoint): the bytes after the header are
        forwarded, and the connection is logged as the original client's.
        """
        upstream = reactor.listenTCP(
            0, Factory.forProtocol(lambda: Seen(Deferred())), interface="127.0.0.1"
        )
        self.addCleanup(upstream.stopListening)
        process, stop = twistd(
            self,
            [
                "stream-proxy",
                "--listen",
                "haproxy:tcp:0:interface=127.0.0.1",
                "--connect",
                f"tcp:127.0.0.1:{upstream.getHost().port}",
            ],
            rb"starting on (\d+)",
        )
        port = await process.port
        client = Echoed()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        assert client.transport is not None
        client.transport.write(
            b"PROXY TCP4 203.0.113.7 198.51.100.1 4242 443\r\nafter the header"
        )
        self.assertEqual(await client.done, b"after the header")
        await process.waitFor(rb"Proxied 203\.0\.113\.7:4242|IPv4Address\(.*203")
        await stop()
        self.assertRegex(process.output, rb"Proxied .*203\.0\.113\.7.*4242")
