"""
Tests for the random-integer server, L{twisted_streaming.randomintegers}.
"""

from __future__ import annotations

import random
import re
import resource
import socket
import struct
from collections import Counter
from typing import Any, List, Optional

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_streaming._transportinternals import unsentBytes
from twisted_streaming.randomintegers import (
    PROMPT,
    IntegerLines,
    RandomIntegerFactory,
    RandomIntegerProtocol,
)

reactor: Any = _globalReactor

BAD_LINES = [b"abc", b"-5", b"1e3", b"12 13", b"", b"\xd9\xa1\xd9\xa2", b"0x10", b"+3"]


def values(data: bytes) -> List[int]:
    """
    Parse C{%d\\r\\n} lines, checking every line ends in CRLF.
    """
    assert data.endswith(b"\r\n") or not data
    return [int(line) for line in data.split(b"\r\n")[:-1]]


class IntegerLinesTests(SynchronousTestCase):
    """
    L{IntegerLines} draws exact counts, uniformly, within the range.
    """

    def test_exactCountInRange(self) -> None:
        """
        C{lines(n)} returns exactly C{n} lines, all within the range, for
        ranges drawn through the table and through C{randrange}.
        """
        for low, high in [(0, 10000), (-3, 3), (7, 7), (0, 65535), (0, 10**12)]:
            lines = IntegerLines(low, high, random.Random(1))
            for n in (1, 2, 1000, 20001):
                got = values(lines.lines(n))
                self.assertEqual(len(got), n)
                self.assertTrue(all(low <= v <= high for v in got), (low, high))

    def test_zero(self) -> None:
        """
        No lines for a count of zero.
        """
        self.assertEqual(IntegerLines(0, 9, random.Random()).lines(0), b"")

    def test_reproducible(self) -> None:
        """
        The same seed gives the same integers.
        """
        a = IntegerLines(0, 10000, random.Random(42)).lines(5000)
        b = IntegerLines(0, 10000, random.Random(42)).lines(5000)
        c = IntegerLines(0, 10000, random.Random(43)).lines(5000)
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_badRange(self) -> None:
        """
        A minimum above the maximum is refused.
        """
        self.assertRaises(ValueError, IntegerLines, 5, 4, random.Random())

    def test_uniformOverDefaultRange(self) -> None:
        """
        Every value in [0, 10000] is equally likely: a chi-square test over
        two million draws passes, and values below 5530 (which 16 random bits
        modulo 10001 would favour by 7/6) get their fair share.
        """
        n = 2_000_000
        got = values(IntegerLines(0, 10000, random.Random(2026)).lines(n))
        counts = Counter(got)
        self.assertEqual(sorted(counts), list(range(10001)))
        expected = n / 10001
        chi2 = sum((counts[v] - expected) ** 2 / expected for v in range(10001))
        # Mean 10000, standard deviation about 141 for 10000 degrees of freedom.
        self.assertLess(chi2, 10000 + 6 * 141)
        low = sum(counts[v] for v in range(5530)) / n
        self.assertLess(abs(low - 5530 / 10001), 0.003)

    def test_uniformSmallRange(self) -> None:
        """
        A die is fair.
        """
        n = 600_000
        counts = Counter(values(IntegerLines(1, 6, random.Random(7)).lines(n)))
        for face in range(1, 7):
            self.assertLess(abs(counts[face] / n - 1 / 6), 0.003)

    def test_moduloBiasWouldBeCaught(self) -> None:
        """
        The test above can fail: plain 16 bits modulo 10001 is caught.
        """
        rng = random.Random(2026)
        raw = struct.unpack("<200000H", rng.randbytes(400_000))
        low = sum(1 for v in raw if v % 10001 < 5530) / len(raw)
        self.assertGreater(abs(low - 5530 / 10001), 0.03)


