"""
Tests for L{twisted_streaming.FileSender}.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from typing import Any, List, Optional, Tuple, cast

from twisted.internet import defer, protocol, reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import StringTransport
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    ContextFailure,
    FileSender,
    IPullProducer,
    ProducerStateError,
    ProducerStopped,
    StreamProtocol,
)


class _BrokenFile(io.BytesIO):
    """A file whose reads fail after the first."""

    reads = 0

    def read(self, size: Optional[int] = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise OSError("disk on fire")
        return super().read(size)


def _drain(sender: FileSender, transport: StringTransport, limit: int = 10000) -> int:
    """Call resumeProducing until the sender unregisters; return the calls."""
    calls = 0
    while transport.producer is not None and calls < limit:
        sender.resumeProducing()
        calls += 1
    return calls


class FileSenderUnitTests(SynchronousTestCase):
    """
    L{FileSender} against L{StringTransport}.
    """

    def test_interface(self) -> None:
        """FileSender provides IPullProducer."""
        self.assertTrue(verifyObject(IPullProducer, FileSender()))

    def test_registersNonStreaming(self) -> None:
        """beginFileTransfer registers the sender as a non-streaming producer."""
        transport = StringTransport()
        sender = FileSender()
        sender.beginFileTransfer(io.BytesIO(b"abc"), transport)
        self.assertIs(transport.producer, sender)
        self.assertFalse(transport.streaming)

    def test_oneWritePerResume(self) -> None:
        """Each resumeProducing writes exactly one CHUNK_SIZE chunk."""
        transport = StringTransport()
        sender = FileSender()
        sender.CHUNK_SIZE = 4
        d = sender.beginFileTransfer(io.BytesIO(b"abcdefghij"), transport)
        expected = [b"abcd", b"abcdefgh", b"abcdefghij"]
        for value in expected:
            sender.resumeProducing()
            self.assertEqual(transport.value(), value)
        self.assertNoResult(d)
        sender.resumeProducing()
        self.assertEqual(self.successResultOf(d), b"j")
        self.assertIsNone(transport.producer)

    def test_classChunkSizeHonoured(self) -> None:
        """A CHUNK_SIZE set on a subclass sets the write size."""

        class Small(FileSender):
            CHUNK_SIZE = 3

        transport = StringTransport()
        sender = Small()
        sender.beginFileTransfer(io.BytesIO(b"abcdefg"), transport)
        sender.resumeProducing()
        self.assertEqual(transport.value(), b"abc")

    def test_emptyFileFiresEmptyBytes(self) -> None:
        """An empty file fires the Deferred with b"" and writes nothing."""
        transport = StringTransport()
        d = FileSender().beginFileTransfer(io.BytesIO(b""), transport)
        assert transport.producer is not None
        transport.producer.resumeProducing()
        self.assertEqual(self.successResultOf(d), b"")
        self.assertEqual(transport.value(), b"")

    def test_transformApplied(self) -> None:
        """transform is applied to each chunk, and lastSent is transformed."""
        transport = StringTransport()
        sender = FileSender()
        sender.CHUNK_SIZE = 2
        d = sender.beginFileTransfer(io.BytesIO(b"abc"), transport, bytes.upper)
        _drain(sender, transport)
        self.assertEqual(transport.value(), b"ABC")
        self.assertEqual(self.successResultOf(d), b"C")

    def test_pathsOpenedAndClosed(self) -> None:
        """A str, bytes or FilePath path is read and closed at the end."""
        path = FilePath(self.mktemp())
        path.setContent(b"hello world")
        for target in [path.path, path.asBytesMode().path, path]:
            transport = StringTransport()
            sender = FileSender()
            d = sender.beginFileTransfer(target, transport)
            opened = sender.file
            assert opened is not None
            _drain(sender, transport)
            self.assertEqual(transport.value(), b"hello world")
            self.assertEqual(self.successResultOf(d), b"d")
            self.assertTrue(opened.closed)

    def test_fileObjectLeftOpen(self) -> None:
        """A file object passed in is not closed by the sender."""
        f = io.BytesIO(b"data")
        transport = StringTransport()
        sender = FileSender()
        sender.beginFileTransfer(f, transport)
        _drain(sender, transport)
        self.assertFalse(f.closed)

    def test_byteRange(self) -> None:
        """offset and length send just that range, and bytesSent counts it."""
        transport = StringTransport()
        sender = FileSender()
        sender.CHUNK_SIZE = 3
        d = sender.beginFileTransfer(
            io.BytesIO(b"0123456789"), transport, offset=2, length=5
        )
        _drain(sender, transport)
        self.assertEqual(transport.value(), b"23456")
        self.assertEqual(sender.bytesSent, 5)
        self.assertEqual(self.successResultOf(d), b"6")

    def test_bytesSentProgress(self) -> None:
        """bytesSent grows by one chunk per resumeProducing."""
        transport = StringTransport()
        sender = FileSender()
        sender.CHUNK_SIZE = 4
        sender.beginFileTransfer(io.BytesIO(b"x" * 10), transport)
        progress = []
        for _ in range(3):
            sender.resumeProducing()
            progress.append(sender.bytesSent)
        self.assertEqual(progress, [4, 8, 10])

    def test_stopFailsWithProducerStopped(self) -> None:
        """stopProducing unregisters, closes and fails with ProducerStopped."""
        path = FilePath(self.mktemp())
        path.setContent(b"x" * 100)
        transport = StringTransport()
        sender = FileSender()
        sender.CHUNK_SIZE = 10
        d = sender.beginFileTransfer(path, transport)
        opened = sender.file
        assert opened is not None
        sender.resumeProducing()
        sender.stopProducing()
        failure = self.failureResultOf(d, ProducerStopped)
        self.assertEqual(failure.value.bytesWritten, 10)
        self.assertIs(failure.value.producer, sender)
        self.assertIsNone(transport.producer)
        self.assertTrue(opened.closed)

    def test_stopAfterTransportForgotIt(self) -> None:
        """A stop from a transport that already forgot the sender logs nothing."""
        transport = StringTransport()
        sender = FileSender()
        d = sender.beginFileTransfer(io.BytesIO(b"abc"), transport)
        transport.unregisterProducer()
        sender.stopProducing()
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_readErrorFailsAndUnregisters(self) -> None:
        """A read error fails the Deferred with it and unregisters."""
        transport = StringTransport()
        sender = FileSender()
        sender.CHUNK_SIZE = 2
        d = sender.beginFileTransfer(_BrokenFile(b"abcdef"), transport)
        sender.resumeProducing()
        sender.resumeProducing()
        failure = self.failureResultOf(d, OSError)
        self.assertIsInstance(failure, ContextFailure)
        self.assertIn("after writing 2 bytes", failure.getErrorMessage())
        self.assertIsNone(transport.producer)

    def test_reusable(self) -> None:
        """A sender can send another file once a transfer is done."""
        sender = FileSender()
        for data in [b"first", b"second"]:
            transport = StringTransport()
            d = sender.beginFileTransfer(io.BytesIO(data), transport)
            _drain(sender, transport)
            self.assertEqual(transport.value(), data)
            self.assertEqual(self.successResultOf(d), data[-1:])

    def test_beginTwiceRaises(self) -> None:
        """A second transfer while one is running raises ProducerStateError."""
        sender = FileSender()
        sender.beginFileTransfer(io.BytesIO(b"a"), StringTransport())
        self.assertRaises(
            ProducerStateError,
            sender.beginFileTransfer,
            io.BytesIO(b"b"),
            StringTransport(),
        )

    def test_cancelUnregisters(self) -> None:
        """Cancelling the Deferred unregisters and fails with CancelledError."""
        transport = StringTransport()
        sender = FileSender()
        d = sender.beginFileTransfer(io.BytesIO(b"abc"), transport)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(transport.producer)
        self.assertIsNone(sender.file)


def _openDescriptors() -> int:
    """
    How many file descriptors this process has open.
    """
    return len(os.listdir("/proc/self/fd"))


class FileSenderLifecycleTests(SynchronousTestCase):
    """
    Transfers that cannot start: each test failed before the flow core.
    """

    def test_refusedRegistration(self) -> None:
        """
        A consumer that refuses the sender (it has a producer already) fails
        the Deferred with its error; nothing is written to it, its producer
        stays registered, the file opened from a path is closed, and the
        sender can send again.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"0123456789")
        transport = StringTransport()
        other = FileSender()
        transport.registerProducer(other, True)
        sender = FileSender()
        before = _openDescriptors()
        d = sender.beginFileTransfer(path, transport)
        self.failureResultOf(d, RuntimeError)
        self.assertEqual(_openDescriptors(), before)
        self.assertIsNone(sender.file)
        self.assertEqual(transport.value(), b"")
        self.assertIs(transport.producer, other)
        transport.unregisterProducer()
        again = sender.beginFileTransfer(path, transport)
        while transport.producer is not None:
            sender.resumeProducing()
        self.assertEqual(self.successResultOf(again), b"9")
        self.assertEqual(transport.value(), b"0123456789")

    def test_pathThatCannotBeOpened(self) -> None:
        """
        A path that cannot be opened fails the Deferred, in context, and
        registers nothing.
        """
        transport = StringTransport()
        sender = FileSender()
        d = sender.beginFileTransfer(self.mktemp(), transport)
        failure = self.failureResultOf(d, FileNotFoundError)
        self.assertIsInstance(failure, ContextFailure)
        self.assertIsNone(transport.producer)


