"""
C{examples/websocket_random.py}: a push producer behind Autobahn WebSocket
connections, over real loopback TCP, with real Autobahn peers.
"""

from __future__ import annotations

import hashlib
import random
import re
from socket import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import provider

from twisted_streaming import ProducerStopped
from twisted_streaming._transportinternals import unsentBytes
from twisted_streaming.test.test_push import runTurn

from .helpers import loadExample, reactor, run, serve

ws = loadExample("websocket_random")

# Timeouts start Autobahn timers that outlive a cancel (txaio batches
# them), which would leave the reactor dirty; every wait here is on an
# event instead.
_NO_TIMEOUTS = {"openHandshakeTimeout": 0, "closeHandshakeTimeout": 0}

MiB = 1024 * 1024


def expectedDigest(seed: int, count: int, size: int) -> str:
    """
    The SHA-256 of what a server seeded with C{seed} sends for C{count}
    messages of C{size} bytes, computed without the server.
    """
    rng = random.Random(seed)
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(rng.randbytes(size))
    return digest.hexdigest()


def unsent(transport: Any) -> int:
    """
    The bytes a TCP transport holds that the kernel has not yet taken:
    what the sending process itself is holding for a slow reader.
    """
    return unsentBytes(transport)


def captureErrors(testCase: TestCase) -> List[Dict[str, Any]]:
    """
    Collect the log events at level warn or above, or with a failure, for
    the rest of the test.
    """
    errors: List[Dict[str, Any]] = []

    @provider(ILogObserver)
    def observe(event: Dict[str, Any]) -> None:
        level = event.get("log_level")
        name = getattr(level, "name", "")
        if (
            "log_failure" in event
            or event.get("isError")
            or name
            in (
                "warn",
                "error",
                "critical",
            )
        ):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return errors


class BinaryMessagesTests(TestCase):
    """
    The example's consumer, over a stand-in for Autobahn's protocol.
    """

    def test_closingStopsProducer(self) -> None:
        """
        Once Autobahn has left the open state (a connection it failed with a
        closing handshake refuses messages), a write stops the producer
        instead of sending, and the producer ends as stopped.
        """

        class Protocol:
            STATE_OPEN = 1
            state = STATE_OPEN
            sent: List[bytes] = []

            def __init__(self) -> None:
                self.transport = StringTransport()

            def sendMessage(self, payload: bytes, isBinary: bool) -> None:
                self.sent.append(payload)

        clock = Clock()
        protocol = Protocol()
        producer = ws.RandomMessages(1000, 65536, random.Random(1), reactor=clock)
        d = producer.startProducing(ws.BinaryMessages(protocol))
        runTurn(clock)
        self.assertGreater(len(protocol.sent), 0)
        self.assertTrue(producer.producing)
        protocol.state = 3
        sent = len(protocol.sent)
        runTurn(clock)
        self.assertEqual(len(protocol.sent), sent)
        self.assertFalse(producer.producing)
        self.failureResultOf(d, ProducerStopped)
        self.assertIsNone(protocol.transport.producer)


class _ServerProtocol(ws.RandomServerProtocol):  # type: ignore[name-defined]
    """
    The example's server protocol, watched: it records each connection and
    any binary message sent while the producer was paused, and the most the
    transport has held unsent.
    """

    writesWhilePaused = 0
    mostUnsent = 0
    producingAfterCloseFrame: Optional[bool] = None

    def onOpen(self) -> None:
        super().onOpen()
        self.factory.opened.append(self)
        waiting, self.factory.waitingForOpen = self.factory.waitingForOpen, []
        for d in waiting:
            d.callback(self)

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> Any:
        result = super().onCloseFrame(code, reasonRaw)
        # Autobahn has now stopped accepting messages and unregistered the
        # producer from the transport, which will therefore never stop it.
        if self.producer is not None:
            self.producingAfterCloseFrame = self.producer.producing
        return result

    def sendMessage(self, payload: bytes, isBinary: bool = False, **kw: Any) -> None:
        if isBinary and self.producer is not None and self.producer.paused:
            self.writesWhilePaused += 1
        super().sendMessage(payload, isBinary, **kw)
        self.mostUnsent = max(self.mostUnsent, unsent(self.transport))


