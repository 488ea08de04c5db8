"""
Tests for the zero-copy (L{os.sendfile}) path of L{twisted_streaming.FileSender}.
"""

from __future__ import annotations

import errno
import hashlib
import os
from typing import Any, Callable, List, Optional, cast

from twisted.internet import defer, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from twisted_streaming import FileSender, ProducerStopped, StreamProtocol
from twisted_streaming.test._extras import skipTLS
from twisted_streaming.test.test_filesender import _makeFile


def _selfSignedCert() -> Any:
    """Server TLS options with a new self-signed certificate."""
    from twisted.internet import ssl

    from twisted_streaming.test.test_faults import selfSignedPEM

    return ssl.PrivateCertificate.loadPEM(selfSignedPEM("127.0.0.1")).options()


class _Collector(protocol.Protocol):
    """Keep the first C{keep} bytes received and hash all of them."""

    def __init__(self, done: Deferred[bytes], keep: int, vanishAfter: Optional[int]):
        self.done = done
        self.keep = keep
        self.vanishAfter = vanishAfter
        self.kept = b""
        self.total = 0
        self.digest = hashlib.sha256()

    def dataReceived(self, data: bytes) -> None:
        self.digest.update(data)
        self.total += len(data)
        if len(self.kept) < self.keep:
            self.kept += data[: self.keep - len(self.kept)]
        if self.vanishAfter is not None and self.total >= self.vanishAfter:
            self.vanishAfter = None
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.kept)


class _CollectorFactory(protocol.Factory):
    def __init__(self, keep: int = 0, vanishAfter: Optional[int] = None) -> None:
        self.done: Deferred[bytes] = Deferred()
        self.keep = keep
        self.vanishAfter = vanishAfter
        self.collector: Optional[_Collector] = None

    def buildProtocol(self, addr: Any) -> _Collector:
        self.collector = _Collector(self.done, self.keep, self.vanishAfter)
        return self.collector


