"""
Tests for L{twisted_streaming.ReusePortServerEndpoint}, the C{reuseport:}
endpoint string, and C{--reuse-port} on two real twistd processes.
"""

from __future__ import annotations

import errno
import re
from typing import Any, List

from twisted.internet import reactor as _globalReactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
    serverFromString,
)
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import ReusePortServerEndpoint
from twisted_streaming._reuseport import reusePortDescription
from twisted_streaming.randomintegers import PROMPT
from twisted_streaming.tap import randomintegers as randomtap
from twisted_streaming.tap import streamproxy as proxytap
from twisted_streaming.test.test_plugin import twistd
from twisted_streaming.test.test_randomintegers import _Client, values

reactor: Any = _globalReactor


class Counting(Protocol):
    """
    Counts its factory's connections.
    """

    def connectionMade(self) -> None:
        self.factory.made += 1


def countingFactory() -> Any:
    factory: Any = Factory.forProtocol(Counting)
    factory.made = 0
    return factory


class EndpointTests(TestCase):
    """
    L{ReusePortServerEndpoint} over real sockets.
    """

    def test_interface(self) -> None:
        """
        It provides C{IStreamServerEndpoint}.
        """
        verifyObject(IStreamServerEndpoint, ReusePortServerEndpoint(reactor, 0))

    async def listen(self, description: str, factory: Factory) -> Any:
        port = await serverFromString(reactor, description).listen(factory)
        self.addCleanup(port.stopListening)
        return port

    async def test_twoListenersShareOnePort(self) -> None:
        """
        Two C{reuseport:} listeners bind one port, and the kernel gives each
        a share of 64 connections.
        """
        first, second = countingFactory(), countingFactory()
        port = await self.listen("reuseport:0:interface=127.0.0.1", first)
        number = port.getHost().port
        other = await self.listen(f"reuseport:{number}:interface=127.0.0.1", second)
        self.assertEqual(other.getHost().port, number)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", number)
        for _ in range(64):
            client: Any = await connectProtocol(endpoint, Protocol())
            client.transport.loseConnection()
        # Each connection was accepted by one of them before the client
        # connected; a few may not have been reported by the reactor yet.
        made: Any = (first.made, second.made)
        self.assertGreater(made[0], 0)
        self.assertGreater(made[1], 0)

    async def test_refusedBesideAnOrdinaryListener(self) -> None:
        """
        A port already held by a listener without SO_REUSEPORT is refused
        (the endpoint's Deferred fails with C{EADDRINUSE}).
        """
        plain = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(plain.stopListening)
        endpoint = ReusePortServerEndpoint(
            reactor, plain.getHost().port, interface="127.0.0.1"
        )
        with self.assertRaises(OSError) as caught:
            await endpoint.listen(Factory.forProtocol(Protocol))
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)

    async def test_ipv6(self) -> None:
        """
        An IPv6 C{interface=} makes an IPv6 listener.
        """
        port = await self.listen(
            r"reuseport:0:interface=\:\:1", Factory.forProtocol(Protocol)
        )
        self.assertEqual(port.getHost().host, "::1")


class DescriptionTests(SynchronousTestCase):
    """
    L{reusePortDescription} and C{--reuse-port} rewrite C{tcp:} endpoints.
    """

    def test_rewrite(self) -> None:
        """
        C{tcp:} keeps its arguments; C{tcp6:} listens on every IPv6 address
        unless it names one; other kinds are not rewritten.
        """
        self.assertEqual(
            reusePortDescription("tcp:80:interface=127.0.0.1"),
            "reuseport:80:interface=127.0.0.1",
        )
        self.assertEqual(
            reusePortDescription("tcp6:80"), r"reuseport:80:interface=\:\:"
        )
        self.assertEqual(
            reusePortDescription(r"tcp6:80:interface=\:\:1"),
            r"reuseport:80:interface=\:\:1",
        )
        self.assertEqual(
            reusePortDescription("haproxy:tcp:80:backlog=9"),
            "haproxy:reuseport:80:backlog=9",
        )
        self.assertIsNone(reusePortDescription("unix:/tmp/x"))
        self.assertIsNone(reusePortDescription("haproxy:unix:/tmp/x"))

    def test_options(self) -> None:
        """
        C{--reuse-port} makes both services' TCP listeners C{reuseport:}
        ones, with the default backlog; it refuses any other endpoint.
        """
        options = randomtap.Options()
        options.parseOptions(["--port", "tcp:1234", "--reuse-port"])
        self.assertEqual(options["port"], "reuseport:1234:backlog=1024")
        proxyOptions = proxytap.Options()
        proxyOptions.parseOptions(["-l", "tcp:80", "-c", "tcp:h:1", "--reuse-port"])
        self.assertEqual(proxyOptions["listen"], "reuseport:80:backlog=1024")
        proxyOptions = proxytap.Options()
        proxyOptions.parseOptions(
            ["-l", "haproxy:tcp:80", "-c", "tcp:h:1", "--reuse-port"]
        )
        self.assertEqual(proxyOptions["listen"], "haproxy:reuseport:80:backlog=1024")
        for args in (
            ["--port", "unix:/tmp/x", "--reuse-port"],
            ["--port", "systemd:domain=INET:index=0", "--reuse-port"],
        ):
            self.assertRaises(usage.UsageError, randomtap.Options().parseOptions, args)


class TwistdTests(TestCase):
    """
    Two real twistd processes share one port with C{--reuse-port}.
    """

    async def test_twoProcessesBothServe(self) -> None:
        """
        Two C{twistd random-integers --reuse-port} processes listen on one
        port, and of 60 clients there, each process serves some (each logs
        the clients it served); every client gets its integers.
        """
        args = ["random-integers", "--reuse-port", "--seed", "5"]
        first, _ = twistd(
            self,
            [*args, "--port", "tcp:0:interface=127.0.0.1"],
            rb"RandomIntegerFactory starting on (\d+)",
        )
        number = await first.port
        second, _ = twistd(
            self,
            [*args, "--port", f"tcp:{number}:interface=127.0.0.1"],
            rb"RandomIntegerFactory starting on (\d+)",
        )
        self.assertEqual(await second.port, number)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", number)
        clients: List[_Client] = []
        for _ in range(60):
            client = _Client(b"10\r\n")
            clients.append(client)
            await connectProtocol(endpoint, client)
            await client.done
        for client in clients:
            self.assertEqual(len(values(bytes(client.data[len(PROMPT) :]))), 10)
        # Each logs the clients it served by the time it has stopped.
        for process in (first, second):
            process.signal()
            await process.ended
        served = [
            len(re.findall(rb"Served [^\n]*\(done\)", process.output))
            for process in (first, second)
        ]
        self.assertEqual(sum(served), 60, served)
        self.assertGreater(min(served), 0, served)