class _Server:
    """
    The example's server factory on 127.0.0.1, in this process.
    """

    def __init__(self, testCase: TestCase, seed: int = 7) -> None:
        self.outcomes: List[Any] = []
        self._outcomeWaiters: Dict[int, Deferred[Any]] = {}
        factory = ws.RandomServerFactory(seed=seed, report=self._report)
        factory.protocol = _ServerProtocol
        factory.setProtocolOptions(**_NO_TIMEOUTS)
        factory.opened = []
        factory.waitingForOpen = []
        self.factory = factory
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        testCase.addCleanup(self.port.stopListening)
        self.url = f"ws://127.0.0.1:{self.port.getHost().port}"

    def _report(self, outcome: Any) -> None:
        self.outcomes.append(outcome)
        waiting = self._outcomeWaiters.pop(len(self.outcomes), None)
        if waiting is not None:
            waiting.callback(outcome)

    def outcome(self, number: int) -> Deferred[Any]:
        """
        Fire with the outcome of the C{number}th connection (from 1) once it
        has closed.
        """
        if number <= len(self.outcomes):
            return succeed(self.outcomes[number - 1])
        d: Deferred[Any] = Deferred()
        self._outcomeWaiters[number] = d
        return d

    async def open(self, count: int, size: int = 65536) -> Tuple[Any, Any]:
        """
        Connect a real Autobahn client asking for C{count} messages of
        C{size} bytes; return it and its server protocol once it is open.
        """
        opened = self.nextOpened()
        client = await connect(self.url, count, size)
        return client, await opened

    def nextOpened(self) -> Deferred[Any]:
        """
        Fire with the server protocol of the next connection to open.
        """
        d: Deferred[Any] = Deferred()
        self.factory.waitingForOpen.append(d)
        return d


class _Client(ws.RandomClientProtocol):  # type: ignore[name-defined]
    """
    The example's client protocol, with a Deferred that fires at the
    C{n}th binary message.
    """

    def __init__(self) -> None:
        super().__init__()
        self._at: Dict[int, Deferred[None]] = {}

    def messageNumber(self, n: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._at[n] = d
        return d

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        super().onMessage(payload, isBinary)
        d = self._at.pop(self.messages, None) if isBinary else None
        if d is not None:
            d.callback(None)


async def connect(url: str, count: int, size: int = 65536) -> Any:
    """
    Connect a real Autobahn client asking C{url} for C{count} messages of
    C{size} bytes; return its protocol once TCP is connected.
    """
    factory = ws.clientFactory(ws.requestURL(url, count, size), reactor)
    factory.setProtocolOptions(serverConnectionDropTimeout=0, **_NO_TIMEOUTS)
    client = _Client()
    client.factory = factory
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", factory.port)
    await connectProtocol(endpoint, client)
    return client


async def waitForStall(producer: Any, turns: int = 50, limit: int = 20000) -> int:
    """
    Let the reactor run until C{producer} has been paused, and has written
    nothing, for C{turns} reactor turns in a row (the reader's socket buffer
    is full); at most C{limit} turns.

    @return: The number of turns it took.
    """
    quiet, last = 0, producer.bytesWritten
    for turn in range(limit):
        await deferLater(reactor, 0, lambda: None)
        if producer.paused and producer.bytesWritten == last:
            quiet += 1
            if quiet >= turns:
                return turn
        else:
            quiet, last = 0, producer.bytesWritten
    raise AssertionError(f"{producer!r} never stalled in {limit} reactor turns")


class ExampleProcessTests(TestCase):
    """
    The example's server and client, as subprocesses.
    """

    async def test_serverStreamsToClient(self) -> None:
        """
        The client receives every message the server sends, and both report
        the same count, size and digest, which is the digest of the seeded
        random bytes.
        """
        count, size = 500, 65536
        server, port = await serve(
            self, "websocket_random.py", ["server", "--port", "0", "--seed", "3"]
        )
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
            ],
        )
        self.assertEqual(await client.ended, 0, client.err)
        expected = expectedDigest(3, count, size)
        self.assertEqual(
            client.out.decode(),
            f"received {count} messages, {count * size} bytes, sha256 {expected}\n",
        )
        line = await server.waitFor(b"connection 1: ")
        self.assertEqual(
            line.decode(),
            f"sent {count} messages, {count * size} bytes, sha256 {expected}",
        )

    async def test_serverSurvivesAVanishedClient(self) -> None:
        """
        A client that drops its connection mid-stream is reported as
        stopped, and the server goes on to serve the next client in full.
        """
        server, port = await serve(
            self, "websocket_random.py", ["server", "--port", "0", "--seed", "4"]
        )
        url = f"ws://127.0.0.1:{port}"
        client = await connect(url, 10**6)
        await client.messageNumber(20)
        client.transport.abortConnection()
        received = await client.done
        self.assertFalse(received.wasClean)
        line = (await server.waitFor(b"connection 1: ")).decode()
        match = re.fullmatch(
            r"stopped after (\d+) messages, (\d+) bytes \(the peer closed or went away\)",
            line,
        )
        assert match is not None, line
        self.assertGreaterEqual(int(match.group(1)), 20)
        self.assertLess(int(match.group(1)), 10**6)

        second = await connect(url, 100)
        received = await second.done
        self.assertTrue(received.matches(), received)
        self.assertEqual(received.sha256, expectedDigest(4, 100, 65536))
        line = (await server.waitFor(b"connection 2: ")).decode()
        self.assertIn(f"sent 100 messages, {100 * 65536} bytes", line)
        self.assertNotIn(b"Traceback", server.err)


