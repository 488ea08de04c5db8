"""
C{examples/live_feed.py}: its server as a subprocess, broadcasting to 500
clients on 127.0.0.1 of which 10 never read, under each policy; and its
client as a subprocess.
"""

from __future__ import annotations

import re
from typing import Any, List, Tuple

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from .helpers import loadExample, reactor, run, serve

liveFeed: Any = loadExample("live_feed")

CLIENTS = 500
SLOW = 10
RECORDS = 96
SIZE = 8192
MAX_LAG = 32768
# Twisted's transports pause their producer past this many bytes buffered.
TRANSPORT_BUFFER = 65536
FEED = [
    "--records",
    str(RECORDS),
    "--size",
    str(SIZE),
    "--interval",
    "0.03",
    "--max-lag",
    str(MAX_LAG),
    "--sndbuf",
    "16384",
]
SUMMARY = re.compile(
    r"(\d+) records, (\d+) bytes, (\d+) clients: (\d+) complete, "
    r"(\d+) dropped (\d+) bytes, (\d+) disconnected; peak memory grew (\d+) KiB"
)


class Client(liveFeed.FeedClient):
    """
    The example's client; a slow one stops reading as soon as it is
    connected.  L{first} fires with its first record.
    """

    def __init__(self, slow: bool) -> None:
        super().__init__()
        self.slow = slow
        self.first: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if self.slow:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.records and not self.first.called:
            self.first.callback(None)


class LiveFeedTests(TestCase):
    """
    The live feed server with 500 clients, 10 of them not reading.
    """

    async def broadcast(
        self, policy: str, slow: int, clients: int = CLIENTS, feed: List[str] = FEED
    ) -> Tuple[Any, List[Client], List[Client]]:
        """
        Start the server with C{policy}, connect C{slow} clients that do not
        read and then the others (the feed starts with the last).

        @return: The server process, the readers, the slow clients.
        """
        server, port = await serve(
            self,
            "live_feed.py",
            [
                "server",
                "--port",
                "0",
                "--policy",
                policy,
                "--clients",
                str(clients),
                *feed,
            ],
        )
        connected = [Client(slow=number < slow) for number in range(clients)]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        for client in connected:
            await connectProtocol(endpoint, client)
            self.addCleanup(self.close, client)
        return server, connected[slow:], connected[:slow]

    def close(self, client: Client) -> Deferred[None]:
        if not client.lost.called:
            client.transport.abortConnection()
        return client.lost

    async def finished(self, server: Any) -> Tuple[int, ...]:
        """
        Wait for the server's summary: its numbers.
        """
        line = (await server.waitFor(b"feed finished: ")).decode()
        match = SUMMARY.fullmatch(line)
        assert match is not None, line
        return tuple(map(int, match.groups()))

    async def assertAllReceived(self, clients: List[Client]) -> None:
        await gatherResults([c.lost for c in clients])
        expected = RECORDS * (12 + SIZE)
        for client in clients:
            self.assertEqual(client.errors, [])
            self.assertEqual(
                (client.records, client.missing, client.bytes), (RECORDS, 0, expected)
            )

    async def received(self, clients: List[Client], cutOff: bool = False) -> int:
        """
        Wait until C{clients} are closed; check every record each got was
        whole and in order.

        @param cutOff: Allow a record cut off by the end of the connection
            (closed at once, under the disconnect policy).
        @return: The records they got, in all.
        """
        await gatherResults([c.lost for c in clients])
        for client in clients:
            errors = [e for e in client.errors if not (cutOff and "cut off" in e)]
            self.assertEqual(errors, [])
        return sum(c.records for c in clients)

    async def test_slowClientsDoNotHoldUpTheOthers(self) -> None:
        """
        Under C{drop} and C{disconnect}, the 490 readers get at least 0.9 of
        the records they get with no slow client at all (every one, on a
        machine that keeps up), while the 10 that do not read get whole
        records up to their lag and miss the rest (drop) or are closed
        (disconnect).
        """
        readers = CLIENTS - SLOW
        server, clients, _ = await self.broadcast("drop", 0, readers)
        summary = await self.finished(server)
        base = await self.received(clients)
        self.assertEqual(summary[:3], (RECORDS, RECORDS * (12 + SIZE), readers))
        self.assertGreaterEqual(base, 0.9 * readers * RECORDS)
        for policy in ("drop", "disconnect"):
            server, clients, slow = await self.broadcast(policy, SLOW)
            summary = await self.finished(server)
            self.assertGreaterEqual(await self.received(clients), 0.9 * base, policy)
            dropping, disconnected = summary[4], summary[6]
            self.assertGreaterEqual(
                dropping if policy == "drop" else disconnected, SLOW, policy
            )
            for client in slow:
                client.transport.resumeProducing()
            await self.received(slow, cutOff=policy == "disconnect")
            for client in slow:
                # Whole records, no more than its lag and buffers allowed.
                self.assertLess(client.records, RECORDS // 2)
            self.assertEqual(await server.ended, 0)

    async def test_slowClientsMemoryBounded(self) -> None:
        """
        With 10 clients that do not read, and 20 that do, the server's
        memory grows by no more than the slow clients' C{maxLag} and
        transport buffers (and a record each), and 2 MiB, beyond what it
        grows by with no slow client, under C{drop} and C{disconnect}:
        far less than the 4 MiB of the feed each slow client does not
        take.
        """
        records = 512
        feed = [*FEED, "--records", str(records), "--interval", "0.002"]
        server, clients, _ = await self.broadcast("drop", 0, 20, feed)
        baseGrowth = (await self.finished(server))[7]
        await self.received(clients)
        bound = SLOW * (MAX_LAG + TRANSPORT_BUFFER + SIZE + 12) // 1024 + 2048
        for policy in ("drop", "disconnect"):
            server, clients, slow = await self.broadcast(policy, SLOW, 30, feed)
            growth = (await self.finished(server))[7]
            self.assertLessEqual(growth, baseGrowth + bound, policy)
            for client in slow:
                client.transport.resumeProducing()
            await self.received(clients + slow, cutOff=policy == "disconnect")
            self.assertLess(max(c.records for c in slow), records // 8)

    async def test_pauseDeliversEverythingToEveryone(self) -> None:
        """
        Under C{pause}, the feed waits for the clients that do not read;
        once they read, all 500 get every record.
        """
        server, readers, slow = await self.broadcast("pause", SLOW)
        await gatherResults([c.first for c in readers])
        # Held back: the slow clients cannot take more than their lag.
        self.assertLess(max(c.records for c in readers), RECORDS // 2)
        for client in slow:
            client.transport.resumeProducing()
        summary = await self.finished(server)
        self.assertEqual(summary[2:7], (CLIENTS, CLIENTS, 0, 0, 0))
        await self.assertAllReceived(readers + slow)

    async def test_clientExample(self) -> None:
        """
        The client example prints what it received: every record, none
        missing.
        """
        server, port = await serve(
            self,
            "live_feed.py",
            ["server", "--port", "0", "--clients", "2", *FEED],
        )
        clients = [
            run("live_feed.py", ["client", "--port", str(port)]) for _ in range(2)
        ]
        for client in clients:
            self.assertEqual(await client.ended, 0, client.err)
            self.assertEqual(
                client.out.decode().strip(),
                f"received {RECORDS} records, {RECORDS * (12 + SIZE)} bytes, 0 missing",
            )
        summary = await self.finished(server)
        self.assertEqual(summary[2:7], (2, 2, 0, 0, 0))