def _makeFile(testCase: TestCase, size: int) -> Tuple[str, str]:
    """Write C{size} pseudo-random bytes to a temporary file; return path, hex."""
    path = testCase.mktemp()
    # Under pytest, mktemp is relative to the current directory: clean up.
    testCase.addCleanup(os.remove, path)
    digest = hashlib.sha256()
    block = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            chunk = bytes([i % 256]) + block[1:]
            digest.update(chunk)
            f.write(chunk)
    return path, digest.hexdigest()


class _Sender(StreamProtocol):
    """Send a file with FileSender on connect, then close."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.sender = FileSender()
        self.result: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        d = self.sender.beginFileTransfer(self.path, self.transport)
        d.addBoth(self._done)

    def _done(self, result: Any) -> None:
        self.transport.loseConnection()
        self.result.callback(result)


class _HashReceiver(protocol.Protocol):
    """Hash what arrives; fire C{done} with the hex digest on close."""

    def __init__(self, done: Deferred[str]) -> None:
        self.done = done
        self.digest = hashlib.sha256()

    def dataReceived(self, data: bytes) -> None:
        self.digest.update(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.digest.hexdigest())


class _HashServerFactory(protocol.Factory):
    def __init__(self) -> None:
        self.done: Deferred[str] = Deferred()

    def buildProtocol(self, addr: Any) -> _HashReceiver:
        return _HashReceiver(self.done)


class FileSenderLoopbackTests(TestCase):
    """
    L{FileSender} over real loopback connections.
    """

    def _readerThread(
        self, limit: Optional[int] = None
    ) -> Tuple[int, Deferred[Tuple[str, int]]]:
        """
        Start a plain-socket reader thread on 127.0.0.1; return its port and
        a Deferred firing with (sha256 hex, bytes read).  If C{limit} is
        given, it closes the socket abruptly after reading that many bytes.
        """
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(30)
        result: Deferred[Tuple[str, int]] = Deferred()

        def read() -> None:
            digest = hashlib.sha256()
            total = 0
            try:
                conn, _ = listener.accept()
                conn.settimeout(30)
                with conn:
                    while limit is None or total < limit:
                        data = conn.recv(1024 * 1024)
                        if not data:
                            break
                        digest.update(data)
                        total += len(data)
                    if limit is not None:
                        # Unread data makes close() send a reset: the peer
                        # vanishes.
                        conn.setsockopt(
                            socket.SOL_SOCKET,
                            socket.SO_LINGER,
                            b"\x01\x00\x00\x00\x00\x00\x00\x00",
                        )
            finally:
                listener.close()
                reactor.callFromThread(  # type: ignore[attr-defined]
                    result.callback, (digest.hexdigest(), total)
                )

        thread = threading.Thread(target=read)
        thread.start()
        self.addCleanup(thread.join, 30)
        return listener.getsockname()[1], result

    @defer.inlineCallbacks
    def test_tcpSha256Matches(self) -> Any:
        """64 MiB over TCP reach a plain socket reader intact."""
        size = 64 * 1024 * 1024
        path, expected = _makeFile(self, size)
        port, read = self._readerThread()
        client = _Sender(path)
        yield protocol.ClientCreator(reactor, lambda: client).connectTCP(
            "127.0.0.1", port
        )
        last = yield client.result
        yield client.lost
        digest, total = yield read
        self.assertEqual((digest, total), (expected, size))
        self.assertEqual(client.sender.bytesSent, size)
        self.assertEqual(len(last), 1)

    @defer.inlineCallbacks
    def test_peerVanishesMidTransfer(self) -> Any:
        """A peer that resets mid-transfer fails the Deferred with ProducerStopped."""
        path, _ = _makeFile(self, 32 * 1024 * 1024)
        port, read = self._readerThread(limit=1024 * 1024)
        client = _Sender(path)
        yield protocol.ClientCreator(reactor, lambda: client).connectTCP(
            "127.0.0.1", port
        )
        opened = client.sender.file
        error = yield self.assertFailure(client.result, ProducerStopped)
        yield client.lost
        yield read
        self.assertLess(error.bytesWritten, 32 * 1024 * 1024)
        assert opened is not None
        self.assertTrue(opened.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_unixSocket(self) -> Any:
        """A file sent over a UNIX socket arrives intact."""
        size = 16 * 1024 * 1024
        path, expected = _makeFile(self, size)
        # A relative path: the absolute one can exceed AF_UNIX's limit.
        directory = self.mktemp()
        os.makedirs(directory)
        address = os.path.join(directory, "s")
        factory = _HashServerFactory()
        port = cast(Any, reactor).listenUNIX(address, factory)
        self.addCleanup(port.stopListening)
        client = _Sender(path)
        yield protocol.ClientCreator(reactor, lambda: client).connectUNIX(address)
        yield client.result
        yield client.lost
        digest = yield factory.done
        self.assertEqual(digest, expected)


__all__: List[str] = []