class BackpressureTests(TestCase):
    """
    A reader that stops reading pauses the server's producer, and the
    server holds a bounded amount for it.
    """

    async def test_pausedReaderPausesProducer(self) -> None:
        """
        While the client's transport is paused the server's producer is
        paused, writes nothing more, and what it has written but the client
        has not read stays under 1 MiB (its own transport holding about one
        64 KiB buffer of it); once the client resumes, every message arrives
        intact.
        """
        errors = captureErrors(self)
        server = _Server(self)
        count, size = 1024, 65536  # 64 MiB: far more than any socket holds.
        client, protocol = await server.open(count, size)
        # Production starts on the next reactor turn.  Small kernel buffers
        # at both ends bound what is in flight as well as what the server
        # process holds.
        client.transport.getHandle().setsockopt(SOL_SOCKET, SO_RCVBUF, 128 * 1024)
        protocol.transport.getHandle().setsockopt(SOL_SOCKET, SO_SNDBUF, 128 * 1024)
        await client.messageNumber(1)
        client.transport.pauseProducing()
        producer = protocol.producer
        await waitForStall(producer)

        self.assertTrue(producer.paused)
        self.assertTrue(producer.producing)
        held = unsent(protocol.transport)
        inFlight = producer.bytesWritten - client.bytes
        self.assertLess(held, MiB)
        self.assertLess(protocol.mostUnsent, MiB)
        self.assertLess(inFlight, MiB)
        self.assertLess(producer.bytesWritten, count * size // 4)
        self.assertEqual(protocol.writesWhilePaused, 0)

        client.transport.resumeProducing()
        received = await client.done
        outcome = await server.outcome(1)
        self.assertIsNone(outcome.reason)
        self.assertEqual((received.messages, received.bytes), (count, count * size))
        self.assertTrue(received.matches(), received)
        self.assertEqual(received.sha256, expectedDigest(7, count, size))
        self.assertEqual(protocol.writesWhilePaused, 0)
        self.assertLess(protocol.mostUnsent, MiB)
        self.assertEqual(errors, [])

    async def test_vanishingWhilePaused(self) -> None:
        """
        A client that goes away while the server's producer is paused for it
        stops the producer, which is unregistered and reported as stopped.
        """
        errors = captureErrors(self)
        server = _Server(self)
        client, protocol = await server.open(10**6)
        await client.messageNumber(1)
        client.transport.pauseProducing()
        await waitForStall(protocol.producer)
        client.transport.abortConnection()
        await client.done
        outcome = await server.outcome(1)
        self.assertTrue(outcome.reason.check(ProducerStopped), outcome.reason)
        self.assertFalse(protocol.producer.producing)
        self.assertIsNone(protocol.transport.producer)
        self.assertEqual(errors, [])


class PeerGoesAwayTests(TestCase):
    """
    The server's producer ends cleanly when the peer closes or vanishes
    mid-stream, and the server carries on serving.
    """

    async def assertServesNext(self, server: _Server, number: int) -> None:
        client = await connect(server.url, 50, 4096)
        received = await client.done
        self.assertTrue(received.matches(), received)
        self.assertEqual(received.messages, 50)
        outcome = await server.outcome(number)
        self.assertIsNone(outcome.reason)
        self.assertEqual(outcome.sha256, received.sha256)

    async def test_peerVanishes(self) -> None:
        """
        A client that aborts its connection mid-stream stops the producer:
        its Deferred fails with L{ProducerStopped}, it is unregistered,
        nothing is logged as an error, and the next client is served.
        """
        errors = captureErrors(self)
        server = _Server(self)
        client, protocol = await server.open(10**6)
        # The example's own callbacks handle the producer's Deferred; the
        # outcome carries what it failed with.
        await client.messageNumber(10)
        client.transport.abortConnection()
        received = await client.done
        self.assertFalse(received.wasClean)
        outcome = await server.outcome(1)
        failed = outcome.reason
        assert failed is not None
        self.assertTrue(failed.check(ProducerStopped), failed)
        self.assertGreaterEqual(outcome.messages, 10)
        self.assertLess(outcome.messages, 10**6)
        self.assertFalse(protocol.producer.producing)
        self.assertIsNone(protocol.transport.producer)
        self.assertEqual(protocol.writesWhilePaused, 0)
        await self.assertServesNext(server, 2)
        self.assertEqual(errors, [])

    async def test_peerClosesHandshake(self) -> None:
        """
        A client that starts the WebSocket closing handshake mid-stream stops
        the producer before Autobahn refuses to send more: the producer is
        stopped and unregistered, the close is clean, nothing is logged as
        an error, and the next client is served.
        """
        errors = captureErrors(self)
        server = _Server(self)
        client, protocol = await server.open(10**6)
        await client.messageNumber(10)
        client.sendClose(1000)
        received = await client.done
        self.assertTrue(received.wasClean)
        self.assertIsNone(received.summary)
        outcome = await server.outcome(1)
        self.assertTrue(outcome.reason.check(ProducerStopped), outcome.reason)
        self.assertLess(outcome.messages, 10**6)
        self.assertIs(protocol.producingAfterCloseFrame, False)
        self.assertFalse(protocol.producer.producing)
        self.assertIsNone(protocol.transport.producer)
        await self.assertServesNext(server, 2)
        self.assertEqual(errors, [])

    async def test_peerBreaksProtocol(self) -> None:
        """
        A client that sends bytes that are not a WebSocket frame mid-stream
        makes Autobahn fail the connection; the producer stops (it is not an
        error of the stream), nothing is logged as an error, and the next
        client is served.
        """
        for failByDrop in (True, False):
            await self.breakProtocol(failByDrop)

    async def breakProtocol(self, failByDrop: bool) -> None:
        errors = captureErrors(self)
        server = _Server(self)
        # Autobahn fails a connection by dropping TCP, or (failByDrop=False)
        # by a closing handshake during which it refuses to send messages.
        server.factory.setProtocolOptions(failByDrop=failByDrop)
        client, protocol = await server.open(10**6)
        await client.messageNumber(10)
        # Reserved bits set and an unknown opcode: a protocol violation.
        client.transport.write(b"\xff\xff" + b"\x00" * 16)
        await client.done
        outcome = await server.outcome(1)
        self.assertTrue(outcome.reason.check(ProducerStopped), outcome.reason)
        self.assertLess(outcome.messages, 10**6)
        self.assertFalse(protocol.producer.producing)
        self.assertIsNone(protocol.transport.producer)
        await self.assertServesNext(server, 2)
        self.assertEqual(
            [e for e in errors if "log_failure" in e or e.get("isError")], []
        )

    async def test_badRequestRefused(self) -> None:
        """
        A request for a message size out of range is refused in the opening
        handshake, with no producer started, and the server carries on.
        """
        errors = captureErrors(self)
        server = _Server(self)
        client = await connect(server.url, 10, size=0)
        received = await client.done
        self.assertEqual(received.messages, 0)
        self.assertFalse(received.wasClean)
        self.assertEqual(server.factory.opened, [])
        self.assertEqual(server.outcomes, [])
        await self.assertServesNext(server, 1)
        # Autobahn logs the refusal itself, at its own levels: none an error.
        self.assertEqual(
            [e for e in errors if "log_failure" in e or e.get("isError")], []
        )
