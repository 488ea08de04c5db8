"""
L{twisted_streaming.websocket} over real loopback TCP against independent
peers: a client and a server written with the C{websockets} library
(asyncio, in a subprocess: C{_wspeer}), and Autobahn ones in this process.

Each scenario runs four ways: this package's server against each peer's
client, and its client against each peer's server.  Sending: messages
arrive intact; a peer that stops reading leaves the sender holding at most
the high water mark plus one message; a peer that vanishes, closes cleanly
or breaks the protocol mid-stream stops the producer, with no error
logged.  Receiving: a consumer that pauses stops the peer sending, and
everything arrives intact.  One message of many megabytes goes out frame
by frame with bounded memory.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from socket import SO_SNDBUF, SOL_SOCKET
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer, provider

from twisted_streaming import BasePushProducer, IFinishableConsumer, ProducerStopped
from twisted_streaming.test._extras import missing, skipTLS

skipAutobahn = missing("autobahn")
skipWebsockets = skipAutobahn or missing("websockets")
skipWss = skipWebsockets or skipTLS

if skipTLS is None:
    from cryptography.hazmat.primitives import serialization
    from twisted.internet.ssl import (
        Certificate,
        CertificateOptions,
        optionsForClientTLS,
    )

    from twisted_streaming.test.test_faults import selfSigned

if skipAutobahn is None:
    from autobahn.twisted.websocket import (
        WebSocketClientFactory,
        WebSocketClientProtocol,
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )

    from twisted_streaming.websocket import (
        MessageConsumer,
        MessageSource,
        MessageStream,
        WebSocketClosed,
    )
else:  # pragma: no cover - the classes below are skipped
    WebSocketClientProtocol = WebSocketServerProtocol = object  # type: ignore[misc, assignment]

reactor: Any = _globalReactor

KiB = 1024
#: The high water mark the senders here use; the transport's own limit is
#: 64 KiB.
HIGH_WATER = 128 * KiB

# Autobahn's timeouts start timers that outlive a test (txaio batches
# them); every wait here is on an event instead.
_NO_TIMEOUTS = {"openHandshakeTimeout": 0, "closeHandshakeTimeout": 0}


def randomMessages(seed: int, count: int, size: int) -> Tuple[str, int]:
    """
    The SHA-256 and size of C{count} messages of C{size} bytes from
    C{random.Random(seed)}, as both sides here make them.
    """
    rng = random.Random(seed)
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(rng.randbytes(size))
    return digest.hexdigest(), count * size


def captureErrors(testCase: TestCase) -> List[Dict[str, Any]]:
    """
    Collect, for the rest of the test, the log events that carry a failure
    or are errors: a traceback in a server's log.
    """
    errors: List[Dict[str, Any]] = []

    @provider(ILogObserver)
    def observe(event: Dict[str, Any]) -> None:
        level = getattr(event.get("log_level"), "name", "")
        if (
            "log_failure" in event
            or event.get("isError")
            or level
            in (
                "error",
                "critical",
            )
        ):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return errors


async def turns(n: int = 1) -> None:
    for _ in range(n):
        await deferLater(reactor, 0, lambda: None)


async def waitForStall(sender: Any, quiet: int = 50, limit: int = 20000) -> None:
    """
    Run the reactor until C{sender}'s producer is paused and has written
    nothing for C{quiet} turns in a row; at most C{limit} turns.
    """
    producer = sender.producer
    count, last = 0, producer.bytesWritten
    for _ in range(limit):
        await turns()
        if producer.paused and producer.bytesWritten == last:
            count += 1
            if count >= quiet:
                return
        else:
            count, last = 0, producer.bytesWritten
    raise AssertionError(f"{producer!r} never stalled in {limit} turns")


# This package's side


class RandomMessages(BasePushProducer):
    """
    C{count} messages of C{size} bytes from C{random.Random(seed)}.
    """

    def __init__(self, count: int, size: int, seed: int) -> None:
        super().__init__()
        self.count = count
        self.size = size
        self.rng = random.Random(seed)

    def produce(self) -> Optional[bytes]:
        if self.chunksWritten >= self.count:
            return None
        return self.rng.randbytes(self.size)


class Sender:
    """
    A producer of random messages sent through a L{MessageConsumer} (or a
    L{MessageStream}, as one message), which closes (1000) when done;
    records the most bytes ever queued after a write, and writes after the
    consumer ended.
    """

    def __init__(self, protocol: Any, count: int, size: int, stream: bool = False):
        kind = MessageStream if stream else MessageConsumer
        self.consumer = kind(
            protocol, closeCode=1000, highWater=HIGH_WATER, lowWater=32 * KiB
        )
        self.producer = RandomMessages(count, size, seed=count)
        self.mostQueued = 0
        self.writesAfterEnd = 0
        write = self.consumer.write

        def watched(data: bytes) -> None:
            if not self.consumer.producing:
                self.writesAfterEnd += 1
            write(data)
            self.mostQueued = max(self.mostQueued, self.consumer.queued)

        self.consumer.write = watched  # type: ignore[method-assign, assignment]
        self.done = self.producer.startProducing(self.consumer)


@implementer(IFinishableConsumer)
class SlowSink:
    """
    A consumer that hashes what it is given and that the test pauses.
    """

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.messages = 0
        self.bytes = 0
        self.producer: Any = None
        self.finished = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.messages += 1
        self.bytes += len(data)

    def finish(self) -> None:
        self.finished = True


class Receiver:
    """
    A L{MessageSource} on a connection, delivering to a L{SlowSink}.
    """

    def __init__(self, protocol: Any) -> None:
        self.source = MessageSource(protocol, highWater=HIGH_WATER, lowWater=32 * KiB)
        self.sink = SlowSink()
        self.done = self.source.startProducing(self.sink)
        self.mostHeld = 0


class OurServerProtocol(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.factory.opened(self)


class OurClientProtocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.opened(self)


# The peers


class PeerEnded:
    """
    What a peer received (or sent), and the close code it saw.
    """

    def __init__(self, messages: int, size: int, sha256: str, code: Any) -> None:
        self.messages = messages
        self.bytes = size
        self.sha256 = sha256
        self.code = code


class _PeerProcess(ProcessProtocol):
    """
    A C{_wspeer} subprocess: lines out, commands in.
    """

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.err = b""
        self._buffer = b""
        self._waiting: List[Tuple[str, Deferred[str]]] = []
        self.exited: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            text = line.decode()
            self.lines.append(text)
            for prefix, d in list(self._waiting):
                if text.startswith(prefix):
                    self._waiting.remove((prefix, d))
                    d.callback(text)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def waitFor(self, prefix: str) -> Deferred[str]:
        for line in self.lines:
            if line.startswith(prefix):
                return succeed(line)
        d: Deferred[str] = Deferred()
        self._waiting.append((prefix, d))
        return d

    def processEnded(self, reason: Failure) -> None:
        for prefix, d in self._waiting:
            d.errback(AssertionError(f"peer exited before {prefix!r}: {self.err!r}"))
        self._waiting = []
        self.exited.callback(None)


class WebsocketsPeer:
    """
    A peer written with C{websockets}, in a subprocess.
    """

    name = "websockets"

    def __init__(self, testCase: TestCase, process: _PeerProcess) -> None:
        self.testCase = testCase
        self.process = process

    @classmethod
    def start(cls, testCase: TestCase, args: List[str]) -> WebsocketsPeer:
        process = _PeerProcess()
        transport = reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, "-m", "twisted_streaming.test._wspeer", *args],
            env=dict(os.environ),
        )

        def stop() -> Deferred[None]:
            if not process.exited.called:
                transport.signalProcess("KILL")
            return process.exited

        testCase.addCleanup(stop)
        return cls(testCase, process)

    @classmethod
    async def serve(
        cls, testCase: TestCase, send: Optional[List[int]], pem: Optional[str] = None
    ) -> Tuple[Any, str]:
        peer = cls.start(testCase, ["server", *cls._options(send, pem)])
        port = (await peer.process.waitFor("port ")).split()[1]
        return peer, f"{'wss' if pem else 'ws'}://127.0.0.1:{port}"

    @classmethod
    async def connect(
        cls,
        testCase: TestCase,
        url: str,
        send: Optional[List[int]],
        pem: Optional[str] = None,
    ) -> Any:
        return cls.start(testCase, ["client", url, *cls._options(send, pem)])

    @staticmethod
    def _options(send: Optional[List[int]], pem: Optional[str]) -> List[str]:
        sending = ["--send", *map(str, send)] if send else []
        return sending + (["--tls", pem] if pem else [])

    def command(self, line: str) -> None:
        self.process.transport.write(line.encode() + b"\n")  # type: ignore[union-attr]

    async def reached(self, n: int) -> None:
        self.command(f"reach {n}")
        await self.process.waitFor(f"reached {n}")

    async def status(self) -> Tuple[int, int]:
        self.process.lines = [
            x for x in self.process.lines if not x.startswith("status")
        ]
        self.command("status")
        _, messages, size = (await self.process.waitFor("status ")).split()
        return int(messages), int(size)

    async def ended(self) -> PeerEnded:
        _, messages, size, sha256, code = (await self.process.waitFor("ended ")).split()
        await self.process.exited
        self.testCase.assertNotIn(b"Traceback", self.process.err)
        return PeerEnded(int(messages), int(size), sha256, int(code))


class _AutobahnPeerMixin:
    """
    An Autobahn peer in this process: receives frame by frame, hashing, or
    sends random messages as fast as its transport takes them.
    """

    factory: Any
    transport: Any
    state: Any
    STATE_OPEN: Any
    sendMessage: Any
    sendClose: Any

    def onOpen(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.hash = hashlib.sha256()
        self.size = 0
        self.waiting: Dict[int, Deferred[None]] = {}
        self.factory.peer.protocol = self
        if self.factory.send:
            self.paused = False
            count, _, seed = self.factory.send
            self.toSend = count
            self.rng = random.Random(seed)
            self.transport.registerProducer(self, True)
            reactor.callLater(0, self.sendSome)

    # Sending, as a careful Autobahn user would, with a push producer.

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        reactor.callLater(0, self.sendSome)

    def stopProducing(self) -> None:
        self.toSend = 0

    def sendSome(self) -> None:
        size = self.factory.send[1]
        while not self.paused and self.toSend and self.state == self.STATE_OPEN:
            self.toSend -= 1
            message = self.rng.randbytes(size)
            self.hash.update(message)
            self.sendMessage(message, True)
            self.counted(size)
            if self.toSend == 0:
                self.transport.unregisterProducer()
                self.sendClose(1000)

    # Receiving, frame by frame.

    def onMessageFrameData(self, payload: bytes) -> None:
        self.hash.update(payload)
        self.size += len(payload)

    def onMessageEnd(self) -> None:
        self.counted(self.size)
        self.size = 0

    def counted(self, size: int) -> None:
        self.messages += 1
        self.bytes += size
        waiting = self.waiting.pop(self.messages, None)
        if waiting is not None:
            waiting.callback(None)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        ended = self.factory.peer.ended_
        if not ended.called:
            ended.callback(
                PeerEnded(self.messages, self.bytes, self.hash.hexdigest(), code)
            )


class AutobahnServerPeer(_AutobahnPeerMixin, WebSocketServerProtocol):  # type: ignore[misc]
    pass


class AutobahnClientPeer(_AutobahnPeerMixin, WebSocketClientProtocol):  # type: ignore[misc]
    pass


class AutobahnPeer:
    """
    An Autobahn peer in this process, with the interface of
    L{WebsocketsPeer}.
    """

    name = "Autobahn"

    def __init__(self) -> None:
        self.protocol: Any = None
        self.ended_: Deferred[PeerEnded] = Deferred()

    @classmethod
    async def serve(
        cls, testCase: TestCase, send: Optional[List[int]]
    ) -> Tuple[Any, str]:
        peer = cls()
        factory: Any = WebSocketServerFactory()
        factory.protocol = AutobahnServerPeer
        factory.setProtocolOptions(**_NO_TIMEOUTS)
        factory.peer, factory.send = peer, send
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        testCase.addCleanup(port.stopListening)
        return peer, f"ws://127.0.0.1:{port.getHost().port}"

    @classmethod
    async def connect(
        cls, testCase: TestCase, url: str, send: Optional[List[int]]
    ) -> Any:
        peer = cls()
        factory: Any = WebSocketClientFactory(url)
        factory.protocol = AutobahnClientPeer
        factory.setProtocolOptions(serverConnectionDropTimeout=0, **_NO_TIMEOUTS)
        factory.peer, factory.send = peer, send
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", factory.port)
        protocol = await connectProtocol(endpoint, factory.buildProtocol(None))
        testCase.addCleanup(_abort, protocol)
        return peer

    async def reached(self, n: int) -> None:
        while self.protocol is None:
            await turns()
        if self.protocol.messages < n:
            d: Deferred[None] = Deferred()
            self.protocol.waiting[n] = d
            await d

    async def status(self) -> Tuple[int, int]:
        return self.protocol.messages, self.protocol.bytes

    def command(self, line: str) -> None:
        protocol = self.protocol
        if line == "pause":
            protocol.transport.pauseProducing()
        elif line == "resume":
            protocol.transport.resumeProducing()
        elif line == "close":
            protocol.transport.resumeProducing()
            protocol.sendClose(1000)
        elif line == "vanish":
            protocol.transport.abortConnection()
        elif line == "violate":
            protocol.transport.write(b"\xff\xff" + b"\x00" * 16)

    async def ended(self) -> PeerEnded:
        return await self.ended_


def _abort(protocol: Any) -> Optional[Deferred[Any]]:
    if protocol.state != protocol.STATE_CLOSED:
        protocol.transport.abortConnection()
        return protocol.is_closed
    return None


class LocalhostCertificate:
    """
    A new self-signed certificate for C{localhost}: its key and certificate
    for this package's side, as a trust root for this package's client, and
    in a PEM file (certificate and key) for a C{websockets} peer.
    """

    def __init__(self, testCase: TestCase) -> None:
        key, cert = selfSigned("localhost")
        # pyOpenSSL takes cryptography's objects directly.
        self.keyAndCertificate: Tuple[Any, Any] = (key, cert)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        self.root = Certificate.loadPEM(pem)
        self.path = testCase.mktemp()
        with open(self.path, "wb") as f:
            f.write(pem)
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )


# The scenarios


class _Scenarios:
    """
    The scenarios; a subclass says which side this package is on and which
    library the peer is written with.
    """

    peerKind: Any
    ourSide: str  # "server" or "client"
    #: Over C{wss://}: makes the certificate both sides use.
    peerTLS: Optional[Any] = None

    async def open(
        self, attach: Any, send: Optional[List[int]] = None
    ) -> Tuple[Any, Any, Any]:
        """
        Connect this package's side and a peer; C{attach(protocol)} is
        called in this side's C{onOpen} and what it returns is returned,
        with the peer and this side's protocol.
        """
        testCase: Any = self
        attached: Deferred[Tuple[Any, Any]] = Deferred()
        # Over TLS, a certificate for localhost the peer gets as a file.
        tls: Any = () if self.peerTLS is None else (self.peerTLS(testCase),)

        def opened(protocol: Any) -> None:
            # A small send buffer, so that a reader that stops reading
            # fills the kernel's buffers soon.
            transport = protocol.transport
            if tls:
                # Under TLSMemoryBIOProtocol, the TCP transport.
                transport = transport.transport
            transport.getHandle().setsockopt(SOL_SOCKET, SO_SNDBUF, 64 * KiB)
            attached.callback((attach(protocol), protocol))

        if self.ourSide == "server":
            factory: Any = WebSocketServerFactory()
            factory.protocol = OurServerProtocol
            factory.setProtocolOptions(**_NO_TIMEOUTS)
            factory.opened = opened
            if tls:
                key, cert = tls[0].keyAndCertificate
                serverOptions = CertificateOptions(privateKey=key, certificate=cert)
                port = reactor.listenSSL(
                    0, factory, serverOptions, interface="127.0.0.1"
                )
                url = f"wss://127.0.0.1:{port.getHost().port}"
            else:
                port = reactor.listenTCP(0, factory, interface="127.0.0.1")
                url = f"ws://127.0.0.1:{port.getHost().port}"
            testCase.addCleanup(port.stopListening)
            peer = await self.peerKind.connect(
                testCase, url, send, *(pem.path for pem in tls)
            )
        else:
            peer, url = await self.peerKind.serve(
                testCase, send, *(pem.path for pem in tls)
            )
            factory = WebSocketClientFactory(url)
            factory.protocol = OurClientProtocol
            factory.setProtocolOptions(serverConnectionDropTimeout=0, **_NO_TIMEOUTS)
            factory.opened = opened
            endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", factory.port)
            if tls:
                endpoint = wrapClientTLS(
                    optionsForClientTLS("localhost", trustRoot=tls[0].root), endpoint
                )
            protocol = await connectProtocol(endpoint, factory.buildProtocol(None))
            testCase.addCleanup(_abort, protocol)
        ours, protocol = await attached
        return ours, peer, protocol

    def assertNoErrors(self, errors: List[Dict[str, Any]]) -> None:
        testCase: Any = self
        testCase.assertEqual(errors, [])

    async def test_messagesArriveIntact(self) -> None:
        """
        Every message arrives, in order, intact, and the closing handshake
        the consumer starts when finished is clean.
        """
        testCase: Any = self
        errors = captureErrors(testCase)
        count, size = 300, 16 * KiB
        sender, peer, _ = await self.open(lambda p: Sender(p, count, size))
        testCase.assertEqual(await sender.done, count * size)
        ended = await peer.ended()
        sha256, total = randomMessages(count, count, size)
        testCase.assertEqual((ended.messages, ended.bytes), (count, total))
        testCase.assertEqual(ended.sha256, sha256)
        testCase.assertEqual(ended.code, 1000)
        testCase.assertEqual(sender.writesAfterEnd, 0)
        testCase.assertLessEqual(sender.mostQueued, HIGH_WATER + size)
        self.assertNoErrors(errors)

    async def test_stalledReaderBoundsTheSender(self) -> None:
        """
        A peer that stops reading pauses the producer with at most the high
        water mark plus one message queued by the sender; once it reads
        again, everything arrives intact.
        """
        testCase: Any = self
        errors = captureErrors(testCase)
        count, size = 600, 64 * KiB
        sender, peer, _ = await self.open(lambda p: Sender(p, count, size))
        await peer.reached(5)
        peer.command("pause")
        await waitForStall(sender)
        testCase.assertTrue(sender.producer.paused)
        testCase.assertLessEqual(sender.consumer.queued, HIGH_WATER + size)
        testCase.assertLessEqual(sender.mostQueued, HIGH_WATER + size)
        testCase.assertLess(sender.producer.chunksWritten, count // 2)
        peer.command("resume")
        testCase.assertEqual(await sender.done, count * size)
        ended = await peer.ended()
        testCase.assertEqual(
            (ended.messages, ended.sha256),
            (count, randomMessages(count, count, size)[0]),
        )
        testCase.assertLessEqual(sender.mostQueued, HIGH_WATER + size)
        self.assertNoErrors(errors)

    async def stoppedMidStream(self, command: str) -> Tuple[Any, Any]:
        testCase: Any = self
        errors = captureErrors(testCase)
        sender, peer, protocol = await self.open(lambda p: Sender(p, 10**6, 4 * KiB))
        await peer.reached(20)
        peer.command(command)
        try:
            await sender.done
        except ProducerStopped:
            pass
        else:
            testCase.fail("the producer finished")
        ended = await peer.ended()
        testCase.assertFalse(sender.producer.producing)
        testCase.assertIsNone(sender.consumer.producer)
        testCase.assertIsNone(protocol.transport.producer)
        testCase.assertEqual(sender.writesAfterEnd, 0)
        await testCase.assertFailure(sender.consumer.whenFinished(), ProducerStopped)
        self.assertNoErrors(errors)
        return sender, ended

    async def test_peerClosesMidStream(self) -> None:
        """
        A peer that starts the closing handshake mid-stream stops the
        producer, which is never written to again; the close is clean.
        """
        _, ended = await self.stoppedMidStream("close")
        testCase: Any = self
        testCase.assertEqual(ended.code, 1000)

    async def test_peerVanishesMidStream(self) -> None:
        """
        A peer that aborts its TCP connection mid-stream stops the producer.
        """
        await self.stoppedMidStream("vanish")

    async def test_peerBreaksTheProtocol(self) -> None:
        """
        A peer that sends bytes that are not a WebSocket frame makes
        Autobahn fail the connection, which stops the producer, with no
        error logged.
        """
        await self.stoppedMidStream("violate")

    async def test_oneLargeMessage(self) -> None:
        """
        A L{MessageStream} sends 32 MiB as one message, frame by frame, with
        the sender holding at most the high water mark plus one frame.
        """
        testCase: Any = self
        errors = captureErrors(testCase)
        count, size = 512, 64 * KiB
        sender, peer, _ = await self.open(lambda p: Sender(p, count, size, stream=True))
        testCase.assertEqual(await sender.done, count * size)
        ended = await peer.ended()
        testCase.assertEqual(
            (ended.messages, ended.bytes, ended.sha256),
            (1, count * size, randomMessages(count, count, size)[0]),
        )
        testCase.assertLessEqual(sender.mostQueued, HIGH_WATER + size)
        self.assertNoErrors(errors)

    async def test_pausedReceiverStopsThePeer(self) -> None:
        """
        A L{MessageSource} whose consumer is paused stops reading, so the
        peer cannot send everything and the source holds at most its high
        water mark plus a read; resumed, everything arrives intact and the
        peer's close finishes the consumer.
        """
        testCase: Any = self
        errors = captureErrors(testCase)
        count, size = 600, 64 * KiB
        receiver, peer, _ = await self.open(Receiver, send=[count, size, count])
        while receiver.sink.messages < 5:
            await turns()
        receiver.source.pauseProducing()
        quiet, last = 0, -1
        for _ in range(20000):
            await turns()
            receiver.mostHeld = max(receiver.mostHeld, receiver.source.buffered)
            sent = (await peer.status())[0]
            quiet = quiet + 1 if sent == last else 0
            last = sent
            if quiet >= 20:
                break
        testCase.assertLess(last, count // 2)
        testCase.assertLessEqual(receiver.mostHeld, HIGH_WATER + 64 * KiB + size)
        receiver.source.resumeProducing()
        testCase.assertEqual(await receiver.done, count * size)
        testCase.assertTrue(receiver.sink.finished)
        testCase.assertEqual(
            receiver.sink.hash.hexdigest(), randomMessages(count, count, size)[0]
        )
        testCase.assertEqual(receiver.source.closeCode, 1000)
        await peer.ended()
        self.assertNoErrors(errors)

    async def test_senderVanishesFromReceiver(self) -> None:
        """
        A peer that vanishes while sending fails the source with
        L{WebSocketClosed}, after what arrived was delivered.
        """
        testCase: Any = self
        errors = captureErrors(testCase)
        receiver, peer, _ = await self.open(Receiver, send=[10**6, 4 * KiB, 1])
        await peer.reached(20)
        peer.command("vanish")
        failure = await testCase.assertFailure(receiver.done, WebSocketClosed)
        testCase.assertFalse(failure.wasClean)
        testCase.assertGreaterEqual(receiver.sink.messages, 1)
        testCase.assertFalse(receiver.sink.finished)
        await peer.ended()
        self.assertNoErrors(errors)


class OurServerWebsocketsClientTests(_Scenarios, TestCase):
    """
    This package's server, a C{websockets} client.
    """

    skip = skipWebsockets
    ourSide = "server"
    peerKind = WebsocketsPeer


class OurClientWebsocketsServerTests(_Scenarios, TestCase):
    """
    This package's client, a C{websockets} server.
    """

    skip = skipWebsockets
    ourSide = "client"
    peerKind = WebsocketsPeer


class OurServerAutobahnClientTests(_Scenarios, TestCase):
    """
    This package's server, an Autobahn client.
    """

    skip = skipAutobahn
    ourSide = "server"
    peerKind = AutobahnPeer


class OurClientAutobahnServerTests(_Scenarios, TestCase):
    """
    This package's client, an Autobahn server.
    """

    skip = skipAutobahn
    ourSide = "client"
    peerKind = AutobahnPeer


class OurServerWebsocketsClientOverTLSTests(_Scenarios, TestCase):
    """
    This package's server over C{wss://}, a C{websockets} client: the
    transport this package pauses and measures is Twisted's TLS one.
    """

    skip = skipWss
    ourSide = "server"
    peerKind = WebsocketsPeer
    peerTLS = LocalhostCertificate


class OurClientWebsocketsServerOverTLSTests(_Scenarios, TestCase):
    """
    This package's client over C{wss://}, a C{websockets} server.
    """

    skip = skipWss
    ourSide = "client"
    peerKind = WebsocketsPeer
    peerTLS = LocalhostCertificate
