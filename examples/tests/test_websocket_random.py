"""
C{examples/websocket_random.py}: its server and client as subprocesses, the
server against a client written with the C{websockets} library, and the
client against a server that stops reading or goes away.
"""

from __future__ import annotations

import re
import sys
from typing import Any, List

import psutil
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_streaming.test.test_websocket_interop import WebsocketsPeer, randomMessages

from .helpers import reactor, run, serve

MiB = 1024 * 1024


class ExampleTests(TestCase):
    """
    The example's server and client, as a user runs them.
    """

    async def test_clientStreamsToServer(self) -> None:
        """
        Everything the client sends arrives intact, as many messages or as
        one: both print the digest of the seeded random bytes, and the
        server sends its running digest back after each batch.
        """
        server, port = await serve(
            self,
            "websocket_random.py",
            ["server", "--port", "0", "--batch", str(4 * MiB)],
        )
        count, size = 200, 65536
        sha256, total = randomMessages(5, count, size)
        for number, extra, messages in ((1, [], count), (2, ["--one-message"], 1)):
            client = run(
                "websocket_random.py",
                [
                    "client",
                    "--url",
                    f"ws://127.0.0.1:{port}",
                    "--count",
                    str(count),
                    "--size",
                    str(size),
                    "--seed",
                    "5",
                    *extra,
                ],
            )
            self.assertEqual(await client.ended, 0, client.err)
            lines = client.out.decode().splitlines()
            self.assertEqual(
                lines[-1], f"sent {messages} messages, {total} bytes, sha256 {sha256}"
            )
            if not extra:
                # 200 messages of 64 KiB: a digest after each 4 MiB.
                self.assertEqual(len(lines), 1 + 3)
                self.assertTrue(
                    lines[0].startswith(f"server: {4 * MiB} bytes: sha256 ")
                )
            line = await server.waitFor(b"connection %d: " % (number,))
            self.assertEqual(
                line.decode(),
                f"received {messages} messages, {total} bytes, sha256 {sha256}",
            )
        self.assertNotIn(b"Traceback", server.err)

    async def test_serverWithWebsocketsClient(self) -> None:
        """
        A client written with the C{websockets} library gets the same
        service.
        """
        server, port = await serve(
            self,
            "websocket_random.py",
            ["server", "--port", "0", "--batch", str(16 * MiB)],
        )
        count, size = 300, 65536
        peer = await WebsocketsPeer.connect(
            self, f"ws://127.0.0.1:{port}", [count, size, 9]
        )
        ended = await peer.ended()
        sha256, total = randomMessages(9, count, size)
        self.assertEqual(
            (ended.messages, ended.bytes, ended.sha256), (count, total, sha256)
        )
        line = await server.waitFor(b"connection 1: ")
        self.assertEqual(
            line.decode(), f"received {count} messages, {total} bytes, sha256 {sha256}"
        )


class _StallingServer(WebSocketServerProtocol):
    """
    Reads a few messages, then stops reading.
    """

    transport: Any

    def onOpen(self) -> None:
        self.factory.opened.callback(self)
        self.messages = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages += 1
        if self.messages == 10:
            self.transport.pauseProducing()
            self.factory.stalled.callback(None)


class ClientBackpressureTests(TestCase):
    """
    The example's client against a server that stops reading.
    """

    async def test_stalledServerHoldsTheClient(self) -> None:
        """
        While the server reads nothing, the client's memory stops growing,
        far short of what it has left to send; when the server goes away,
        the client says so and exits, with no traceback.
        """
        factory: Any = WebSocketServerFactory()
        factory.protocol = _StallingServer
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        factory.opened, factory.stalled = Deferred(), Deferred()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        count, size = 4096, 65536  # 256 MiB
        client = run(
            "websocket_random.py",
            [
                "client",
                "--url",
                f"ws://127.0.0.1:{port.getHost().port}",
                "--count",
                str(count),
                "--size",
                str(size),
            ],
        )
        self.addCleanup(client.stop)
        protocol = await factory.opened
        await factory.stalled
        process = psutil.Process(client.transport.pid)  # type: ignore[union-attr]
        samples: List[int] = []
        # Until the client has stopped growing (its sends held by TCP), over
        # a bounded number of reactor turns.
        for _ in range(200_000):
            await deferLater(reactor, 0, lambda: None)
            samples.append(process.memory_info().rss)
            if len(samples) > 2000 and samples[-1] == samples[-2000]:
                break
        grown = (max(samples) - samples[0]) / MiB
        self.assertLess(grown, 32, f"the client grew by {grown:.0f} MiB")
        self.assertLess(protocol.messages, 20)
        protocol.transport.abortConnection()
        self.assertEqual(await client.ended, 1)
        self.assertRegex(
            client.err.decode(), r"stopped after \d+ bytes: the server went away"
        )
        self.assertNotIn(b"Traceback", client.err)


if not re.match(r"linux", sys.platform):  # pragma: no cover
    ClientBackpressureTests.skip = "reads the client's memory through /proc"