class ProtocolTests(SynchronousTestCase):
    """
    L{RandomIntegerProtocol} over a L{StringTransport}, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = RandomIntegerFactory(seed=3, maxCount=1000, reactor=self.clock)
        self.transport = StringTransport()
        protocol: Any = self.factory.buildProtocol(None)
        protocol.makeConnection(self.transport)
        self.protocol = protocol

    def send(self, line: bytes) -> bytes:
        self.transport.clear()
        self.protocol.dataReceived(line)
        self.clock.advance(0)
        return self.transport.value()

    def test_prompt(self) -> None:
        """
        A new client is asked how many integers it wants.
        """
        self.assertEqual(self.transport.value(), PROMPT)

    def test_badInputAndRetry(self) -> None:
        """
        Each bad line gets an C{error:} line and the prompt again, and the
        same connection can then ask properly.
        """
        for line in [*BAD_LINES, b"1001"]:
            reply = self.send(line + b"\r\n")
            self.assertTrue(reply.startswith(b"error: "), (line, reply))
            self.assertTrue(reply.endswith(b"\r\n" + PROMPT), reply)
            self.assertFalse(self.transport.disconnecting)
        reply = self.send(b"1000\r\n")
        self.assertEqual(len(values(reply)), 1000)
        self.assertTrue(self.transport.disconnecting)

    def test_errorSaysWhy(self) -> None:
        """
        The error names what was wrong.
        """
        self.assertIn(b"'abc'", self.send(b"abc\n"))
        self.assertIn(b"at most 1000", self.send(b"5000\n"))

    def test_lineFeedOnly(self) -> None:
        """
        A count ending in a bare line feed is accepted.
        """
        self.assertEqual(len(values(self.send(b" 7\n"))), 7)

    def test_zero(self) -> None:
        """
        A count of zero sends nothing and closes.
        """
        self.assertEqual(self.send(b"0\r\n"), b"")
        self.assertTrue(self.transport.disconnecting)

    def test_tooLong(self) -> None:
        """
        A line over 1 KiB gets an error and the connection is closed.
        """
        reply = self.send(b"1" * 2000)
        self.assertTrue(reply.startswith(b"error: line longer than 1024 bytes"))
        self.assertTrue(self.transport.disconnecting)

    def test_inputIgnoredWhileStreaming(self) -> None:
        """
        Lines sent after the count are ignored.
        """
        self.transport.clear()
        self.protocol.dataReceived(b"5\r\nabc\r\n7\r\n")
        self.clock.advance(0)
        self.assertEqual(len(values(self.transport.value())), 5)

    def test_batchedWrites(self) -> None:
        """
        Integers are written in batches of tens of KiB, not one per write.
        """
        writes: List[int] = []
        original = self.transport.write

        def write(data: bytes) -> None:
            writes.append(len(data))
            original(data)

        self.transport.write = write  # type: ignore[method-assign]
        self.factory.maxCount = 100_000
        self.send(b"100000\n")
        self.assertLessEqual(len(writes), 100_000 // 8192 + 1)
        self.assertGreater(min(writes[:-1]), 20_000)

    def test_factoryRefusesBadSettings(self) -> None:
        """
        The factory refuses an empty range and a negative maximum count.
        """
        self.assertRaises(ValueError, RandomIntegerFactory, 10, 9)
        self.assertRaises(ValueError, RandomIntegerFactory, maxCount=-1)


class _Client(Protocol):
    """
    Send requests; collect everything until the connection closes.
    """

    def __init__(self, request: bytes = b"", paused: bool = False) -> None:
        self.request = request
        self.paused = paused
        self.data = bytearray()
        self.prompted: Deferred[None] = Deferred()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        if self.request:
            self.transport.write(self.request)  # type: ignore[union-attr]
        if self.paused:
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if not self.prompted.called and PROMPT in self.data:
            self.prompted.callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.done.callback(bytes(self.data))


class _RecordingFactory(RandomIntegerFactory):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protocols: List[RandomIntegerProtocol] = []
        self.streaming: Optional[Deferred[RandomIntegerProtocol]] = None

    def buildProtocol(self, addr: Any) -> RandomIntegerProtocol:  # type: ignore[override]
        p = super().buildProtocol(addr)
        assert isinstance(p, RandomIntegerProtocol)
        self.protocols.append(p)
        return p

    def buildProducer(self, count: int) -> Any:
        producer = super().buildProducer(count)
        if self.streaming is not None:
            d, self.streaming = self.streaming, None
            reactor.callLater(0, d.callback, self.protocols[-1])
        return producer


class RealTCPTests(TestCase):
    """
    The server over real TCP connections on 127.0.0.1.
    """

    def setUp(self) -> None:
        self.factory = _RecordingFactory(maxCount=10**9)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def connect(self, client: _Client) -> Deferred[Any]:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)

        def cleanup(protocol: _Client) -> Any:
            def close() -> Deferred[bytes]:
                protocol.transport.abortConnection()  # type: ignore[union-attr]
                return protocol.done

            self.addCleanup(lambda: protocol.done if protocol.done.called else close())
            return protocol

        return connectProtocol(endpoint, client).addCallback(cleanup)

    async def test_everyBadInputThenAValidCount(self) -> None:
        """
        Over one real connection, every bad input gets an error and the
        prompt, and a valid count then gets exactly that many integers.
        """
        request = b"".join(line + b"\r\n" for line in BAD_LINES) + b"12345\r\n"
        client = _Client(request)
        await self.connect(client)
        data = await client.done
        self.assertEqual(data.count(b"error: "), len(BAD_LINES))
        self.assertEqual(data.count(PROMPT), len(BAD_LINES) + 1)
        got = values(data[data.rindex(PROMPT) + len(PROMPT) :])
        self.assertEqual(len(got), 12345)
        self.assertTrue(all(0 <= v <= 10000 for v in got))
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_manySimultaneousClients(self) -> None:
        """
        200 simultaneous clients each get exactly what they asked for.
        """
        clients = [_Client(b"%d\r\n" % (1000 + i,)) for i in range(200)]
        await gatherResults([self.connect(c) for c in clients])
        results = await gatherResults([c.done for c in clients])
        for i, data in enumerate(results):
            self.assertTrue(data.startswith(PROMPT))
            self.assertEqual(len(values(data[len(PROMPT) :])), 1000 + i)

    async def test_clientDisconnectsMidStream(self) -> None:
        """
        A client that disconnects mid-stream, cleanly or with a reset, stops
        its producer at once, and nothing is logged as an error.
        """
        for reset in (False, True):
            self.factory.streaming = Deferred()
            client = _Client(b"1000000000\r\n", paused=True)
            await self.connect(client)
            server = await self.factory.streaming
            assert server.producer is not None
            stopped: Deferred[None] = Deferred()
            server.producer.producingStopped = lambda d=stopped: d.callback(None)  # type: ignore[method-assign,misc]
            if reset:
                # Linger 0: close() sends a reset instead of a FIN.
                client.transport.getHandle().setsockopt(  # type: ignore[union-attr]
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            client.transport.loseConnection()  # type: ignore[union-attr]
            await stopped
            self.assertFalse(server.producer.producing)
            self.assertLess(server.producer.produced, 10**9)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_slowReaderBoundsServerBuffer(self) -> None:
        """
        A client that asks for 10**9 integers and does not read pauses its
        producer; the server buffers no more than a few hundred KiB for it and
        keeps serving other clients.
        """
        self.factory.streaming = Deferred()
        client = _Client(b"1000000000\r\n", paused=True)
        await self.connect(client)
        server = await self.factory.streaming
        producer = server.producer
        assert producer is not None
        paused: Deferred[None] = Deferred()

        def onPause() -> None:
            if not paused.called:
                paused.callback(None)

        producer.producingPaused = onPause  # type: ignore[method-assign]
        await paused
        transport = server.transport
        buffered = unsentBytes(transport)
        self.assertLess(buffered, 256 * 1024)
        self.assertLess(producer.bytesWritten, 64 * 1024 * 1024)
        # Everyone else is still served in full.
        other = _Client(b"5000\r\n")
        await self.connect(other)
        data = await other.done
        self.assertEqual(len(values(data[len(PROMPT) :])), 5000)
        self.assertTrue(producer.producing)

    async def test_newClientPromptedWhileAnotherStreams(self) -> None:
        """
        A new client gets its prompt while another client is streaming at
        full speed.
        """
        self.factory.streaming = Deferred()
        busy = _Client(b"1000000000\r\n")
        await self.connect(busy)
        server = await self.factory.streaming
        newcomer = _Client()
        await self.connect(newcomer)
        await newcomer.prompted
        assert server.producer is not None
        self.assertTrue(server.producer.producing)
        self.assertGreater(len(busy.data), 0)


class LimitsTests(SynchronousTestCase):
    """
    The random-integer server's idle timeout, connection limit and drain,
    over L{StringTransport}s on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = RandomIntegerFactory(
            seed=3, reactor=self.clock, idleTimeout=5, maxConnections=2
        )

    def connect(self) -> Any:
        transport = StringTransport()
        protocol: Any = self.factory.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, transport

    def end(self, protocol: Any, transport: StringTransport) -> None:
        """
        What the reactor does once a closing transport has gone.
        """
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(Exception("closed")))

    def test_idleWithoutRequest(self) -> None:
        """
        A client that sends no request line within the idle timeout gets an
        C{error:} line saying so and is closed; its data (even a partial
        line) keeps it alive until then; it is counted.
        """
        protocol, transport = self.connect()
        self.clock.advance(4)
        protocol.dataReceived(b"12")
        self.clock.advance(4)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(
            transport.value(), PROMPT + b"error: no request in 5 seconds\r\n"
        )
        self.end(protocol, transport)
        self.assertEqual(dict(self.factory.limits.errors), {"idle timeout": 1})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stalledReaderCutOff(self) -> None:
        """
        A client being sent integers that reads none of them for the idle
        timeout is cut off (aborted: its buffer is full of integers).
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"1000000\r\n")
        # The transport's buffer is full before the first batch.
        protocol.producer.pauseProducing()
        self.clock.advance(0)
        aborted: List[bool] = []
        transport.abortConnection = lambda: aborted.append(True)
        self.clock.advance(4.9)
        self.assertEqual(aborted, [])
        self.clock.advance(0.1)
        self.assertEqual(aborted, [True])
        protocol.connectionLost(Failure(Exception("aborted")))
        self.assertEqual(dict(self.factory.limits.errors), {"idle timeout": 1})

    def test_unreadEndCutOff(self) -> None:
        """
        A client sent all its integers that leaves the last of them unread
        (its connection still closing) is cut off after the idle timeout.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"10\r\n")
        self.clock.advance(0)
        self.assertTrue(transport.disconnecting)
        aborted: List[bool] = []
        transport.abortConnection = lambda: aborted.append(True)
        self.clock.advance(5)
        self.assertEqual(aborted, [True])
        protocol.connectionLost(Failure(Exception("aborted")))
        self.assertEqual(dict(self.factory.limits.errors), {"idle timeout": 1})

    def test_tooMany(self) -> None:
        """
        Beyond C{maxConnections}, a client gets an C{error:} line and is
        closed, and is counted; once one has gone, a new client is served.
        """
        first, firstTransport = self.connect()
        self.connect()
        _, transport = self.connect()
        self.assertEqual(
            transport.value(),
            b"error: too many connections (2 open), try again later\r\n",
        )
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.limits.refused, 1)
        first.dataReceived(b"0\r\n")
        self.end(first, firstTransport)
        _, transport = self.connect()
        self.assertEqual(transport.value(), PROMPT)
        self.clock.advance(60)

    def test_drain(self) -> None:
        """
        Draining, a client still to ask is told and closed; one being sent
        integers carries on to the end.
        """
        waiting, waitingTransport = self.connect()
        streaming, streamingTransport = self.connect()
        streaming.dataReceived(b"100000\r\n")
        streaming.producer.pauseProducing()
        self.factory.limits.drain()
        self.assertEqual(
            waitingTransport.value(), PROMPT + b"error: server shutting down\r\n"
        )
        self.end(waiting, waitingTransport)
        self.assertFalse(streamingTransport.disconnecting)
        streaming.producer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(len(values(streamingTransport.value()[len(PROMPT) :])), 100000)
        self.end(streaming, streamingTransport)
        self.assertEqual(dict(self.factory.limits.errors), {"shutdown": 1})

    def test_oneLogLine(self) -> None:
        """
        Each connection's end is logged once, with its integers, bytes and
        why it ended.
        """
        from twisted.logger import LogLevel, globalLogPublisher

        events: List[Any] = []
        observer: Any = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        protocol, transport = self.connect()
        protocol.dataReceived(b"10\r\n")
        self.clock.advance(0)
        self.end(protocol, transport)
        served = [e for e in events if e.get("log_format", "").startswith("Served")]
        self.assertEqual(len(served), 1)
        self.assertEqual(served[0]["log_level"], LogLevel.info)
        self.assertEqual((served[0]["integers"], served[0]["reason"]), (10, "done"))
        self.assertEqual(served[0]["size"], len(transport.value()) - len(PROMPT))