class _Sender(StreamProtocol):
    """Write a header, send the file, write a trailer, close."""

    def __init__(
        self,
        path: str,
        header: bytes = b"",
        trailer: bytes = b"",
        configure: Callable[[FileSender], None] = lambda sender: None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.path = path
        self.header = header
        self.trailer = trailer
        self.kwargs = kwargs
        self.sender = FileSender()
        configure(self.sender)
        self.result: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        if self.header:
            self.transport.write(self.header)
        d = self.sender.beginFileTransfer(self.path, self.transport, **self.kwargs)
        d.addBoth(self._done)

    def _done(self, result: Any) -> Any:
        if not hasattr(result, "check"):
            self.transport.write(self.trailer)
        self.transport.loseConnection()
        self.result.callback(result)


class ZeroCopyTests(TestCase):
    """
    L{FileSender}'s zero-copy path over real loopback connections.
    """

    def _serveTCP(self, factory: protocol.Factory) -> int:
        port = cast(Any, reactor).listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    @defer.inlineCallbacks
    def _sendTCP(self, client: _Sender, factory: _CollectorFactory) -> Any:
        port = self._serveTCP(factory)
        yield protocol.ClientCreator(reactor, lambda: client).connectTCP(
            "127.0.0.1", port
        )
        result = yield client.result
        yield client.lost
        kept = yield factory.done
        return result, kept

    @defer.inlineCallbacks
    def test_tcpZeroCopyInOrder(self) -> Any:
        """64 MiB go by sendfile over TCP, between a header and a trailer."""
        size = 64 * 1024 * 1024
        path, expected = _makeFile(self, size)
        # A header bigger than a socket buffer is still queued in the
        # transport when the transfer begins.
        header = b"H" * (8 * 1024 * 1024)
        trailer = b"trailer"
        factory = _CollectorFactory()
        client = _Sender(path, header=header, trailer=trailer)
        last, _ = yield self._sendTCP(client, factory)
        collector = factory.collector
        assert collector is not None
        whole = hashlib.sha256(header)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                whole.update(block)
        whole.update(trailer)
        self.assertEqual(collector.total, len(header) + size + len(trailer))
        self.assertEqual(collector.digest.hexdigest(), whole.hexdigest())
        self.assertEqual(client.sender.zeroCopyBytes, size)
        self.assertEqual(client.sender.bytesSent, size)
        with open(path, "rb") as f:
            f.seek(size - 1)
            self.assertEqual(last, f.read(1))
        self.assertNotEqual(expected, "")

    @defer.inlineCallbacks
    def test_byteRange(self) -> Any:
        """An offset and length send exactly that range by sendfile."""
        path, _ = _makeFile(self, 4 * 1024 * 1024)
        offset, length = 1234567, 2345678
        factory = _CollectorFactory(keep=length + 100)
        client = _Sender(path, offset=offset, length=length)
        last, kept = yield self._sendTCP(client, factory)
        with open(path, "rb") as f:
            f.seek(offset)
            wanted = f.read(length)
        self.assertEqual(kept, wanted)
        self.assertEqual(last, wanted[-1:])
        self.assertEqual(client.sender.zeroCopyBytes, length)

    @defer.inlineCallbacks
    def test_unixZeroCopy(self) -> Any:
        """A file sent over a UNIX socket goes by sendfile and arrives intact."""
        size = 16 * 1024 * 1024
        path, expected = _makeFile(self, size)
        directory = self.mktemp()
        os.makedirs(directory)
        address = os.path.join(directory, "s")
        factory = _CollectorFactory()
        port = cast(Any, reactor).listenUNIX(address, factory)
        self.addCleanup(port.stopListening)
        client = _Sender(path)
        yield protocol.ClientCreator(reactor, lambda: client).connectUNIX(address)
        yield client.result
        yield client.lost
        yield factory.done
        assert factory.collector is not None
        self.assertEqual(factory.collector.digest.hexdigest(), expected)
        self.assertEqual(client.sender.zeroCopyBytes, size)

    @defer.inlineCallbacks
    def test_peerVanishes(self) -> Any:
        """A peer aborting mid-sendfile fails cleanly and the file is closed."""
        size = 64 * 1024 * 1024
        path, _ = _makeFile(self, size)
        factory = _CollectorFactory(vanishAfter=1024 * 1024)
        port = self._serveTCP(factory)
        client = _Sender(path)
        yield protocol.ClientCreator(reactor, lambda: client).connectTCP(
            "127.0.0.1", port
        )
        opened = client.sender.file
        error = yield self.assertFailure(client.result, ProducerStopped)
        yield client.lost
        yield factory.done
        self.assertLess(error.bytesWritten, size)
        self.assertGreater(client.sender.zeroCopyBytes, 0)
        assert opened is not None
        self.assertTrue(opened.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_tlsFallsBack(self) -> Any:
        """
        Over TLS (a real TLS connection to a listening TLS port) the file is
        read and written, and arrives intact.
        """
        from twisted.internet import ssl

        size = 4 * 1024 * 1024
        path, expected = _makeFile(self, size)
        factory = _CollectorFactory()
        port = cast(Any, reactor).listenSSL(
            0, factory, _selfSignedCert(), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        client = _Sender(path)
        yield protocol.ClientCreator(reactor, lambda: client).connectSSL(
            "127.0.0.1", port.getHost().port, ssl.CertificateOptions()
        )
        yield client.result
        yield client.lost
        yield factory.done
        assert factory.collector is not None
        self.assertEqual(factory.collector.digest.hexdigest(), expected)
        self.assertEqual(client.sender.zeroCopyBytes, 0)
        self.assertEqual(client.sender.bytesSent, size)

    if skipTLS:
        test_tlsFallsBack.skip = skipTLS  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_transformFallsBack(self) -> Any:
        """With a transform the file is read, transformed and written."""
        path, _ = _makeFile(self, 2 * 1024 * 1024)
        factory = _CollectorFactory(keep=3 * 1024 * 1024)
        client = _Sender(path, transform=bytes.upper)
        _, kept = yield self._sendTCP(client, factory)
        with open(path, "rb") as f:
            self.assertEqual(kept, f.read().upper())
        self.assertEqual(client.sender.zeroCopyBytes, 0)

    @defer.inlineCallbacks
    def test_zeroCopyDisabled(self) -> Any:
        """ZERO_COPY = False on an instance makes it read and write."""
        size = 2 * 1024 * 1024
        path, expected = _makeFile(self, size)

        def disable(sender: FileSender) -> None:
            sender.ZERO_COPY = False

        factory = _CollectorFactory()
        client = _Sender(path, configure=disable)
        yield self._sendTCP(client, factory)
        assert factory.collector is not None
        self.assertEqual(factory.collector.digest.hexdigest(), expected)
        self.assertEqual(client.sender.zeroCopyBytes, 0)
        self.assertEqual(client.sender.bytesSent, size)

    @defer.inlineCallbacks
    def test_runsOnItsReactorsTurnLoop(self) -> Any:
        """
        The zero-copy path sends on the turn loop of the sender's reactor
        (before, the reactor it was given went unused): with a L{Clock},
        nothing is sent until the clock turns, and everything once it keeps
        turning.
        """
        size = 4 * 1024 * 1024
        path, expected = _makeFile(self, size)
        clock = Clock()
        factory = _CollectorFactory()
        atStart: List[int] = []

        class Sender(_Sender):
            def connectionMade(self) -> None:
                super().connectionMade()
                # The transport has asked the sender for data by now.
                atStart.append(self.sender.zeroCopyBytes)
                pump()

        client = Sender(path)
        client.sender = FileSender(reactor=clock)
        turns: List[int] = []

        def pump() -> None:
            clock.advance(0)
            turns.append(1)
            if not client.result.called and len(turns) < 100_000:
                cast(Any, reactor).callLater(0, pump)

        yield self._sendTCP(client, factory)
        assert factory.collector is not None
        self.assertEqual(atStart, [0])
        self.assertEqual(factory.collector.digest.hexdigest(), expected)
        self.assertEqual(client.sender.zeroCopyBytes, size)

    @defer.inlineCallbacks
    def test_sendfileRefusedFallsBack(self) -> Any:
        """
        When C{os.sendfile} refuses the file part-way (C{EINVAL}, as for a
        file system that cannot splice), the rest is read and written, and
        the peer still gets every byte once, in order.
        """
        size = 4 * 1024 * 1024
        path, expected = _makeFile(self, size)
        realSendfile = os.sendfile
        calls = []

        def sendfile(out: int, fd: int, offset: int, count: int) -> int:
            calls.append(offset)
            if len(calls) > 1:
                raise OSError(errno.EINVAL, "Invalid argument")
            return realSendfile(out, fd, offset, min(count, 100_000))

        self.patch(os, "sendfile", sendfile)
        factory = _CollectorFactory()
        client = _Sender(path)
        yield self._sendTCP(client, factory)
        assert factory.collector is not None
        self.assertEqual(factory.collector.total, size)
        self.assertEqual(factory.collector.digest.hexdigest(), expected)
        self.assertEqual(client.sender.zeroCopyBytes, 100_000)
        self.assertEqual(client.sender.bytesSent, size)
        self.assertEqual(len(calls), 2)
