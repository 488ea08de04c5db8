"""
Fault tests on real loopback connections: the peer resets, the consumer
raises, the TLS handshake fails, the process runs out of file descriptors.
In each case the error is clear, nothing acknowledged is lost, and nothing
unhandled reaches the log.
"""

from __future__ import annotations

import datetime
import io
import os
import resource
import socket
import struct
from typing import Any, Callable, List, Optional, Tuple, cast

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ClientFactory, Factory
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from twisted_streaming import BasePushProducer, ProducerStopped, StreamProtocol
from twisted_streaming.test._extras import skipTLS

if skipTLS is None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from OpenSSL import SSL
    from twisted.internet.ssl import (
        Certificate,
        CertificateOptions,
        optionsForClientTLS,
    )
    from twisted.protocols.tls import TLSMemoryBIOFactory

reactor: Any = _globalReactor

_CHUNK = 16384


def chunk(i: int) -> bytes:
    """
    The C{i}th chunk of the test stream: 16 KiB, distinct for each C{i}.
    """
    return (b"%015d\n" % (i,)) * (_CHUNK // 16)


class Stream(BasePushProducer):
    """
    Produce C{count} chunks.
    """

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.made = 0

    def produce(self) -> Optional[bytes]:
        if self.made >= self.count:
            return None
        self.made += 1
        return chunk(self.made - 1)


def expected(nbytes: int) -> bytes:
    """
    The first C{nbytes} of the test stream.
    """
    return b"".join(chunk(i) for i in range(nbytes // _CHUNK + 1))[:nbytes]


class Server(StreamProtocol):
    """
    Start a L{Stream} on connection, on C{consumerFor(transport)}, and close
    the connection when it ends.
    """

    def __init__(
        self, count: int, consumerFor: Callable[[Any], Any] = lambda t: t
    ) -> None:
        super().__init__()
        self.producer = Stream(count)
        self.consumerFor = consumerFor
        self.outcome: Deferred[Any] = Deferred()

    def connectionMade(self) -> None:
        d = self.producer.startProducing(self.consumerFor(self.transport))
        d.addBoth(self._ended)

    def _ended(self, result: Any) -> None:
        self.outcome.callback(result)
        self.transport.loseConnection()


class Client(StreamProtocol):
    """
    Collect what arrives; optionally reset the connection after the first
    read.
    """

    def __init__(self, reset: bool = False) -> None:
        super().__init__()
        self.reset = reset
        self.chunks: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.reset:
            self.reset = False
            # SO_LINGER 0: close() sends a reset instead of a FIN.
            self.transport.getHandle().setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.transport.abortConnection()

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


class RaisingConsumer:
    """
    Pass writes on to a transport, raising from the C{n}th.
    """

    def __init__(self, transport: Any, n: int) -> None:
        self.transport = transport
        self.n = n
        self.written = b""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def write(self, data: bytes) -> None:
        self.n -= 1
        if self.n <= 0:
            raise ValueError("the consumer refused the write")
        self.written += data
        self.transport.write(data)


def selfSigned(name: str) -> Tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """
    A new private key and self-signed certificate for C{name}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def selfSignedPEM(name: str) -> bytes:
    """
    A new self-signed certificate for C{name} followed by its private key,
    both PEM-encoded.
    """
    key, cert = selfSigned(name)
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class FaultTests(TestCase):
    """
    Producers meet faults on real loopback connections.
    """

    def serve(
        self,
        server: Server,
        client: Client,
        wrap: Callable[[Any, bool], Any] = lambda f, isClient: f,
    ) -> Deferred[Any]:
        """
        Connect C{client} to C{server}; fire when both ends are closed and
        the port has stopped listening.
        """
        port = reactor.listenTCP(
            0, wrap(Factory.forProtocol(lambda: server), False), interface="127.0.0.1"
        )
        reactor.connectTCP(
            "127.0.0.1",
            port.getHost().port,
            wrap(ClientFactory.forProtocol(lambda: client), True),
        )
        done = gatherResults([server.outcome, server.lost, client.lost])
        done.addBoth(lambda result: port.stopListening())
        return done

    def test_peerResetMidStream(self) -> Deferred[Any]:
        """
        A peer that resets mid-stream stops the producer with
        ProducerStopped, and what arrived is a prefix of what was written.
        """
        server = Server(100000)
        client = Client(reset=True)
        outcomes: List[Any] = []
        server.outcome.addBoth(outcomes.append)

        def check(_: Any) -> None:
            self.assertIsInstance(outcomes[0], Failure)
            stopped = outcomes[0].value
            self.assertIsInstance(stopped, ProducerStopped)
            self.assertLess(stopped.bytesWritten, 100000 * _CHUNK)
            self.assertGreater(len(client.received), 0)
            self.assertEqual(client.received, expected(len(client.received)))
            self.assertEqual(self.flushLoggedErrors(), [])

        return self.serve(server, client).addCallback(check)

    def test_consumerRaisesFromWrite(self) -> Deferred[Any]:
        """
        A consumer that raises from write fails the producer with that error
        in context, and everything written before it arrives.
        """
        consumers: List[RaisingConsumer] = []

        def consumerFor(transport: Any) -> RaisingConsumer:
            consumers.append(RaisingConsumer(transport, 5))
            return consumers[-1]

        server = Server(100, consumerFor)
        client = Client()
        outcomes: List[Any] = []
        server.outcome.addBoth(outcomes.append)

        def check(_: Any) -> None:
            failure = outcomes[0]
            self.assertIsInstance(failure, Failure)
            self.assertIsInstance(failure.value, ValueError)
            self.assertIn("after writing", failure.getErrorMessage())
            self.assertEqual(client.received, consumers[0].written)
            self.assertEqual(client.received, expected(4 * _CHUNK))
            self.assertEqual(self.flushLoggedErrors(), [])

        return self.serve(server, client).addCallback(check)

    def test_tlsHandshakeFails(self) -> Deferred[Any]:
        """
        A client that does not trust the server's certificate gets no data,
        sees a TLS error, and the producer is stopped.
        """
        key, cert = selfSigned("localhost")
        # pyOpenSSL takes cryptography's objects directly.
        # (Twisted's hints still name pyOpenSSL's deprecated wrappers.)
        serverOptions = CertificateOptions(
            privateKey=cast(Any, key), certificate=cast(Any, cert)
        )
        _, other = selfSigned("localhost")
        otherRoot = Certificate.loadPEM(other.public_bytes(serialization.Encoding.PEM))
        clientOptions = optionsForClientTLS("localhost", trustRoot=otherRoot)

        def wrap(factory: Any, isClient: bool) -> Any:
            options = clientOptions if isClient else serverOptions
            return TLSMemoryBIOFactory(options, isClient, factory)

        server = Server(100)
        client = Client()
        outcomes: List[Any] = []
        server.outcome.addBoth(outcomes.append)

        def check(_: Any) -> None:
            self.assertEqual(client.received, b"")
            assert client.reason is not None
            self.assertIsNotNone(client.reason.check(SSL.Error))
            self.assertIn("certificate verify failed", str(client.reason.value))
            self.assertIsInstance(outcomes[0], Failure)
            self.assertIsInstance(outcomes[0].value, ProducerStopped)
            self.assertEqual(self.flushLoggedErrors(), [])

        return self.serve(server, client, wrap).addCallback(check)

    if skipTLS:
        test_tlsHandshakeFails.skip = skipTLS  # type: ignore[attr-defined]

    def test_outOfFileDescriptorsWhileAccepting(self) -> Deferred[Any]:
        """
        With no file descriptor left, the port closes the connection it
        cannot serve without logging an error, and serves the next one once
        descriptors free up.
        """
        server = Server(8)
        port = reactor.listenTCP(
            0, Factory.forProtocol(lambda: server), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        # The kernel completes the connection into the backlog at once.
        sock = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(sock.close)
        old = resource.getrlimit(resource.RLIMIT_NOFILE)
        fillers: List[int] = []
        recovered: Deferred[None] = Deferred()

        def restore() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)
            while fillers:
                os.close(fillers.pop())

        def observe(event: Any) -> None:
            # Twisted's port closes the connection it could not accept in
            # full, and logs that it did so.
            text = formatEvent(event) or ""
            if "EMFILE recovery: Closed socket" in text and not recovered.called:
                restore()
                recovered.callback(None)

        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.addCleanup(restore)

        def lower() -> None:
            # Only once the reactor runs: starting it needs descriptors.
            # Use up every free number below the highest open descriptor,
            # then forbid any higher one.
            highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
            while True:
                fd = os.open(os.devnull, os.O_RDONLY)
                if fd > highest:
                    os.close(fd)
                    break
                fillers.append(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, old[1]))

        reactor.callWhenRunning(lower)
        refused = Client()
        served = Client()

        def connectAgain(_: None) -> Deferred[Any]:
            reactor.adoptStreamConnection(
                sock.fileno(),
                socket.AF_INET,
                ClientFactory.forProtocol(lambda: refused),
            )
            sock.close()
            reactor.connectTCP(
                "127.0.0.1",
                port.getHost().port,
                ClientFactory.forProtocol(lambda: served),
            )
            return gatherResults(
                [refused.lost, served.lost, server.outcome, server.lost]
            )

        def check(_: Any) -> None:
            self.assertEqual(refused.received, b"")
            self.assertEqual(served.received, expected(8 * _CHUNK))
            self.assertEqual(self.flushLoggedErrors(), [])

        return recovered.addCallback(connectAgain).addCallback(check)

    def test_fileReadFails(self) -> Deferred[Any]:
        """
        A file whose read fails mid-transfer fails FileSender's Deferred with
        that error in context, and the chunks read before it all arrive.
        """
        from twisted_streaming import FileSender

        class BrokenFile(io.BytesIO):
            def read(self, size: Optional[int] = -1) -> bytes:
                if self.tell() >= 2 * _CHUNK:
                    raise OSError("disk read failed")
                return super().read(size)

        server = Server(0)
        client = Client()
        outcomes: List[Any] = []

        def connectionMade() -> None:
            sender = FileSender()
            sender.CHUNK_SIZE = _CHUNK
            d = sender.beginFileTransfer(
                BrokenFile(expected(4 * _CHUNK)), cast(Any, server.transport)
            )
            d.addBoth(server._ended)

        server.connectionMade = connectionMade  # type: ignore[method-assign]
        server.outcome.addBoth(outcomes.append)

        def check(_: Any) -> None:
            self.assertIsInstance(outcomes[0], Failure)
            self.assertIsInstance(outcomes[0].value, OSError)
            self.assertIn("after writing", outcomes[0].getErrorMessage())
            self.assertEqual(client.received, expected(2 * _CHUNK))
            self.assertEqual(self.flushLoggedErrors(), [])

        return self.serve(server, client).addCallback(check)