class FirstLine(Protocol):
    """
    Fires C{line} with the first line it receives (or what it had when the
    connection closed), and stays connected.
    """

    def __init__(self) -> None:
        self.data = b""
        self.line: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if b"\n" in self.data and not self.line.called:
            self.line.callback(self.data[: self.data.index(b"\n") + 1])

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.line.called:
            self.line.callback(self.data)
        self.lost.callback(None)


class ManyIdleClientsTests(TestCase):
    """
    A real C{twistd random-integers} with its default limits stays healthy
    when 5,000 clients connect at once and send nothing.
    """

    count = 5000

    def setUp(self) -> None:
        # Every client is a file descriptor here (twistd inherits the limit).
        before = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = self.count + 1024
        if before[0] < needed:
            hard = before[1]
            if hard != resource.RLIM_INFINITY and hard < needed:
                hard = needed  # Root (as in CI) may raise the hard limit too.
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, before)

    async def test_fiveThousandIdle(self) -> None:
        """
        5,000 clients that send nothing connect in five waves of 1,000 at
        once, and every one is accepted and answered (a backlog of 1,024:
        with Twisted's 50, most of a wave overflowed): the first 1,000 (the
        default limit) are prompted and held, each of the others is told
        there are too many connections and closed, and counted; then a new
        client is answered at once, and served as soon as one of the held
        clients leaves.

        (Waves, not 5,000 at once: beyond the backlog the kernel drops the
        final ACK of a handshake it answered with a SYN cookie, and a
        client that sends nothing then waits for ever, whatever the
        server does.)
        """
        from twisted_streaming.test.test_plugin import twistdRandomIntegers

        process, stop = twistdRandomIntegers(self)
        port = await process.port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        clients: List[FirstLine] = []
        lines: List[bytes] = []
        for _ in range(self.count // 1000):
            wave = [FirstLine() for _ in range(1000)]
            for client in wave:
                connectProtocol(endpoint, client)
            lines += await gatherResults([c.line for c in wave])
            clients += wave
        counts = Counter(
            "prompt" if line == PROMPT else line.split(b" (")[0] for line in lines
        )
        self.assertEqual(
            counts, {"prompt": 1000, b"error: too many connections": self.count - 1000}
        )
        refused = [c for c, line in zip(clients, lines) if line != PROMPT]
        await gatherResults([c.lost for c in refused])
        # Healthy: a new client is answered, and served once a slot frees.
        late = _Client(b"3\r\n")
        await connectProtocol(endpoint, late)
        self.assertTrue((await late.done).startswith(b"error: too many connections"))
        held = [c for c in clients if c not in refused]
        held[0].transport.loseConnection()  # type: ignore[union-attr]
        await held[0].lost
        await process.waitFor(rb"Served [^\n]*\(closed\)")
        served = _Client(b"3\r\n")
        await connectProtocol(endpoint, served)
        data = await served.done
        self.assertEqual(len(values(data[len(PROMPT) :])), 3)
        for client in held[1:]:
            client.transport.abortConnection()  # type: ignore[union-attr]
        await gatherResults([c.lost for c in held])
        await stop()
        self.assertEqual(
            len(re.findall(rb"Refusing ", process.output)),
            self.count - 1000 + 1,
        )
